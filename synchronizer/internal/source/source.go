// Package source fetches the one ref of a Git repository a synchronizer
// follows into a working tree, without downloading anything when the
// remote ref has not moved.
//
// What it fetches depends on what it must check. A source that verifies
// signatures (Keyring) or refuses a ref moved backwards (the default; see
// AllowRewind) needs the history between the last applied commit and the
// new tip, so it fetches the ref's history in full: once when the clone is
// new, then only the new objects. go-git can neither deepen a shallow
// clone reliably nor fetch "everything after commit X" (--shallow-exclude),
// so a full history is the only way to walk from one commit to another.
// Only a source told to allow rewinds and given no keyring fetches the tip
// alone (depth 1), which is all it needs to build.
package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"go.uber.org/zap"

	"driftless.dev/shared/gitrepo"
)

// ErrUntrusted: a commit between the last applied one and the new tip is
// unsigned, signed by a key outside the keyring, or an unsigned merge with
// content of its own; nothing is checked out. The error is a
// *gitrepo.UntrustedError naming the commit and why.
var ErrUntrusted = gitrepo.ErrUntrusted

// ErrRewound: the followed ref moved to a commit that does not descend
// from the last applied one (a force push back to an older commit, a moved
// tag). The error is a *RewoundError with both commits.
var ErrRewound = errors.New("the followed ref no longer descends from the last applied commit")

// RewoundError names the ref and the two commits of a refused rewind.
type RewoundError struct {
	Ref string
	// From is the last applied commit, To the one the ref points at now.
	From, To string
}

func (e *RewoundError) Error() string {
	return fmt.Sprintf("%s moved from %s to %s, which does not descend from it (a force push or a moved tag); "+
		"refused: run with --allow-rewind to follow it", e.Ref, e.From, e.To)
}

func (e *RewoundError) Unwrap() error { return ErrRewound }

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
	// Keyring is an armored OpenPGP public keyring; when set, every commit
	// between the last applied one and the new tip must be signed by one
	// of its keys (or be an unsigned merge that only joins such commits),
	// else the tip is refused. With nothing applied yet only the tip is
	// checked, unless VerifyAnchor names where to start.
	Keyring string
	// VerifyAnchor is a full commit hash an administrator trusts: with a
	// Keyring, every commit after it up to the tip is verified, on a first
	// start too. It must be in the followed ref's history.
	VerifyAnchor string
	// AllowRewind follows the ref to a commit that does not descend from
	// the last applied one. Off by default: a force push back to an older
	// commit, or a moved tag, is refused with ErrRewound.
	AllowRewind bool
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
	log     *zap.Logger
	auth    transport.AuthMethod
	repo    *git.Repository
	keyring *gitrepo.Keyring
	// history: fetch the ref's whole history, not only its tip.
	history bool
	current Revision
}

// Option configures New.
type Option func(*Source)

// WithLog logs what the source does on its own: starting the clone again
// when it found it damaged. Default: silent.
func WithLog(log *zap.Logger) Option { return func(s *Source) { s.log = log } }

