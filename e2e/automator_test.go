package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"driftless.dev/shared/testenv"
)

const (
	gitToken   = "git-t0ken-e2e"
	hookSecret = "hook-s3cret-e2e"
)

// automatorSetup is a registry that notifies the automator's webhook, and
// a Git repository with a policy and a marked Deployment.
type automatorSetup struct {
	reg    *testenv.Registry
	git    *testenv.GitServer
	listen []string
	dir    string
}

func newAutomatorSetup(t testing.TB, replicas int, interval string) *automatorSetup {
	t.Helper()
	s := &automatorSetup{dir: t.TempDir()}
	for range replicas {
		s.listen = append(s.listen, freeAddr(t))
	}
	// The registry notifies the first replica; a standby answers 503 and
	// the registry retries, as in a cluster behind a Service.
	s.reg = testenv.NewRegistry(t, testenv.RegistryOptions{
		NotifyURL:     "http://" + s.listen[0] + "/hooks/registry",
		NotifyHeaders: map[string]string{"Authorization": "Bearer " + hookSecret},
	})
	s.git = testenv.NewGitServer(t, testenv.GitServerOptions{Auth: &testenv.BasicAuth{Username: "bot", Password: gitToken}})
	if _, err := s.reg.PushImages(t.Context(), "team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	src := writeTree(t, map[string]string{
		"policies/web.yaml": fmt.Sprintf(`apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: web, namespace: apps}
spec:
  image: %s/team/web
  interval: %s
  policy:
    semver: {range: "^1.0.0"}
`, s.reg.Host, interval),
		"apps/web/deploy.yaml": fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: %s/team/web:1.0.0 # {\"$imagepolicy\": \"apps:web\"}\n", s.reg.Host),
	})
	if _, err := s.git.Seed(t.Context(), "fleet", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.dir, "git-token"), []byte(gitToken), 0o600)
	os.WriteFile(filepath.Join(s.dir, "hook-secret"), []byte(hookSecret), 0o600)
	return s
}

func (s *automatorSetup) args(i int, extra ...string) []string {
	return append([]string{"run",
		"--git-url", s.git.RepoURL("fleet"), "--git-username", "bot", "--git-password-file", filepath.Join(s.dir, "git-token"),
		"--workdir", filepath.Join(s.dir, fmt.Sprintf("clone-%d", i)), "--policy-path", "policies",
		"--listen", s.listen[i], "--webhook-secret-file", filepath.Join(s.dir, "hook-secret"),
		"--log-format", "json", "--log-level", "debug", "--refresh", "1s",
		"--insecure-registries", s.reg.Host,
	}, extra...)
}

func (s *automatorSetup) deployed(t testing.TB) string {
	t.Helper()
	out, err := s.git.Git(t.Context(), "fleet", "show", "main:apps/web/deploy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *automatorSetup) commits(t testing.TB) int {
	t.Helper()
	out, _ := s.git.Git(t.Context(), "fleet", "rev-list", "--count", "main")
	var n int
	fmt.Sscan(out, &n)
	return n
}

// TestAutomatorWebhookToCommit: the real binary; a tag pushed to the
// registry becomes one pushed commit, through the registry's notification,
// long before the policy's hour-long interval.
func TestAutomatorWebhookToCommit(t *testing.T) {
	s := newAutomatorSetup(t, 1, "1h")
	a := start(t, "automator", s.args(0)...)
	waitHTTP(t, a, "http://"+s.listen[0]+"/readyz")
	until(t, 30*time.Second, "the first pass", func() bool {
		return strings.Contains(metric(t, "http://"+s.listen[0]+"/metrics", "driftless_automator_passes_total"), "driftless_automator_passes_total")
	})
	if s.commits(t) != 1 {
		t.Fatalf("a commit with nothing new to deploy")
	}
	pushed := time.Now()
	if _, err := s.reg.PushImages(t.Context(), "team/web", "1.1.0", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	until(t, 30*time.Second, "the bump commit", func() bool { return strings.Contains(s.deployed(t), "/team/web:1.1.0 #") })
	t.Logf("tag pushed -> bump commit pushed: %s", time.Since(pushed).Round(time.Millisecond))
	msg, _ := s.git.Git(t.Context(), "fleet", "log", "-1", "--format=%an <%ae>%n%B", "main")
	for _, want := range []string{"Driftless Automator <automator@driftless.dev>", "- apps:web: " + s.reg.Host + "/team/web:1.0.0 -> " + s.reg.Host + "/team/web:1.1.0", "Driftless-Policy: apps:web"} {
		if !strings.Contains(msg, want) {
			t.Errorf("commit lacks %q:\n%s", want, msg)
		}
	}
	until(t, 10*time.Second, "the updates metric", func() bool {
		return strings.Contains(metric(t, "http://"+s.listen[0]+"/metrics", "driftless_automator_updates_total"), `policy="apps:web"} 1`)
	})
	if s.commits(t) != 2 {
		t.Fatalf("%d commits, want the seed and one bump", s.commits(t))
	}
	out := a.Output()
	for _, secret := range []string{gitToken, hookSecret} {
		if strings.Contains(out, secret) {
			t.Fatalf("the automator's log shows a secret")
		}
	}
}

// TestTwoAutomatorReplicasOneCommit: two real processes with leader
// election on a real cluster's Lease; one bump makes exactly one commit.
func TestTwoAutomatorReplicasOneCommit(t *testing.T) {
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{})
	ns := cluster.Namespace(t)
	s := newAutomatorSetup(t, 2, "2s")
	var reps []*proc
	for i := range 2 {
		reps = append(reps, start(t, "automator", s.args(i, "--leader-elect", "--kubeconfig", cluster.Kubeconfig,
			"--lease-namespace", ns, "--identity", fmt.Sprintf("replica-%d", i))...))
	}
	for i, r := range reps {
		waitHTTP(t, r, "http://"+s.listen[i]+"/healthz")
	}
	if _, err := s.reg.PushImages(t.Context(), "team/web", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	until(t, 60*time.Second, "the bump commit", func() bool { return strings.Contains(s.deployed(t), "/team/web:1.1.0 #") })
	leader := -1
	for i, r := range reps {
		if strings.Contains(r.Output(), "became leader") {
			if leader >= 0 {
				t.Fatal("both replicas became leader")
			}
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no replica became leader, yet a commit was made")
	}
	// Give the standby every chance to commit too: wait until the leader
	// has made two more passes (2s apart) that found nothing to do.
	url := func(i int) string { return "http://" + s.listen[i] + "/metrics" }
	unchanged := func() float64 {
		return metricValue(t, url(leader), `driftless_automator_passes_total{result="unchanged"}`)
	}
	after := unchanged()
	until(t, 30*time.Second, "two more passes of the leader", func() bool { return unchanged() >= after+2 })
	if n := s.commits(t); n != 2 {
		t.Fatalf("%d commits, want the seed and exactly one bump", n)
	}
	if got := metric(t, url(1-leader), "driftless_automator_passes_total"); got != "" {
		t.Fatalf("the standby ran passes: %s", got)
	}
}

// metricValue is the value of the sample named exactly name (with its
// labels), 0 when absent.
func metricValue(t testing.TB, url, name string) float64 {
	t.Helper()
	line := metric(t, url, name+" ")
	var v float64
	fmt.Sscan(strings.TrimPrefix(line, name+" "), &v)
	return v
}
