package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Mirror is a bare copy of some refs of a remote repository (the branches
// and notes a program reads), fetched incrementally, without a working
// tree. Commits are made from Git objects (a merge, a revert, a note) and
// pushed fast-forward only, never forced. A Mirror is not safe for
// concurrent use: its owner serializes the calls.
type Mirror struct {
	url  string
	auth transport.AuthMethod
	repo *git.Repository
}

// pushRef is where a commit waits to be pushed: go-git pushes from a ref.
const pushRef = plumbing.ReferenceName("refs/driftless/push")

// OpenMirror opens the bare mirror of url in dir, making it if dir holds
// none (or holds a mirror of another URL), or keeps it in memory when dir
// is "" (a restart fetches again).
func OpenMirror(dir, url string, auth Auth) (*Mirror, error) {
	am, err := auth.Method()
	if err != nil {
		return nil, err
	}
	m := &Mirror{url: url, auth: am}
	if dir == "" {
		if m.repo, err = git.Init(memory.NewStorage(), nil); err != nil {
			return nil, fmt.Errorf("mirror of %s: %w", Redact(url), err)
		}
	} else if repo, err := git.PlainOpen(dir); err == nil {
		if rem, err := repo.Remote("origin"); err == nil && len(rem.Config().URLs) == 1 && rem.Config().URLs[0] == url {
			m.repo = repo
			return m, nil
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("clear %s: %w", dir, err)
		}
	}
	if m.repo == nil {
		if m.repo, err = git.PlainInit(dir, true); err != nil {
			return nil, fmt.Errorf("mirror of %s in %s: %w", Redact(url), dir, err)
		}
	}
	if _, err := m.repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		return nil, fmt.Errorf("mirror of %s: add remote: %w", Redact(url), err)
	}
	return m, nil
}

// Repository exposes the go-git repository for reading objects.
func (m *Mirror) Repository() *git.Repository { return m.repo }

// BranchRef is the full name of a branch.
func BranchRef(branch string) plumbing.ReferenceName { return plumbing.NewBranchReferenceName(branch) }

// Fetch brings refs (full names: refs/heads/dev, refs/notes/driftless) of
// the remote into the mirror under the same names and returns the tip of
// each one the remote has; a ref the remote lacks is absent from the map
// (and dropped from the mirror). It asks the remote for its refs once and
// downloads nothing when none of refs moved.
func (m *Mirror) Fetch(ctx context.Context, refs ...plumbing.ReferenceName) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	rem, err := m.repo.Remote("origin")
	if err != nil {
		return nil, fmt.Errorf("remote: %w", err)
	}
	adv, err := rem.ListContext(ctx, &git.ListOptions{Auth: m.auth})
	if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return nil, fmt.Errorf("list refs of %s: %w", Redact(m.url), classify(err))
	}
	remote := map[plumbing.ReferenceName]plumbing.Hash{}
	for _, r := range adv {
		if r.Type() == plumbing.HashReference {
			remote[r.Name()] = r.Hash()
		}
	}
	out := map[plumbing.ReferenceName]plumbing.Hash{}
	var specs []config.RefSpec
	for _, name := range refs {
		h, ok := remote[name]
		if !ok {
			_ = m.repo.Storer.RemoveReference(name)
			continue
		}
		out[name] = h
		if local, err := m.repo.Reference(name, true); err == nil && local.Hash() == h {
			continue
		}
		if _, err := m.repo.CommitObject(h); err == nil {
			// Already here (pushed from this mirror): only the ref moves.
			if err := m.repo.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
			continue
		}
		specs = append(specs, config.RefSpec(fmt.Sprintf("+%s:%s", name, name)))
	}
	if len(specs) == 0 {
		return out, nil
	}
	err = m.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: specs, Auth: m.auth, Force: true, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetch %s from %s: %w", refNames(specs), Redact(m.url), classify(err))
	}
	return out, nil
}

func refNames(specs []config.RefSpec) string {
	s := ""
	for i, sp := range specs {
		if i > 0 {
			s += ", "
		}
		s += sp.Src()
	}
	return s
}

// Tip is the mirror's copy of ref, as last fetched or pushed; zero when
// it has none.
func (m *Mirror) Tip(ref plumbing.ReferenceName) plumbing.Hash {
	r, err := m.repo.Reference(ref, true)
	if err != nil {
		return plumbing.ZeroHash
	}
	return r.Hash()
}

// Push moves ref on the remote to commit, as a fast-forward only (a ref
// the remote lacks is created). It returns ErrRejected when the remote
// ref moved since the last fetch, or when commit does not descend from
// it; the caller fetches, decides again and pushes again.
func (m *Mirror) Push(ctx context.Context, commit plumbing.Hash, ref plumbing.ReferenceName) error {
	if err := m.repo.Storer.SetReference(plumbing.NewHashReference(pushRef, commit)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	spec := config.RefSpec(fmt.Sprintf("%s:%s", pushRef, ref))
	err := m.repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: m.auth, Force: false})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		if err := m.repo.Storer.SetReference(plumbing.NewHashReference(ref, commit)); err != nil {
			return fmt.Errorf("record %s at %s: %w", ref, commit, err)
		}
		return nil
	case errors.Is(err, git.ErrNonFastForwardUpdate), isRejection(err):
		return fmt.Errorf("push to %s: %w", ref, ErrRejected)
	}
	return fmt.Errorf("push %s to %s: %w", ref, Redact(m.url), classify(err))
}

// Commit reads a commit of the mirror.
func (m *Mirror) Commit(h plumbing.Hash) (*object.Commit, error) {
	c, err := m.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", h, err)
	}
	return c, nil
}

// IsAncestor reports whether a is b or one of b's ancestors.
func (m *Mirror) IsAncestor(a, b plumbing.Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	ca, err := m.Commit(a)
	if err != nil {
		return false, err
	}
	cb, err := m.Commit(b)
	if err != nil {
		return false, err
	}
	ok, err := ca.IsAncestor(cb)
	if err != nil {
		return false, fmt.Errorf("is %s an ancestor of %s: %w", a, b, err)
	}
	return ok, nil
}

// NewCommit stores a commit of tree with parents, authored and committed
// by author now, signed with key when it is not nil, and returns it. It
// moves no ref: Push does.
func (m *Mirror) NewCommit(tree plumbing.Hash, parents []plumbing.Hash, msg string, author Signature, key *openpgp.Entity) (plumbing.Hash, error) {
	return writeCommit(m.repo.Storer, tree, parents, msg, author, key, time.Now())
}

// Verify checks the history of tip with k from the last commit this
// mirror verified and from anchor (see Repo.Verify), and records tip as
// verified when it passes.
func (m *Mirror) Verify(k *Keyring, tip, anchor plumbing.Hash) error {
	return verifyRecorded(m.repo, "", k, tip, anchor)
}