// New checks cfg and opens (or creates) the clone in cfg.Dir. A clone a
// killed process left damaged (see gitrepo.Check) is started again; what
// killed writers left behind is removed.
func New(cfg Config, opts ...Option) (*Source, error) {
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
	case cfg.VerifyAnchor != "" && !plumbing.IsHash(cfg.VerifyAnchor):
		return nil, fmt.Errorf("source: trust anchor %q is not a full 40-character commit hash", cfg.VerifyAnchor)
	case cfg.VerifyAnchor != "" && cfg.Keyring == "":
		return nil, errors.New("source: a trust anchor needs a keyring to verify against")
	}
	am, err := cfg.Auth.Method()
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, auth: am, history: cfg.Keyring != "" || !cfg.AllowRewind, log: zap.NewNop()}
	for _, o := range opts {
		o(s)
	}
	if cfg.Keyring != "" {
		if s.keyring, err = gitrepo.ParseKeyring(cfg.Keyring); err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, ".git")); err == nil {
		if err := gitrepo.RemoveLeftovers(cfg.Dir); err != nil {
			return nil, fmt.Errorf("source: clear what a killed writer left in %s: %w", cfg.Dir, err)
		}
	}
	repo, err := openClone(cfg.Dir)
	if err == nil {
		if rem, err := repo.Remote("origin"); err != nil || len(rem.Config().URLs) != 1 || rem.Config().URLs[0] != cfg.URL {
			repo = nil
		} else if shallow, err := repo.Storer.Shallow(); s.history && (err != nil || len(shallow) > 0) {
			// A clone made depth 1 cannot be deepened reliably: start over.
			repo = nil
		} else if damage := gitrepo.Check(repo, cfg.Dir); damage != nil {
			s.damaged(damage)
			repo = nil
		}
	}
	s.repo = repo
	if repo == nil {
		if err := s.init(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// init starts the clone afresh: an empty repository with the remote.
func (s *Source) init() error {
	if err := os.RemoveAll(s.cfg.Dir); err != nil {
		return fmt.Errorf("source: clear %s: %w", s.cfg.Dir, err)
	}
	repo, err := git.Init(cloneStorage(s.cfg.Dir))
	if err != nil {
		return fmt.Errorf("source: init %s: %w", s.cfg.Dir, err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{s.cfg.URL}}); err != nil {
		return fmt.Errorf("source: add remote: %w", err)
	}
	s.repo, s.current = repo, Revision{}
	return nil
}

func (s *Source) damaged(damage error) {
	s.log.Warn("the checkout is damaged (a killed process, a full or failing disk): fetching it again",
		zap.String("dir", s.cfg.Dir), zap.Error(damage))
}

// objectCacheSize bounds go-git's cache of decoded objects. PlainOpen's
// default, 96 MiB, lives as long as the Source (the process) and filled
// up with the blobs of the first checkout: a clone of 20,000 files took
// the synchronizer to 264 MiB resident (BenchmarkBigRepository). A pass
// reads each object it needs once or twice (the tree walk of a checkout,
// the commits of a history check), so a small cache costs it nothing.
const objectCacheSize = 4 * cache.MiByte

// cloneStorage is the clone in dir (its .git), as PlainOpen and
// PlainInit would open it, with a small object cache.
func cloneStorage(dir string) (*filesystem.Storage, billy.Filesystem) {
	wt := osfs.New(dir)
	dot, _ := wt.Chroot(git.GitDirName)
	return filesystem.NewStorage(dot, cache.NewObjectLRU(objectCacheSize)), wt
}

// openClone opens the clone in dir; git.ErrRepositoryNotExists when
// there is none.
func openClone(dir string) (*git.Repository, error) {
	if _, err := os.Stat(filepath.Join(dir, git.GitDirName)); err != nil {
		return nil, git.ErrRepositoryNotExists
	}
	return git.Open(cloneStorage(dir))
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
//
// since is the last commit the caller applied, as its status records it
// ("main@sha1:<hash>", or a bare hash; "" when nothing is recorded). It is
// what the new tip is checked against: the tip must descend from it
// (else ErrRewound, unless AllowRewind), and with a Keyring every commit
// after it must be trusted (else ErrUntrusted). The caller keeps since
// (the synchronizer in the cluster's status, which outlives the process
// and is written by no one who can push), so a restart checks the same
// range. A since recorded for another ref (the followed branch changed)
// is still trusted history but is no reference for a rewind.
//
// A fetch that fails on a damaged clone (see gitrepo.Check) starts the
// clone again and fetches once more: a kill mid-write must cost one
// download, never a stalled synchronizer or a false rewind (a since
// missing from a damaged clone would look like one).
func (s *Source) Fetch(ctx context.Context, since string) (Revision, error) {
	rev, err := s.fetch(ctx, since)
	if err == nil || ctx.Err() != nil {
		return rev, err
	}
	damage := gitrepo.Check(s.repo, s.cfg.Dir)
	if damage == nil {
		return rev, err
	}
	s.damaged(damage)
	if err := s.init(); err != nil {
		return rev, err
	}
	return s.fetch(ctx, since)
}

func (s *Source) fetch(ctx context.Context, since string) (Revision, error) {
	sinceRef, sinceHash, err := parseSince(since)
	if err != nil {
		return s.current, err
	}
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
	if s.cfg.Commit == "" && !s.history {
		// Shallow: only the tip's tree is needed to build it.
		opts.Depth = 1
	}
	if _, err := s.repo.CommitObject(want); err != nil {
		err := s.repo.FetchContext(ctx, opts)
		// Indexing a downloaded pack keeps up to 96 MiB of delta bases in
		// go-git's parser (a fixed cache), so a first fetch of a long
		// history ends with a heap goal twice that: the checkout and the
		// pass after it would grow into it. They start from what is live
		// instead (a 100 MB history: peak 275 → 190 MiB).
		debug.FreeOSMemory()
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return s.current, fmt.Errorf("fetch %s %s: %s", gitrepo.Redact(s.cfg.URL), s.ref(), gitrepo.Redact(err.Error()))
		}
	}
	commit, err := s.repo.CommitObject(want)
	if err != nil {
		return s.current, fmt.Errorf("read commit %s of %s: %w", want, s.ref(), err)
	}
	if err := s.check(want, sinceRef, sinceHash); err != nil {
		return s.current, err
	}
	if err := s.checkout(want); err != nil {
		return s.current, err
	}
	s.current = Revision{Commit: want.String(), Ref: s.ref(), Dir: s.cfg.Dir, Fetched: true, Tree: commit.TreeHash.String()}
	return s.current, nil
}

// parseSince reads a revision as status records it.
func parseSince(since string) (ref string, h plumbing.Hash, err error) {
	if since == "" {
		return "", plumbing.ZeroHash, nil
	}
	hash := since
	if i := strings.LastIndex(since, "@sha1:"); i >= 0 {
		ref, hash = since[:i], since[i+len("@sha1:"):]
	}
	if !plumbing.IsHash(hash) {
		return "", plumbing.ZeroHash, fmt.Errorf("last applied revision %q: want ref@sha1:<40 hex digits>", since)
	}
	return ref, plumbing.NewHash(hash), nil
}

// check refuses want when it does not descend from since (unless rewinds
// are allowed) and, with a keyring, when a commit after since (or after
// the anchor) is not trusted.
func (s *Source) check(want plumbing.Hash, sinceRef string, since plumbing.Hash) error {
	var trusted []plumbing.Hash
	if !since.IsZero() && s.history {
		sc, err := s.repo.CommitObject(since)
		known := err == nil
		if known {
			// Applied, hence verified when it was: its history is trusted.
			trusted = append(trusted, since)
		}
		pinned := s.cfg.Commit != ""
		otherRef := sinceRef != "" && sinceRef != s.ref()
		if !s.cfg.AllowRewind && !pinned && !otherRef && since != want {
			// The ref's history was fetched in full: a since missing from
			// it is not an ancestor of want.
			descends := false
			if known {
				tip, err := s.repo.CommitObject(want)
				if err != nil {
					return fmt.Errorf("read commit %s of %s: %w", want, s.ref(), err)
				}
				if descends, err = sc.IsAncestor(tip); err != nil {
					return fmt.Errorf("is %s an ancestor of %s: %w", since, want, err)
				}
			}
			if !descends {
				return &RewoundError{Ref: s.ref(), From: since.String(), To: want.String()}
			}
		}
	}
	if s.keyring == nil {
		return nil
	}
	if s.cfg.VerifyAnchor != "" {
		anchor := plumbing.NewHash(s.cfg.VerifyAnchor)
		if _, err := s.repo.CommitObject(anchor); err != nil {
			return fmt.Errorf("%w: the trust anchor %s is not in the history of %s", ErrUntrusted, anchor, s.ref())
		}
		trusted = append(trusted, anchor)
	}
	if err := gitrepo.VerifyHistory(s.repo.Storer, s.keyring, want, trusted...); err != nil {
		return fmt.Errorf("%s: %w", s.ref(), err)
	}
	return nil
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
