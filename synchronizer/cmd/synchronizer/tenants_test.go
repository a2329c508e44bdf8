package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// Two tenants served by one process: each applies its own repository to
// its own namespace as its own ServiceAccount; one tenant's commit that
// reaches into the other's namespace, or outside its Role, is refused
// whole and the other tenant is untouched.
func TestTenantsInOneProcess(t *testing.T) {
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	a, b := cluster.Namespace(t), cluster.Namespace(t)
	for _, ns := range []string{a, b} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}}
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	clones := map[string]*gitrepo.Repo{}
	seed := func(repo string, files map[string]string) {
		t.Helper()
		w := clones[repo]
		if w == nil {
			src := t.TempDir()
			writeFiles(t, src, files)
			if _, err := git.Seed(ctx, repo, "main", src, "seed"); err != nil {
				t.Fatal(err)
			}
			var err error
			if clones[repo], err = gitrepo.Open(ctx, t.TempDir(), git.RepoURL(repo), "main", gitrepo.Auth{}); err != nil {
				t.Fatal(err)
			}
			return
		}
		if _, err := w.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		writeFiles(t, w.Dir(), files)
		if _, err := w.Commit("change", gitrepo.Signature{Name: "Dev", Email: "dev@example.com"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := w.Push(ctx, "main"); err != nil {
			t.Fatal(err)
		}
	}
	cm := func(name, ns, v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + ", namespace: " + ns + "}\ndata: {v: \"" + v + "\"}\n"
	}
	seed("team-a", map[string]string{"deploy/cm.yaml": cm("app", "", "a1")})
	seed("team-b", map[string]string{"deploy/cm.yaml": cm("app", "", "b1")})
	dir := t.TempDir()
	file := filepath.Join(dir, "tenants.yaml")
	os.WriteFile(file, []byte(`tenants:
- {name: a, namespace: `+a+`, repoURL: `+git.RepoURL("team-a")+`, path: deploy, serviceAccount: deployer}
- {name: b, namespace: `+b+`, repoURL: `+git.RepoURL("team-b")+`, path: deploy, serviceAccount: deployer}
`), 0o644)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var out bytes.Buffer
	wg.Go(func() {
		if err := run(runCtx, []string{"run", "--tenants", file, "--kubeconfig", cluster.Kubeconfig, "--listen", addr, "--interval", "1h", "--checkout-dir", dir}, noEnv, &out, &out); err != nil {
			t.Errorf("run --tenants: %v", err)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	value := func(ns string) string {
		c, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "app", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "<none>"
		}
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return c.Data["v"]
	}
	status := func(name string) map[string]any {
		resp, err := http.Get("http://" + addr + "/status/" + name)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var v struct {
			Status map[string]any `json:"status"`
		}
		json.NewDecoder(resp.Body).Decode(&v)
		return v.Status
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("timed out waiting for %s; a: %v, b: %v", what, status("a"), status("b"))
		}
	}
	until("both tenants applied", func() bool { return value(a) == "a1" && value(b) == "b1" })
	if mf, _ := cs.CoreV1().ConfigMaps(a).Get(ctx, "app", metav1.GetOptions{}); mf.ManagedFields[0].Manager != "driftless/"+a+"/driftless" {
		t.Fatalf("field manager %+v", mf.ManagedFields)
	}
	push := func(name string) {
		resp, err := http.Post("http://"+addr+"/hooks/git/"+name, "application/json", strings.NewReader(`{"ref":"refs/heads/main"}`))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("webhook %s: %v %v", name, resp, err)
		}
		resp.Body.Close()
	}
	// Tenant a reaches into b's namespace, then outside its Role: each
	// commit is refused whole.
	for _, c := range []struct{ extra, want string }{
		{cm("app", b, "hijacked"), "outside this synchronizer's namespace"},
		{"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n", "forbidden"},
	} {
		seed("team-a", map[string]string{"deploy/cm.yaml": cm("app", "", "a2") + "---\n" + c.extra})
		push("a")
		var msg string
		until("tenant a refused: "+c.want, func() bool {
			parent, err := cs.CoreV1().ConfigMaps(a).Get(ctx, "driftless", metav1.GetOptions{})
			msg = parent.Data["message"]
			return err == nil && parent.Data["reason"] == "ValidationFailed" && strings.Contains(msg, c.want)
		})
		if value(a) != "a1" || value(b) != "b1" {
			t.Fatalf("a refused commit changed something: a=%s b=%s", value(a), value(b))
		}
	}
	if status("b")["phase"] != "Ready" {
		t.Fatalf("tenant b: %v", status("b"))
	}
	// And its next clean commit applies.
	seed("team-a", map[string]string{"deploy/cm.yaml": cm("app", "", "a3")})
	push("a")
	until("tenant a's clean commit", func() bool { return value(a) == "a3" })
}

func TestTenantsFileErrorsNameTheField(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	os.WriteFile(file, []byte("tenants:\n- {namespace: a, repoURL: http://x/a.git}\n- {namespace: a, serviceAccount: d, repoURL: http://x/b.git, colour: blue}\n"), 0o644)
	_, err := readTenants(file)
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field: %v", err)
	}
	os.WriteFile(file, []byte("tenants:\n- {namespace: a, repoURL: http://x/a.git}\n- {namespace: a, serviceAccount: d, repoURL: http://x/b.git}\n"), 0o644)
	_, err = readTenants(file)
	for _, want := range []string{"tenants[0].serviceAccount: required", `tenants[1].namespace "a": another tenant has it`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want %q", err, want)
		}
	}
}
