package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/e2e/fleet"
	"driftless.dev/shared/testenv"
)

const (
	// memoryLimit is the Deployments' memory limit in manifests/base.
	memoryLimit = 256 << 20
	// syncLease is the synchronizer's Lease: driftless-synchronizer-<--name>.
	syncLease = "driftless-synchronizer-driftless"
	system    = "driftless-system"
)

// TestInPods installs Driftless as a user would, from images built from
// this tree, on clusters with a real node (kubelet, containerd, runc,
// kube-proxy), and runs it there: one environment, two subtests, because
// an environment with two real nodes costs more than the checks.
func TestInPods(t *testing.T) {
	manifests, _ := filepath.Abs(filepath.Join("..", "manifests"))
	t0 := time.Now()
	f, err := fleet.Start(t.Context(), fleet.Options{
		Dir: t.TempDir(), Manifests: manifests, InCluster: true, NoInstall: true, Soak: time.Second,
		Say: func(format string, args ...any) { t.Logf(format, args...) },
	})
	if f != nil {
		t.Cleanup(f.Stop)
		t.Cleanup(func() { dumpInCluster(t, f) })
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING environment, images built and pushed, repository seeded: %s", since(t0))
	t.Run("Pair", func(t *testing.T) { testPairInPods(t, f) })
	t.Run("TenantOutsideItsNamespace", func(t *testing.T) { testTenantOutsideItsNamespace(t, f) })
}

// testPairInPods: the release of overlays/dev and overlays/prod, with
// records and promotion gates on (manifests/components/records), becomes
// Available with real containers under the enforced restricted profile;
// the loop runs through the Pods (registry webhook to the automator's
// Service, commit, Git webhook to the synchronizers' Services, applied,
// rolled out, recorded healthy with signed notes, promoted by the
// automator's gate after the soak, prod rolled out and recorded); the
// automator's fleet page, reached with a TokenRequest token, shows the
// records and the gate; one replica of each leads; deleting the leaders
// hands over within the Lease duration, with nothing lost or committed
// twice, and the new automator leader promotes the next tag; memory stays
// under the limits.
func testPairInPods(t *testing.T, f *fleet.Fleet) {
	ctx := t.Context()
	t0 := time.Now()
	// dev applies as the ServiceAccount driftless-apply (impersonation,
	// manifests/components/apply-as); prod as the synchronizer itself.
	if err := f.Install(ctx, "dev", "dev", f.Settings("dev"), append([]string{"components/apply-as"}, f.Components()...)...); err != nil {
		t.Fatal(err)
	}
	if err := f.Install(ctx, "prod", "prod", f.Settings("prod"), f.Components()...); err != nil {
		t.Fatal(err)
	}
	for c, want := range map[string]map[string]int32{
		"dev":  {"driftless-automator": 2, "driftless-synchronizer": 2},
		"prod": {"driftless-automator": 0, "driftless-synchronizer": 2},
	} {
		if err := f.WaitAvailable(ctx, c, system, want, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("TIMING kubectl apply of the release of overlays/dev and overlays/prod → every Deployment Available on the real nodes: %s", since(t0))
	for _, c := range fleet.Clusters {
		checkPods(t, clientOf(t, f, c))
	}
	if err := f.Ready(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING kubectl apply → both synchronizer Pods applied their branch and web rolled out in both clusters: %s", since(t0))

	dev := clientOf(t, f, "dev")
	// In dev the synchronizer's own identity cannot apply: only the
	// ServiceAccount it impersonates can, and what dev applied it applied
	// as that one.
	for _, who := range []struct {
		sa    string
		allow bool
	}{{"driftless-synchronizer", false}, {"driftless-apply", true}} {
		r, err := dev.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + system + ":" + who.sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + system},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: fleet.AppNamespace, Verb: "patch", Group: "apps", Resource: "deployments", Name: "web"},
		}}, metav1.CreateOptions{})
		if err != nil || r.Status.Allowed != who.allow {
			t.Fatalf("%s may patch web in dev: %v (%v), want %v", who.sa, r.Status.Allowed, err, who.allow)
		}
	}
	syncLeader := leader(t, dev, syncLease, "driftless-synchronizer")
	autoLeader := leader(t, dev, "driftless-automator", "driftless-automator")
	leaders := 0
	for _, pod := range pods(t, dev, system, "app.kubernetes.io/name=driftless-synchronizer") {
		var st struct {
			Leader bool `json:"leader"`
		}
		getJSON(t, "http://"+pod.Status.PodIP+":8080/status", &st)
		if st.Leader {
			leaders++
			if pod.Name != syncLeader {
				t.Fatalf("synchronizer %s says it leads, the Lease names %s", pod.Name, syncLeader)
			}
		}
	}
	if leaders != 1 {
		t.Fatalf("%d synchronizer replicas say they lead, want 1", leaders)
	}

	walk := func(tag string) {
		tm, err := f.Walk(ctx, tag, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("TIMING %s pushed → bump commit %v (registry webhook through the automator's Service), dev applied %v (Git webhook through the synchronizer's Service), dev rolled out %v, prod rolled out after the gate's merge (1 s soak) %v",
			tag, tm.Commit.Round(10*time.Millisecond), tm.DevApplied.Round(10*time.Millisecond), tm.DevRolledOut.Round(10*time.Millisecond), tm.ProdRolledOut.Round(10*time.Millisecond))
		if n := commitsMatching(t, f, "dev", fleet.Image+":"+tag); n != 1 {
			t.Fatalf("%d bump commits to %s on dev, want 1", n, tag)
		}
		checkPromotedByTheGate(t, f, tm)
	}
	walk("1.1.0")

	// The automator's fleet page, as a person logs in to it: what the
	// Pods recorded, and the gate.
	ui, err := f.UIAccess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var page fleet.FleetView
	until(t, time.Minute, "the fleet page to show dev and prod healthy and the gate up to date", func() bool {
		page, err = ui.Fleet(ctx)
		return err == nil && page.Healthy("dev", "dev") && page.Healthy("prod", "prod") &&
			strings.Contains(page.Says(), "gate dev-to-prod → prod: UpToDate")
	})
	t.Logf("the automator's fleet page:\n%s", page.Says())

	// Deleting both leaders hands over to the standbys within the Lease duration.
	lease := getLease(t, dev, syncLease)
	duration := time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	t0 = time.Now()
	for _, name := range []string{syncLeader, autoLeader} {
		if err := dev.CoreV1().Pods(system).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	until(t, duration+10*time.Second, "both Leases held by other replicas", func() bool {
		s, a := holder(getLease(t, dev, syncLease)), holder(getLease(t, dev, "driftless-automator"))
		return s != "" && s != syncLeader && a != "" && a != autoLeader
	})
	handover := time.Since(t0)
	t.Logf("TIMING leader Pods deleted → both Leases held by the standbys: %s (Lease duration %s)", handover.Round(10*time.Millisecond), duration)
	if handover > duration {
		t.Fatalf("handover took %s, longer than the Lease duration %s", handover, duration)
	}
	// Nothing lost: the next tag goes through the new leaders, once.
	walk("1.2.0")
	for _, c := range fleet.Clusters {
		checkMemory(t, clientOf(t, f, c))
	}
}

// testTenantOutsideItsNamespace: the release of overlays/tenant runs the
// tenant's synchronizer as a Pod in driftless-tenants, applying the
// tenant's repository to tenant-a. A tenant's commit that edits the
// Deployment running its synchronizer is refused and changes nothing; the
// synchronizer's ServiceAccount can neither patch that Deployment nor read
// the Secret holding its Git token, and that Secret is not in tenant-a
// where the tenant's Pods could mount it. (With the synchronizer inside
// tenant-a, as the overlay had it, all of these were possible.)
func testTenantOutsideItsNamespace(t *testing.T, f *fleet.Fleet) {
	ctx := t.Context()
	cs := clientOf(t, f, "dev")
	src := writeTree(t, map[string]string{"deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {v: \"1\"}\n"})
	good, err := f.Git.Seed(ctx, "tenant-a", "main", src, "The tenant's application")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	settings := `apiVersion: apps/v1
kind: Deployment
metadata: {name: driftless-synchronizer-tenant-a, namespace: driftless-tenants}
spec:
  template:
    spec:` + fleet.Placement() + `
      containers:
        - name: synchronizer
          env:
            - {name: DRIFTLESS_REPO_URL, value: "` + f.Git.RepoURL("tenant-a") + `"}
            - {name: DRIFTLESS_GIT_USERNAME, value: driftless}
            - {name: DRIFTLESS_INTERVAL, value: 1s}
`
	if err := f.Install(ctx, "dev", "tenant", settings); err != nil {
		t.Fatal(err)
	}
	until(t, 3*time.Minute, "the tenant synchronizer to apply main@"+good, func() bool {
		cm, err := cs.CoreV1().ConfigMaps("tenant-a").Get(ctx, "driftless", metav1.GetOptions{})
		return err == nil && cm.Data["lastAppliedRevision"] == "main@sha1:"+good
	})
	t.Logf("TIMING kubectl apply of the release of overlays/tenant → the tenant's repository applied by its Pod: %s", since(t0))
	if _, err := cs.CoreV1().ConfigMaps("tenant-a").Get(ctx, "app", metav1.GetOptions{}); err != nil {
		t.Fatalf("the tenant's ConfigMap: %v", err)
	}

	// Where it really runs: the Deployment of its Pod.
	ps := pods(t, cs, "", "app.kubernetes.io/name=driftless-synchronizer,driftless.dev/tenant=tenant-a")
	if len(ps) == 0 {
		t.Fatal("no tenant synchronizer Pod")
	}
	runNS, sa := ps[0].Namespace, ps[0].Spec.ServiceAccountName
	if runNS == "tenant-a" {
		t.Fatalf("the tenant's synchronizer runs in the namespace it applies to")
	}
	deploy := "driftless-synchronizer-tenant-a"
	before, err := cs.AppsV1().Deployments(runNS).Get(ctx, deploy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secretName := ""
	for _, v := range before.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}

	// The tenant commits an edit of its own synchronizer: refused, nothing changed.
	bad, err := f.CommitTo(ctx, "tenant-a", "main", "Scale my synchronizer", map[string]string{"deploy/takeover.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: " + deploy +
		", namespace: " + runNS + "}\nspec:\n  replicas: 5\n"})
	if err != nil {
		t.Fatal(err)
	}
	until(t, time.Minute, "the tenant's takeover commit refused", func() bool {
		cm, err := cs.CoreV1().ConfigMaps("tenant-a").Get(ctx, "driftless", metav1.GetOptions{})
		return err == nil && cm.Data["revision"] == "main@sha1:"+bad && cm.Data["phase"] != "Ready" &&
			strings.Contains(cm.Data["message"], runNS) && cm.Data["lastAppliedRevision"] == "main@sha1:"+good
	})
	after, err := cs.AppsV1().Deployments(runNS).Get(ctx, deploy, metav1.GetOptions{})
	if err != nil || after.Generation != before.Generation || *after.Spec.Replicas != *before.Spec.Replicas {
		t.Fatalf("the synchronizer's own Deployment changed: generation %d → %d (%v)", before.Generation, after.Generation, err)
	}

	// Its ServiceAccount reaches neither its Deployment nor its token (and
	// does reach the tenant's Deployments: the review itself works).
	user := "system:serviceaccount:" + runNS + ":" + sa
	for _, attr := range []authorizationv1.ResourceAttributes{
		{Namespace: runNS, Verb: "patch", Group: "apps", Resource: "deployments", Name: deploy},
		{Namespace: runNS, Verb: "get", Resource: "secrets", Name: secretName},
		{Namespace: "tenant-a", Verb: "patch", Group: "apps", Resource: "deployments", Name: "web"},
	} {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + runNS}, ResourceAttributes: &attr,
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := attr.Namespace == "tenant-a"; r.Status.Allowed != want {
			t.Errorf("%s may %s %s %s/%s: %v, want %v", user, attr.Verb, attr.Resource, attr.Namespace, attr.Name, r.Status.Allowed, want)
		}
	}
	if _, err := cs.CoreV1().Secrets("tenant-a").Get(ctx, secretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Git token Secret %s is in tenant-a, where the tenant's Pods can mount it (%v)", secretName, err)
	}
}

