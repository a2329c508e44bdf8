package web_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/loop"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/automator/internal/registry"
	"driftless.dev/automator/internal/web"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
	"driftless.dev/shared/webauth"
	"driftless.dev/shared/webui/webuitest"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(testenv.MainCluster(m, &cluster)) }

const gitPassword = "git-secret-7d1e"

// fixture is an automator without its process: a real loop over a real
// Automator following a real Git server and listing a real registry, with
// the UI over it, authorized by a real cluster, and ServiceAccounts RBAC
// lets view, act, or nothing.
type fixture struct {
	t                       testing.TB
	ns                      string
	cs                      kubernetes.Interface
	reg                     *testenv.Registry
	git                     *testenv.GitServer
	auto                    *automate.Automator
	rec                     *web.Record
	lp                      *loop.Loop
	srv                     *httptest.Server
	h                       http.Handler
	viewer, actor, stranger string
	// runner and gates are the promotion gates, with options.gates.
	runner *promote.Runner
	gates  *web.Gates
}

type options struct {
	pushBranch string
	files      map[string]string
	records    web.Records
	leading    func() bool
	// policies and manifests replace the default repository.
	policies, manifests string
	// seed fills the registry for custom policies.
	seed   func(f *fixture) error
	noLoop bool
	// gates, when set, makes the fleet's Records the promotion gates of
	// the repository (a promote.Runner on a mirror of its own, as run
	// wires it), with this configuration.
	gates *promote.Config
	// gatesPassword, when set, is the password the gates' mirror uses.
	gatesPassword string
}

// policies holds a Driftless policy, one whose repository does not exist,
// a Flux ImagePolicy with its ImageRepository, and a broken document.
const policiesYAML = `apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: web, namespace: apps}
spec:
  image: {{.}}/team/web
  policy: {semver: {range: "^1.0.0"}}
---
apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: missing, namespace: apps}
spec:
  image: {{.}}/team/missing
  policy: {semver: {range: "^1.0.0"}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {name: api, namespace: flux-system}
spec:
  image: {{.}}/team/api
  interval: 5m
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: api, namespace: flux-system}
spec:
  imageRepositoryRef: {name: api}
  policy: {semver: {range: ">=2.0.0 <3.0.0"}}
`

const brokenYAML = `apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: broken, namespace: apps}
spec:
  image: {{.}}/team/web
  policy: {semver: {range: "not a range"}}
`

const manifestsYAML = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps}
spec:
  template:
    spec:
      containers:
        - name: web
          image: {{.}}/team/web:1.0.0 # {"$imagepolicy": "apps:web"}
`

const kustomizationYAML = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: []
images:
  - name: {{.}}/team/api
    newTag: 2.0.0 # {"$imagepolicy": "flux-system:api:tag"}
`

