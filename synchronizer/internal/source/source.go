// Package source fetches the one ref of a Git repository a synchronizer
// follows into a working tree, shallowly, and without downloading anything
// when the remote ref has not moved.
package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"driftless.dev/shared/gitrepo"
)

// ErrUntrusted: the commit is unsigned or signed by a key outside the
// keyring; it is not checked out.
var ErrUntrusted = errors.New("commit signature not trusted")

// Config says what to follow. Set Branch or Tag; Commit pins a commit on
// Branch.
type Config struct {
	URL    string
	Branch string
	Tag    string
	Commit string
	Auth   gitrepo.Auth
	// Dir holds the clone; it survives restarts as a warm cache.
	Dir string
	// Keyring is an armored OpenPGP public keyring; when set, a commit
	// not signed by one of its keys is refused.
	Keyring string
}

// Revision is a checked-out commit.
type Revision struct {
	// Commit is the full hash; Ref names what was followed.
	Commit string
	Ref    string
	// Dir is the working tree, holding exactly Commit.
	Dir string
	// Fetched reports whether objects were downloaded this time.
	Fetched bool
	// Tree is the commit's root tree hash: an unchanged tree renders the
	// same objects.
	Tree string
}

// String is the revision as status shows it, e.g. main@sha1:0123abcd.
func (r Revision) String() string {
	if r.Commit == "" {
		return ""
	}
	return r.Ref + "@sha1:" + r.Commit
}

// Source is one followed ref.
type Source struct {
	cfg     Config
	auth    transport.AuthMethod
	repo    *git.Repository
	current Revision
}

// New checks cfg and opens (or creates) the clone in cfg.Dir.
func New(cfg Config) (*Source, error) {
	switch {
	case cfg.URL == "":
		return nil, errors.New("source: a repository URL is required")
	case cfg.Branch != "" && cfg.Tag != "":
		return nil, errors.New("source: set a branch or a tag, not both")
	case cfg.Branch == "" && cfg.Tag == "":
		return nil, errors.New("source: a branch or a tag is required")
	case cfg.Commit != "" && cfg.Branch == "":
		return nil, errors.New("source: a pinned commit needs the branch it is on")
	case cfg.Commit != "" && !plumbing.IsHash(cfg.Commit):
		return nil, fmt.Errorf("source: commit %q is not a full 40-character hash", cfg.Commit)
	}
	am, err := cfg.Auth.Method()
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, auth: am}
	if cfg.Keyring != "" {
		if _, err := openpgp.ReadArmoredKeyRing(strings.NewReader(cfg.Keyring)); err != nil {
			return nil, fmt.Errorf("source: read the OpenPGP keyring: %w", err)
		}
	}
	repo, err := git.PlainOpen(cfg.Dir)
	if err == nil {
		if rem, err := repo.Remote("origin"); err != nil || len(rem.Config().URLs) != 1 || rem.Config().URLs[0] != cfg.URL {
			repo = nil
		}
	}
	if repo == nil {
		if err := os.RemoveAll(cfg.Dir); err != nil {
			return nil, fmt.Errorf("source: clear %s: %w", cfg.Dir, err)
		}
		if repo, err = git.PlainInit(cfg.Dir, false); err != nil {
			return nil, fmt.Errorf("source: init %s: %w", cfg.Dir, err)
		}
		if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{cfg.URL}}); err != nil {
			return nil, fmt.Errorf("source: add remote: %w", err)
		}
	}
	s.repo = repo
	return s, nil
}

func (s *Source) refName() plumbing.ReferenceName {
	if s.cfg.Tag != "" {
		return plumbing.NewTagReferenceName(s.cfg.Tag)
	}
	return plumbing.NewBranchReferenceName(s.cfg.Branch)
}

func (s *Source) ref() string {
	if s.cfg.Tag != "" {
		return s.cfg.Tag
	}
	return s.cfg.Branch
}

// Current is the last revision checked out (zero before the first).
func (s *Source) Current() Revision { return s.current }

