package gitrepo_test

import (
	"bytes"
	"errors"
	"os"
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
)

func newKey(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", strings.ToLower(name)+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func keyring(t *testing.T, keys ...*openpgp.Entity) *gitrepo.Keyring {
	t.Helper()
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	for _, k := range keys {
		if err := k.Serialize(w); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	k, err := gitrepo.ParseKeyring(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// history writes commits through a clone and pushes them to the real Git
// server; verification then reads a fresh clone of the server's history.
type history struct {
	t   *testing.T
	srv *testenv.GitServer
	w   *gitrepo.Repo
}

func newHistory(t *testing.T) (*history, plumbing.Hash) {
	srv, url := seeded(t, nil)
	w, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "w"), url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	seed, err := head(w)
	if err != nil {
		t.Fatal(err)
	}
	return &history{t: t, srv: srv, w: w}, seed
}

// commit makes one commit on top of parent (the clone's branch is reset
// there first) writing files, and pushes it to branch.
func (h *history) commit(parent plumbing.Hash, branch string, key *openpgp.Entity, files map[string]string) plumbing.Hash {
	h.t.Helper()
	if err := h.w.Reset(parent); err != nil {
		h.t.Fatal(err)
	}
	for f, body := range files {
		if err := os.WriteFile(filepath.Join(h.w.Dir(), f), []byte(body), 0o644); err != nil {
			h.t.Fatal(err)
		}
	}
	c, err := h.w.Commit("change", author, key)
	if err != nil {
		h.t.Fatal(err)
	}
	h.push(branch)
	return c
}

// merge joins parents into one unsigned commit whose tree is the first
// parent's plus files.
func (h *history) merge(parents []plumbing.Hash, branch string, files map[string]string) plumbing.Hash {
	h.t.Helper()
	if err := h.w.Reset(parents[0]); err != nil {
		h.t.Fatal(err)
	}
	for f, body := range files {
		os.WriteFile(filepath.Join(h.w.Dir(), f), []byte(body), 0o644)
	}
	wt, _ := h.w.Repository().Worktree()
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		h.t.Fatal(err)
	}
	sig := &object.Signature{Name: "Merger", Email: "m@example.com", When: time.Now()}
	c, err := wt.Commit("merge", &git.CommitOptions{Parents: parents, Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		h.t.Fatal(err)
	}
	h.push(branch)
	return c
}

func (h *history) push(branch string) {
	h.t.Helper()
	if err := h.w.Push(h.t.Context(), branch); err != nil {
		h.t.Fatal(err)
	}
}

// fetched is a fresh full clone of branch, as a verifier would see it.
func (h *history) fetched(branch string) (*git.Repository, plumbing.Hash) {
	h.t.Helper()
	r, err := gitrepo.Open(h.t.Context(), filepath.Join(h.t.TempDir(), "v"), h.srv.RepoURL("fleet"), branch, gitrepo.Auth{})
	if err != nil {
		h.t.Fatal(err)
	}
	tip, err := head(r)
	if err != nil {
		h.t.Fatal(err)
	}
	return r.Repository(), tip
}

func wantUntrusted(t *testing.T, err error, commit plumbing.Hash, reason string) {
	t.Helper()
	var ue *gitrepo.UntrustedError
	if !errors.As(err, &ue) || !errors.Is(err, gitrepo.ErrUntrusted) {
		t.Fatalf("got %v, want an *UntrustedError wrapping ErrUntrusted", err)
	}
	if ue.Commit != commit.String() || !strings.Contains(ue.Reason, reason) {
		t.Fatalf("refused %s (%s), want %s refused with %q", ue.Commit, ue.Reason, commit, reason)
	}
}

func TestVerifyHistory(t *testing.T) {
	trusted, stranger := newKey(t, "Release"), newKey(t, "Stranger")
	k := keyring(t, trusted)

	t.Run("UnsignedCommitUnderASignedTip", func(t *testing.T) {
		h, seed := newHistory(t)
		a := h.commit(seed, "main", trusted, map[string]string{"a.yaml": "a: 1\n"})
		u := h.commit(a, "main", nil, map[string]string{"rbac.yaml": "kind: ClusterRoleBinding\n"})
		h.commit(u, "main", trusted, map[string]string{"app.yaml": "image: app:1.1.0\n"})
		repo, tip := h.fetched("main")
		wantUntrusted(t, gitrepo.VerifyHistory(repo.Storer, k, tip, a), u, "not signed")
		// Trusted from the unsigned commit on (an administrator's anchor
		// past it), the rest passes.
		if err := gitrepo.VerifyHistory(repo.Storer, k, tip, u); err != nil {
			t.Fatalf("from the anchor %s: %v", u, err)
		}
		// With nothing trusted yet only the tip is checked: documented.
		if err := gitrepo.VerifyHistory(repo.Storer, k, tip); err != nil {
			t.Fatalf("tip only: %v", err)
		}
	})
	t.Run("SignedByAnUnknownKey", func(t *testing.T) {
		h, seed := newHistory(t)
		s := h.commit(seed, "main", stranger, map[string]string{"a.yaml": "a: 1\n"})
		repo, tip := h.fetched("main")
		wantUntrusted(t, gitrepo.VerifyHistory(repo.Storer, k, tip, seed), s, "signed by a key outside the keyring")
		wantUntrusted(t, gitrepo.VerifyHistory(repo.Storer, k, tip), s, "signed by a key outside the keyring")
	})
	t.Run("CleanUnsignedMergeOfSignedParents", func(t *testing.T) {
		h, seed := newHistory(t)
		a := h.commit(seed, "main", trusted, map[string]string{"a.yaml": "a: 1\n"})
		b := h.commit(seed, "feature", trusted, map[string]string{"b.yaml": "b: 1\n", "app.yaml": "image: app:2.0.0\n"})
		m := h.merge([]plumbing.Hash{a, b}, "main", map[string]string{"b.yaml": "b: 1\n", "app.yaml": "image: app:2.0.0\n"})
		repo, tip := h.fetched("main")
		if tip != m {
			t.Fatalf("tip %s, want the merge %s", tip, m)
		}
		if err := gitrepo.VerifyHistory(repo.Storer, k, tip, seed); err != nil {
			t.Fatalf("clean merge of signed parents: %v", err)
		}
		if err := gitrepo.VerifyHistory(repo.Storer, k, tip); err != nil {
			t.Fatalf("clean merge of signed parents, tip only: %v", err)
		}
	})
	t.Run("EvilUnsignedMerge", func(t *testing.T) {
		h, seed := newHistory(t)
		a := h.commit(seed, "main", trusted, map[string]string{"a.yaml": "a: 1\n"})
		b := h.commit(seed, "feature", trusted, map[string]string{"b.yaml": "b: 1\n"})
		// The merge takes b.yaml from b and slips in an edit of its own.
		m := h.merge([]plumbing.Hash{a, b}, "main", map[string]string{"b.yaml": "b: 1\n", "rbac.yaml": "kind: ClusterRoleBinding\n"})
		repo, tip := h.fetched("main")
		wantUntrusted(t, gitrepo.VerifyHistory(repo.Storer, k, tip, seed), m, "content of its own in rbac.yaml")
		wantUntrusted(t, gitrepo.VerifyHistory(repo.Storer, k, tip), m, "content of its own in rbac.yaml")
	})
	t.Run("CleanMergeOfAnUnsignedBranch", func(t *testing.T) {
		h, seed := newHistory(t)
		a := h.commit(seed, "main", trusted, map[string]string{"a.yaml": "a: 1\n"})
		u := h.commit(seed, "feature", nil, map[string]string{"b.yaml": "b: 1\n"})
		h.merge([]plumbing.Hash{a, u}, "main", map[string]string{"b.yaml": "b: 1\n"})
		repo, tip := h.fetched("main")
		wantUntrusted(t, gitrepo.VerifyHistory(repo.Storer, k, tip, a), u, "not signed")
		wantUntrusted(t, gitrepo.VerifyHistory(repo.Storer, k, tip), u, "not signed")
	})
	t.Run("MergeOfABranchOlderThanTheTrustedCommit", func(t *testing.T) {
		// A side branch forked before the last verified commit and merged
		// after it: its commits are new and checked; the shared history
		// before the fork is not.
		h, seed := newHistory(t)
		unsignedOld := h.commit(seed, "main", nil, map[string]string{"old.yaml": "o: 1\n"})
		side := h.commit(unsignedOld, "feature", trusted, map[string]string{"b.yaml": "b: 1\n"})
		verified := h.commit(unsignedOld, "main", trusted, map[string]string{"a.yaml": "a: 1\n"})
		h.merge([]plumbing.Hash{verified, side}, "main", map[string]string{"b.yaml": "b: 1\n"})
		repo, tip := h.fetched("main")
		if err := gitrepo.VerifyHistory(repo.Storer, k, tip, verified); err != nil {
			t.Fatalf("%v", err)
		}
		// Had the side commit been unsigned, it is refused though it is
		// older than the trusted commit.
		h2, seed2 := newHistory(t)
		old2 := h2.commit(seed2, "main", nil, map[string]string{"old.yaml": "o: 1\n"})
		side2 := h2.commit(old2, "feature", nil, map[string]string{"b.yaml": "b: 1\n"})
		verified2 := h2.commit(old2, "main", trusted, map[string]string{"a.yaml": "a: 1\n"})
		h2.merge([]plumbing.Hash{verified2, side2}, "main", map[string]string{"b.yaml": "b: 1\n"})
		repo2, tip2 := h2.fetched("main")
		wantUntrusted(t, gitrepo.VerifyHistory(repo2.Storer, k, tip2, verified2), side2, "not signed")
	})
	if _, err := gitrepo.ParseKeyring("not a key"); err == nil {
		t.Fatal("a malformed keyring was accepted")
	}
}

// head is the commit the clone's branch points at.
func head(r *gitrepo.Repo) (plumbing.Hash, error) {
	ref, err := r.Repository().Reference(plumbing.NewBranchReferenceName(r.Branch()), true)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return ref.Hash(), nil
}