// checkPromotedByTheGate: prod's head is the automator's merge of the
// bump, made by the gate (not by hand), and the notes hold, signed, dev's
// records of the bump and prod's of the merge, written by the Pods.
func checkPromotedByTheGate(t *testing.T, f *fleet.Fleet, tm fleet.Timings) {
	t.Helper()
	ctx := t.Context()
	msg, err := f.Git.Git(ctx, fleet.Repo, "log", "-1", "--format=%an%n%P%n%B", tm.MergeCommit)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.SplitN(msg, "\n", 3); len(lines) < 3 || lines[0] != "Driftless Automator" || !strings.HasSuffix(lines[1], " "+tm.BumpCommit) ||
		!strings.Contains(lines[2], "Driftless-Promotion: dev-to-prod") {
		t.Fatalf("prod's head %s is not the gate's merge of %s:\n%s", tm.MergeCommit, tm.BumpCommit, msg)
	}
	until(t, time.Minute, "prod's healthy record of the merge", func() bool {
		out, _ := f.Git.Git(ctx, fleet.Repo, "notes", "--ref=driftless", "show", tm.MergeCommit)
		return strings.Contains(out, "event=healthy cluster=prod ref=prod")
	})
	notes, err := f.Git.Git(ctx, fleet.Repo, "notes", "--ref=driftless", "show", tm.BumpCommit)
	if err != nil || !strings.Contains(notes, "event=applied cluster=dev ref=dev") || !strings.Contains(notes, "event=healthy cluster=dev ref=dev") ||
		!strings.Contains(notes, "event=promoted commit="+tm.MergeCommit) {
		t.Fatalf("the records of the bump %s: %v\n%s", tm.BumpCommit, err, notes)
	}
	// The synchronizers sign their notes commits (the automator counts
	// only those: it promoted).
	signed, err := f.Git.Git(ctx, fleet.Repo, "log", "--format=%an %G?", "refs/notes/driftless")
	if err != nil || !strings.Contains(signed, "Driftless Synchronizer") {
		t.Fatalf("the notes history: %v\n%s", err, signed)
	}
	for _, line := range strings.Split(strings.TrimSpace(signed), "\n") {
		if strings.HasPrefix(line, "Driftless Synchronizer") && strings.HasSuffix(line, " N") {
			t.Fatalf("an unsigned notes commit of a synchronizer: %s", line)
		}
	}
}

