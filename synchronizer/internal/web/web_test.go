package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
	"driftless.dev/shared/webauth"
	"driftless.dev/shared/webui/webuitest"
	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/build"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/metrics"
	"driftless.dev/synchronizer/internal/reconcile"
	"driftless.dev/synchronizer/internal/source"
	"driftless.dev/synchronizer/internal/web"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(testenv.MainCluster(m, &cluster)) }

// Secret values that must never be served, on any page or API answer.
const (
	canaryGit  = "canary-in-git-8c1f"
	canaryLive = "canary-live-edit-5d2e"
)

type nopEvents struct{}

func (nopEvents) Event(bool, string, string) {}

// fixture is a synchronizer without its process: a real reconciler
// following a real Git server, applying to the real cluster, with the UI
// over it, and ServiceAccounts RBAC lets view, act, or nothing.
type fixture struct {
	t                       testing.TB
	ns                      string
	cs                      kubernetes.Interface
	rec                     *reconcile.Reconciler
	srv                     *httptest.Server
	h                       http.Handler
	w                       *gitrepo.Repo
	viewer, actor, stranger string
}

func newFixture(t testing.TB, files func(ns string) map[string]string, maxPrune int) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{t: t, ns: cluster.Namespace(t), cs: kubernetes.NewForConfigOrDie(cluster.Config)}
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	src := t.TempDir()
	for name, body := range files(f.ns) {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	if _, err := git.Seed(ctx, "app", "main", src, "seed the app\n\nwith a body"); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.w, err = gitrepo.Open(ctx, filepath.Join(t.TempDir(), "w"), git.RepoURL("app"), "main", gitrepo.Auth{}); err != nil {
		t.Fatal(err)
	}
	s, err := source.New(source.Config{URL: git.RepoURL("app"), Branch: "main", Dir: filepath.Join(t.TempDir(), "checkout")})
	if err != nil {
		t.Fatal(err)
	}
	parent := inventory.Parent{Namespace: f.ns, Name: "driftless"}
	manager := apply.FieldManagerFor(parent.Namespace, parent.Name)
	// As the program configures its clients (--kube-api-qps, --kube-api-burst).
	engCfg := rest.CopyConfig(cluster.Config)
	engCfg.QPS, engCfg.Burst = 1000, 2000
	eng, err := apply.New(engCfg, apply.Options{SetID: parent.ID(), FieldManager: manager, MaxPrune: maxPrune}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// As the program configures its client (--kube-api-qps): client-go's
	// default of 5 per second would throttle the pages, not the cluster.
	cfg := rest.CopyConfig(cluster.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	dyn := dynamic.NewForConfigOrDie(cfg)
	store := inventory.NewStore(dyn, parent, "driftless/test", manager)
	buildFn := func(ctx context.Context, root, path string) ([]*unstructured.Unstructured, error) {
		return build.Build(ctx, root, path)
	}
	rc := reconcile.Config{Path: "app", Interval: time.Hour, Resync: 30 * time.Minute}
	f.rec = reconcile.New(rc, s, buildFn, eng, store, nopEvents{}, metrics.New(prometheus.NewRegistry()), zap.NewNop())
	h, err := web.New(webauth.New(dyn), web.Sources{Loop: f.rec, Tracker: eng.Tracker(), Store: store, Engine: eng, Kube: dyn},
		web.Config{Parent: parent, Repository: git.RepoURL("app"), Path: rc.Path, Interval: rc.Interval, Resync: rc.Resync}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	f.h = mux
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.viewer, f.actor, f.stranger = f.serviceAccount("viewer", "get"), f.serviceAccount("actor", "get", "update"), f.serviceAccount("stranger")
	return f
}

// serviceAccount makes a ServiceAccount allowed verbs on the status
// ConfigMap and returns its token.
func (f *fixture) serviceAccount(name string, verbs ...string) string {
	f.t.Helper()
	ctx := f.t.Context()
	if _, err := f.cs.CoreV1().ServiceAccounts(f.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if len(verbs) > 0 {
		if _, err := f.cs.RbacV1().Roles(f.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"driftless"}, Verbs: verbs}}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
		if _, err := f.cs.RbacV1().RoleBindings(f.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: f.ns}}}, metav1.CreateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
	cfg, err := cluster.ServiceAccountConfig(ctx, f.ns, name, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg.BearerToken
}

// run runs the loop until the test ends and waits for its first pass.
func (f *fixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.rec.Run(ctx); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
	f.until("the first pass", func() bool { return f.rec.Passes() > 0 })
}

func (f *fixture) until(what string, cond func() bool) {
	f.t.Helper()
	if err := wait.PollUntilContextTimeout(f.t.Context(), 20*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		f.t.Fatalf("timed out waiting for %s", what)
	}
}

type answer = webuitest.Answer

func (f *fixture) get(path, token string) answer { return webuitest.Get(f.t, f.srv.URL, path, token) }

func (f *fixture) post(path, token string) answer { return webuitest.Post(f.t, f.srv.URL, path, token) }

func (f *fixture) api(path string, into any) {
	f.t.Helper()
	a := f.get(path, f.viewer)
	if a.Code != http.StatusOK {
		f.t.Fatalf("GET %s: %d %s", path, a.Code, a.Body)
	}
	if err := json.Unmarshal([]byte(a.Body), into); err != nil {
		f.t.Fatalf("GET %s: %v: %s", path, err, a.Body)
	}
}

// commit changes files (an empty body deletes) and pushes.
func (f *fixture) commit(files map[string]string, message string) {
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
		os.WriteFile(p, []byte(body), 0o644)
	}
	if _, err := f.w.Commit(message, gitrepo.Signature{Name: "Dev", Email: "dev@example.com"}, nil); err != nil {
		f.t.Fatal(err)
	}
	if err := f.w.Push(ctx, "main"); err != nil {
		f.t.Fatal(err)
	}
}

func app(ns string) map[string]string {
	return map[string]string{
		"app/kustomization.yaml": "resources: [settings.yaml, creds.yaml, web.yaml]\n",
		"app/settings.yaml":      fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: %s}\ndata: {mode: from-git}\n", ns),
		"app/creds.yaml":         fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: %s}\nstringData: {password: %s}\n", ns, canaryGit),
		"app/web.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry.example.com/web:1.0.0"}]}
