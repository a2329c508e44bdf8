package gitrepo_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

var author = gitrepo.Signature{Name: "Driftless", Email: "bot@driftless.dev"}

func seeded(t *testing.T, auth *testenv.BasicAuth) (*testenv.GitServer, string) {
	t.Helper()
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{Auth: auth})
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "app.yaml"), []byte("image: app:1.0.0\n"), 0o644)
	if _, err := srv.Seed(t.Context(), "fleet", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	return srv, srv.RepoURL("fleet")
}

func TestCommitPushAndRejection(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "bot", Password: "tok3n"}
	srv, url := seeded(t, auth)
	ctx := t.Context()
	creds := gitrepo.Auth{Username: auth.Username, Password: auth.Password}
	a, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "a"), url, "main", creds)
	if err != nil {
		t.Fatal(err)
	}
	b, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "b"), url, "main", creds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit("nothing", author, nil); !errors.Is(err, gitrepo.ErrNoChange) {
		t.Fatalf("commit of a clean tree: got %v, want ErrNoChange", err)
	}
	// b pushes first; a's push must be rejected, not forced.
	os.WriteFile(filepath.Join(b.Dir(), "other.yaml"), []byte("x: 1\n"), 0o644)
	bHash, err := b.Commit("other writer", author, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(a.Dir(), "app.yaml"), []byte("image: app:1.1.0\n"), 0o644)
	if _, err := a.Commit("bump", author, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, "main"); !errors.Is(err, gitrepo.ErrRejected) {
		t.Fatalf("push behind the remote: got %v, want ErrRejected", err)
	}
	if head, _ := srv.Head(ctx, "fleet", "main"); head != bHash.String() {
		t.Fatalf("remote main = %s, want b's commit %s (a must not force)", head, bHash)
	}
	// Redo on the new tip: both commits survive.
	tip, err := a.Sync(ctx)
	if err != nil || tip != bHash {
		t.Fatalf("sync: %s %v", tip, err)
	}
	os.WriteFile(filepath.Join(a.Dir(), "app.yaml"), []byte("image: app:1.1.0\n"), 0o644)
	aHash, err := a.Commit("bump", author, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	log, _ := srv.Git(ctx, "fleet", "log", "--format=%H", "main")
	if !strings.HasPrefix(log, aHash.String()+"\n"+bHash.String()+"\n") {
		t.Fatalf("history:\n%s\nwant %s then %s", log, aHash, bHash)
	}
	// A warm clone is reused, not cloned again.
	again, err := gitrepo.Open(ctx, a.Dir(), url, "main", creds)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := head(again); h != aHash {
		t.Fatalf("reopened head %s, want %s", h, aHash)
	}
}

func TestAuthFailureSaysSoWithoutTheSecret(t *testing.T) {
	_, url := seeded(t, &testenv.BasicAuth{Username: "bot", Password: "right"})
	_, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "c"), url, "main", gitrepo.Auth{Username: "bot", Password: "wrong-secret"})
	if !errors.Is(err, gitrepo.ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if s := (gitrepo.Auth{Username: "bot", Password: "wrong-secret"}).String(); strings.Contains(s, "wrong-secret") {
		t.Fatalf("Auth.String leaks the password: %s", s)
	}
}

func TestMissingBranchIsAClearError(t *testing.T) {
	_, url := seeded(t, nil)
	_, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "d"), url, "nope", gitrepo.Auth{})
	if err == nil || !strings.Contains(err.Error(), "branch nope") {
		t.Fatalf("got %v, want an error naming the branch", err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:tok@github.com/org/repo.git": "https://***@github.com/org/repo.git",
		"clone http://x@h/r failed":                "clone http://***@h/r failed",
		"https://github.com/org/repo":              "https://github.com/org/repo",
	} {
		if got := gitrepo.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOverSSH(t *testing.T) {
	srv, _ := seeded(t, nil)
	access, err := srv.EnableSSH(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	creds := gitrepo.Auth{SSHKeyFile: access.KeyFile, SSHKnownHosts: access.KnownHosts}
	r, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "ssh"), access.URL("fleet"), "main", creds)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.Dir(), "app.yaml"), []byte("image: app:2.0.0\n"), 0o644)
	h, err := r.Commit("over ssh", author, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if head, _ := srv.Head(ctx, "fleet", "main"); head != h.String() {
		t.Fatalf("server main %s, pushed %s", head, h)
	}
	// A server whose key is not in known_hosts is refused.
	os.WriteFile(access.KnownHosts, []byte("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o600)
	_, err = gitrepo.Open(ctx, filepath.Join(t.TempDir(), "ssh2"), access.URL("fleet"), "main", creds)
	if err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("unknown host key: got %v, want a refusal", err)
	}
}