// Fetch brings the followed ref's commit into the working tree. It asks
// the remote for the ref first (one small request) and downloads nothing
// when the commit is the one already checked out.
func (s *Source) Fetch(ctx context.Context) (Revision, error) {
	want, err := s.remoteCommit(ctx)
	if err != nil {
		return s.current, err
	}
	if s.current.Commit == want.String() {
		rev := s.current
		rev.Fetched = false
		return rev, nil
	}
	local := plumbing.ReferenceName("refs/driftless/" + s.ref())
	opts := &git.FetchOptions{
		RemoteName: "origin", Auth: s.auth, Force: true, Tags: git.NoTags,
		RefSpecs: []config.RefSpec{config.RefSpec(fmt.Sprintf("+%s:%s", s.refName(), local))},
	}
	if s.cfg.Commit == "" {
		// Shallow: only the tip's tree is needed to build it.
		opts.Depth = 1
	}
	if _, err := s.repo.CommitObject(want); err != nil {
		if err := s.repo.FetchContext(ctx, opts); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return s.current, fmt.Errorf("fetch %s %s: %s", gitrepo.Redact(s.cfg.URL), s.ref(), gitrepo.Redact(err.Error()))
		}
	}
	commit, err := s.repo.CommitObject(want)
	if err != nil {
		return s.current, fmt.Errorf("read commit %s of %s: %w", want, s.ref(), err)
	}
	if s.cfg.Keyring != "" {
		if err := s.verify(commit); err != nil {
			return s.current, err
		}
	}
	if err := s.checkout(want); err != nil {
		return s.current, err
	}
	s.current = Revision{Commit: want.String(), Ref: s.ref(), Dir: s.cfg.Dir, Fetched: true, Tree: commit.TreeHash.String()}
	return s.current, nil
}

// remoteCommit asks the remote which commit the ref points at.
func (s *Source) remoteCommit(ctx context.Context) (plumbing.Hash, error) {
	if s.cfg.Commit != "" {
		want := plumbing.NewHash(s.cfg.Commit)
		if _, err := s.repo.CommitObject(want); err == nil {
			return want, nil
		}
	}
	rem, err := s.repo.Remote("origin")
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("remote: %w", err)
	}
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: s.auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("list refs of %s: %s", gitrepo.Redact(s.cfg.URL), gitrepo.Redact(err.Error()))
	}
	name := s.refName()
	var hash plumbing.Hash
	found := false
	for _, r := range refs {
		switch r.Name() {
		case name:
			if !found {
				hash, found = r.Hash(), true
			}
		case name + "^{}": // an annotated tag, peeled to its commit
			hash, found = r.Hash(), true
		}
	}
	if !found {
		kind := "branch"
		if s.cfg.Tag != "" {
			kind = "tag"
		}
		return plumbing.ZeroHash, fmt.Errorf("%s %q not found in %s", kind, s.ref(), gitrepo.Redact(s.cfg.URL))
	}
	if s.cfg.Commit != "" {
		// Pinned: the branch is fetched whole so the commit is in it.
		if err := s.repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin", Auth: s.auth, Force: true, Tags: git.NoTags,
			RefSpecs: []config.RefSpec{config.RefSpec(fmt.Sprintf("+%s:refs/driftless/%s", name, s.ref()))},
		}); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return plumbing.ZeroHash, fmt.Errorf("fetch %s %s: %s", gitrepo.Redact(s.cfg.URL), s.ref(), gitrepo.Redact(err.Error()))
		}
		want := plumbing.NewHash(s.cfg.Commit)
		if _, err := s.repo.CommitObject(want); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("commit %s is not on branch %s", s.cfg.Commit, s.cfg.Branch)
		}
		return want, nil
	}
	return hash, nil
}

// verify refuses a commit that is unsigned or whose signature no key in
// the keyring makes.
func (s *Source) verify(c *object.Commit) error {
	if c.PGPSignature == "" {
		return fmt.Errorf("%w: commit %s is not signed", ErrUntrusted, c.Hash)
	}
	if _, err := c.Verify(s.cfg.Keyring); err != nil {
		return fmt.Errorf("%w: commit %s: %v", ErrUntrusted, c.Hash, err)
	}
	return nil
}

func (s *Source) checkout(at plumbing.Hash) error {
	wt, err := s.repo.Worktree()
	if err != nil {
		return fmt.Errorf("worktree: %w", err)
	}
	if err := s.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, at)); err != nil {
		return fmt.Errorf("check out %s: %w", at, err)
	}
	if err := wt.Reset(&git.ResetOptions{Commit: at, Mode: git.HardReset}); err != nil {
		return fmt.Errorf("check out %s: %w", at, err)
	}
	if err := wt.Clean(&git.CleanOptions{Dir: true}); err != nil {
		return fmt.Errorf("clean the working tree: %w", err)
	}
	return nil
}
