package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The bad-input census (make reliability) counts the subtests of every
// TestBadInput* test in the tree; these are the ones only the real
// programs can show: flags, kustomizations and plain folders, objects.

// runProgram runs a built program and returns its exit code and output.
func runProgram(t *testing.T, program string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), programs[program], args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run %s: %v", program, err)
	}
	return 0, string(out)
}

// TestBadInputFlags: each bad flag value makes the program exit non-zero
// at once with a message naming the flag and what it wants, before it
// writes anything (no clone, no checkout).
func TestBadInputFlags(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600)
	anchor := strings.Repeat("a", 40)
	for _, tc := range []struct {
		name, program string
		args          []string
		want          []string
	}{
		{"automator without --git-url", "automator", []string{"--git-url", ""}, []string{"--git-url (DRIFTLESS_GIT_URL) is required"}},
		{"automator --git-url of another scheme", "automator", []string{"--git-url", "ftp://git.example.com/fleet.git"}, []string{`--git-url "ftp://git.example.com/fleet.git": want an https://, http:// or ssh:// URL`}},
		{"automator --refresh 0s", "automator", []string{"--refresh", "0s"}, []string{"--refresh 0s: at least 1s"}},
		{"automator --pass-timeout 0s", "automator", []string{"--pass-timeout", "0s"}, []string{"--pass-timeout 0s: at least 1s"}},
		{"automator empty --webhook-secret-file", "automator", []string{"--webhook-secret-file", empty}, []string{"--webhook-secret-file " + empty + " is empty"}},
		{"automator two webhook secrets", "automator", []string{"--webhook-secret", "x", "--webhook-secret-file", empty}, []string{"--webhook-secret and --webhook-secret-file: set one"}},
		{"automator --aws-allowed-accounts not an account", "automator", []string{"--aws", "--aws-allowed-accounts", "12"}, []string{`--aws-allowed-accounts "12": want a 12-digit AWS account id`}},
		{"automator --registry-rps negative", "automator", []string{"--registry-rps", "-1"}, []string{"--registry-rps must not be negative"}},
		{"automator --git-ssh-key without known hosts", "automator", []string{"--git-ssh-key", empty}, []string{"--git-ssh-key needs --git-known-hosts"}},
		{"automator --verify-anchor not a hash", "automator", []string{"--verify-anchor", "abc"}, []string{`--verify-anchor "abc": want a full 40-character commit hash`, "--verify-anchor needs --verify-keyring"}},
		{"automator --log-format unknown", "automator", []string{"--log-format", "yaml"}, []string{`--log-format: "yaml": want json or console`}},
		{"automator --listen without a port", "automator", []string{"--listen", "nope"}, []string{"--listen nope"}},
		{"synchronizer without --repo-url", "synchronizer", []string{"--repo-url", ""}, []string{"--repo-url (DRIFTLESS_REPO_URL) is required"}},
		{"synchronizer --repo-url of another scheme", "synchronizer", []string{"--repo-url", "ftp://git.example.com/fleet.git"}, []string{`--repo-url "ftp://git.example.com/fleet.git": want an https://, http:// or ssh:// URL`}},
		{"synchronizer --branch and --tag", "synchronizer", []string{"--branch", "dev", "--tag", "v1"}, []string{`--branch "dev" and --tag "v1": follow one`}},
		{"synchronizer --commit not a hash", "synchronizer", []string{"--commit", "abc"}, []string{`commit "abc" is not a full 40-character hash`}},
		{"synchronizer --path out of the repository", "synchronizer", []string{"--path", "../other"}, []string{`--path "../other": want a folder inside the repository`}},
		{"synchronizer --namespace not a name", "synchronizer", []string{"--namespace", "Team_A"}, []string{`--namespace "Team_A": not a namespace name`}},
		{"synchronizer --interval 0s", "synchronizer", []string{"--interval", "0s"}, []string{"--interval 0s: at least 1s"}},
		{"synchronizer --max-prune negative", "synchronizer", []string{"--max-prune", "-1"}, []string{"--max-prune -1: 0 (no limit) or more"}},
		{"synchronizer --concurrency 0", "synchronizer", []string{"--concurrency", "0"}, []string{"--concurrency 0: at least 1"}},
		{"synchronizer --pass-timeout 0s", "synchronizer", []string{"--pass-timeout", "0s"}, []string{"--pass-timeout 0s: at least 1s"}},
		{"synchronizer empty --webhook-secret-file", "synchronizer", []string{"--webhook-secret-file", empty}, []string{"--webhook-secret-file " + empty + " is empty"}},
		{"synchronizer --service-account of three parts", "synchronizer", []string{"--service-account", "a/b/c"}, []string{`--service-account "a/b/c": want "name" or "namespace/name"`}},
		{"synchronizer --verify-anchor without a keyring", "synchronizer", []string{"--verify-anchor", anchor}, []string{"a trust anchor needs a keyring"}},
		{"synchronizer --git-ssh-key without known hosts", "synchronizer", []string{"--git-ssh-key", empty}, []string{"--git-ssh-key needs --git-known-hosts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			var args []string
			if tc.program == "automator" {
				args = []string{"run", "--git-url", "http://127.0.0.1:1/fleet.git", "--workdir", state, "--listen", "127.0.0.1:0"}
			} else {
				args = []string{"run", "--repo-url", "http://127.0.0.1:1/fleet.git", "--checkout-dir", state, "--kubeconfig", kubeconfig, "--listen", "127.0.0.1:0"}
			}
			code, out := runProgram(t, tc.program, append(args, tc.args...)...)
			if code == 0 {
				t.Fatalf("exit 0:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Fatalf("%s wrote %s before refusing its flags", tc.program, state)
			}
		})
	}
}