func newFixture(t testing.TB, o options) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{t: t, ns: cluster.Namespace(t), cs: kubernetes.NewForConfigOrDie(cluster.Config)}
	f.reg = testenv.NewRegistry(t, testenv.RegistryOptions{})
	f.git = testenv.NewGitServer(t, testenv.GitServerOptions{Auth: &testenv.BasicAuth{Username: "bot", Password: gitPassword}})
	host := f.reg.Host
	if o.policies == "" {
		if _, err := f.reg.PushImages(ctx, "team/web", "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.reg.PushImages(ctx, "team/api", "2.0.0", "2.1.0", "3.0.0"); err != nil {
			t.Fatal(err)
		}
		o.policies = policiesYAML
		o.manifests = manifestsYAML
		o.files = mergeFiles(map[string]string{"policies/broken.yaml": brokenYAML, "apps/api/kustomization.yaml": kustomizationYAML}, o.files)
	} else if o.seed != nil {
		if err := o.seed(f); err != nil {
			t.Fatal(err)
		}
	}
	files := mergeFiles(map[string]string{"policies/all.yaml": o.policies, "apps/web/deploy.yaml": o.manifests}, o.files)
	src := t.TempDir()
	for name, body := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "{{.}}", host)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.git.Seed(ctx, "fleet", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	repo, err := gitrepo.Open(ctx, clone, f.git.RepoURL("fleet"), "main", gitrepo.Auth{Username: "bot", Password: gitPassword})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.WithTransport(f.reg.Transport), registry.WithInsecure(host), registry.WithRetries(1, time.Millisecond), registry.WithBudget(0, 1))
	f.auto, err = automate.New(automate.Config{PolicyPath: "policies", PushBranch: o.pushBranch}, repo, reg, &registry.Credentials{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	f.rec = web.NewRecord()
	f.lp = loop.New(f.auto, zap.NewNop(), f.rec.Observe)
	mirror := ""
	if o.gates != nil {
		mirror = clone + ".mirror"
		password := cmp.Or(o.gatesPassword, gitPassword)
		m, err := gitrepo.OpenMirror(mirror, f.git.RepoURL("fleet"), gitrepo.Auth{Username: "bot", Password: password})
		if err != nil {
			t.Fatal(err)
		}
		if f.runner, err = promote.New(*o.gates, m, zaptest.NewLogger(t)); err != nil {
			t.Fatal(err)
		}
		f.gates = web.NewGates(f.runner, time.Hour)
		o.records = f.gates
	}
	dyn := dynamic.NewForConfigOrDie(cluster.Config)
	h, err := web.New(webauth.New(dyn), f.auto, f.rec, web.Config{
		Repository: gitrepo.Redact(f.git.RepoURL("fleet")), Branch: "main", PushBranch: o.pushBranch, Clone: clone,
		LeaseNamespace: f.ns, LeaseName: "driftless-automator", Leading: o.leading, Records: o.records, Mirror: mirror,
	}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Mount(mux)
	f.h = mux
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.viewer, f.actor, f.stranger = f.serviceAccount("viewer", "get"), f.serviceAccount("actor", "get", "update"), f.serviceAccount("stranger")
	if !o.noLoop {
		f.run()
	}
	return f
}

func mergeFiles(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// serviceAccount makes a ServiceAccount allowed verbs on the automator's
// Lease and returns its token.
func (f *fixture) serviceAccount(name string, verbs ...string) string {
	f.t.Helper()
	ctx := f.t.Context()
	if _, err := f.cs.CoreV1().ServiceAccounts(f.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if len(verbs) > 0 {
		if _, err := f.cs.RbacV1().Roles(f.ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"driftless-automator"}, Verbs: verbs}}}, metav1.CreateOptions{}); err != nil {
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
	go func() { f.lp.Run(ctx, time.Hour); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
	f.until("the first pass", func() bool { return f.lp.Passes() > 0 })
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

func (f *fixture) do(req *http.Request) answer { return webuitest.Do(f.t, req) }

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

func (f *fixture) head(branch string) string {
	f.t.Helper()
	h, err := f.git.Head(f.t.Context(), "fleet", branch)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func find(ps []web.Policy, key string) *web.Policy {
	for i := range ps {
		if ps[i].Key == key {
			return &ps[i]
		}
	}
	return nil
}

// TestPoliciesFromTheLoopsPass: the page and the API show, per policy,
// what the loop's pass found (tags listed and allowed, current and chosen
// tag, why, the commit it pushed, each failure under its registry), for
// Driftless's and Flux's policies, and the documents that could not be
// used; nothing was asked of a registry to serve them.
func TestPoliciesFromTheLoopsPass(t *testing.T) {
	f := newFixture(t, options{})
	var p web.Policies
	f.api("/api/v1/policies", &p)
	if p.Passes != 1 || p.LastPass == nil || p.LastPass.Result != "committed" || p.LastPass.Commit != f.head("main") {
		t.Fatalf("last pass %+v, head %s", p.LastPass, f.head("main"))
	}
	if p.Total != 3 || p.Shown != 3 {
		t.Fatalf("%d policies (%d shown), want apps:web, apps:missing and the Flux policy flux-system:api", p.Total, p.Shown)
	}
	w := find(p.Policies, "apps:web")
	if w == nil || w.Scan == nil || w.Plan != nil {
		t.Fatalf("apps:web: %+v", w)
	}
	s := w.Scan
	if s.Plan || s.Tags != 5 || s.Allowed != 2 || s.Current != "1.0.0" || s.Chosen != "1.1.0" || !s.Update || s.Reason != "1.1.0 ranks highest of 2 allowed tags" || s.Error != "" {
		t.Fatalf("apps:web's scan: %+v", s)
	}
	if len(s.Rejected) != 0 {
		t.Fatalf("a loop pass lists rejections it does not compute: %+v", s.Rejected)
	}
	if w.LastCommit == nil || w.LastCommit.Hash != f.head("main") || w.LastCommit.Image != f.reg.Host+"/team/web:1.1.0" {
		t.Fatalf("apps:web's last commit %+v, head %s", w.LastCommit, f.head("main"))
	}
	api := find(p.Policies, "flux-system:api")
	if api == nil || api.Scan == nil || api.Scan.Chosen != "2.1.0" || api.Scan.Current != "2.0.0" || api.LastCommit == nil {
		t.Fatalf("the Flux policy: %+v", api)
	}
	missing := find(p.Policies, "apps:missing")
	if missing == nil || missing.Scan == nil || missing.Scan.ErrorKind != "registry_not_found" || !strings.Contains(missing.Scan.Error, "team/missing") {
		t.Fatalf("apps:missing: %+v", missing)
	}
	if len(p.Registries) != 1 || p.Registries[0].Host != f.reg.Host || p.Registries[0].Policies != 3 || p.Registries[0].Failing != 1 ||
		len(p.Registries[0].Errors) != 1 || p.Registries[0].Errors[0].Policy != "apps:missing" {
		t.Fatalf("registries: %+v", p.Registries)
	}
	if len(p.Skipped) != 1 || !strings.HasPrefix(p.Skipped[0], "policies/broken.yaml:") || !strings.Contains(p.Skipped[0], "not a range") {
		t.Fatalf("skipped: %q, want the broken document named with its file and line", p.Skipped)
	}

	// The page shows the same, with its filter.
	page := f.get("/ui/", f.viewer)
	for _, want := range []string{"1.1.0 ranks highest of 2 allowed tags", `href="/ui/policies/apps:web"`, "registry_not_found", "policies/broken.yaml:", "5 listed, 2 allowed", "flux-system:api"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("/ui/ lacks %q", want)
		}
	}
	var failing web.Policies
	f.api("/api/v1/policies?failing=1", &failing)
	if failing.Shown != 1 || failing.Policies[0].Key != "apps:missing" {
		t.Fatalf("failing only: %+v", failing.Policies)
	}
	var q web.Policies
	f.api("/api/v1/policies?q=FLUX", &q)
	if q.Shown != 1 || q.Policies[0].Key != "flux-system:api" || q.Total != 3 {
		t.Fatalf("q=FLUX: %d of %d", q.Shown, q.Total)
	}
	// One policy, and an unknown one named in the answer.
	var d web.PolicyDetail
	f.api("/api/v1/policies/apps:web", &d)
	if d.Key != "apps:web" || d.Scan == nil || d.Scan.Chosen != "1.1.0" {
		t.Fatalf("detail: %+v", d)
	}
	if a := f.get("/api/v1/policies/apps:nope", f.viewer); a.Code != http.StatusNotFound || !strings.Contains(a.Body, `apps:nope`) {
		t.Fatalf("unknown policy: %d %s", a.Code, a.Body)
	}
	var h web.History
	f.api("/api/v1/history", &h)
	if len(h.Passes) != 1 || h.Passes[0].Result != "committed" || len(h.Passes[0].Changes) != 2 {
		t.Fatalf("history: %+v", h.Passes)
	}
}

// TestPlanNow: "plan now" runs automate's Plan (what `automator plan`
// runs), which lists every tag passed over and why; the result is kept
// for the pages, exactly as Plan returned it, and nothing is pushed. It
// needs update on the Lease, and the session's CSRF token from a browser.
func TestPlanNow(t *testing.T) {
	f := newFixture(t, options{})
	ctx := t.Context()
	if _, err := f.reg.PushImages(ctx, "team/web", "1.3.0"); err != nil {
		t.Fatal(err)
	}
	head := f.head("main")
	// Who may plan: update on the Lease.
	if a := f.post("/api/v1/plan", ""); a.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous plan: %d", a.Code)
	}
	if a := f.post("/api/v1/plan", f.viewer); a.Code != http.StatusForbidden {
		t.Fatalf("viewer's plan: %d %s", a.Code, a.Body)
	}
	if a := f.post("/api/v1/plan?policy=apps:nope", f.actor); a.Code != http.StatusNotFound || !strings.Contains(a.Body, "apps:nope") {
		t.Fatalf("plan of an unknown policy: %d %s", a.Code, a.Body)
	}
	var h web.History
	f.api("/api/v1/history", &h)
	if len(h.Passes) != 1 {
		t.Fatalf("a refused plan was recorded: %+v", h.Passes)
	}

	a := f.post("/api/v1/plan", f.actor)
	if a.Code != http.StatusOK {
		t.Fatalf("plan: %d %s", a.Code, a.Body)
	}
	var ans web.PlanAnswer
	if err := json.Unmarshal([]byte(a.Body), &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Plan.Result != "planned" || ans.Plan.Scanned != 3 || len(ans.Plan.Changes) != 1 || ans.Plan.Changes[0].New != f.reg.Host+"/team/web:1.3.0" ||
		!strings.Contains(ans.Plan.Diff, "+          image: "+f.reg.Host+"/team/web:1.3.0") || ans.Plan.User != "system:serviceaccount:"+f.ns+":actor" {
		t.Fatalf("plan answer: %+v", ans)
	}
	if f.head("main") != head {
		t.Fatal("plan now pushed a commit")
	}
	// What the page keeps is what Plan returns, tag by tag.
	want, err := f.auto.Plan(ctx, []string{"apps:web"})
	if err != nil {
		t.Fatal(err)
	}
	var d web.PolicyDetail
	f.api("/api/v1/policies/apps:web", &d)
	if d.Plan == nil || !d.Plan.Plan || d.Plan.Chosen != "1.3.0" || d.Plan.Current != "1.1.0" || !d.Plan.Update {
		t.Fatalf("apps:web's plan: %+v", d.Plan)
	}
	ch := want.Policies[0].Choice
	if d.Plan.Reason != ch.Reason || d.Plan.Tags != ch.Considered || d.Plan.Allowed != ch.Candidates || d.Plan.RejectedTotal != len(ch.Rejected) || len(d.Plan.Rejected) != len(ch.Rejected) {
		t.Fatalf("the page's plan %+v\nPlan's choice %+v", d.Plan, ch)
	}
	for i, r := range ch.Rejected {
		if d.Plan.Rejected[i].Tag != r.Tag || d.Plan.Rejected[i].Reason != r.Reason {
			t.Fatalf("rejection %d: %+v, Plan says %+v", i, d.Plan.Rejected[i], r)
		}
	}
	reasons := map[string]string{}
	for _, r := range d.Plan.Rejected {
		reasons[r.Tag] = r.Reason
	}
	for tag, why := range map[string]string{"2.0.0": `outside range "^1.0.0"`, "latest": "not a semantic version", "1.2.0-rc.1": "pre-release, excluded", "1.0.0": "allowed, but ranks below 1.3.0"} {
		if !strings.HasPrefix(reasons[tag], why) {
			t.Errorf("%s passed over because %q, want %q", tag, reasons[tag], why)
		}
	}
	// The page lists them; the loop's scan is still there beside the plan.
	page := f.get("/ui/policies/apps:web", f.viewer).Body
	for _, want := range []string{`outside range &#34;^1.0.0&#34;`, "not a semantic version", "Last pass", "1.1.0 ranks highest of 2 allowed tags", "1.3.0 ranks highest of 3 allowed tags"} {
		if !strings.Contains(page, want) {
			t.Errorf("/ui/policies/apps:web lacks %q", want)
		}
	}
	if hist := f.get("/ui/history", f.viewer).Body; !strings.Contains(hist, "team/web:1.3.0") || !strings.Contains(hist, `id="diff"`) {
		t.Error("/ui/history lacks the plan's diff")
	}

	// From a browser: the session cookie needs the CSRF token of the page.
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/plan", strings.NewReader(url.Values{"next": {"/ui/"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: webauth.CookieName, Value: f.actor})
	if a := f.do(req); a.Code != http.StatusForbidden || !strings.Contains(a.Body, "CSRF") {
		t.Fatalf("a form post without the CSRF token: %d", a.Code)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(f.get("/ui/policies/apps:web", f.actor).Body)
	if csrf == nil {
		t.Fatal("no CSRF token in the page")
	}
	form := url.Values{"csrf": {csrf[1]}, "policy": {"apps:web"}, "next": {"/ui/policies/apps:web"}}
	req, _ = http.NewRequest("POST", f.srv.URL+"/api/v1/plan", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: webauth.CookieName, Value: f.actor})
	if a := f.do(req); a.Code != http.StatusSeeOther || a.Header.Get("Location") != "/ui/policies/apps:web" {
		t.Fatalf("plan this policy from the page: %d %s", a.Code, a.Header.Get("Location"))
	}
	f.api("/api/v1/history", &h)
	if len(h.Passes) != 3 || !h.Passes[0].Plan || !slices.Equal(h.Passes[0].Only, []string{"apps:web"}) || h.Passes[0].Scanned != 1 {
		t.Fatalf("history after the page's plan: %+v", h.Passes[0])
	}
}

// TestPlanOfABrokenRepository: a plan that fails (a marker that does not
// parse) is kept and shown with the file and line, and the failure is an
// answer, not a server error.
func TestPlanOfABrokenRepository(t *testing.T) {
	f := newFixture(t, options{})
	src := t.TempDir()
	c, err := gitrepo.Open(t.Context(), src, f.git.RepoURL("fleet"), "main", gitrepo.Auth{Username: "bot", Password: gitPassword})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "apps/web/bad.yaml"), []byte("image: x:1 # {\"$imagepolicy\": \"apps:web:nonsense\"}\n"), 0o644)
	if _, err := c.Commit("a bad marker", gitrepo.Signature{Name: "p", Email: "p@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	var ans web.PlanAnswer
	a := f.post("/api/v1/plan", f.actor)
	if err := json.Unmarshal([]byte(a.Body), &ans); err != nil || a.Code != http.StatusOK {
		t.Fatalf("plan: %d %s", a.Code, a.Body)
	}
	if ans.Plan.Result != "failed" || !strings.Contains(ans.Plan.Error, "apps/web/bad.yaml:1") || !strings.Contains(ans.Message, "apps/web/bad.yaml:1") {
		t.Fatalf("plan of a broken marker: %+v", ans)
	}
	if page := f.get("/ui/", f.viewer).Body; !strings.Contains(page, "apps/web/bad.yaml:1") {
		t.Fatal("/ui/ does not say why the plan failed")
	}
}

// TestAccess: anonymous visitors go to the login form (pages) or get 401
// (API); a user RBAC does not let get the Lease gets 403 naming what to
// ask for; no page or answer shows the Git password or the caller's token.
func TestAccess(t *testing.T) {
	f := newFixture(t, options{})
	paths := []string{"/ui/", "/ui/policies/apps:web", "/ui/fleet", "/ui/history", "/api/v1/policies", "/api/v1/policies/apps:web", "/api/v1/fleet", "/api/v1/history"}
	for _, p := range paths {
		anon := f.get(p, "")
		if strings.HasPrefix(p, "/ui/") {
			if anon.Code != http.StatusSeeOther || !strings.HasPrefix(anon.Header.Get("Location"), "/ui/login?next=") {
				t.Errorf("anonymous %s: %d %s", p, anon.Code, anon.Header.Get("Location"))
			}
		} else if anon.Code != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d", p, anon.Code)
		}
		if a := f.get(p, f.stranger); a.Code != http.StatusForbidden {
			t.Errorf("stranger %s: %d", p, a.Code)
		} else if strings.HasPrefix(p, "/ui/") && !strings.Contains(a.Body, "leases") {
			t.Errorf("stranger's 403 page does not say what RBAC must allow")
		}
		for _, tok := range []string{f.viewer, f.actor} {
			a := f.get(p, tok)
			if a.Code != http.StatusOK {
				t.Errorf("%s: %d %s", p, a.Code, a.Body)
			}
			if a.Header.Get("Content-Security-Policy") == "" || a.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: headers %v", p, a.Header)
			}
			for _, secret := range []string{gitPassword, f.viewer, f.actor} {
				if strings.Contains(a.Body, secret) {
					t.Errorf("%s shows the Git password or a token", p)
				}
			}
		}
	}
}

// testRecords is the seam's other side as the promote package will fill
// it: one more branch, and what records and gates say of each tip.
type testRecords struct{}

func (testRecords) Branches(context.Context) ([]web.BranchRole, error) {
	return []web.BranchRole{{Name: "main", Role: "promotes to prod"}, {Name: "prod", Role: "promoted from main"}}, nil
}

func (testRecords) Evidence(_ context.Context, branch, commit string) (web.Evidence, error) {
	return web.Evidence{Clusters: []web.ClusterRecord{{Cluster: "dev", State: "healthy", Message: branch + "@" + commit[:7]}},
		Gates: []web.Gate{{Name: "to-prod", To: "prod", State: "waiting", Reason: "soaking"}}}, nil
}

// TestFleetFromGit: with a push branch, the fleet is the followed branch
// and the push branch, each with its tip and the versions its markers
// declare (read from the clone's objects with update.Scan: a marker that
// does not parse is named with its file and line); records and gates
// appear through the seam when configured.
func TestFleetFromGit(t *testing.T) {
	f := newFixture(t, options{pushBranch: "bumps", records: testRecords{},
		files: map[string]string{"apps/broken/deploy.yaml": "image: x:1 # {\"$imagepolicy\": \"apps:web:nonsense\"}\n"}, noLoop: true})
	// The broken marker makes every pass fail for good: the pass writes
	// nothing, and the fleet still reads what each branch declares.
	res, err := f.auto.Run(t.Context(), nil)
	if err == nil {
		t.Fatalf("a pass over a broken marker: %+v", res)
	}
	var fl web.Fleet
	f.api("/api/v1/fleet", &fl)
	if len(fl.Branches) != 3 || fl.Branches[0].Name != "main" || fl.Branches[1].Name != "bumps" || fl.Branches[2].Name != "prod" || !fl.Records {
		t.Fatalf("branches: %+v", fl.Branches)
	}
	main, bumps, prod := fl.Branches[0], fl.Branches[1], fl.Branches[2]
	if main.Tip == nil || main.Tip.Hash != f.head("main") || main.Markers != 2 || len(main.Roles) != 2 {
		t.Fatalf("main: %+v", main)
	}
	if len(main.Problems) != 1 || !strings.HasPrefix(main.Problems[0], "apps/broken/deploy.yaml:1") {
		t.Fatalf("main's problems: %q", main.Problems)
	}
	if bumps.Error == "" || !strings.Contains(bumps.Error, "not fetched") || prod.Error == "" {
		t.Fatalf("branches the clone does not hold: %+v %+v", bumps, prod)
	}
	if main.Evidence == nil || main.Evidence.Clusters[0].Message != "main@"+f.head("main")[:7] || main.Evidence.Gates[0].State != "waiting" {
		t.Fatalf("main's evidence: %+v", main.Evidence)
	}

	// Fix the marker: the pass pushes to the bump branch, and the fleet
	// shows main still on 1.0.0 and bumps on 1.1.0.
	src := t.TempDir()
	c, err := gitrepo.Open(t.Context(), src, f.git.RepoURL("fleet"), "main", gitrepo.Auth{Username: "bot", Password: gitPassword})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "apps/broken/deploy.yaml"))
	if _, err := c.Commit("drop the bad marker", gitrepo.Signature{Name: "p", Email: "p@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	if res, err := f.auto.Run(t.Context(), nil); err != nil || res.Commit == "" {
		t.Fatalf("pass: %v %+v", err, res)
	}
	// The clone holds the push branch as its passes fetch it: from the
	// next pass on.
	res, err = f.auto.Run(t.Context(), nil)
	if err != nil || res.Commit != "" {
		t.Fatalf("second pass: %v %+v", err, res)
	}
	f.rec.Observe(res, err, 0.1)
	fl = web.Fleet{}
	f.api("/api/v1/fleet", &fl)
	main, bumps = fl.Branches[0], fl.Branches[1]
	if main.Error != "" || bumps.Error != "" || bumps.Tip == nil || bumps.Tip.Hash != f.head("bumps") || len(main.Problems) != 0 {
		t.Fatalf("after the push: %+v / %+v (tip %s, heads %s %s)", main, bumps, main.Tip.Hash, f.head("main"), f.head("bumps"))
	}
	rows := map[string]web.ImageRow{}
	for _, r := range fl.Images {
		rows[r.Policy] = r
	}
	w := rows["apps:web"]
	if len(w.Branches) != 3 || !slices.Equal(w.Branches[0].Versions, []string{"1.0.0"}) || !slices.Equal(w.Branches[1].Versions, []string{"1.1.0"}) || !w.Differs ||
		!slices.Equal(w.Branches[0].Files, []string{"apps/web/deploy.yaml:9"}) {
		t.Fatalf("apps:web by branch: %+v", w)
	}
	if api := rows["flux-system:api"]; !slices.Equal(api.Branches[1].Versions, []string{"2.1.0"}) {
		t.Fatalf("flux-system:api by branch: %+v", api)
	}
	page := f.get("/ui/fleet", f.viewer).Body
	for _, want := range []string{`id="branch-bumps"`, "push: bumps are pushed here", "differs", "1.1.0", "soaking", "promoted from main"} {
		if !strings.Contains(page, want) {
			t.Errorf("/ui/fleet lacks %q", want)
		}
	}
	// The policies page's last commit comes from the push branch.
	var p web.Policies
	f.api("/api/v1/policies", &p)
	if w := find(p.Policies, "apps:web"); w == nil || w.LastCommit == nil || w.LastCommit.Hash != f.head("bumps") {
		t.Fatalf("apps:web's last commit on the push branch: %+v", w)
	}
}

// TestStandbyPlans: a standby replica runs no passes, says so, and still
// plans on request.
func TestStandbyPlans(t *testing.T) {
	f := newFixture(t, options{leading: func() bool { return false }, noLoop: true})
	var p web.Policies
	f.api("/api/v1/policies", &p)
	if p.Leader || p.Passes != 0 || p.Total != 0 {
		t.Fatalf("standby before any plan: %+v", p)
	}
	if page := f.get("/ui/", f.viewer).Body; !strings.Contains(page, "standby") || !strings.Contains(page, "No policy known yet") {
		t.Fatalf("the standby's page:\n%s", page)
	}
	if a := f.post("/api/v1/plan", f.actor); a.Code != http.StatusOK {
		t.Fatalf("standby plan: %d %s", a.Code, a.Body)
	}
	f.api("/api/v1/policies", &p)
	if w := find(p.Policies, "apps:web"); p.Total != 3 || p.Passes != 0 || p.LastPass != nil || w == nil || w.Plan == nil || w.Scan != nil || w.Plan.Chosen != "1.1.0" {
		t.Fatalf("standby after a plan: %+v", p.Policies)
	}
}

// TestPagesWhilePassesRun: the pages read the clone while the loop's
// passes fetch, commit and push in it; every answer is whole and none
// fails, whatever the pass is doing.
func TestPagesWhilePassesRun(t *testing.T) {
	f := newFixture(t, options{})
	ctx := t.Context()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// New tags, each bumped and pushed by a pass the webhook would
		// have asked for.
		for i := range 8 {
			if _, err := f.reg.PushImages(ctx, "team/web", fmt.Sprintf("1.%d.1", 10+i)); err != nil {
				done <- err
				return
			}
			f.lp.Trigger([]string{"apps:web"})
			want := f.lp.Passes() + 1
			if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				return f.lp.Passes() >= want, nil
			}); err != nil {
				done <- err
				return
			}
		}
		close(stop)
		done <- nil
	}()
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-stop:
			running = false
		default:
		}
		var fl web.Fleet
		f.api("/api/v1/fleet", &fl)
		if b := fl.Branches[0]; b.Error != "" || b.Tip == nil || b.Markers != 2 {
			t.Fatalf("the fleet while passes run: %+v", b)
		}
		var p web.Policies
		f.api("/api/v1/policies", &p)
		if w := find(p.Policies, "apps:web"); p.LogNote != "" || w == nil || w.LastCommit == nil {
			t.Fatalf("the policies while passes run: %s %+v", p.LogNote, w)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var fl web.Fleet
	f.api("/api/v1/fleet", &fl)
	if v := fl.Images[0].Branches[0].Versions; fl.Images[0].Policy != "apps:web" || !slices.Equal(v, []string{"1.17.1"}) {
		t.Fatalf("after the passes, main declares %+v", fl.Images)
	}
	t.Logf("%d reads of the fleet and the policies during 8 passes", reads)
}
