package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/e2e/fleet"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

const (
	syncGitToken   = "sync-git-t0ken"
	syncHookSecret = "sync-hook-s3cret"
)

// syncSetup is a cluster, a Git server with one repository, and a clone
// to commit to it from.
type syncSetup struct {
	cluster *testenv.Cluster
	cs      kubernetes.Interface
	git     *testenv.GitServer
	dir     string
	repos   map[string]*gitrepo.Repo
}

func newSyncSetup(t testing.TB, cluster *testenv.Cluster) *syncSetup {
	t.Helper()
	if cluster == nil {
		cluster = testenv.NewCluster(t, testenv.ClusterOptions{Nodes: 1})
	}
	s := &syncSetup{cluster: cluster, cs: kubernetes.NewForConfigOrDie(cluster.Config), dir: t.TempDir(), repos: map[string]*gitrepo.Repo{}}
	s.git = testenv.NewGitServer(t, testenv.GitServerOptions{Auth: &testenv.BasicAuth{Username: "sync", Password: syncGitToken}})
	os.WriteFile(filepath.Join(s.dir, "git-token"), []byte(syncGitToken), 0o600)
	os.WriteFile(filepath.Join(s.dir, "hook-secret"), []byte(syncHookSecret), 0o600)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.diagnose())
		}
	})
	return s
}

// diagnose is what a failed test prints besides the programs' output
// (start prints that): the status every synchronizer recorded, and the
// head of every repository.
func (s *syncSetup) diagnose() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	list, err := s.cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: "applyset.kubernetes.io/id"})
	if err != nil {
		fmt.Fprintf(&b, "--- recorded status: %v\n", err)
	} else {
		for _, cm := range list.Items {
			fmt.Fprintf(&b, "--- status recorded in %s/%s ---\nphase %s (%s), revision %s, applied %s\n%s\n", cm.Namespace, cm.Name,
				cm.Data["phase"], cm.Data["reason"], cm.Data["revision"], cm.Data["lastAppliedRevision"], cm.Data["message"])
		}
	}
	for name := range s.repos {
		head, _ := s.git.Head(ctx, name, "main")
		fmt.Fprintf(&b, "--- %s: main at %s\n", name, head)
	}
	return b.String()
}

// seed creates repository name with files on branch main.
func (s *syncSetup) seed(t testing.TB, name string, files map[string]string) {
	t.Helper()
	if _, err := s.git.Seed(t.Context(), name, "main", writeTree(t, files), "seed"); err != nil {
		t.Fatal(err)
	}
	r, err := gitrepo.Open(t.Context(), filepath.Join(s.dir, "w-"+name), s.git.RepoURL(name), "main", gitrepo.Auth{Username: "sync", Password: syncGitToken})
	if err != nil {
		t.Fatal(err)
	}
	s.repos[name] = r
}