`, ns),
	}
}

// The overview, objects and history pages show what their API answers:
// the applied commit with its message and author, phase and last pass
// with phase timings, objects by health, the Pods and ReplicaSets under
// the Deployment read live, and the branch's log (one commit: the
// checkout is shallow, and says so).
func TestPagesShowWhatTheAPIAnswers(t *testing.T) {
	f := newFixture(t, app, 10)
	f.run()
	var ov web.Overview
	f.until("the Deployment healthy", func() bool {
		f.api("/api/v1/overview", &ov)
		return ov.Status.Phase == inventory.Ready
	})
	if ov.Applied == nil || ov.Applied.Subject != "seed the app" || ov.Applied.Message != "seed the app\n\nwith a body" || ov.Applied.Author == "" ||
		ov.Applied.Hash != strings.TrimPrefix(ov.Status.LastAppliedRevision, "main@sha1:") {
		t.Fatalf("applied commit: %+v (status %+v)", ov.Applied, ov.Status)
	}
	if ov.Ref != "main" || ov.Objects != 3 || ov.Health["Current"] != 3 || ov.Suspended || ov.Drifted != 0 || ov.LastPass == nil ||
		ov.LastPass.Result != "applied" || ov.LastPass.Took.Apply <= 0 || ov.NextPass.IsZero() || ov.Synchronizer != f.ns+"/driftless" {
		t.Fatalf("overview: %+v", ov)
	}
	page := f.get("/ui/", f.viewer)
	for _, want := range []string{`id="phase">Ready<`, ov.Applied.Subject, ov.Applied.Author, ov.Status.LastAppliedRevision, `href="/ui/objects?health=Current">3<`,
		"apply " + fmt.Sprintf("%.0f ms", float64(ov.LastPass.Took.Apply)/float64(time.Millisecond)), `id="sync"`, `id="suspend"`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("overview page lacks %q", want)
		}
	}

	var objs web.Objects
	var pods []string
	f.until("two Pods under the Deployment's ReplicaSet", func() bool {
		f.api("/api/v1/objects", &objs)
		pods = nil
		for _, n := range objs.Namespaces {
			for _, k := range n.Kinds {
				for _, o := range k.Objects {
					for _, rs := range o.Children {
						for _, p := range rs.Children {
							if o.Kind == "Deployment" && rs.Kind == "ReplicaSet" && p.Kind == "Pod" && p.Health == "Current" {
								pods = append(pods, p.Name)
							}
						}
					}
				}
			}
		}
		return len(pods) == 2
	})
	if objs.Total != 3 || objs.Shown != 3 || len(objs.Namespaces) != 1 || len(objs.Namespaces[0].Kinds) != 3 || objs.Namespaces[0].Kinds[0].Kind != "ConfigMap" ||
		objs.Namespaces[0].Kinds[1].Kind != "Deployment.apps" {
		t.Fatalf("objects: %+v", objs)
	}
	page = f.get("/ui/objects", f.viewer)
	for _, want := range append(pods, "Namespace "+f.ns, "Deployment.apps", "settings", "creds", `<span class="badge Current">Current</span>`) {
		if !strings.Contains(page.Body, want) {
			t.Errorf("objects page lacks %q", want)
		}
	}
	// The filter: by text, by health; a bad health value is a 400 naming it.
	f.api("/api/v1/objects?q=SETT", &objs)
	if objs.Shown != 1 || objs.Namespaces[0].Kinds[0].Objects[0].Name != "settings" {
		t.Fatalf("filtered: %+v", objs)
	}
	f.api("/api/v1/objects?health=InProgress", &objs)
	if objs.Shown != 0 || objs.Total != 3 {
		t.Fatalf("health filter: %+v", objs)
	}
	if a := f.get("/api/v1/objects?health=Fine", f.viewer); a.Code != http.StatusBadRequest || !strings.Contains(a.Body, `health \"Fine\"`) {
		t.Fatalf("bad health filter: %d %s", a.Code, a.Body)
	}
	if p := f.get("/ui/objects?q=sett", f.viewer); strings.Contains(p.Body, ">creds<") || !strings.Contains(p.Body, ">settings<") {
		t.Fatalf("filtered page shows what the API filtered out: %s", p.Body)
	}

	var hist web.History
	f.api("/api/v1/history", &hist)
	// The checkout holds the branch's history (the rewind check needs it).
	if len(hist.Passes) == 0 || hist.Passes[0].Result != "applied" || len(hist.Log) != 1 || hist.Log[0].Subject != "seed the app" || hist.Shallow {
		t.Fatalf("history: %+v", hist)
	}
	page = f.get("/ui/history", f.viewer)
	for _, want := range []string{hist.Log[0].Hash[:12], "seed the app", `<span class="badge applied">applied</span>`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("history page lacks %q", want)
		}
	}
}

