package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The helpers below start a component for one test, fail the test loudly
// (never skip) when it cannot start, stop it when the test ends, and print
// the component's log tail when the test failed.

// NewCluster starts a cluster for t.
func NewCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := StartCluster(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the test cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs:\n%s", c.LogTails())
		}
		c.Stop()
	})
	return c
}

// NewRegistry starts a registry for t.
func NewRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	r, err := StartRegistry(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the test registry: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registry log:\n%s", r.LogTail())
		}
		r.Stop()
	})
	return r
}

// NewGitServer starts a Git server for t.
func NewGitServer(t testing.TB, opts GitServerOptions) *GitServer {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	g, err := StartGitServer(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the test Git server: %v", err)
	}
	t.Cleanup(g.Stop)
	return g
}

// Namespace creates a namespace of its own for t in the cluster and
// deletes it when the test ends, so tests sharing a cluster never collide.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	ns, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: strings.Trim(name, "-") + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// MainCluster starts one cluster for a whole test package, stores it in
// *c, runs the tests and stops it. A package's TestMain is
//
//	func TestMain(m *testing.M) { os.Exit(testenv.MainCluster(m, &cluster)) }
//
// A cluster that cannot start fails the package loudly; it never skips.
// Its data stays in a temporary folder when a test failed, for the logs.
func MainCluster(m *testing.M, c **Cluster) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	dir, err := os.MkdirTemp("", "driftless-test-cluster-")
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "make the cluster's folder:", err)
		return 1
	}
	cl, err := StartCluster(ctx, ClusterOptions{Dir: dir, Nodes: 1})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the test cluster:", err)
		return 1
	}
	*c = cl
	code := m.Run()
	cl.Stop()
	if code == 0 {
		os.RemoveAll(dir)
	}
	return code
}
