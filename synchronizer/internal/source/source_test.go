package source_test

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

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
	// No keyring and rewinds allowed: nothing needs history, so the
	// source fetches the tip alone.
	src, err := source.New(source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: filepath.Join(t.TempDir(), "c"),
		Auth: gitrepo.Auth{Username: "sync", Password: "s3cret-token"}, AllowRewind: true})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := src.Fetch(ctx, "")
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
	again, err := src.Fetch(ctx, "")
	if err != nil || again.Fetched || again.Commit != head {
		t.Fatalf("fetch with nothing new: %+v %v; want no download", again, err)
	}
	c2 := commit(t, w, "cm.yaml", "v: 2\n", nil)
	commit(t, w, "other.yaml", "x: 1\n", nil)
	c3, _ := srv.Head(ctx, "app", "main")
	rev, err = src.Fetch(ctx, "")
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
	rev, _ = src.Fetch(ctx, "")
	if _, err := os.Stat(filepath.Join(rev.Dir, "other.yaml")); !os.IsNotExist(err) {
		t.Fatalf("removed file still checked out: %v", err)
	}
}

func TestWrongCredentialsKeepRevisionAndHideSecret(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "sync", Password: "right"}
	srv, _ := repo(t, auth)
	dir := filepath.Join(t.TempDir(), "c")
	good, _ := source.New(source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: dir, Auth: gitrepo.Auth{Username: "sync", Password: "right"}})
	rev, err := good.Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := source.New(source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: dir, Auth: gitrepo.Auth{Username: "sync", Password: "wrong-pa55"}})
	_, err = bad.Fetch(t.Context(), "")
	if err == nil || strings.Contains(err.Error(), "wrong-pa55") {
		t.Fatalf("wrong password: %v", err)
	}
	if read(t, rev, "cm.yaml") != "v: 1\n" {
		t.Fatal("the last checkout was lost")
	}
	_, err = (mustNew(t, source.Config{URL: srv.RepoURL("app"), Branch: "nope", Dir: t.TempDir(), Auth: gitrepo.Auth{Username: "sync", Password: "right"}})).Fetch(t.Context(), "")
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
	rev, err := tag.Fetch(ctx, "")
	if err != nil || rev.Commit != first || read(t, rev, "cm.yaml") != "v: 1\n" {
		t.Fatalf("annotated tag: %+v %v", rev, err)
	}
	pin := mustNew(t, source.Config{URL: srv.RepoURL("app"), Branch: "main", Commit: first, Dir: t.TempDir()})
	rev, err = pin.Fetch(ctx, "")
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
	rev, err := src.Fetch(ctx, "")
	if err != nil || rev.Commit != signed {
		t.Fatalf("commit signed by a trusted key: %+v %v", rev, err)
	}
	applied := rev.String()
	unsigned := commit(t, w, "cm.yaml", "v: 3\n", nil)
	if _, err := src.Fetch(ctx, applied); !errors.Is(err, source.ErrUntrusted) || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned head: %v, want ErrUntrusted", err)
	}
	commit(t, w, "cm.yaml", "v: 4\n", stranger)
	if _, err := src.Fetch(ctx, applied); !errors.Is(err, source.ErrUntrusted) || !strings.Contains(err.Error(), unsigned) {
		t.Fatalf("head signed by an unknown key over an unsigned commit: %v, want ErrUntrusted naming %s", err, unsigned)
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

func armored(t *testing.T, keys ...*openpgp.Entity) string {
	t.Helper()
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	for _, k := range keys {
		if err := k.Serialize(w); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	return b.String()
}

// TestUnsignedContentUnderASignedBump: the keyring must hold the
// automator's key, so a signed bump on top of someone's unsigned commit
// must not carry that commit in. Every commit since the last applied one
// is verified, also after a restart with an empty checkout.
func TestUnsignedContentUnderASignedBump(t *testing.T) {
	srv, w := repo(t, nil)
	ctx := t.Context()
	automator, _ := openpgp.NewEntity("Automator", "", "automator@example.com", nil)
	keyring := armored(t, automator)
	first := commit(t, w, "cm.yaml", "v: 2\n", automator)
	cfg := source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: t.TempDir(), Keyring: keyring}
	src := mustNew(t, cfg)
	rev, err := src.Fetch(ctx, "")
	if err != nil || rev.Commit != first {
		t.Fatalf("signed head: %+v %v", rev, err)
	}
	applied := rev.String()
	unsigned := commit(t, w, "rbac.yaml", "kind: ClusterRoleBinding\n", nil)
	bump := commit(t, w, "cm.yaml", "v: 3\n", automator)
	_, err = src.Fetch(ctx, applied)
	var ue *gitrepo.UntrustedError
	if !errors.As(err, &ue) || !errors.Is(err, source.ErrUntrusted) || ue.Commit != unsigned || ue.Reason != "is not signed" {
		t.Fatalf("signed bump %s over unsigned %s: got %v, want the unsigned commit refused", bump, unsigned, err)
	}
	if _, err := os.Stat(filepath.Join(src.Current().Dir, "rbac.yaml")); !os.IsNotExist(err) || src.Current().Commit != first {
		t.Fatalf("the untrusted content was checked out (current %s)", src.Current().Commit)
	}
	// A new process with an empty checkout, given the same last applied
	// revision, refuses the same way.
	cfg.Dir = t.TempDir()
	if _, err := mustNew(t, cfg).Fetch(ctx, applied); !errors.As(err, &ue) || ue.Commit != unsigned {
		t.Fatalf("after a restart: %v, want %s refused", err, unsigned)
	}
	// An administrator's anchor past the unsigned commit lets it through.
	cfg.Dir, cfg.VerifyAnchor = t.TempDir(), unsigned
	if rev, err := mustNew(t, cfg).Fetch(ctx, ""); err != nil || rev.Commit != bump {
		t.Fatalf("with the anchor at %s: %+v %v", unsigned, rev, err)
	}
	cfg.VerifyAnchor = strings.Repeat("ab", 20)
	if _, err := mustNew(t, cfg).Fetch(ctx, ""); !errors.Is(err, source.ErrUntrusted) || !strings.Contains(err.Error(), "trust anchor "+cfg.VerifyAnchor+" is not in the history of main") {
		t.Fatalf("an anchor outside the history: %v", err)
	}
}

// TestEvilMergeRefusedCleanMergeApplied: an unsigned merge passes only if
// it brings nothing of its own.
func TestEvilMergeRefusedCleanMergeApplied(t *testing.T) {
	srv, w := repo(t, nil)
	ctx := t.Context()
	key, _ := openpgp.NewEntity("Release", "", "release@example.com", nil)
	base := commit(t, w, "cm.yaml", "v: 2\n", key)
	src := mustNew(t, source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: t.TempDir(), Keyring: armored(t, key)})
	rev, err := src.Fetch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	applied := rev.String()
	// A signed commit on a side branch, and one on main.
	os.WriteFile(filepath.Join(w.Dir(), "side.yaml"), []byte("s: 1\n"), 0o644)
	sideHash, err := w.Commit("side", author, key)
	if err != nil {
		t.Fatal(err)
	}
	side := sideHash.String()
	if err := w.Push(ctx, "feature"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reset(plumbing.NewHash(base)); err != nil {
		t.Fatal(err)
	}
	ahead := commit(t, w, "main.yaml", "m: 1\n", key)
	merge := func(extra map[string]string) string {
		t.Helper()
		if err := w.Reset(plumbing.NewHash(ahead)); err != nil {
			t.Fatal(err)
		}
		files := map[string]string{"side.yaml": "s: 1\n"}
		maps.Copy(files, extra)
		for f, body := range files {
			os.WriteFile(filepath.Join(w.Dir(), f), []byte(body), 0o644)
		}
		wt, _ := w.Repository().Worktree()
		wt.AddWithOptions(&git.AddOptions{All: true})
		sig := &object.Signature{Name: "Merger", Email: "m@example.com", When: time.Now()}
		h, err := wt.Commit("merge", &git.CommitOptions{Parents: []plumbing.Hash{plumbing.NewHash(ahead), plumbing.NewHash(side)}, Author: sig, Committer: sig})
		if err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	evil := merge(map[string]string{"cm.yaml": "v: evil\n"})
	if err := w.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	var ue *gitrepo.UntrustedError
	if _, err := src.Fetch(ctx, applied); !errors.As(err, &ue) || ue.Commit != evil || !strings.Contains(ue.Reason, "content of its own in cm.yaml") {
		t.Fatalf("evil merge %s: got %v", evil, err)
	}
	if src.Current().Commit != base {
		t.Fatal("the evil merge was checked out")
	}
	// The same merge without the edit of its own replaces it (main is
	// pointed at it, as a person fixing the branch would): it applies.
	clean := merge(nil)
	if err := w.Push(ctx, "fixed"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Git(ctx, "app", "update-ref", "refs/heads/main", clean); err != nil {
		t.Fatal(err)
	}
	rev, err = src.Fetch(ctx, applied)
	if err != nil || rev.Commit != clean || read(t, rev, "side.yaml") != "s: 1\n" || read(t, rev, "cm.yaml") != "v: 2\n" {
		t.Fatalf("clean merge %s: %+v %v", clean, rev, err)
	}
}

// TestRewindRefused: a force push back to an older commit is refused
// unless rewinds are allowed; so is a tag moved to a commit that does not
// descend from the applied one.
func TestRewindRefused(t *testing.T) {
	srv, w := repo(t, nil)
	ctx := t.Context()
	c1, _ := srv.Head(ctx, "app", "main")
	c2 := commit(t, w, "cm.yaml", "v: 2\n", nil)
	cfg := source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: t.TempDir()}
	src := mustNew(t, cfg)
	rev, err := src.Fetch(ctx, "main@sha1:"+c1)
	if err != nil || rev.Commit != c2 {
		t.Fatalf("fast-forward from %s to %s: %+v %v", c1, c2, rev, err)
	}
	applied := rev.String()
	// Force push main back to c1.
	if _, err := srv.Git(ctx, "app", "update-ref", "refs/heads/main", c1); err != nil {
		t.Fatal(err)
	}
	_, err = src.Fetch(ctx, applied)
	var re *source.RewoundError
	if !errors.As(err, &re) || !errors.Is(err, source.ErrRewound) || re.From != c2 || re.To != c1 || re.Ref != "main" {
		t.Fatalf("force push back: got %v, want ErrRewound from %s to %s", err, c2, c1)
	}
	if !strings.Contains(err.Error(), "--allow-rewind") {
		t.Fatalf("the error does not say how to accept it: %v", err)
	}
	if src.Current().Commit != c2 || read(t, src.Current(), "cm.yaml") != "v: 2\n" {
		t.Fatal("the rewound commit was checked out")
	}
	// A restart with an empty checkout: c2 is not even in main's history now.
	cfg.Dir = t.TempDir()
	if _, err := mustNew(t, cfg).Fetch(ctx, applied); !errors.As(err, &re) {
		t.Fatalf("after a restart: %v, want ErrRewound", err)
	}
	// Allowed, it is followed.
	cfg.AllowRewind = true
	if rev, err := mustNew(t, cfg).Fetch(ctx, applied); err != nil || rev.Commit != c1 || read(t, rev, "cm.yaml") != "v: 1\n" {
		t.Fatalf("with AllowRewind: %+v %v", rev, err)
	}
	// A moved tag: v1 at c2 applied, then moved to a commit beside it.
	if _, err := srv.Git(ctx, "app", "update-ref", "refs/heads/main", c2); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Git(ctx, "app", "tag", "v1", c2); err != nil {
		t.Fatal(err)
	}
	tag := mustNew(t, source.Config{URL: srv.RepoURL("app"), Tag: "v1", Dir: t.TempDir()})
	trev, err := tag.Fetch(ctx, "")
	if err != nil || trev.Commit != c2 {
		t.Fatalf("tag: %+v %v", trev, err)
	}
	// A commit beside c2 (on c1), and the tag moved to it.
	if err := w.Reset(plumbing.NewHash(c1)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(w.Dir(), "other.yaml"), []byte("o: 1\n"), 0o644)
	beside, err := w.Commit("beside", author, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Push(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Git(ctx, "app", "tag", "-f", "v1", beside.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := tag.Fetch(ctx, trev.String()); !errors.As(err, &re) || re.Ref != "v1" || re.From != c2 || re.To != beside.String() {
		t.Fatalf("moved tag: got %v, want ErrRewound from %s to %s", err, c2, beside)
	}
}