// TestBadInputKustomizations: each folder the builder cannot render is an
// error naming the file (and field) and why, from `synchronizer build`,
// the pass's own build; nothing is printed for the objects that did
// render.
func TestBadInputKustomizations(t *testing.T) {
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\ndata: {a: \"1\"}\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"a missing resource", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml, missing.yaml]\n", "k/cm.yaml": cm}, []string{"missing.yaml", "does not exist in the checkout"}},
		{"a resource out of the checkout", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml, ../../../etc/passwd]\n", "k/cm.yaml": cm}, []string{"k/kustomization.yaml: resources[1]", "escapes the checkout"}},
		{"an absolute resource", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml, /etc/passwd]\n", "k/cm.yaml": cm}, []string{"k/kustomization.yaml: resources[1]"}},
		{"a remote base", map[string]string{"k/kustomization.yaml": "resources:\n- cm.yaml\n- https://github.com/org/repo//base?ref=v1\n", "k/cm.yaml": cm}, []string{"k/kustomization.yaml: resources[1]"}},
		{"a link out of the checkout", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml, link.yaml]\n", "k/cm.yaml": cm, "k/link.yaml": "->/etc/hostname"}, []string{"link.yaml"}},
		{"a kustomization that is not YAML", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml\n", "k/cm.yaml": cm}, []string{"invalid Kustomization", "line 1"}},
		{"an unknown kustomization field", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\nresourcez: [x.yaml]\n", "k/cm.yaml": cm}, []string{"resourcez"}},
		{"a resource that is not YAML", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml, bad.yaml]\n", "k/cm.yaml": cm, "k/bad.yaml": "kind: ConfigMap\nmetadata: {name: [\n"}, []string{"bad.yaml"}},
		{"an object without a kind", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml, bad.yaml]\n", "k/cm.yaml": cm, "k/bad.yaml": "apiVersion: v1\nmetadata: {name: x}\n"}, []string{"bad.yaml", "kind"}},
		{"the same object twice", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml, again.yaml]\n", "k/cm.yaml": cm, "k/again.yaml": cm}, []string{"good"}},
		{"a patch file that is missing", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: nope.yaml\n", "k/cm.yaml": cm}, []string{"nope.yaml"}},
		{"a generator reading a missing file", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\nconfigMapGenerator:\n- name: gen\n  files: [nope.properties]\n", "k/cm.yaml": cm}, []string{"nope.properties"}},
		{"a plain folder with a file that is not YAML", map[string]string{"k/cm.yaml": cm, "k/bad.yaml": "kind: ConfigMap\nmetadata: {name: [\n"}, []string{"bad.yaml"}},
		{"a plain folder with a list at the top", map[string]string{"k/cm.yaml": cm, "k/list.yaml": "- a\n- b\n"}, []string{"list.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, body := range tc.files {
				p := filepath.Join(root, rel)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if target, ok := strings.CutPrefix(body, "->"); ok {
					if err := os.Symlink(target, p); err != nil {
						t.Fatal(err)
					}
					continue
				}
				os.WriteFile(p, []byte(body), 0o644)
			}
			cmd := exec.CommandContext(t.Context(), programs["synchronizer"], "build", "--dir", root, "--path", "k")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatalf("rendered:\n%s", stdout.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("error lacks %q:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), root) {
				t.Errorf("error shows the machine path %s:\n%s", root, stderr.String())
			}
			if stdout.Len() > 0 {
				t.Fatalf("printed objects of a render that failed:\n%s", stdout.String())
			}
		})
	}
}

// TestBadInputObjects: a commit with one object the API server refuses
// among good ones applies nothing: `synchronizer run --once` fails, the
// status says ValidationFailed naming the object and the server's reason,
// and none of the commit's objects exist.
func TestBadInputObjects(t *testing.T) {
	s := newSyncSetup(t, nil)
	s.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "driftless-system"}}, metav1.CreateOptions{})
	good := func(ns string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good, namespace: " + ns + "}\ndata: {a: \"1\"}\n"
	}
	for _, tc := range []struct {
		name, bad string
		tenant    bool
		want      []string
	}{
		{"an unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: NS}\n", false, []string{"Widget", "w"}},
		{"a field of the wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: NS}\nspec:\n  replicas: two\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n", false, []string{"Deployment", "web", "replicas"}},
		{"a name the API refuses", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_A_Name, namespace: NS}\n", false, []string{"ConfigMap", "Not_A_Name"}},
		{"a Service without ports", "apiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: NS}\nspec: {selector: {app: web}}\n", false, []string{"Service", "svc", "ports"}},
		{"a Deployment whose selector misses its labels", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: NS}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: other}}\n    spec: {containers: [{name: web, image: nginx}]}\n", false, []string{"Deployment", "web", "selector"}},
		{"the synchronizer's own status ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME, namespace: driftless-system}\ndata: {phase: Ready}\n", false, []string{"driftless-system/NAME"}},
		{"an object in another namespace, in tenant mode", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: theirs, namespace: default}\n", true, []string{"ConfigMap default/theirs", "outside this synchronizer's namespace"}},
		{"a cluster-scoped object, in tenant mode", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: escalate}\n", true, []string{"ClusterRole.rbac.authorization.k8s.io escalate", "cluster-scoped objects are not allowed in tenant mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := s.cluster.Namespace(t)
			repo := "bad-" + strings.ToLower(strings.NewReplacer(" ", "-", ",", "", "'", "").Replace(tc.name))
			name := strings.TrimRight(repo[:min(len(repo), 40)], "-")
			bad := strings.NewReplacer("NS", ns, "NAME", name).Replace(tc.bad)
			if _, err := s.git.Seed(t.Context(), repo, "main", writeTree(t, map[string]string{
				"deploy/good.yaml": good(ns), "deploy/bad.yaml": bad,
			}), "a commit with one bad object"); err != nil {
				t.Fatal(err)
			}
			kubeconfig, statusNS := s.cluster.Kubeconfig, "driftless-system"
			extra := []string{"--path", "deploy", "--once", "--name", name}
			if tc.tenant {
				kubeconfig, statusNS = s.tenantKubeconfig(t, ns), ns
				extra = append(extra, "--namespace", ns)
			}
			args := s.syncArgs(repo, kubeconfig, "127.0.0.1:0", extra...)
			code, out := runProgram(t, "synchronizer", args...)
			if code == 0 {
				t.Fatalf("run --once succeeded:\n%s", out)
			}
			cm, err := s.cs.CoreV1().ConfigMaps(statusNS).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("status: %v\n%s", err, out)
			}
			if cm.Data["reason"] != "ValidationFailed" || cm.Data["lastAppliedRevision"] != "" {
				t.Fatalf("status %v", cm.Data)
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "NAME", name)
				if !strings.Contains(cm.Data["message"], w) {
					t.Errorf("status message lacks %q:\n%s", w, cm.Data["message"])
				}
			}
			if _, err := s.cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "good", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Fatalf("the good object of the refused commit was applied (%v)", err)
			}
		})
	}
}