// commit changes files of repository name (an empty body deletes) and
// pushes; it returns the commit.
func (s *syncSetup) commit(t testing.TB, name string, files map[string]string) string {
	t.Helper()
	r := s.repos[name]
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	for rel, body := range files {
		p := filepath.Join(r.Dir(), rel)
		if body == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	h, err := r.Commit("change "+strings.Join(keysOf(files), ", "), gitrepo.Signature{Name: "Dev", Email: "dev@example.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// syncArgs runs a synchronizer on repository name with kubeconfig.
func (s *syncSetup) syncArgs(name, kubeconfig, listen string, extra ...string) []string {
	return append([]string{"run",
		"--repo-url", s.git.RepoURL(name), "--branch", "main", "--git-username", "sync",
		"--git-password-file", filepath.Join(s.dir, "git-token"), "--webhook-secret-file", filepath.Join(s.dir, "hook-secret"),
		"--kubeconfig", kubeconfig, "--listen", listen, "--interval", "1h", "--log-format", "json",
	}, extra...)
}

// status reads a synchronizer's /status.
type syncStatus struct {
	Leader bool `json:"leader"`
	Status struct {
		Phase               string         `json:"phase"`
		Reason              string         `json:"reason"`
		Message             string         `json:"message"`
		Revision            string         `json:"revision"`
		LastAppliedRevision string         `json:"lastAppliedRevision"`
		Objects             int            `json:"objects"`
		Counts              map[string]int `json:"counts"`
	} `json:"status"`
	Passes int `json:"passes"`
}

func getStatus(t testing.TB, listen string) syncStatus {
	t.Helper()
	var st syncStatus
	resp, err := http.Get("http://" + listen + "/status")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&st)
	return st
}

// parentData is the status ConfigMap of the synchronizer whose parent is
// in ns, as kubectl reads it.
func parentData(t testing.TB, cs kubernetes.Interface, ns string) map[string]string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "driftless", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read the status ConfigMap: %v", err)
	}
	return cm.Data
}

// storedMessage waits until the status ConfigMap in ns records revision
// (the synchronizer writes it after /status has changed) and returns its
// message.
func storedMessage(t testing.TB, cs kubernetes.Interface, ns, revision string) string {
	t.Helper()
	var data map[string]string
	until(t, 30*time.Second, "the status ConfigMap at "+revision, func() bool {
		data = parentData(t, cs, ns)
		return data["revision"] == revision && data["phase"] != ""
	})
	return data["message"]
}

// push tells a synchronizer about a push, signed as GitHub signs.
func push(t testing.TB, listen string) int {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/hooks/git", bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", fleet.Sign([]byte(syncHookSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// tenantKubeconfig makes a ServiceAccount in ns with a namespaced Role
// that covers what a tenant synchronizer needs, and nothing else, and
// returns a kubeconfig with its token.
func (s *syncSetup) tenantKubeconfig(t testing.TB, ns string) string {
	t.Helper()
	ctx := t.Context()
	s.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "synchronizer"}}, metav1.CreateOptions{})
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	_, err := s.cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "synchronizer"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps", "services", "secrets", "serviceaccounts"}, Verbs: all},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: all},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "synchronizer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "synchronizer"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "synchronizer", Namespace: ns}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.cluster.ServiceAccountConfig(ctx, ns, "synchronizer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.dir, ns+".kubeconfig")
	if err := testenv.WriteKubeconfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	return path
}

func cmValue(t testing.TB, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	c, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return c.Data["v"]
}

func configMap(name, ns, v string) string {
	meta := "name: " + name
	if ns != "" {
		meta += ", namespace: " + ns
	}
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {%s}\ndata: {v: %q}\n", meta, v)
}

// TestSynchronizerTenantWithRoleOnly: the real binary, authenticated as a
// ServiceAccount with a namespaced Role only. A commit that reaches into
// another namespace, or adds a cluster-scoped object, is refused whole and
// reported; the next clean commit applies.
func TestSynchronizerTenantWithRoleOnly(t *testing.T) {
	s := newSyncSetup(t, nil)
	ns, other := s.cluster.Namespace(t), s.cluster.Namespace(t)
	s.cs.CoreV1().ConfigMaps(other).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Data: map[string]string{"v": "untouched"}}, metav1.CreateOptions{})
	s.seed(t, "tenant", map[string]string{
		"deploy/kustomization.yaml": "resources: [config.yaml]\n",
		"deploy/config.yaml":        configMap("settings", "", "1"),
	})
	listen := freeAddr(t)
	p := start(t, "synchronizer", s.syncArgs("tenant", s.tenantKubeconfig(t, ns), listen, "--namespace", ns, "--path", "deploy")...)
	waitHTTP(t, p, "http://"+listen+"/healthz")
	head, _ := s.git.Head(t.Context(), "tenant", "main")
	until(t, 30*time.Second, "the tenant's first commit applied", func() bool {
		st := getStatus(t, listen)
		return st.Status.Phase == "Ready" && st.Status.LastAppliedRevision == "main@sha1:"+head
	})
	if cmValue(t, s.cs, ns, "settings") != "1" {
		t.Fatal("object without a namespace did not land in the tenant's")
	}

	bad := s.commit(t, "tenant", map[string]string{
		"deploy/config.yaml": configMap("settings", "", "2") + "---\n" + configMap("theirs", other, "overwritten") +
			"---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: tenant-escalation}\n",
	})
	if code := push(t, listen); code != http.StatusAccepted {
		t.Fatalf("webhook answered %d", code)
	}
	until(t, 30*time.Second, "the bad commit refused", func() bool {
		st := getStatus(t, listen)
		return st.Status.Phase == "Stalled" && st.Status.Revision == "main@sha1:"+bad
	})
	st := getStatus(t, listen)
	if st.Status.Message != "" {
		t.Fatalf("/status showed the message without authentication: %q", st.Status.Message)
	}
	st.Status.Message = storedMessage(t, s.cs, ns, "main@sha1:"+bad)
	for _, want := range []string{
		"ConfigMap " + other + "/theirs: namespace \"" + other + "\" is outside this synchronizer's namespace \"" + ns + "\"",
		"ClusterRole.rbac.authorization.k8s.io tenant-escalation: cluster-scoped objects are not allowed in tenant mode",
	} {
		if !strings.Contains(st.Status.Message, want) {
			t.Fatalf("status message %q\nmissing %q", st.Status.Message, want)
		}
	}
	if st.Status.Reason != "ValidationFailed" || st.Status.LastAppliedRevision != "main@sha1:"+head {
		t.Fatalf("status %+v", st.Status)
	}
	if cmValue(t, s.cs, ns, "settings") != "1" || cmValue(t, s.cs, other, "theirs") != "untouched" {
		t.Fatal("part of the refused commit was applied")
	}
	// kubectl alone shows it: the status ConfigMap and a Warning Event.
	parent, err := s.cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "driftless", metav1.GetOptions{})
	if err != nil || parent.Data["phase"] != "Stalled" || parent.Data["reason"] != "ValidationFailed" || !strings.HasPrefix(parent.Labels["applyset.kubernetes.io/id"], "applyset-") {
		t.Fatalf("status ConfigMap: %v %v", parent, err)
	}
	until(t, 10*time.Second, "a ValidationFailed Event", func() bool {
		evs, _ := s.cs.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=driftless"})
		for _, e := range evs.Items {
			if e.Reason == "ValidationFailed" && e.Type == corev1.EventTypeWarning {
				return true
			}
		}
		return false
	})
	out, err := exec.Command(programs["synchronizer"], "status", "--kubeconfig", s.cluster.Kubeconfig, "--namespace", ns).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "phase         Stalled (ValidationFailed)") || !strings.Contains(string(out), "applied       main@sha1:"+head) {
		t.Fatalf("synchronizer status: %v\n%s", err, out)
	}

	good := s.commit(t, "tenant", map[string]string{"deploy/config.yaml": configMap("settings", "", "3")})
	push(t, listen)
	until(t, 30*time.Second, "the clean commit applied", func() bool {
		st := getStatus(t, listen)
		return st.Status.Phase == "Ready" && st.Status.LastAppliedRevision == "main@sha1:"+good
	})
	if cmValue(t, s.cs, ns, "settings") != "3" {
		t.Fatal("clean commit not applied")
	}
	if strings.Contains(p.Output(), syncGitToken) || strings.Contains(p.Output(), syncHookSecret) {
		t.Fatal("a secret reached the log")
	}
	if m := metric(t, "http://"+listen+"/metrics", `driftless_synchronizer_errors_total{reason="ValidationFailed"}`); m == "" {
		t.Fatal("no ValidationFailed error metric")
	}
}

