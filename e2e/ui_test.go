package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/testenv"
)

// uiCanary is a Secret value in Git; uiCanaryLive the one a person puts in
// the cluster by hand. Neither may reach a page.
const (
	uiCanary     = "ui-canary-3f9a71"
	uiCanaryLive = "ui-canary-live-b20c"
)

// TestUIInABrowser drives the synchronizer's pages in headless Chromium,
// against the real binary, cluster and Git server: a token of another
// cluster is refused, a ServiceAccount logs in and sees the objects, their
// health and the Pods under the Deployment, suspends, sees the diff of an
// object someone edited by hand, resumes, presses "sync now" and watches
// it heal; a user without RBAC gets 403 on the page and on the API. With
// DRIFTLESS_SCREENSHOTS set to a folder (make screenshots), it saves the
// overview, objects and diff pages there.
func TestUIInABrowser(t *testing.T) {
	s := newSyncSetup(t, nil)
	foreign := testenv.NewCluster(t, testenv.ClusterOptions{})
	ctx := t.Context()
	ns := s.cluster.Namespace(t)
	kubeconfig := s.uiKubeconfig(t, ns)
	operator := saToken(t, s.cluster, ns, "operator", "get", "update")
	stranger := saToken(t, s.cluster, ns, "stranger")
	// The same ServiceAccount name, in a namespace of the same name, in
	// another cluster: its token is signed by that cluster's key.
	if _, err := kubernetes.NewForConfigOrDie(foreign.Config).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	foreignToken := saToken(t, foreign, ns, "operator", "get", "update")

	s.seed(t, "app", map[string]string{
		"deploy/kustomization.yaml": "resources: [settings.yaml, creds.yaml, web.yaml]\n",
		"deploy/settings.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: from-git, replicas: \"2\"}\n",
		"deploy/creds.yaml":         "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: " + uiCanary + "}\n",
		"deploy/web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry.example.com/team/web:1.4.2"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
`,
	})
	listen := freeAddr(t)
	p := start(t, "synchronizer", s.syncArgs("app", kubeconfig, listen, "--namespace", ns, "--path", "deploy")...)
	waitHTTP(t, p, "http://"+listen+"/healthz")
	until(t, 60*time.Second, "the first pass applied", func() bool { return getStatus(t, listen).Status.Phase == "Ready" })

	b := newBrowser(t, "http://"+listen)
	// Anonymous: the login form, remembering where the user was going.
	b.open("/ui/objects")
	if loc := b.location(); !strings.Contains(loc, "/ui/login?next=%2Fui%2Fobjects") {
		t.Fatalf("anonymous visit ended at %s", loc)
	}
	// A token of another cluster: the TokenReview says no.
	b.login(foreignToken)
	b.waitFor("the foreign token refused", `document.querySelector("p.error")?.textContent.includes("did not accept")`)
	if cs := b.cookies(); len(cs) != 0 {
		t.Fatalf("a refused token left a cookie: %+v", cs)
	}

	// The operator logs in and lands where they were going.
	b.login(operator)
	b.waitFor("the objects page", `location.pathname === "/ui/objects" && !!document.querySelector("section.ns")`)
	cs := b.cookies()
	if len(cs) != 1 || !cs[0].HTTPOnly || !cs[0].Secure || cs[0].SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %+v", cs)
	}
	if c := b.eval(`document.cookie`); c != "" {
		t.Fatalf("page script can read the cookie: %q", c)
	}
	// Objects with their health, and the Pods under the Deployment, live.
	b.until("two running Pods under the Deployment", "/ui/objects",
		`[...document.querySelectorAll("tr.obj[id='obj-Deployment-`+ns+`-web'] .children li .children li")].filter(li => li.textContent.includes("Pod") && li.textContent.includes("Current")).length === 2`)
	for _, row := range []string{"ConfigMap-" + ns + "-settings", "Secret-" + ns + "-creds", "Service-" + ns + "-web", "Deployment-" + ns + "-web"} {
		if h := b.eval(`document.querySelector("tr.obj[id='obj-` + row + `'] .badge")?.textContent ?? "missing"`); h != "Current" {
			t.Errorf("%s: health %q", row, h)
		}
	}
	b.screenshot("objects")
	// The filter narrows the tables as you type.
	b.do(chromedp.SendKeys(chromedp.ID("filter"), "settings"))
	b.waitFor("the filter", `[...document.querySelectorAll("tr.obj")].filter(r => !r.hidden).length === 1 && [...document.querySelectorAll("div.kind")].filter(k => !k.hidden).length === 1`)

	b.open("/ui/")
	if ph := b.eval(`document.querySelector("#phase").textContent`); ph != "Ready" {
		t.Fatalf("phase %q", ph)
	}
	if subj := b.eval(`document.querySelector("#commit-subject")?.textContent`); subj != "seed" {
		t.Fatalf("commit subject %q", subj)
	}
	b.screenshot("overview")

	// Suspend, then "sync now" so the loop sees it.
	b.click("suspend")
	b.waitFor("the suspension shown", `!!document.querySelector("#suspended") && !!document.querySelector("#resume")`)
	b.click("sync")
	b.until("the phase Suspended", "/ui/", `document.querySelector("#phase").textContent === "Suspended"`)
	// Someone edits the cluster by hand: with the synchronizer suspended,
	// the drift stays, for the diff to show.
	if _, err := s.cs.CoreV1().ConfigMaps(ns).Patch(ctx, "settings", types.MergePatchType, []byte(`{"data":{"mode":"edited-by-hand"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cs.CoreV1().Secrets(ns).Patch(ctx, "creds", types.MergePatchType, []byte(`{"stringData":{"password":"`+uiCanaryLive+`"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	b.until("the drift shown", "/ui/objects", `!!document.querySelector("tr.obj[id='obj-ConfigMap-`+ns+`-settings'] .badge.drifted")`)
	b.navigating(chromedp.Click(chromedp.CSS(`tr.obj[id='obj-ConfigMap-` + ns + `-settings'] a`)))
	b.waitFor("the side-by-side diff", `[...document.querySelectorAll("table.sbs tr.change")].some(r => r.querySelector("td.l").textContent.includes("mode: edited-by-hand") && r.querySelector("td.r").textContent.includes("mode: from-git"))`)
	if m := b.eval(`document.querySelector("table.sbs").textContent.includes("managedFields") ? "shown" : "hidden"`); m != "hidden" {
		t.Fatal("the diff shows managed fields")
	}
	b.open("/ui/diff")
	b.waitFor("the whole-set diff with the Secret masked", `[...document.querySelectorAll("section.diffobj")].length === 2 && document.body.textContent.includes("*** (after)")`)
	b.screenshot("diff")
	for _, page := range []string{"/ui/", "/ui/objects", "/ui/diff", "/ui/history", "/ui/diff?kind=Secret&namespace=" + ns + "&name=creds"} {
		b.open(page)
		html := b.html()
		for _, secret := range []string{uiCanary, uiCanaryLive, base64.StdEncoding.EncodeToString([]byte(uiCanary)), base64.StdEncoding.EncodeToString([]byte(uiCanaryLive)), operator} {
			if strings.Contains(html, secret) {
				t.Fatalf("%s shows a Secret value or the token", page)
			}
		}
	}

	// Resume: nothing heals yet (the loop sees it at the next pass); sync now heals.
	b.open("/ui/")
	b.click("resume")
	b.waitFor("resumed", `!!document.querySelector("#suspend") && !document.querySelector("#suspended")`)
	if v := settingsMode(t, s.cs, ns); v != "edited-by-hand" {
		t.Fatalf("healed before sync now: %q", v)
	}
	b.click("sync")
	b.until("sync now to heal the drift", "/ui/objects", `document.querySelectorAll(".badge.drifted").length === 0 && document.querySelectorAll("tr.obj > td:nth-child(2) > .badge.Current").length === 4`)
	if v := settingsMode(t, s.cs, ns); v != "from-git" {
		t.Fatalf("after sync now the ConfigMap holds %q", v)
	}
	b.until("the phase Ready", "/ui/", `document.querySelector("#phase").textContent === "Ready"`)
	b.open("/ui/history")
	// The first pass, the one that saw the suspension, and the one that healed.
	if ok := b.eval(`document.querySelectorAll("#passes tbody tr").length >= 3`); ok != "true" {
		t.Fatalf("history shows fewer than 3 passes:\n%s", b.html())
	}

	// Log out: the cookie is gone, the pages ask for a token again.
	b.click("logout")
	b.waitFor("the login form", `location.pathname === "/ui/login"`)
	if cs := b.cookies(); len(cs) != 0 {
		t.Fatalf("cookie after logout: %+v", cs)
	}
	// A user without RBAC: 403 on the page and on the API.
	b.login(stranger)
	b.waitFor("the 403 page", `document.querySelector("h1")?.textContent.startsWith("403")`)
	if resp, err := chromedp.RunResponse(b.ctx, chromedp.Navigate(b.base+"/ui/objects")); err != nil || resp.Status != http.StatusForbidden {
		t.Fatalf("stranger's page: %v %v", resp, err)
	}
	for tok, want := range map[string]int{stranger: 403, foreignToken: 401, "": 401, operator: 200} {
		req, _ := http.NewRequest("GET", "http://"+listen+"/api/v1/objects", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("API with the %s token: %d, want %d", map[string]string{stranger: "stranger's", foreignToken: "foreign", "": "no", operator: "operator's"}[tok], resp.StatusCode, want)
		}
	}
	for _, secret := range []string{uiCanary, uiCanaryLive, operator, stranger, foreignToken} {
		if strings.Contains(p.Output(), secret) {
			t.Fatal("a Secret value or a token reached the synchronizer's log")
		}
	}
}

// uiKubeconfig is the tenant synchronizer's identity plus what the UI
// needs (docs/ui.md): reviews of users' tokens and access, and a list of
// the Pods and ReplicaSets under its workloads.
func (s *syncSetup) uiKubeconfig(t *testing.T, ns string) string {
	t.Helper()
	path := s.tenantKubeconfig(t, ns)
	ctx := t.Context()
	if _, err := s.cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "synchronizer-ui"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"list"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "synchronizer", Namespace: ns}}
	if _, err := s.cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "synchronizer-ui"},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "synchronizer-ui"}, Subjects: sa}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-auth-delegator"},
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"}, Subjects: sa}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

// saToken makes a ServiceAccount allowed verbs on the status ConfigMap
// "driftless" in ns and returns a token of it.
func saToken(t *testing.T, c *testenv.Cluster, ns, name string, verbs ...string) string {
	t.Helper()
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(verbs) > 0 {
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "driftless-" + name}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"driftless"}, Verbs: verbs}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "driftless-" + name},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "driftless-" + name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := c.ServiceAccountConfig(ctx, ns, name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.BearerToken
}

func settingsMode(t *testing.T, cs kubernetes.Interface, ns string) string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data["mode"]
}

// browser is one headless Chromium with a fresh profile.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	out  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newBrowser starts Chromium (Debian's, or $CHROMIUM) and fails the test,
// never skips it, when it cannot.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	exe := os.Getenv("CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	out := &syncBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900), chromedp.CombinedOutput(out))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("--- chromium output ---\n%s", out.String())
		}
	})
	b := &browser{t: t, ctx: ctx, base: base, out: out}
	// The first action starts the browser, which lives as long as the
	// context it ran with: ctx itself, with a watchdog instead of a
	// timeout context.
	started := make(chan error, 1)
	go func() {
		started <- chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.EmulateViewport(1280, 900))
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start Chromium %s (install Debian's chromium: make browser): %v\n%s", exe, err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("Chromium %s did not start within a minute:\n%s", exe, out.String())
	}
	return b
}

// do runs steps, each browser step bounded so a missing element fails
// the test instead of hanging it.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.location())
	}
}

func (b *browser) open(path string) { b.t.Helper(); b.do(chromedp.Navigate(b.base + path)) }

// click clicks the button or link id and waits for the page it leads to.
func (b *browser) click(id string) {
	b.t.Helper()
	b.navigating(chromedp.Click(chromedp.ID(id)))
}

// navigating runs step, which leaves the page, and waits until the next
// page has loaded (a navigation started now would abort it).
func (b *browser) navigating(step chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.eval(`window.driftlessOldPage = true`)
	b.do(step)
	b.waitFor("the next page", `window.driftlessOldPage === undefined && document.readyState === "complete"`)
}

func (b *browser) login(token string) {
	b.t.Helper()
	if !strings.HasPrefix(b.location(), b.base+"/ui/login") {
		b.open("/ui/login")
	}
	b.do(chromedp.SetValue(chromedp.ID("token"), token))
	b.navigating(chromedp.Click(chromedp.ID("login")))
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return fmt.Sprint(v)
}

func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

func (b *browser) html() string {
	b.t.Helper()
	return b.eval(`document.documentElement.outerHTML`)
}

func (b *browser) cookies() []*network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
	if err != nil {
		b.t.Fatalf("cookies: %v", err)
	}
	return res.Cookies
}

// waitFor polls the current page until js is true.
func (b *browser) waitFor(what, js string) {
	b.t.Helper()
	b.poll(what, func() bool {
		return b.eval(`(() => { try { return !!(`+js+`) } catch (e) { return false } })()`) == "true"
	})
}

// until reloads path until js is true on it: the pages are plain server
// renders, a person would press reload.
func (b *browser) until(what, path, js string) {
	b.t.Helper()
	b.poll(what, func() bool {
		b.t.Helper()
		b.open(path)
		return b.eval(`(() => { try { return !!(`+js+`) } catch (e) { return false } })()`) == "true"
	})
}

func (b *browser) poll(what string, cond func() bool) {
	b.t.Helper()
	if err := wait.PollUntilContextTimeout(b.t.Context(), 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		b.t.Fatalf("timed out waiting for %s; the page at %s:\n%s", what, b.location(), b.html())
	}
}

// screenshot saves the page as $DRIFTLESS_SCREENSHOTS/name.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("DRIFTLESS_SCREENSHOTS")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