func clientOf(t testing.TB, f *fleet.Fleet, c string) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(f.Clusters[c].Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func pods(t testing.TB, cs kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, pod := range l.Items {
		if pod.DeletionTimestamp == nil {
			live = append(live, pod)
		}
	}
	return live
}

// checkPods: real containers on the real node, running as 65532 with a
// read-only root, images by digest, the ServiceAccount's token projected
// by the kubelet (in-cluster configuration, nothing mounted by hand),
// under the restricted profile the namespace enforces.
func checkPods(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	for _, pod := range pods(t, cs, system, "app.kubernetes.io/part-of=driftless") {
		c := pod.Spec.Containers[0]
		if pod.Spec.NodeName != testenv.RealNodeName || len(pod.Status.ContainerStatuses) == 0 {
			t.Fatalf("%s runs on %q (%d container statuses), want the real node", pod.Name, pod.Spec.NodeName, len(pod.Status.ContainerStatuses))
		}
		st := pod.Status.ContainerStatuses[0]
		if !strings.Contains(c.Image, "@sha256:") || !st.Ready || st.State.Running == nil || !strings.HasPrefix(st.ContainerID, "containerd://") {
			t.Fatalf("%s: image %s, status %+v", pod.Name, c.Image, st)
		}
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
			pod.Spec.SecurityContext.RunAsUser == nil || *pod.Spec.SecurityContext.RunAsUser != 65532 {
			t.Fatalf("%s: security context %+v / %+v", pod.Name, pod.Spec.SecurityContext, c.SecurityContext)
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
		}) {
			t.Fatalf("%s: no projected ServiceAccount token: %+v", pod.Name, c.VolumeMounts)
		}
	}
	ns, err := cs.CoreV1().Namespaces().Get(t.Context(), system, metav1.GetOptions{})
	if err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Fatalf("%s does not enforce restricted: %v %v", system, ns.Labels, err)
	}
}

