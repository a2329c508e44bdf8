package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/e2e/fleet"
)

// startFleet brings up the whole loop (two clusters, registry, Git, the
// manifests applied, both programs as their ServiceAccounts) for one test.
func startFleet(t testing.TB, webhooks bool, interval time.Duration) *fleet.Fleet {
	t.Helper()
	manifests, _ := filepath.Abs(filepath.Join("..", "manifests"))
	f, err := fleet.Start(t.Context(), fleet.Options{
		Dir: t.TempDir(), Automator: programs["automator"], Synchronizer: programs["synchronizer"],
		Manifests: manifests, Webhooks: webhooks, Interval: interval,
		Say: func(format string, args ...any) { t.Logf(format, args...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			t.Log(f.Diagnose(ctx))
		}
	})
	if err := f.Ready(t.Context(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return f
}

// commitsMatching counts the commits on branch whose message contains s.
func commitsMatching(t testing.TB, f *fleet.Fleet, branch, s string) int {
	t.Helper()
	out, err := f.Git.Git(t.Context(), fleet.Repo, "log", "--format=%B%x00", branch)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, msg := range strings.Split(out, "\x00") {
		if strings.Contains(msg, s) {
			n++
		}
	}
	return n
}

// TestLoopTagToProd: a tag pushed to the registry becomes one commit on
// dev, is applied and rolled out in the dev cluster, leaves prod alone
// until dev is merged into prod, and then rolls out in prod.
func TestLoopTagToProd(t *testing.T) {
	f := startFleet(t, true, time.Hour)
	tm, err := f.Walk(t.Context(), "1.1.0", 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tag → commit %v, dev applied %v, dev rolled out %v, prod rolled out %v", tm.Commit, tm.DevApplied, tm.DevRolledOut, tm.ProdRolledOut)
	if n := commitsMatching(t, f, "dev", "team/web:1.1.0"); n != 1 {
		t.Fatalf("%d bump commits on dev, want 1", n)
	}
	// The synchronizers ran as their ServiceAccounts: the live objects'
	// only field manager is the prod synchronizer's, through the RBAC of manifests/.
	cs := kubernetes.NewForConfigOrDie(f.Clusters["prod"].Config)
	d, err := cs.AppsV1().Deployments(fleet.AppNamespace).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil || len(d.ManagedFields) == 0 || d.ManagedFields[0].Manager != "driftless/driftless-system/driftless" || *d.Spec.Replicas != 3 {
		t.Fatalf("prod web: %+v %v", d.ManagedFields, err)
	}
	// The manifests' Pods pass the restricted Pod Security profile their
	// namespace enforces: their Deployments are available (on kwok nodes).
	for c, want := range map[string]map[string]int32{"dev": {"driftless-automator": 2, "driftless-synchronizer": 2}, "prod": {"driftless-automator": 0, "driftless-synchronizer": 2}} {
		ccs := kubernetes.NewForConfigOrDie(f.Clusters[c].Config)
		ns, _ := ccs.CoreV1().Namespaces().Get(t.Context(), "driftless-system", metav1.GetOptions{})
		if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Fatalf("%s: driftless-system does not enforce restricted: %v", c, ns.Labels)
		}
		for name, n := range want {
			if err := fleet.Until(t.Context(), time.Minute, c+" "+name+" available", func() bool {
				d, err := ccs.AppsV1().Deployments("driftless-system").Get(t.Context(), name, metav1.GetOptions{})
				return err == nil && d.Status.AvailableReplicas == n && d.Status.ReadyReplicas == n
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The cluster's status ConfigMap tells the same story, once the
	// synchronizer has written it (it may lag behind the rollout).
	var data map[string]string
	if err := fleet.Until(t.Context(), 30*time.Second, "the prod status at the merge", func() bool {
		cm, err := cs.CoreV1().ConfigMaps("driftless-system").Get(t.Context(), "driftless", metav1.GetOptions{})
		if err == nil {
			data = cm.Data
		}
		return err == nil && cm.Data["lastAppliedRevision"] == "prod@sha1:"+tm.MergeCommit
	}); err != nil {
		t.Fatalf("%v: %v", err, data)
	}
}

// TestLoopSurvivesSIGKILL: both programs are killed in the middle of the
// flow (a tag just pushed, a commit removing an object just made) and
// restarted: the system converges, the bump is committed exactly once,
// no commit is lost, and the removed object is pruned, not orphaned.
func TestLoopSurvivesSIGKILL(t *testing.T) {
	f := startFleet(t, true, 5*time.Second)
	ctx := t.Context()
	f.Kill("sync-dev")
	seedCommit := f.Head(ctx, "dev")
	if _, err := f.Registry.PushImages(ctx, fleet.Image, "1.2.0"); err != nil {
		t.Fatal(err)
	}
	f.Kill("automator")
	// Someone removes the Service from the application meanwhile.
	removal := pushChange(t, f, map[string]string{
		"apps/web/service.yaml":       "",
		"apps/web/kustomization.yaml": "resources: [namespace.yaml, deployment.yaml]\n",
	})
	if err := f.StartAutomator(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.StartSynchronizer(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	want := f.Registry.Host + "/" + fleet.Image + ":1.2.0"
	if err := fleet.Until(ctx, 90*time.Second, "dev to run 1.2.0", func() bool {
		r := f.Web(ctx, "dev")
		return r.Image == want && r.Done
	}); err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(f.Clusters["dev"].Config)
	if err := fleet.Until(ctx, 30*time.Second, "the Service pruned", func() bool {
		_, err := cs.CoreV1().Services(fleet.AppNamespace).Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}); err != nil {
		t.Fatal(err)
	}
	if n := commitsMatching(t, f, "dev", "team/web:1.2.0"); n != 1 {
		t.Fatalf("%d bump commits for 1.2.0, want exactly 1", n)
	}
	for _, c := range []string{seedCommit, removal} {
		if _, err := f.Git.Git(ctx, fleet.Repo, "merge-base", "--is-ancestor", c, "dev"); err != nil {
			t.Fatalf("commit %s was lost from dev", c)
		}
	}
	if err := fleet.Until(ctx, 30*time.Second, "dev Ready at the head", func() bool {
		st := f.Status("sync-dev").Status
		return st.Phase == "Ready" && st.LastAppliedRevision == "dev@sha1:"+f.Head(ctx, "dev")
	}); err != nil {
		t.Fatal(err)
	}
}

// pushChange commits files (empty body deletes) to dev with git itself.
func pushChange(t testing.TB, f *fleet.Fleet, files map[string]string) string {
	t.Helper()
	h, err := f.Commit(t.Context(), "dev", "Remove the web Service", files)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
