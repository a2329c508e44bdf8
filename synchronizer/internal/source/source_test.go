package source_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
	"driftless.dev/synchronizer/internal/source"
)

var author = gitrepo.Signature{Name: "Dev", Email: "dev@example.com"}

// repo seeds a repository with one file and returns the server, its URL
// and a writable clone to make further commits from.
func repo(t *testing.T, auth *testenv.BasicAuth) (*testenv.GitServer, *gitrepo.Repo) {
	t.Helper()
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{Auth: auth})
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "cm.yaml"), []byte("v: 1\n"), 0o644)
	if _, err := srv.Seed(t.Context(), "app", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	var creds gitrepo.Auth
	if auth != nil {
		creds = gitrepo.Auth{Username: auth.Username, Password: auth.Password}
	}
	w, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "w"), srv.RepoURL("app"), "main", creds)
	if err != nil {
		t.Fatal(err)
	}
	return srv, w
}

func commit(t *testing.T, w *gitrepo.Repo, file, body string, key *openpgp.Entity) string {
	t.Helper()
	os.WriteFile(filepath.Join(w.Dir(), file), []byte(body), 0o644)
	h, err := w.Commit("change "+file, author, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Push(t.Context(), "main"); err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func read(t *testing.T, rev source.Revision, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rev.Dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFollowBranchShallowAndCheap(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "sync", Password: "s3cret-token"}
	srv, w := repo(t, auth)
	ctx := t.Context()
	src, err := source.New(source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: filepath.Join(t.TempDir(), "c"),
		Auth: gitrepo.Auth{Username: "sync", Password: "s3cret-token"}})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := src.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := srv.Head(ctx, "app", "main")
	if rev.Commit != head || !rev.Fetched || read(t, rev, "cm.yaml") != "v: 1\n" {
		t.Fatalf("first fetch: %+v, head %s", rev, head)
	}
	if rev.String() != "main@sha1:"+head {
		t.Fatalf("revision string %q", rev.String())
	}
	again, err := src.Fetch(ctx)
	if err != nil || again.Fetched || again.Commit != head {
		t.Fatalf("fetch with nothing new: %+v %v; want no download", again, err)
	}
	c2 := commit(t, w, "cm.yaml", "v: 2\n", nil)
	commit(t, w, "other.yaml", "x: 1\n", nil)
	c3, _ := srv.Head(ctx, "app", "main")
	rev, err = src.Fetch(ctx)
	if err != nil || rev.Commit != c3 || read(t, rev, "cm.yaml") != "v: 2\n" {
		t.Fatalf("after two commits: %+v %v", rev, err)
	}
	// Shallow: the intermediate commit was never downloaded.
	if out, err := gitOut(rev.Dir, "cat-file", "-t", c2); err == nil {
		t.Fatalf("intermediate commit %s present (%s): fetch is not shallow", c2, out)
	}
	// A file removed in Git is gone from the tree too.
	os.Remove(filepath.Join(w.Dir(), "other.yaml"))
	w.Commit("remove", author, nil)
	w.Push(ctx, "main")
	rev, _ = src.Fetch(ctx)
	if _, err := os.Stat(filepath.Join(rev.Dir, "other.yaml")); !os.IsNotExist(err) {
		t.Fatalf("removed file still checked out: %v", err)
	}
}

func TestWrongCredentialsKeepRevisionAndHideSecret(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "sync", Password: "right"}
	srv, _ := repo(t, auth)
	dir := filepath.Join(t.TempDir(), "c")
	good, _ := source.New(source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: dir, Auth: gitrepo.Auth{Username: "sync", Password: "right"}})
	rev, err := good.Fetch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := source.New(source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: dir, Auth: gitrepo.Auth{Username: "sync", Password: "wrong-pa55"}})
	_, err = bad.Fetch(t.Context())
	if err == nil || strings.Contains(err.Error(), "wrong-pa55") {
		t.Fatalf("wrong password: %v", err)
	}
	if read(t, rev, "cm.yaml") != "v: 1\n" {
		t.Fatal("the last checkout was lost")
	}
	_, err = (mustNew(t, source.Config{URL: srv.RepoURL("app"), Branch: "nope", Dir: t.TempDir(), Auth: gitrepo.Auth{Username: "sync", Password: "right"}})).Fetch(t.Context())
	if err == nil || !strings.Contains(err.Error(), `branch "nope" not found`) {
		t.Fatalf("missing branch: %v", err)
	}
}

func mustNew(t *testing.T, cfg source.Config) *source.Source {
	t.Helper()
	s, err := source.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTagAndPinnedCommit(t *testing.T) {
	srv, w := repo(t, nil)
	ctx := t.Context()
	first, _ := srv.Head(ctx, "app", "main")
	if _, err := srv.Git(ctx, "app", "tag", "-a", "-m", "release", "v1.0.0", first); err != nil {
		t.Fatal(err)
	}
	commit(t, w, "cm.yaml", "v: 2\n", nil)
	tag := mustNew(t, source.Config{URL: srv.RepoURL("app"), Tag: "v1.0.0", Dir: t.TempDir()})
	rev, err := tag.Fetch(ctx)
	if err != nil || rev.Commit != first || read(t, rev, "cm.yaml") != "v: 1\n" {
		t.Fatalf("annotated tag: %+v %v", rev, err)
	}
	pin := mustNew(t, source.Config{URL: srv.RepoURL("app"), Branch: "main", Commit: first, Dir: t.TempDir()})
	rev, err = pin.Fetch(ctx)
	if err != nil || rev.Commit != first || read(t, rev, "cm.yaml") != "v: 1\n" {
		t.Fatalf("pinned commit: %+v %v", rev, err)
	}
	if _, err := source.New(source.Config{URL: "x", Branch: "main", Commit: "abc"}); err == nil {
		t.Fatal("short commit hash accepted")
	}
	if _, err := source.New(source.Config{URL: "x", Branch: "main", Tag: "v1"}); err == nil {
		t.Fatal("branch and tag both accepted")
	}
}

func TestSignatureVerification(t *testing.T) {
	srv, w := repo(t, nil)
	ctx := t.Context()
	trusted, _ := openpgp.NewEntity("Release", "", "release@example.com", nil)
	stranger, _ := openpgp.NewEntity("Stranger", "", "x@example.com", nil)
	var pub bytes.Buffer
	aw, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	trusted.Serialize(aw)
	aw.Close()

	signed := commit(t, w, "cm.yaml", "v: 2\n", trusted)
	src := mustNew(t, source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: t.TempDir(), Keyring: pub.String()})
	rev, err := src.Fetch(ctx)
	if err != nil || rev.Commit != signed {
		t.Fatalf("commit signed by a trusted key: %+v %v", rev, err)
	}
	commit(t, w, "cm.yaml", "v: 3\n", nil)
	if _, err := src.Fetch(ctx); !errors.Is(err, source.ErrUntrusted) || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned head: %v, want ErrUntrusted", err)
	}
	commit(t, w, "cm.yaml", "v: 4\n", stranger)
	if _, err := src.Fetch(ctx); !errors.Is(err, source.ErrUntrusted) {
		t.Fatalf("head signed by an unknown key: %v, want ErrUntrusted", err)
	}
	if src.Current().Commit != signed || read(t, src.Current(), "cm.yaml") != "v: 2\n" {
		t.Fatal("an untrusted head replaced the last trusted checkout")
	}
	if _, err := source.New(source.Config{URL: "x", Branch: "main", Keyring: "not a key"}); err == nil {
		t.Fatal("a malformed keyring was accepted")
	}
}

func gitOut(dir string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	return string(out), err
}
