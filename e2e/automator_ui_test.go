package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-git/go-git/v5/plumbing"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
	"driftless.dev/shared/testenv"
)

// TestAutomatorUIInABrowser drives the automator's pages in headless
// Chromium, against the real binary running as the manifests'
// driftless-automator ServiceAccount (manifests/base applied with
// kubectl: its Lease Role and the UI's auth-delegator binding), a real
// registry and Git server: a user who may only view the Lease sees the
// policies with their choices and reasons and is refused "plan now"; an
// operator presses it and sees every tag passed over and why, the policy's
// page, and the fleet; a user without RBAC gets 403 on the page and on
// the API. No page shows a token or a secret. With DRIFTLESS_SCREENSHOTS
// set to a folder (make screenshots), it saves the policies, policy and
// fleet pages there.
func TestAutomatorUIInABrowser(t *testing.T) {
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{})
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	base, _ := filepath.Abs(filepath.Join("..", "manifests", "base"))
	if out, err := exec.CommandContext(ctx, kubectlPath(t), "--kubeconfig", cluster.Kubeconfig, "apply", "--server-side", "-k", base).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k manifests/base: %v\n%s", err, out)
	}
	cfg, err := cluster.ServiceAccountConfig(ctx, "driftless-system", "driftless-automator", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := newAutomatorSetup(t, 1, "1h")
	kubeconfig := filepath.Join(s.dir, "automator.kubeconfig")
	if err := testenv.WriteKubeconfig(kubeconfig, cfg); err != nil {
		t.Fatal(err)
	}
	ns := cluster.Namespace(t)
	viewer := leaseUser(t, cs, cluster, ns, "viewer", "get")
	operator := leaseUser(t, cs, cluster, ns, "operator", "get", "update")
	stranger := leaseUser(t, cs, cluster, ns, "stranger")

	if _, err := s.reg.PushImages(ctx, "team/web", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.reg.PushImages(ctx, "team/api", "2.0.0", "2.1.0", "3.0.0"); err != nil {
		t.Fatal(err)
	}
	// prod, where a gate promotes to, is the seed.
	if _, err := s.git.Git(ctx, "fleet", "branch", "prod", "main"); err != nil {
		t.Fatal(err)
	}
	// Beside apps:web, a Flux ImagePolicy and one whose repository the
	// registry does not have.
	s.commitFiles(t, map[string]string{
		"policies/flux.yaml": "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata: {name: api, namespace: flux-system}\nspec: {image: " + s.reg.Host + "/team/api, interval: 1h}\n---\n" +
			"apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata: {name: api, namespace: flux-system}\nspec:\n  imageRepositoryRef: {name: api}\n  policy: {semver: {range: \"2.x\"}}\n",
		"policies/worker.yaml":        "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: worker, namespace: apps}\nspec:\n  image: " + s.reg.Host + "/team/worker\n  interval: 1h\n  policy: {semver: {range: \"^1.0.0\"}}\n",
		"apps/api/kustomization.yaml": "images:\n  - name: " + s.reg.Host + "/team/api\n    newTag: 2.0.0 # {\"$imagepolicy\": \"flux-system:api:tag\"}\n",
		"apps/worker/deploy.yaml":     "image: " + s.reg.Host + "/team/worker:1.0.0 # {\"$imagepolicy\": \"apps:worker\"}\n",
		// A gate from main to prod, and what a dev cluster recorded of
		// main's head: the fleet shows both.
		"policies/promotion.yaml": "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: main-to-prod}\nspec: {from: main, to: prod, healthyIn: [dev], soak: 1h}\n",
	})
	mainHead, _ := s.git.Head(ctx, "fleet", "main")
	recordAt(t, s.git.RepoURL("fleet"), mainHead,
		records.Record{Time: time.Now().UTC(), Event: records.Applied, Cluster: "dev", Ref: "main", Digest: "sha256:2f0a", Images: []string{s.reg.Host + "/team/web:1.0.0"}},
		records.Record{Time: time.Now().UTC(), Event: records.Healthy, Cluster: "dev", Ref: "main"})
	listen := s.listen[0]
	// Bumps go to a branch of their own, for review: the fleet then has
	// two branches that differ, and the gate's target.
	a := start(t, "automator", s.args(0, "--leader-elect", "--kubeconfig", kubeconfig, "--lease-namespace", "driftless-system", "--identity", "ui-test", "--git-push-branch", "bumps",
		"--promotion-targets", "prod")...)
	waitHTTP(t, a, "http://"+listen+"/healthz")
	until(t, 60*time.Second, "the first pass's bump", func() bool {
		out, _ := s.git.Git(ctx, "fleet", "show", "bumps:apps/web/deploy.yaml")
		return strings.Contains(out, "/team/web:1.1.0 #")
	})

	b := newBrowser(t, "http://"+listen)
	b.open("/ui/")
	if loc := b.location(); !strings.Contains(loc, "/ui/login?next=%2Fui%2F") {
		t.Fatalf("anonymous visit ended at %s", loc)
	}
	// A viewer sees the loop's pass: the chosen tag and why, the commit.
	b.login(viewer)
	row := `document.getElementById("policy-apps:web")`
	b.until("apps:web chosen by the loop's pass", "/ui/", row+`.querySelector(".chosen").textContent === "1.1.0" && `+row+`.textContent.includes("1.1.0 ranks highest of 2 allowed tags") && `+row+`.textContent.includes("5 listed, 2 allowed")`)
	if missing := b.eval(`document.getElementById("policy-apps:worker").textContent`); !strings.Contains(missing, "team/worker") {
		t.Fatalf("apps:worker's row does not say why its scan failed: %s", missing)
	}
	if api := b.eval(`document.getElementById("policy-flux-system:api").querySelector(".chosen").textContent`); api != "2.1.0" {
		t.Fatalf("the Flux policy chose %q", api)
	}
	// The commit is the pass's, which the page learns when the pass
	// returns: after Git has it, so wait for it too.
	head, _ := s.git.Head(ctx, "fleet", "bumps")
	b.until("apps:web's last commit", "/ui/", `!!`+row+`.querySelector("td:nth-child(5) .mono")`)
	if c := b.eval(row + `.querySelector("td:nth-child(5) .mono").title`); !strings.HasPrefix(c, head+" ") {
		t.Fatalf("apps:web's last commit %q, want the head %s", c, head)
	}
	// ... and may not plan: RBAC says update on the Lease.
	b.click("plan")
	b.waitFor("the 403 page", `document.querySelector("h1")?.textContent.startsWith("403") && document.body.textContent.includes("leases")`)
	b.open("/ui/")
	b.click("logout")
	b.waitFor("the login form", `location.pathname === "/ui/login"`)

	// The operator plans now: every tag passed over, and why.
	b.login(operator)
	b.waitFor("the policies page", `!!`+row)
	if n := b.eval(row + `.querySelectorAll("details.rejected li").length`); n != "0" {
		t.Fatalf("rejections listed before any plan: %s", n)
	}
	b.click("plan")
	b.waitFor("the plan's result", `location.pathname === "/ui/" && document.querySelector("#plan-result")?.textContent === "unchanged" && `+row+`.querySelectorAll("details.rejected li").length === 4`)
	b.eval(`document.querySelectorAll("details").forEach(d => d.open = true)`)
	text := b.eval(row + `.textContent`)
	for _, want := range []string{`2.0.0: outside range "^1.0.0"`, "latest: not a semantic version", "1.2.0-rc.1: pre-release, excluded", "1.0.0: allowed, but ranks below 1.1.0"} {
		if !strings.Contains(text, want) {
			t.Errorf("apps:web's row lacks %q:\n%s", want, text)
		}
	}
	b.screenshot("automator-policies")
	b.navigating(chromedp.Click(chromedp.CSS(`#policies a[href="/ui/policies/apps:web"]`)))
	b.waitFor("the policy's page", `document.querySelectorAll("#rejected tbody tr").length === 4 && document.body.textContent.includes("Last pass") && document.body.textContent.includes("Last plan")`)
	b.screenshot("automator-policy")
	// Plan this policy: the page's own button, back to the same page.
	b.click("plan")
	b.waitFor("the policy's page again", `location.pathname === "/ui/policies/apps:web" && document.querySelectorAll("#rejected tbody tr").length === 4`)

	b.open("/ui/fleet")
	web := `document.getElementById("image-apps:web")`
	b.waitFor("the fleet", `document.getElementById("branch-main")?.textContent.includes("followed") && document.getElementById("branch-bumps")?.textContent.includes("push") && `+
		web+`.querySelectorAll(".version")[0].textContent === "1.0.0" && `+web+`.querySelectorAll(".version")[1].textContent === "1.1.0" && `+web+`.textContent.includes("differs") && `+
		// The gate and the record, as the automator's gate loop evaluated
		// them; prod read from the gates' mirror.
		`document.getElementById("gate-main-to-prod")?.textContent.includes("Waiting") && document.getElementById("gate-main-to-prod")?.textContent.includes("soaking until") && `+
		`document.getElementById("cluster-main-dev")?.textContent.includes("healthy since") && document.getElementById("branch-prod")?.textContent.includes("promoted from main") && `+
		`document.getElementById("branch-main")?.textContent.includes("by the gate loop")`)
	b.screenshot("automator-fleet")
	b.open("/ui/history")
	b.waitFor("the history", `document.querySelectorAll("#passes tbody tr.pass").length >= 3 && document.body.textContent.includes("plan by system:serviceaccount:`+ns+`:operator")`)

	for _, page := range []string{"/ui/", "/ui/policies/apps:web", "/ui/fleet", "/ui/history"} {
		b.open(page)
		html := b.html()
		for _, secret := range []string{gitToken, hookSecret, operator, viewer, cfg.BearerToken} {
			if strings.Contains(html, secret) {
				t.Fatalf("%s shows a token or a secret", page)
			}
		}
	}
	// A user without RBAC: 403 on the page and on the API.
	b.open("/ui/")
	b.click("logout")
	b.login(stranger)
	b.waitFor("the 403 page", `document.querySelector("h1")?.textContent.startsWith("403")`)
	if resp, err := chromedp.RunResponse(b.ctx, chromedp.Navigate(b.base+"/ui/fleet")); err != nil || resp.Status != http.StatusForbidden {
		t.Fatalf("stranger's page: %v %v", resp, err)
	}
	for tok, want := range map[string]int{stranger: 403, "": 401, viewer: 200} {
		req, _ := http.NewRequest("GET", "http://"+listen+"/api/v1/policies", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("API with the %s token: %d, want %d", map[string]string{stranger: "stranger's", "": "no", viewer: "viewer's"}[tok], resp.StatusCode, want)
		}
	}
	for _, secret := range []string{gitToken, hookSecret, operator, viewer, stranger, cfg.BearerToken} {
		if strings.Contains(a.Output(), secret) {
			t.Fatal("a token or a secret reached the automator's log")
		}
	}
}

// TestAutomatorUIOffWithoutACluster: without a cluster to ask about users
// the pages are off and the log says so; a --kubeconfig that cannot be
// read stops the start, naming the flag.
func TestAutomatorUIOffWithoutACluster(t *testing.T) {
	s := newAutomatorSetup(t, 1, "1h")
	a := start(t, "automator", s.args(0)...)
	waitHTTP(t, a, "http://"+s.listen[0]+"/healthz")
	until(t, 30*time.Second, "the log line", func() bool { return strings.Contains(a.Output(), "the web UI is off") })
	for _, p := range []string{"/ui/", "/api/v1/policies"} {
		resp, err := http.Get("http://" + s.listen[0] + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s without a cluster: %d, want 404", p, resp.StatusCode)
		}
	}
	a.stop()
	bad := start(t, "automator", s.args(0, "--kubeconfig", filepath.Join(s.dir, "missing.kubeconfig"))...)
	select {
	case <-bad.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the automator started with a --kubeconfig that does not exist")
	}
	if bad.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(bad.Output(), "--kubeconfig") {
		t.Fatalf("exit %d:\n%s", bad.cmd.ProcessState.ExitCode(), bad.Output())
	}
}

// recordAt appends records to commit's note on the Git server at url, as
// a synchronizer's recorder writes them.
func recordAt(t *testing.T, url, commit string, recs ...records.Record) {
	t.Helper()
	m, err := gitrepo.OpenMirror("", url, gitrepo.Auth{Username: "bot", Password: gitToken})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.Format())
	}
	if _, err := m.Notes(records.DefaultNotes).Append(t.Context(), map[plumbing.Hash][]string{plumbing.NewHash(commit): lines},
		gitrepo.AppendOptions{Author: gitrepo.Signature{Name: "Driftless Synchronizer (dev)", Email: "synchronizer@driftless.dev"}}); err != nil {
		t.Fatal(err)
	}
}

// leaseUser makes a ServiceAccount in ns allowed verbs on the automator's
// Lease (driftless-system/driftless-automator), as docs/ui.md's Roles do,
// and returns a token of it.
func leaseUser(t *testing.T, cs kubernetes.Interface, c *testenv.Cluster, ns, name string, verbs ...string) string {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(verbs) > 0 {
		role := "automator-" + ns + "-" + name
		if _, err := cs.RbacV1().Roles("driftless-system").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"driftless-automator"}, Verbs: verbs}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.RbacV1().RoleBindings("driftless-system").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role},
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

// commitFiles writes files into the repository's main branch as a person
// would: one commit, pushed.
func (s *automatorSetup) commitFiles(t *testing.T, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	c, err := gitrepo.Open(t.Context(), dir, s.git.RepoURL("fleet"), "main", gitrepo.Auth{Username: "bot", Password: gitToken})
	if err != nil {
		t.Fatal(err)
	}
	for rel, body := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Commit("more policies", gitrepo.Signature{Name: "Dev", Email: "dev@example.com"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
}