// Suspend, drift, diff, resume, sync now: the actions are the CLI's
// operations, the diff of a drifted object is diff.Compute's with Secret
// values masked and managed fields hidden, and "sync now" heals it.
func TestDriftDiffAndSyncNow(t *testing.T) {
	f := newFixture(t, app, 10)
	f.run()
	var ov web.Overview
	// Viewing does not grant acting.
	if a := f.post("/api/v1/suspend", f.viewer); a.Code != http.StatusForbidden {
		t.Fatalf("viewer suspending: %d %s", a.Code, a.Body)
	}
	if a := f.post("/api/v1/suspend", f.actor); a.Code != http.StatusOK || !strings.Contains(a.Body, `"suspend"`) {
		t.Fatalf("suspend: %d %s", a.Code, a.Body)
	}
	f.api("/api/v1/overview", &ov)
	if !ov.Suspended {
		t.Fatalf("suspended annotation not shown: %+v", ov)
	}
	if a := f.post("/api/v1/sync", f.actor); a.Code != http.StatusOK {
		t.Fatalf("sync: %d %s", a.Code, a.Body)
	}
	f.until("the pass to see the suspension", func() bool {
		f.api("/api/v1/overview", &ov)
		return ov.Status.Phase == inventory.Suspended
	})
	// Drift while suspended: nothing heals it.
	ctx := t.Context()
	if _, err := f.cs.CoreV1().ConfigMaps(f.ns).Patch(ctx, "settings", types.MergePatchType, []byte(`{"data":{"mode":"edited-live"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cs.CoreV1().Secrets(f.ns).Patch(ctx, "creds", types.MergePatchType, []byte(`{"stringData":{"password":"`+canaryLive+`"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.until("the drift seen", func() bool {
		f.api("/api/v1/overview", &ov)
		return ov.Drifted == 2
	})
	var d web.Diff
	f.api("/api/v1/diff?kind=ConfigMap&namespace="+f.ns+"&name=settings", &d)
	if len(d.Objects) != 1 || d.Objects[0].Action != apply.Configured || d.Object == nil || d.Object.Name != "settings" ||
		!strings.Contains(d.Objects[0].Unified, "-  mode: edited-live") || !strings.Contains(d.Objects[0].Unified, "+  mode: from-git") {
		t.Fatalf("diff of the drifted ConfigMap: %+v", d)
	}
	changed := false
	for _, r := range d.Objects[0].Rows {
		if r.Op == "change" && strings.Contains(r.Left, "edited-live") && strings.Contains(r.Right, "from-git") {
			changed = true
		}
	}
	if !changed || strings.Contains(d.Objects[0].Live, "managedFields") {
		t.Fatalf("side by side: %+v", d.Objects[0])
	}
	page := f.get("/ui/diff?kind=ConfigMap&namespace="+f.ns+"&name=settings", f.viewer)
	if !strings.Contains(page.Body, `<tr class="change">`) || !strings.Contains(page.Body, `<td class="l">  mode: edited-live</td>`) ||
		!strings.Contains(page.Body, `<td class="r">  mode: from-git</td>`) {
		t.Fatalf("diff page: %s", page.Body)
	}
	d = web.Diff{}
	f.api("/api/v1/diff", &d)
	secret := false
	for _, o := range d.Objects {
		if o.Object.Kind == "Secret" {
			secret = strings.Contains(o.Live, "*** (before)") && strings.Contains(o.Git, "*** (after)")
		}
	}
	if d.Object != nil || len(d.Objects) != 2 || !secret {
		t.Fatalf("whole-set diff: %+v", d)
	}
	f.noSecretServed()

	// Resume changes nothing by itself; sync now heals.
	if a := f.post("/api/v1/resume", f.actor); a.Code != http.StatusOK {
		t.Fatalf("resume: %d %s", a.Code, a.Body)
	}
	f.api("/api/v1/overview", &ov)
	if ov.Suspended || ov.Drifted != 2 {
		t.Fatalf("after resume: %+v", ov)
	}
	if a := f.post("/api/v1/sync", f.actor); a.Code != http.StatusOK {
		t.Fatalf("sync: %d %s", a.Code, a.Body)
	}
	f.until("sync now to heal the drift", func() bool {
		f.api("/api/v1/overview", &ov)
		cm, err := f.cs.CoreV1().ConfigMaps(f.ns).Get(ctx, "settings", metav1.GetOptions{})
		return err == nil && cm.Data["mode"] == "from-git" && ov.Drifted == 0 && ov.Status.Phase == inventory.Ready
	})
	d = web.Diff{}
	f.api("/api/v1/diff?kind=ConfigMap&namespace="+f.ns+"&name=settings", &d)
	if len(d.Objects) != 0 {
		t.Fatalf("diff after healing: %+v", d)
	}
	if p := f.get("/ui/diff?kind=ConfigMap&namespace="+f.ns+"&name=settings", f.viewer); !strings.Contains(p.Body, `id="no-diff"`) {
		t.Fatalf("diff page after healing: %s", p.Body)
	}
}

// noSecretServed fetches every page and API answer, as every kind of
// user, and fails if a Secret value (in plain text or base64) is in any.
func (f *fixture) noSecretServed() {
	f.t.Helper()
	var leaks []string
	for _, v := range []string{canaryGit, canaryLive} {
		leaks = append(leaks, v, base64.StdEncoding.EncodeToString([]byte(v)))
	}
	q := "?kind=Secret&namespace=" + f.ns + "&name=creds"
	for _, p := range []string{"/ui/", "/ui/objects", "/ui/diff", "/ui/diff" + q, "/ui/history", "/api/v1/overview", "/api/v1/objects", "/api/v1/diff",
		"/api/v1/diff" + q, "/api/v1/history", "/ui/login"} {
		for _, tok := range []string{f.viewer, f.actor, f.stranger, ""} {
			a := f.get(p, tok)
			for _, l := range leaks {
				if strings.Contains(a.Body, l) {
					f.t.Errorf("GET %s served a Secret value", p)
				}
			}
			if tok != "" && strings.Contains(a.Body, tok) {
				f.t.Errorf("GET %s served the caller's token", p)
			}
		}
	}
}

// A pass refused by the prune limit keeps its render: the diff shows
// what the prune would remove, and why the pass refuses.
func TestDiffShowsWhatAPruneWouldRemove(t *testing.T) {
	files := func(ns string) map[string]string {
		m := map[string]string{"app/kustomization.yaml": "resources: [a.yaml, b.yaml, c.yaml]\n"}
		for _, n := range []string{"a", "b", "c"} {
			m["app/"+n+".yaml"] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {v: \"1\"}\n", n, ns)
		}
		return m
	}
	f := newFixture(t, files, 1)
	f.run()
	f.commit(map[string]string{"app/kustomization.yaml": "resources: [a.yaml]\n", "app/b.yaml": "", "app/c.yaml": ""}, "drop b and c")
	if a := f.post("/api/v1/sync", f.actor); a.Code != http.StatusOK {
		t.Fatalf("sync: %d %s", a.Code, a.Body)
	}
	var ov web.Overview
	f.until("the prune limit", func() bool {
		f.api("/api/v1/overview", &ov)
		return ov.Status.Reason == inventory.ReasonPruneLimit
	})
	var d web.Diff
	f.api("/api/v1/diff", &d)
	var pruned []string
	for _, o := range d.Objects {
		if o.Action == apply.Pruned {
			pruned = append(pruned, o.Object.Name)
		}
	}
	if strings.Join(pruned, ",") != "b,c" || !strings.Contains(d.Refused, "limit") {
		t.Fatalf("prune preview: %+v", d)
	}
	page := f.get("/ui/diff", f.viewer)
	if !regexp.MustCompile(`<span class="badge pruned">pruned</span> <span class="mono">ConfigMap [^<]*/b</span>`).MatchString(page.Body) || !strings.Contains(page.Body, `id="refused"`) {
		t.Fatalf("diff page: %s", page.Body)
	}
	var hist web.History
	f.api("/api/v1/history", &hist)
	if len(hist.Log) != 2 || hist.Log[0].Subject != "drop b and c" || hist.Log[1].Subject != "seed the app" || hist.Passes[0].Result != "failed" {
		t.Fatalf("history: %+v", hist)
	}
}

// Every route: anonymous is refused (401 on the API, the login form for
// pages), a user RBAC does not let view gets 403 on both, a token the
// cluster does not know is 401, unknown objects are 404.
func TestEveryRouteIsAuthorized(t *testing.T) {
	f := newFixture(t, app, 10)
	f.run()
	pages := []string{"/ui/", "/ui/objects", "/ui/diff", "/ui/history"}
	apis := []string{"/api/v1/overview", "/api/v1/objects", "/api/v1/diff", "/api/v1/history"}
	for _, p := range pages {
		if a := f.get(p, ""); a.Code != http.StatusSeeOther || !strings.HasPrefix(a.Header.Get("Location"), "/ui/login?next=") {
			t.Errorf("anonymous %s: %d %v", p, a.Code, a.Header.Get("Location"))
		}
		if a := f.get(p, f.stranger); a.Code != http.StatusForbidden || !strings.Contains(a.Body, "stranger") {
			t.Errorf("stranger %s: %d", p, a.Code)
		}
		if a := f.get(p, "not-a-token"); a.Code != http.StatusSeeOther {
			t.Errorf("unknown token %s: %d", p, a.Code)
		}
	}
	for _, p := range apis {
		for tok, code := range map[string]int{"": 401, "not-a-token": 401, f.stranger: 403, f.viewer: 200} {
			if a := f.get(p, tok); a.Code != code || a.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("GET %s: %d (want %d) %s", p, a.Code, code, a.Body)
			}
		}
	}
	for _, p := range []string{"/api/v1/sync", "/api/v1/suspend", "/api/v1/resume"} {
		for tok, code := range map[string]int{"": 401, f.stranger: 403, f.viewer: 403} {
			if a := f.post(p, tok); a.Code != code {
				t.Errorf("POST %s: %d (want %d)", p, a.Code, code)
			}
		}
	}
	var st inventory.State
	st, _ = inventory.NewStore(dynamic.NewForConfigOrDie(cluster.Config), inventory.Parent{Namespace: f.ns, Name: "driftless"}, "", "").Read(t.Context())
	if st.Suspended {
		t.Fatal("a refused action suspended the synchronizer")
	}
	if a := f.get("/api/v1/diff?kind=ConfigMap&namespace="+f.ns+"&name=nothing", f.viewer); a.Code != http.StatusNotFound {
		t.Errorf("diff of an unknown object: %d %s", a.Code, a.Body)
	}
	if a := f.get("/api/v1/diff?kind=ConfigMap", f.viewer); a.Code != http.StatusBadRequest {
		t.Errorf("diff without a name: %d %s", a.Code, a.Body)
	}
	u, _ := url.Parse(f.srv.URL)
	if a := f.get("/ui", ""); a.Code != http.StatusMovedPermanently || a.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui on %s: %d", u.Host, a.Code)
	}
}