// TestSynchronizerLeaderElectionAndDiff: two replicas, one applier; the
// diff command shows what a local change would do and exits 1.
func TestSynchronizerLeaderElectionAndDiff(t *testing.T) {
	s := newSyncSetup(t, nil)
	ns := s.cluster.Namespace(t)
	s.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "driftless-system"}}, metav1.CreateOptions{})
	files := map[string]string{
		"k/kustomization.yaml": "namespace: " + ns + "\nresources: [c.yaml, s.yaml]\n",
		"k/c.yaml":             configMap("app", "", "1"),
		"k/s.yaml":             "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: hunter2}\n",
	}
	s.seed(t, "fleet", files)
	l1, l2 := freeAddr(t), freeAddr(t)
	a := start(t, "synchronizer", s.syncArgs("fleet", s.cluster.Kubeconfig, l1, "--path", "k", "--leader-elect", "--identity", "a")...)
	b := start(t, "synchronizer", s.syncArgs("fleet", s.cluster.Kubeconfig, l2, "--path", "k", "--leader-elect", "--identity", "b")...)
	waitHTTP(t, a, "http://"+l1+"/healthz")
	waitHTTP(t, b, "http://"+l2+"/healthz")
	until(t, 60*time.Second, "one leader applied", func() bool {
		return getStatus(t, l1).Status.Phase == "Ready" || getStatus(t, l2).Status.Phase == "Ready"
	})
	leader, standby := l1, l2
	if !getStatus(t, l1).Leader {
		leader, standby = l2, l1
	}
	if getStatus(t, standby).Leader || getStatus(t, standby).Passes != 0 {
		t.Fatal("the standby replica ran passes")
	}
	if code := push(t, standby); code != http.StatusServiceUnavailable {
		t.Fatalf("standby answered the webhook with %d, want 503", code)
	}
	c := s.commit(t, "fleet", map[string]string{"k/c.yaml": configMap("app", "", "2")})
	push(t, leader)
	until(t, 30*time.Second, "the leader applied the commit", func() bool {
		return getStatus(t, leader).Status.LastAppliedRevision == "main@sha1:"+c
	})
	cm, _ := s.cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "app", metav1.GetOptions{})
	if len(cm.ManagedFields) != 1 || cm.ManagedFields[0].Manager != "driftless/driftless-system/driftless" {
		t.Fatalf("managers: %+v", cm.ManagedFields)
	}

	// diff: nothing to do, then a local change.
	checkout := writeTree(t, files)
	os.WriteFile(filepath.Join(checkout, "k/c.yaml"), []byte(configMap("app", "", "2")), 0o644)
	diff := func() (string, int) {
		cmd := exec.Command(programs["synchronizer"], "diff", "--kubeconfig", s.cluster.Kubeconfig, "--dir", checkout, "--path", "k")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	if out, code := diff(); code != 0 || !strings.Contains(out, "no differences") {
		t.Fatalf("diff of what is applied: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(checkout, "k/c.yaml"), []byte(configMap("app", "", "3")), 0o644)
	os.WriteFile(filepath.Join(checkout, "k/s.yaml"), []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: correct-horse}\n"), 0o644)
	out, code := diff()
	if code != 1 || !strings.Contains(out, `-  v: "2"`) || !strings.Contains(out, `+  v: "3"`) || !strings.Contains(out, "*** (after)") {
		t.Fatalf("diff of a change: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "correct-horse") || strings.Contains(out, "hunter2") || strings.Contains(out, "aHVudGVyMg") {
		t.Fatalf("diff showed a Secret value:\n%s", out)
	}
}

// TestTwoTenantsIsolated: two tenants, each with its own repository and
// synchronizer holding a namespaced Role only. Tenant A's repository adds
// an object in tenant B's namespace: A's whole commit is refused and
// reported, nothing of it is applied, B is untouched, and A stays at its
// last good commit until its next clean commit, which applies.
func TestTwoTenantsIsolated(t *testing.T) {
	s := newSyncSetup(t, nil)
	a, b := s.cluster.Namespace(t), s.cluster.Namespace(t)
	s.seed(t, "tenant-a", map[string]string{"deploy/app.yaml": configMap("app", "", "a1")})
	s.seed(t, "tenant-b", map[string]string{"deploy/app.yaml": configMap("app", "", "b1")})
	la, lb := freeAddr(t), freeAddr(t)
	pa := start(t, "synchronizer", s.syncArgs("tenant-a", s.tenantKubeconfig(t, a), la, "--namespace", a, "--path", "deploy")...)
	pb := start(t, "synchronizer", s.syncArgs("tenant-b", s.tenantKubeconfig(t, b), lb, "--namespace", b, "--path", "deploy")...)
	waitHTTP(t, pa, "http://"+la+"/healthz")
	waitHTTP(t, pb, "http://"+lb+"/healthz")
	goodA, _ := s.git.Head(t.Context(), "tenant-a", "main")
	goodB, _ := s.git.Head(t.Context(), "tenant-b", "main")
	until(t, 30*time.Second, "both tenants applied", func() bool {
		return getStatus(t, la).Status.LastAppliedRevision == "main@sha1:"+goodA && getStatus(t, lb).Status.LastAppliedRevision == "main@sha1:"+goodB
	})

	bad := s.commit(t, "tenant-a", map[string]string{
		"deploy/app.yaml": configMap("app", "", "a2") + "---\n" + configMap("app", b, "hijacked") + "---\n" + configMap("extra", b, "planted"),
	})
	push(t, la)
	until(t, 30*time.Second, "tenant A's commit refused", func() bool {
		st := getStatus(t, la).Status
		return st.Phase == "Stalled" && st.Revision == "main@sha1:"+bad
	})
	st := getStatus(t, la).Status
	st.Message = storedMessage(t, s.cs, a, "main@sha1:"+bad)
	if st.Reason != "ValidationFailed" || !strings.Contains(st.Message, "ConfigMap "+b+"/app: namespace \""+b+"\" is outside") ||
		!strings.Contains(st.Message, "ConfigMap "+b+"/extra") || st.LastAppliedRevision != "main@sha1:"+goodA {
		t.Fatalf("tenant A status: %+v", st)
	}
	if cmValue(t, s.cs, a, "app") != "a1" {
		t.Fatal("part of tenant A's refused commit was applied")
	}
	if cmValue(t, s.cs, b, "app") != "b1" || cmValue(t, s.cs, b, "extra") != "<none>" {
		t.Fatal("tenant B was touched")
	}
	if stB := getStatus(t, lb).Status; stB.Phase != "Ready" || stB.LastAppliedRevision != "main@sha1:"+goodB {
		t.Fatalf("tenant B status: %+v", stB)
	}

	clean := s.commit(t, "tenant-a", map[string]string{"deploy/app.yaml": configMap("app", "", "a3")})
	push(t, la)
	until(t, 30*time.Second, "tenant A's clean commit applied", func() bool {
		st := getStatus(t, la).Status
		return st.Phase == "Ready" && st.LastAppliedRevision == "main@sha1:"+clean
	})
	if cmValue(t, s.cs, a, "app") != "a3" || cmValue(t, s.cs, b, "app") != "b1" {
		t.Fatal("after the clean commit")
	}
}

// TestTenantOverlayRBACSuffices: manifests/overlays/tenant, applied with
// kubectl, gives the tenant's synchronizer everything it needs to apply a
// typical application in tenant-a, as its own ServiceAccount, and nothing
// that reaches outside.
func TestTenantOverlayRBACSuffices(t *testing.T) {
	s := newSyncSetup(t, nil)
	ctx := t.Context()
	overlay, _ := filepath.Abs(filepath.Join("..", "manifests", "overlays", "tenant"))
	if out, err := exec.CommandContext(ctx, kubectlPath(t), "--kubeconfig", s.cluster.Kubeconfig, "apply", "--server-side", "-k", overlay).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k overlays/tenant: %v\n%s", err, out)
	}
	// The overlay runs the tenant's synchronizer outside tenant-a, as this ServiceAccount.
	cfg, err := s.cluster.ServiceAccountConfig(ctx, "driftless-tenants", "driftless-synchronizer-tenant-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(s.dir, "tenant-a.kubeconfig")
	if err := testenv.WriteKubeconfig(kubeconfig, cfg); err != nil {
		t.Fatal(err)
	}
	s.seed(t, "tenant-a", map[string]string{
		"deploy/kustomization.yaml": "resources: [app.yaml]\n",
		"deploy/app.yaml": configMap("settings", "", "1") + `---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: web
          image: web:1
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`,
	})
	listen := freeAddr(t)
	p := start(t, "synchronizer", s.syncArgs("tenant-a", kubeconfig, listen, "--namespace", "tenant-a", "--path", "deploy", "--leader-elect", "--identity", "t")...)
	waitHTTP(t, p, "http://"+listen+"/healthz")
	until(t, 60*time.Second, "the tenant's application applied and healthy", func() bool {
		return getStatus(t, listen).Status.Phase == "Ready"
	})
	d, err := s.cs.AppsV1().Deployments("tenant-a").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || d.Status.AvailableReplicas != 1 {
		t.Fatalf("tenant web: %v %v", d.Status, err)
	}
	// The ServiceAccount really cannot reach outside tenant-a.
	tcs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := tcs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("tenant ServiceAccount listing default: %v, want Forbidden", err)
	}
	if _, err := tcs.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("tenant ServiceAccount listing ClusterRoles: %v, want Forbidden", err)
	}
}

// TestSynchronizerRedactsURLCredentials: a token in the repository URL
// works, and never reaches the log or the status.
func TestSynchronizerRedactsURLCredentials(t *testing.T) {
	s := newSyncSetup(t, nil)
	ns := s.cluster.Namespace(t)
	s.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "driftless-system"}}, metav1.CreateOptions{})
	s.seed(t, "fleet", map[string]string{"k/c.yaml": configMap("c", ns, "1")})
	withCreds := strings.Replace(s.git.RepoURL("fleet"), "http://", "http://sync:"+syncGitToken+"@", 1)
	listen := freeAddr(t)
	p := start(t, "synchronizer", "run", "--repo-url", withCreds, "--path", "k", "--kubeconfig", s.cluster.Kubeconfig,
		"--listen", listen, "--log-format", "json", "--interval", "1h")
	waitHTTP(t, p, "http://"+listen+"/healthz")
	until(t, 30*time.Second, "applied", func() bool { return getStatus(t, listen).Status.Phase == "Ready" })
	resp, err := http.Get("http://" + listen + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if strings.Contains(p.Output(), syncGitToken) || strings.Contains(body.String(), syncGitToken) {
		t.Fatalf("the token in the URL leaked:\n%s\n%s", p.Output(), body.String())
	}
	if !strings.Contains(p.Output(), "***@") {
		t.Fatal("the start-up log does not show the redacted repository")
	}
}
