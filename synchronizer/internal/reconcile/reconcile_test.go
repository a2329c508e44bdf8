package reconcile_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/build"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/metrics"
	"driftless.dev/synchronizer/internal/reconcile"
	"driftless.dev/synchronizer/internal/source"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(testenv.MainCluster(m, &cluster)) }

// recorder keeps the Events the loop emits.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Event(warning bool, reason, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, reason+": "+message)
}

func (r *recorder) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

type fixture struct {
	t      *testing.T
	eng    *apply.Engine
	builds atomic.Int32
	src    reconcile.Fetcher
	ns     string
	srv    *testenv.GitServer
	w      *gitrepo.Repo
	cs     kubernetes.Interface
	rec    *reconcile.Reconciler
	store  *inventory.Store
	events *recorder
}

func cm(ns, name, value string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {v: %q}\n", name, ns, value)
}

// newFixture seeds a repository whose app/ folder is a kustomization of
// files, and a reconciler following it.
func newFixture(t *testing.T, files map[string]string, cfg reconcile.Config) *fixture {
	return newFixtureWithKeyring(t, files, cfg, "")
}

func newFixtureWithKeyring(t *testing.T, files map[string]string, cfg reconcile.Config, keyring string) *fixture {
	t.Helper()
	f := &fixture{t: t, ns: cluster.Namespace(t), events: &recorder{}}
	f.srv = testenv.NewGitServer(t, testenv.GitServerOptions{})
	src := t.TempDir()
	for name, body := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(strings.ReplaceAll(body, "NS", f.ns)), 0o644)
	}
	if _, err := f.srv.Seed(t.Context(), "app", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.w, err = gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "w"), f.srv.RepoURL("app"), "main", gitrepo.Auth{}); err != nil {
		t.Fatal(err)
	}
	s, err := source.New(source.Config{URL: f.srv.RepoURL("app"), Branch: "main", Dir: filepath.Join(t.TempDir(), "checkout"), Keyring: keyring})
	if err != nil {
		t.Fatal(err)
	}
	f.cs = kubernetes.NewForConfigOrDie(cluster.Config)
	f.src = s
	if cfg.Path == "" {
		cfg.Path = "app"
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Hour // passes come from Trigger only
	}
	f.rec = f.newReconciler(s, cfg)
	return f
}

// newReconciler is a synchronizer process: a fresh engine (nothing
// remembered) over the fixture's cluster and status.
func (f *fixture) newReconciler(src reconcile.Fetcher, cfg reconcile.Config) *reconcile.Reconciler {
	f.t.Helper()
	parent := inventory.Parent{Namespace: f.ns, Name: "driftless"}
	manager := apply.FieldManagerFor(parent.Namespace, parent.Name)
	eng, err := apply.New(cluster.Config, apply.Options{SetID: parent.ID(), FieldManager: manager, MaxPrune: 10}, zap.NewNop())
	if err != nil {
		f.t.Fatal(err)
	}
	f.eng = eng
	f.store = inventory.NewStore(dynamic.NewForConfigOrDie(cluster.Config), parent, "driftless/test", manager)
	builder := func(ctx context.Context, root, path string) ([]*unstructured.Unstructured, error) {
		f.builds.Add(1)
		return build.Build(ctx, root, path)
	}
	return reconcile.New(cfg, src, builder, eng, f.store, f.events, metrics.New(prometheus.NewRegistry()), zap.NewNop())
}

func (f *fixture) run() {
	ctx, cancel := context.WithCancel(f.t.Context())
	done := make(chan struct{})
	go func() { f.rec.Run(ctx); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
}

// commit writes files (an empty body deletes) and pushes.
func (f *fixture) commit(files map[string]string) string {
	return f.signedCommit(files, nil)
}

// signedCommit is commit, signed with key when it is not nil.
func (f *fixture) signedCommit(files map[string]string, key *openpgp.Entity) string {
	f.t.Helper()
	ctx := f.t.Context()
	if _, err := f.w.Sync(ctx); err != nil {
		f.t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(f.w.Dir(), name)
		if body == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(strings.ReplaceAll(body, "NS", f.ns)), 0o644)
	}
	h, err := f.w.Commit("change", gitrepo.Signature{Name: "Dev", Email: "dev@example.com"}, key)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.w.Push(ctx, "main"); err != nil {
		f.t.Fatal(err)
	}
	return h.String()
}

