package testenv_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"driftless.dev/shared/testenv"
)

// TestFaultProxy puts the proxy in front of the real registry and switches
// each fault on and off: a client sees exactly that fault, only on the
// requests it matches, and a healthy server again once it is cleared.
func TestFaultProxy(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	p, err := testenv.StartFaultProxy(reg.URL, testenv.FaultProxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (*http.Response, error) {
		resp, err := client.Get(p.URL + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	healthy := func(t *testing.T) {
		t.Helper()
		if resp, err := get("/v2/"); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("healthy: %v %v", resp, err)
		}
	}
	healthy(t)
	for _, code := range []int{429, 500, 503} {
		p.Set(testenv.Fault{Status: code})
		resp, err := get("/v2/")
		if err != nil || resp.StatusCode != code {
			t.Fatalf("fault %d: %v %v", code, resp, err)
		}
		if ra := resp.Header.Get("Retry-After"); (code != 500) != (ra == "1") {
			t.Fatalf("fault %d: Retry-After %q", code, ra)
		}
	}
	// A fault limited to some requests leaves the others alone.
	p.Set(testenv.Fault{Status: 503, Match: func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/tags/list") }})
	healthy(t)
	if resp, err := get("/v2/team/web/tags/list"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("matched request: %v %v", resp, err)
	}
	p.Set(testenv.Fault{Latency: 300 * time.Millisecond})
	t0 := time.Now()
	healthy(t)
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Fatalf("slow: answered after %s", d)
	}
	p.Set(testenv.Fault{Drop: true})
	if resp, err := get("/v2/"); err == nil {
		t.Fatalf("drop: got an answer %d", resp.StatusCode)
	}
	p.Set(testenv.Fault{Down: true})
	if _, err := get("/v2/"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("down: %v, want connection refused", err)
	}
	if err := p.Set(testenv.Fault{}); err != nil {
		t.Fatal(err)
	}
	healthy(t)
	if p.Faulted() < 6 || p.Total() <= p.Faulted() {
		t.Fatalf("counted %d faulted of %d", p.Faulted(), p.Total())
	}
}

// TestFaultProxyCarriesGit: a clone and a push pass a healthy proxy in
// front of the real Git server, and fail while it drops connections.
func TestFaultProxyCarriesGit(t *testing.T) {
	g := testenv.NewGitServer(t, testenv.GitServerOptions{})
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a.yaml"), []byte("a: 1\n"), 0o644)
	if _, err := g.Seed(t.Context(), "fleet", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	p, err := testenv.StartFaultProxy(g.URL, testenv.FaultProxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	dir := filepath.Join(t.TempDir(), "c")
	git := func(args ...string) error {
		cmd := exec.CommandContext(t.Context(), "git", args...)
		cmd.Dir = filepath.Dir(dir)
		if _, err := os.Stat(dir); err == nil {
			cmd.Dir = dir
		}
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@x", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@x")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	if err := git("clone", "-q", p.URL+"/fleet.git", dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("b: 1\n"), 0o644)
	if err := git("add", "-A"); err != nil {
		t.Fatal(err)
	}
	if err := git("commit", "-qm", "b"); err != nil {
		t.Fatal(err)
	}
	p.Set(testenv.Fault{Drop: true})
	if err := git("push", "-q", "origin", "main"); err == nil {
		t.Fatal("push through a dropping proxy succeeded")
	}
	p.Set(testenv.Fault{})
	if err := git("push", "-q", "origin", "main"); err != nil {
		t.Fatal(err)
	}
}
