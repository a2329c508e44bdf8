package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/logging"
	"driftless.dev/shared/testenv"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	// The program routes klog into its logger once per process; do it
	// before any client runs, as main does.
	if _, err := logging.New("json", "error"); err != nil {
		panic(err)
	}
	os.Exit(testenv.MainCluster(m, &cluster))
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if body == "" {
			os.Remove(p)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// diff answers from the plan a pass executes: it previews a new
// Namespace with its content, says a pass would refuse an empty render,
// and says a Namespace that leaves Git is kept, not pruned. Exit codes:
// 0 no difference, 1 differs, 2 refused or failed.
func TestDiffAgreesWithThePass(t *testing.T) {
	ctx := t.Context()
	ns := cluster.Namespace(t)
	newNS := ns + "-new"
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	t.Cleanup(func() { cs.CoreV1().Namespaces().Delete(ctx, newNS, metav1.DeleteOptions{}) })
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "driftless-system"}}, metav1.CreateOptions{})
	files := map[string]string{
		"k/kustomization.yaml": "resources: [ns.yaml, cm.yaml]\n",
		"k/ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + newNS + "}\n",
		"k/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: " + newNS + "}\ndata: {v: \"1\"}\n",
	}
	src := t.TempDir()
	writeFiles(t, src, files)
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	if _, err := git.Seed(ctx, "fleet", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	name := "diff-" + ns
	common := []string{"--kubeconfig", cluster.Kubeconfig, "--name", name}
	diff := func() (string, int) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"diff", "--dir", src, "--path", "k"}, common...), noEnv, &out, &out)
		if err != nil {
			out.WriteString("\n" + err.Error())
		}
		return out.String(), exitCode(err)
	}
	// Before anything is applied: the new Namespace and its ConfigMap are
	// both previewed (a dry run cannot create into a missing namespace;
	// the plan's stand-in can).
	out, code := diff()
	if code != 1 || !strings.Contains(out, "ConfigMap "+newNS+"/app (from Git)") || !strings.Contains(out, "Namespace "+newNS+" (from Git)") || strings.Contains(out, "not found") {
		t.Fatalf("preview of a new namespace: exit %d\n%s", code, out)
	}
	var once bytes.Buffer
	if err := run(ctx, append([]string{"run", "--once", "--repo-url", git.RepoURL("fleet"), "--path", "k", "--checkout-dir", t.TempDir()}, common...), noEnv, &once, &once); err != nil {
		t.Fatalf("run --once: %v\n%s", err, once.String())
	}
	if out, code := diff(); code != 0 || !strings.Contains(out, "no differences") {
		t.Fatalf("diff of what is applied: exit %d\n%s", code, out)
	}
	// The Namespace leaves Git: a pass keeps it (a protected kind).
	writeFiles(t, src, map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\n", "k/ns.yaml": ""})
	out, code = diff()
	if code != 1 || !strings.Contains(out, "Namespace "+newNS+" (kept, no longer managed)") || !strings.Contains(out, "driftless.dev/prune: enabled") || strings.Contains(out, "(pruned:") {
		t.Fatalf("diff of a removed Namespace: exit %d\n%s", code, out)
	}
	// An empty render: a pass refuses it, and so does diff.
	writeFiles(t, src, map[string]string{"k/kustomization.yaml": "resources: []\n"})
	out, code = diff()
	if code != 2 || !strings.Contains(out, "would be refused") || !strings.Contains(out, "renders no objects") || strings.Contains(out, "(pruned:") {
		t.Fatalf("diff of an empty render: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "error:") {
		t.Fatalf("an ordinary outcome printed as an error:\n%s", out)
	}
}

// TestDefaultCheckoutIsRemovedAtExit: without --checkout-dir the clone is
// the process's scratch under the temp dir, and it goes when the process
// ends (each run by hand or by a test left a whole clone behind).
func TestDefaultCheckoutIsRemovedAtExit(t *testing.T) {
	ctx := t.Context()
	ns := cluster.Namespace(t)
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"k/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: " + ns + "}\ndata: {v: \"1\"}\n"})
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	if _, err := git.Seed(ctx, "fleet", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "driftless-system"}}, metav1.CreateOptions{})
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out bytes.Buffer
	args := []string{"run", "--once", "--repo-url", git.RepoURL("fleet"), "--path", "k", "--kubeconfig", cluster.Kubeconfig, "--name", "scratch-" + ns}
	if err := run(ctx, args, noEnv, &out, &out); err != nil {
		t.Fatalf("run --once: %v\n%s", err, out.String())
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "app", metav1.GetOptions{}); err != nil {
		t.Fatalf("the pass did not apply: %v\n%s", err, out.String())
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left in the temp dir after exit: %s", e.Name())
	}
}