func getLease(t testing.TB, cs kubernetes.Interface, name string) *coordinationv1.Lease {
	l, err := cs.CoordinationV1().Leases(system).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return &coordinationv1.Lease{}
	}
	return l
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// leader waits until the Lease name is held by a live Pod of app and returns it.
func leader(t *testing.T, cs kubernetes.Interface, lease, app string) string {
	t.Helper()
	var h string
	until(t, time.Minute, "a leader of "+app, func() bool {
		h = holder(getLease(t, cs, lease))
		return slices.ContainsFunc(pods(t, cs, system, "app.kubernetes.io/name="+app), func(pod corev1.Pod) bool { return pod.Name == h })
	})
	return h
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// checkMemory reads each container's memory from the kubelet's summary
// API and compares it with the Deployment's limit.
func checkMemory(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/" + testenv.RealNodeName + "/proxy/stats/summary").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("kubelet stats: %v", err)
	}
	var summary struct {
		Pods []struct {
			PodRef struct {
				Name, Namespace string
			} `json:"podRef"`
			Containers []struct {
				Name   string `json:"name"`
				Memory struct {
					WorkingSetBytes *uint64 `json:"workingSetBytes"`
					RSSBytes        *uint64 `json:"rssBytes"`
				} `json:"memory"`
			} `json:"containers"`
		} `json:"pods"`
	}
	if err := json.Unmarshal(raw, &summary); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, pod := range summary.Pods {
		if pod.PodRef.Namespace != system {
			continue
		}
		for _, c := range pod.Containers {
			if c.Memory.WorkingSetBytes == nil {
				continue
			}
			seen++
			ws, rss := *c.Memory.WorkingSetBytes, uint64(0)
			if c.Memory.RSSBytes != nil {
				rss = *c.Memory.RSSBytes
			}
			t.Logf("MEMORY %s/%s: working set %.1f MiB, anonymous (RSS as the cgroup counts it) %.1f MiB, limit %d MiB",
				pod.PodRef.Name, c.Name, float64(ws)/(1<<20), float64(rss)/(1<<20), memoryLimit>>20)
			if ws >= memoryLimit {
				t.Errorf("%s uses %d bytes, at or over its limit", pod.PodRef.Name, ws)
			}
		}
	}
	if seen == 0 {
		t.Fatalf("the kubelet reported no driftless container's memory:\n%s", raw)
	}
}