// until polls cond for up to 30s.
func (f *fixture) until(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			st, _ := f.store.Read(context.Background())
			f.t.Fatalf("timed out waiting for %s; status %+v", what, st.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *fixture) value(name string) string {
	c, err := f.cs.CoreV1().ConfigMaps(f.ns).Get(f.t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "<none>"
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return c.Data["v"]
}

// stored is the status as kubectl reads it from the parent ConfigMap.
func (f *fixture) stored() inventory.State {
	st, err := f.store.Read(f.t.Context())
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

var base = map[string]string{
	"app/kustomization.yaml": "resources: [a.yaml, b.yaml, web.yaml]\n",
	"app/a.yaml":             cm("NS", "a", "1"),
	"app/b.yaml":             cm("NS", "b", "1"),
	"app/web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1.0.0"}]}
`,
}

func TestApplyChangePruneAndHeal(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{})
	f.run()
	head, _ := f.srv.Head(t.Context(), "app", "main")
	f.until("Ready at the seeded commit", func() bool {
		s := f.stored().Status
		return s.Phase == inventory.Ready && s.LastAppliedRevision == "main@sha1:"+head
	})
	if f.value("a") != "1" || f.stored().Status.Objects != 3 {
		t.Fatalf("first apply: a=%s status %+v", f.value("a"), f.stored().Status)
	}
	dep, _ := f.cs.AppsV1().Deployments(f.ns).Get(t.Context(), "web", metav1.GetOptions{})
	if dep.Status.AvailableReplicas != 2 {
		t.Fatalf("Ready before the Deployment rolled out: %+v", dep.Status)
	}
	st := f.stored()
	if strings.Join(groupKinds(st), ",") != "ConfigMap,Deployment.apps" || !f.events.has("Applied: revision main@sha1:"+head) {
		t.Fatalf("inventory %v, events %v", groupKinds(st), f.events.events)
	}

	// Change one object and remove another.
	c := f.commit(map[string]string{"app/a.yaml": cm("NS", "a", "2"), "app/b.yaml": "", "app/kustomization.yaml": "resources: [a.yaml, web.yaml]\n"})
	f.rec.Trigger()
	f.until("the change applied", func() bool { return f.stored().Status.LastAppliedRevision == "main@sha1:"+c })
	if f.value("a") != "2" || f.value("b") != "<none>" {
		t.Fatalf("after commit: a=%s b=%s", f.value("a"), f.value("b"))
	}
	if s := f.stored().Status; s.Counts["pruned"] != 1 || s.Counts["configured"] != 1 {
		t.Fatalf("counts %v", s.Counts)
	}

	// A manual edit is reverted without any pass.
	passes := f.rec.Passes()
	a, _ := f.cs.CoreV1().ConfigMaps(f.ns).Get(t.Context(), "a", metav1.GetOptions{})
	a.Data["v"] = "edited by hand"
	if _, err := f.cs.CoreV1().ConfigMaps(f.ns).Update(t.Context(), a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.until("the edit reverted", func() bool { return f.value("a") == "2" })
	if f.rec.Passes() != passes {
		t.Fatal("healing drift took a full pass")
	}
	f.until("a DriftCorrected event", func() bool {
		return f.events.has("DriftCorrected: re-applied after a change outside Git: ConfigMap " + f.ns + "/a")
	})
}

func groupKinds(st inventory.State) []string {
	var out []string
	for _, gk := range st.GroupKinds() {
		out = append(out, gk.String())
	}
	return out
}

func TestBadCommitsApplyNothing(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{HealthTimeout: time.Minute})
	f.run()
	good, _ := f.srv.Head(t.Context(), "app", "main")
	f.until("Ready", func() bool { return f.stored().Status.Phase == inventory.Ready })
	cases := []struct {
		name   string
		files  map[string]string
		reason inventory.Reason
		msg    string
	}{
		{"invalid YAML", map[string]string{"app/a.yaml": cm("NS", "a", "2") + "  bad: [indent\n"}, "BuildFailed", "a.yaml"},
		{"unknown kind", map[string]string{"app/a.yaml": cm("NS", "a", "2") + "---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: NS}\n"}, "ValidationFailed", "Gadget.example.com NS/g: unknown kind Gadget"},
		{"dry-run rejection", map[string]string{"app/a.yaml": cm("NS", "a", "2") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: NS}\nspec: {ports: [{port: 0}]}\n"}, "ValidationFailed", "Service NS/s: Service \"s\" is invalid"},
		{"broken kustomization", map[string]string{"app/a.yaml": cm("NS", "a", "2"), "app/kustomization.yaml": "resources: [a.yaml, missing.yaml]\n"}, "BuildFailed", "missing.yaml"},
		{"path escape", map[string]string{"app/a.yaml": cm("NS", "a", "2"), "app/kustomization.yaml": "resources: [a.yaml, ../../etc/passwd]\n"}, "BuildFailed", `app/kustomization.yaml: resources[1] "../../etc/passwd": escapes the checkout`},
		{"empty render", map[string]string{"app/kustomization.yaml": "resources: []\n"}, "EmptyRender", "renders no objects"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.t = t
			bad := f.commit(c.files)
			f.rec.Trigger()
			f.until("Stalled at "+bad, func() bool {
				s := f.stored().Status
				return s.Phase == inventory.Stalled && s.Revision == "main@sha1:"+bad
			})
			s := f.stored().Status
			if s.Reason != c.reason || !strings.Contains(s.Message, strings.ReplaceAll(c.msg, "NS", f.ns)) {
				t.Fatalf("status %s: %s\nwant %s containing %q", s.Reason, s.Message, c.reason, c.msg)
			}
			if s.LastAppliedRevision != "main@sha1:"+good || f.value("a") != "1" || f.value("b") != "1" {
				t.Fatalf("the last good state was not kept: applied %s, a=%s b=%s", s.LastAppliedRevision, f.value("a"), f.value("b"))
			}
			// Put the good tree back for the next case.
			f.commit(base)
		})
	}
	f.t = t
	c := f.commit(map[string]string{"app/a.yaml": cm("NS", "a", "3")})
	f.rec.Trigger()
	f.until("a clean commit applies", func() bool { return f.stored().Status.LastAppliedRevision == "main@sha1:"+c && f.value("a") == "3" })
}

func TestSuspendAndResume(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{})
	f.run()
	f.until("Ready", func() bool { return f.stored().Status.Phase == inventory.Ready })
	if err := f.store.SetSuspended(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	f.rec.Trigger()
	f.until("Suspended", func() bool { return f.stored().Status.Phase == inventory.Suspended })
	c := f.commit(map[string]string{"app/a.yaml": cm("NS", "a", "2")})
	f.rec.Trigger()
	// A manual edit is not healed while suspended either.
	b, _ := f.cs.CoreV1().ConfigMaps(f.ns).Get(t.Context(), "b", metav1.GetOptions{})
	b.Data["v"] = "by hand"
	if _, err := f.cs.CoreV1().ConfigMaps(f.ns).Update(t.Context(), b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The watch has seen the edit, and a pass has run since the commit:
	// neither changed anything.
	f.until("the edit seen", func() bool { return f.eng.Tracker().Drifted() == 1 })
	passes := f.rec.Passes()
	f.rec.Trigger()
	f.until("a pass while suspended", func() bool { return f.rec.Passes() > passes })
	if f.value("a") != "1" || f.value("b") != "by hand" {
		t.Fatalf("changed while suspended: a=%s b=%s", f.value("a"), f.value("b"))
	}
	f.store.SetSuspended(t.Context(), false)
	f.rec.Trigger()
	f.until("resumed and applied", func() bool {
		return f.stored().Status.LastAppliedRevision == "main@sha1:"+c && f.value("a") == "2" && f.value("b") == "1"
	})
}

// The API server goes away in the middle of a pass and comes back: the
// next pass converges, and nothing is left half-owned.
func TestAPIServerRestartMidPass(t *testing.T) {
	files := map[string]string{"app/kustomization.yaml": "resources: [many.yaml]\n"}
	var many strings.Builder
	for i := range 300 {
		many.WriteString(cm("NS", fmt.Sprintf("cm-%03d", i), "1") + "---\n")
	}
	files["app/many.yaml"] = many.String()
	f := newFixture(t, files, reconcile.Config{})
	passDone := make(chan error, 1)
	go func() { passDone <- f.rec.Pass(t.Context()).Err }()
	// Stop once the pass has started writing.
	f.until("the pass to start writing", func() bool {
		l, err := f.cs.CoreV1().ConfigMaps(f.ns).List(t.Context(), metav1.ListOptions{LabelSelector: apply.PartOfLabel})
		return err == nil && len(l.Items) > 0
	})
	cluster.StopAPIServer()
	err := <-passDone
	if err == nil {
		t.Log("the pass finished before the API server stopped")
	}
	if err := cluster.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.run()
	f.until("converged after the restart", func() bool {
		s := f.stored().Status
		return s.Phase == inventory.Ready && s.Objects == 300
	})
	l, _ := f.cs.CoreV1().ConfigMaps(f.ns).List(t.Context(), metav1.ListOptions{LabelSelector: apply.PartOfLabel})
	if len(l.Items) != 300 {
		t.Fatalf("%d members after convergence, want 300", len(l.Items))
	}
}

// An unsigned head is not applied when a keyring is set, and the status
// says why; a signed one is.
func TestUnsignedHeadIsNotApplied(t *testing.T) {
	key, err := openpgp.NewEntity("Release", "", "release@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	key.Serialize(w)
	w.Close()
	// The seed commit is unsigned: nothing may be applied at all.
	f := newFixtureWithKeyring(t, base, reconcile.Config{}, pub.String())
	f.run()
	f.until("the unsigned seed refused", func() bool {
		s := f.stored().Status
		return s.Phase == inventory.Stalled && s.Reason == inventory.ReasonUntrusted
	})
	if s := f.stored().Status; !strings.Contains(s.Message, "is not signed") || s.LastAppliedRevision != "" || f.value("a") != "<none>" {
		t.Fatalf("status %+v, a=%s", s, f.value("a"))
	}
	signed := f.signedCommit(map[string]string{"app/a.yaml": cm("NS", "a", "2")}, key)
	f.rec.Trigger()
	f.until("the signed commit applied", func() bool { return f.stored().Status.LastAppliedRevision == "main@sha1:"+signed })
	if f.value("a") != "2" {
		t.Fatal("signed commit not applied")
	}
}

// The Git server goes away: the status says the fetch failed, naming the
// repository, and the applied objects stay as they are.
func TestGitUnreachableKeepsState(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{})
	f.run()
	head, _ := f.srv.Head(t.Context(), "app", "main")
	f.until("Ready", func() bool { return f.stored().Status.Phase == inventory.Ready })
	f.srv.Stop()
	f.rec.Trigger()
	f.until("FetchFailed", func() bool { return f.stored().Status.Reason == inventory.ReasonFetchFailed })
	s := f.stored().Status
	if s.Phase != inventory.Stalled || !strings.Contains(s.Message, "list refs of "+f.srv.RepoURL("app")) ||
		s.LastAppliedRevision != "main@sha1:"+head || f.value("a") != "1" {
		t.Fatalf("status %+v, a=%s", s, f.value("a"))
	}
}

// A new process (a restarted Pod, a standby taking over, run --once)
// starting while a bad commit is at the head keeps what the cluster's
// status says was applied: the revision, the object count and the
// inventory are facts about the cluster, not about the process.
func TestRestartAtABadCommitKeepsTheStatus(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{})
	good, _ := f.srv.Head(t.Context(), "app", "main")
	if res := f.rec.Pass(t.Context()); res.Err != nil {
		t.Fatal(res.Err)
	}
	before := f.stored()
	if before.Status.LastAppliedRevision != "main@sha1:"+good || before.Status.Objects != 3 || len(before.Members) != 3 {
		t.Fatalf("first pass: %+v", before)
	}
	bad := f.commit(map[string]string{"app/kustomization.yaml": "resources: [a.yaml, missing.yaml]\n"})
	for _, name := range []string{"restart", "second restart"} {
		t.Run(name, func(t *testing.T) {
			src, err := source.New(source.Config{URL: f.srv.RepoURL("app"), Branch: "main", Dir: filepath.Join(t.TempDir(), "checkout")})
			if err != nil {
				t.Fatal(err)
			}
			rec := f.newReconciler(src, reconcile.Config{Path: "app", Interval: time.Hour})
			if res := rec.Pass(t.Context()); res.Err == nil {
				t.Fatal("a broken commit passed")
			}
			s := f.stored()
			if s.Status.Phase != inventory.Stalled || s.Status.Reason != inventory.ReasonBuildFailed || s.Status.Revision != "main@sha1:"+bad {
				t.Fatalf("status %+v", s.Status)
			}
			if s.Status.LastAppliedRevision != "main@sha1:"+good || s.Status.Objects != 3 || len(s.Members) != 3 {
				t.Fatalf("a restart wiped what was applied: %+v, %d members", s.Status, len(s.Members))
			}
			if rec.Status().LastAppliedRevision != "main@sha1:"+good {
				t.Fatalf("/status of the new process: %+v", rec.Status())
			}
		})
	}
}

// A commit that does not build is built once: passes on the same tree
// report the same failure without rebuilding, until the branch moves.
func TestBrokenBuildIsNotRetriedUntilTheBranchMoves(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{})
	if res := f.rec.Pass(t.Context()); res.Err != nil {
		t.Fatal(res.Err)
	}
	f.commit(map[string]string{"app/kustomization.yaml": "resources: [a.yaml, missing.yaml]\n"})
	start := f.builds.Load()
	for range 3 {
		res := f.rec.Pass(t.Context())
		var fl *reconcile.Failure
		if !errors.As(res.Err, &fl) || fl.Reason != inventory.ReasonBuildFailed || !strings.Contains(fl.Error(), "not retried until the branch moves") {
			t.Fatalf("pass: %v", res.Err)
		}
	}
	if n := f.builds.Load() - start; n != 1 {
		t.Fatalf("the same broken tree was built %d times", n)
	}
	if h := f.rec.History(); len(h) != 4 || h[0].Result != "failed" || h[0].Reason != inventory.ReasonBuildFailed || h[3].Result != "applied" || h[3].Counts["created"] != 3 {
		t.Fatalf("history %+v", h)
	}
	f.commit(base)
	if res := f.rec.Pass(t.Context()); res.Err != nil || f.builds.Load()-start != 2 {
		t.Fatalf("after a fix: %v, %d builds", res.Err, f.builds.Load()-start)
	}
}

// A Namespace that leaves Git is kept (a protected kind), and the Event
// says which and how to opt in.
func TestKeptObjectIsNamed(t *testing.T) {
	files := map[string]string{
		"app/kustomization.yaml": "resources: [a.yaml, ns.yaml]\n",
		"app/a.yaml":             cm("NS", "a", "1"),
		"app/ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata: {name: NS-extra}\n",
	}
	f := newFixture(t, files, reconcile.Config{})
	t.Cleanup(func() { f.cs.CoreV1().Namespaces().Delete(context.Background(), f.ns+"-extra", metav1.DeleteOptions{}) })
	if res := f.rec.Pass(t.Context()); res.Err != nil {
		t.Fatal(res.Err)
	}
	f.commit(map[string]string{"app/ns.yaml": "", "app/kustomization.yaml": "resources: [a.yaml]\n"})
	res := f.rec.Pass(t.Context())
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := "Kept: Namespace " + f.ns + "-extra left Git and was kept: Namespace objects are pruned only when Git annotates them driftless.dev/prune: enabled"
	if !f.events.has(want) {
		t.Fatalf("events %v\nwant one starting %q", f.events.events, want)
	}
	if _, err := f.cs.CoreV1().Namespaces().Get(t.Context(), f.ns+"-extra", metav1.GetOptions{}); err != nil {
		t.Fatalf("the Namespace was deleted: %v", err)
	}
	if len(f.stored().Members) != 1 {
		t.Fatalf("a kept object is still a member: %v", f.stored().Members)
	}
}

// A build that does not finish is bounded by the pass timeout: the pass
// fails with a status that says so, the next pass tries again, and a
// build that ignores its context makes the loop unhealthy (so /healthz
// fails and the kubelet restarts the Pod).
func TestStuckBuildIsBounded(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{})
	release := make(chan struct{})
	defer close(release)
	var ignoreCtx atomic.Bool
	stuck := func(ctx context.Context, root, path string) ([]*unstructured.Unstructured, error) {
		if ignoreCtx.Load() {
			<-release
			return nil, errors.New("released")
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	rec := reconcile.New(reconcile.Config{Path: "app", Interval: time.Hour, PassTimeout: 300 * time.Millisecond}, f.src, stuck, f.eng, f.store, f.events, metrics.New(prometheus.NewRegistry()), zap.NewNop())
	for range 2 {
		res := rec.Pass(t.Context())
		var fl *reconcile.Failure
		if !errors.As(res.Err, &fl) || fl.Reason != inventory.ReasonBuildFailed || !strings.Contains(fl.Error(), "did not finish within the pass timeout of 300ms") {
			t.Fatalf("pass: %v", res.Err)
		}
	}
	if err := rec.Live(); err != nil {
		t.Fatalf("a loop whose passes end is live: %v", err)
	}
	ignoreCtx.Store(true)
	go rec.Pass(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for rec.Live() == nil {
		if time.Now().After(deadline) {
			t.Fatal("a pass stuck past its timeout did not make the loop unhealthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := rec.Live(); !strings.Contains(err.Error(), "more than its timeout of 300ms") {
		t.Fatalf("liveness error: %v", err)
	}
}

// observed keeps the transitions the loop tells an Observer of.
type observed struct {
	mu sync.Mutex
	ts []reconcile.Transition
}

func (o *observed) Observe(t reconcile.Transition) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ts = append(o.ts, t)
}

// story is the transitions as "event short-commit", one per element.
func (o *observed) story() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, t := range o.ts {
		_, c, _ := strings.Cut(t.Revision, "@sha1:")
		out = append(out, string(t.Event)+" "+c[:7])
	}
	return out
}

// TestTransitionsAreObserved: the deployment record is told, in order,
// that a commit was applied and became healthy; that the next one was
// applied and degraded (its Deployment can never roll out: its Pods fit
// no node, so the progress deadline passes and kstatus says Failed), with
// what is not healthy; and that a fix was applied and healthy. A pass
// that changes nothing tells nothing, and a new process tells applied
// again once (the recorder finds it in Git).
func TestTransitionsAreObserved(t *testing.T) {
	obs := &observed{}
	files := maps.Clone(base)
	files["app/web.yaml"] = strings.Replace(base["app/web.yaml"], "  replicas: 2\n", "  replicas: 2\n  progressDeadlineSeconds: 2\n", 1)
	f := newFixture(t, files, reconcile.Config{Observer: obs, HealthTimeout: time.Minute})
	seed, _ := f.srv.Head(t.Context(), "app", "main")
	f.run()
	f.until("applied and healthy", func() bool { return len(obs.story()) == 2 })
	// Nothing new: no transition.
	passes := f.rec.Passes()
	f.rec.Trigger()
	f.until("a pass", func() bool { return f.rec.Passes() > passes })

	unschedulable := strings.Replace(files["app/web.yaml"], `spec: {containers:`, `spec: {nodeSelector: {disk: none}, containers:`, 1)
	bad := f.commit(map[string]string{"app/web.yaml": unschedulable})
	f.rec.Trigger()
	f.until("applied and degraded", func() bool { return len(obs.story()) == 4 })
	fix := f.commit(map[string]string{"app/web.yaml": files["app/web.yaml"], "app/a.yaml": cm("NS", "a", "2")})
	f.rec.Trigger()
	f.until("the fix applied and healthy", func() bool { return len(obs.story()) == 6 })

	want := []string{"applied " + seed[:7], "healthy " + seed[:7], "applied " + bad[:7], "degraded " + bad[:7], "applied " + fix[:7], "healthy " + fix[:7]}
	if got := obs.story(); strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("transitions %v, want %v", got, want)
	}
	obs.mu.Lock()
	applied, degraded := obs.ts[0], obs.ts[3]
	obs.mu.Unlock()
	if len(applied.Objects) != 3 || applied.Revision != "main@sha1:"+seed || applied.Time.IsZero() {
		t.Fatalf("applied: %d objects, %s at %s", len(applied.Objects), applied.Revision, applied.Time)
	}
	if !strings.Contains(degraded.Message, "Deployment.apps "+f.ns+"/web Failed (Progress deadline exceeded)") {
		t.Fatalf("degraded message: %q", degraded.Message)
	}

	// A restarted process: applied (and healthy) once more, nothing else.
	again := &observed{}
	f.rec = f.newReconciler(f.src, reconcile.Config{Path: "app", Interval: time.Hour, Observer: again})
	if res := f.rec.Pass(t.Context()); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := again.story(); len(got) == 0 || got[0] != "applied "+fix[:7] || len(got) > 2 {
		t.Fatalf("after a restart: %v", got)
	}
}

// A force push back to an older commit is refused: the status says
// RewoundRevision with both commits and the flag, an Event is recorded, the
// error metric counts it, and what was applied stays.
func TestRewindIsRefusedInStatus(t *testing.T) {
	f := newFixture(t, base, reconcile.Config{})
	first, _ := f.srv.Head(t.Context(), "app", "main")
	if res := f.rec.Pass(t.Context()); res.Err != nil {
		t.Fatal(res.Err)
	}
	second := f.commit(map[string]string{"app/a.yaml": cm("NS", "a", "2")})
	if res := f.rec.Pass(t.Context()); res.Err != nil || f.value("a") != "2" {
		t.Fatalf("second commit: %v, a=%s", res.Err, f.value("a"))
	}
	if _, err := f.srv.Git(t.Context(), "app", "update-ref", "refs/heads/main", first); err != nil {
		t.Fatal(err)
	}
	res := f.rec.Pass(t.Context())
	s := f.stored().Status
	if !errors.Is(res.Err, source.ErrRewound) || s.Reason != inventory.ReasonRewound || s.Phase != inventory.Stalled ||
		!strings.Contains(s.Message, second) || !strings.Contains(s.Message, first) || !strings.Contains(s.Message, "--allow-rewind") {
		t.Fatalf("pass %v, status %+v", res.Err, s)
	}
	if s.LastAppliedRevision != "main@sha1:"+second || f.value("a") != "2" {
		t.Fatalf("the rewound commit was applied: %+v, a=%s", s, f.value("a"))
	}
	if !f.events.has(string(inventory.ReasonRewound) + ": ") {
		t.Fatalf("no RewoundRevision Event: %v", f.events.events)
	}
}