// dumpInCluster prints, when the test failed, what a person needs to see
// why: every Pod on the real nodes with its log, the synchronizers'
// status, and the branch heads.
func dumpInCluster(t *testing.T, f *fleet.Fleet) {
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	var b strings.Builder
	for c, cl := range f.Clusters {
		cs, err := kubernetes.NewForConfig(cl.Config)
		if err != nil {
			continue
		}
		l, _ := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if l != nil {
			for _, pod := range l.Items {
				fmt.Fprintf(&b, "[%s] pod %s/%s on %s: %s %+v\n", c, pod.Namespace, pod.Name, pod.Spec.NodeName, pod.Status.Phase, pod.Status.ContainerStatuses)
				if pod.Spec.NodeName != testenv.RealNodeName {
					continue
				}
				tail := int64(60)
				logs, err := cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
				fmt.Fprintf(&b, "--- [%s] logs of %s (%v) ---\n%s\n", c, pod.Name, err, logs)
			}
		}
		for _, ns := range []string{system, "tenant-a"} {
			if cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "driftless", metav1.GetOptions{}); err == nil {
				fmt.Fprintf(&b, "--- [%s] synchronizer status in %s ---\n%v\n", c, ns, cm.Data)
			}
		}
	}
	for c, cl := range f.Clusters {
		fmt.Fprintf(&b, "=== [%s] components, node and container logs ===\n%s\n", c, cl.LogTails())
	}
	if f.Registry != nil {
		b.WriteString(f.Registry.LogTail())
	}
	if hooks, err := os.ReadFile(f.WebhookLog()); err == nil {
		fmt.Fprintf(&b, "--- the Git server's webhooks ---\n%s\n", hooks)
	}
	if f.Git != nil {
		for _, repo := range []string{fleet.Repo, "tenant-a"} {
			out, _ := f.Git.Git(ctx, repo, "log", "--oneline", "--decorate", "--all", "-n", "20")
			fmt.Fprintf(&b, "--- branch heads of %s ---\n%s\n", repo, out)
		}
	}
	t.Logf("what the Pods did:\n%s", b.String())
}

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }
