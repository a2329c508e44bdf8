// Package gitrepo keeps a warm clone of one branch of a Git repository
// with go-git: it fetches incrementally, resets to the remote tip, commits
// what changed and pushes without ever forcing.
package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"driftless.dev/shared/redact"
)

// Sentinel errors.
var (
	// ErrNoChange: there was nothing to commit.
	ErrNoChange = errors.New("nothing to commit")
	// ErrRejected: the remote refused the push because its branch moved;
	// fetch, redo the change on the new tip, and push again.
	ErrRejected = errors.New("push rejected: the remote branch moved")
	// ErrAuth: the remote refused the credentials.
	ErrAuth = errors.New("authentication failed")
)

// Auth holds credentials for the remote. Set at most one kind.
type Auth struct {
	// Username and Password (or a token as Password) for HTTP(S).
	Username string
	Password string
	// SSHKeyFile is a private key for SSH URLs, with SSHKeyPassphrase if
	// it is encrypted; SSHKnownHosts is a known_hosts file to check the
	// server against (required: host keys are never accepted blindly).
	SSHKeyFile       string
	SSHKeyPassphrase string
	SSHKnownHosts    string
}

// String never shows a secret: Auth may end up in a %v.
func (a Auth) String() string {
	switch {
	case a.SSHKeyFile != "":
		return "ssh-key(" + a.SSHKeyFile + ")"
	case a.Password != "":
		return "basic(" + a.Username + ", ***)"
	}
	return "anonymous"
}

// Method is the go-git transport auth for a; nil means anonymous.
func (a Auth) Method() (transport.AuthMethod, error) {
	switch {
	case a.SSHKeyFile != "":
		keys, err := gitssh.NewPublicKeysFromFile("git", a.SSHKeyFile, a.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("read SSH key %s: %w", a.SSHKeyFile, err)
		}
		if a.SSHKnownHosts == "" {
			return nil, errors.New("SSH needs a known_hosts file to check the server's key")
		}
		cb, err := knownhosts.New(a.SSHKnownHosts)
		if err != nil {
			return nil, fmt.Errorf("read known_hosts %s: %w", a.SSHKnownHosts, err)
		}
		keys.HostKeyCallback = ssh.HostKeyCallback(cb)
		return keys, nil
	case a.Password != "":
		user := a.Username
		if user == "" {
			user = "git" // token-only: most hosts accept any user name
		}
		return &githttp.BasicAuth{Username: user, Password: a.Password}, nil
	}
	return nil, nil
}

// Repo is a working clone of one branch.
type Repo struct {
	dir    string
	url    string
	branch string
	auth   transport.AuthMethod
	repo   *git.Repository
	log    *zap.Logger
	// extra are the branches the last Fetch brought besides branch, so a
	// clone made again brings them too.
	extra []string
	// later: a clone that fails in Open is made by the first Fetch.
	later bool
}

// Option configures Open.
type Option func(*Repo)

// CloneLater makes Open return the Repo even when it cannot clone (the
// remote is down or refuses the credentials): the first Fetch clones, and
// its error is that pass's. For a program whose loop retries, which must
// not exit, and wait out a restart back-off, because Git was away when it
// started; a one-shot command wants the error at once (the default).
func CloneLater() Option { return func(r *Repo) { r.later = true } }

// WithLog logs what the clone does on its own: cloning again a clone it
// found damaged. Default: silent.
func WithLog(log *zap.Logger) Option { return func(r *Repo) { r.log = log } }

// Open returns the clone of url's branch in dir, cloning it if dir holds
// none yet and reusing it (a warm clone) if it does. A warm clone is
// checked first (see Check): one a killed process left damaged is cloned
// again, keeping its trust record; what killed writers left behind
// (temporary and lock files) is removed.
func Open(ctx context.Context, dir, url, branch string, auth Auth, opts ...Option) (*Repo, error) {
	am, err := auth.Method()
	if err != nil {
		return nil, err
	}
	r := &Repo{dir: dir, url: url, branch: branch, auth: am, log: zap.NewNop()}
	for _, o := range opts {
		o(r)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		if err := RemoveLeftovers(dir); err != nil {
			return nil, fmt.Errorf("clear what a killed writer left in %s: %w", dir, err)
		}
		repo, err := git.PlainOpen(dir)
		switch {
		case err != nil:
			return r.orLater(r.reclone(ctx, fmt.Errorf("%w: open: %w", ErrDamaged, err)))
		case !hasRemote(repo):
			// Its config emptied or cut short mid-write.
			return r.orLater(r.reclone(ctx, fmt.Errorf("%w: config: no remote origin", ErrDamaged)))
		case !sameRemote(repo, url):
			// A clone of something else: start over.
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("clear %s: %w", dir, err)
			}
		default:
			if err := Check(repo, dir); err != nil {
				return r.orLater(r.reclone(ctx, err))
			}
			r.repo = repo
			return r, nil
		}
	}
	return r.orLater(r.clone(ctx, plumbing.ZeroHash))
}

// orLater is Open's result after a clone: the error, unless the clone may
// wait for the first Fetch.
func (r *Repo) orLater(err error) (*Repo, error) {
	switch {
	case err == nil:
		return r, nil
	case r.later:
		r.log.Warn("cannot clone yet; the first pass clones", zap.Error(err))
		return r, nil
	}
	return nil, err
}

func hasRemote(repo *git.Repository) bool {
	_, err := repo.Remote("origin")
	return err == nil
}

func sameRemote(repo *git.Repository, url string) bool {
	rem, err := repo.Remote("origin")
	return err == nil && len(rem.Config().URLs) == 1 && rem.Config().URLs[0] == url
}

// clone clones afresh into dir, and records trusted as verified when the
// new clone holds it. It clones beside dir and swaps the new clone in only
// once it is whole: a clone that fails (the remote is down) leaves what
// dir held, and its trust record, for the next try.
func (r *Repo) clone(ctx context.Context, trusted plumbing.Hash) error {
	next := filepath.Clean(r.dir) + ".cloning"
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("clear %s: %w", next, err)
	}
	_, err := git.PlainCloneContext(ctx, next, false, &git.CloneOptions{
		URL: r.url, Auth: r.auth, ReferenceName: plumbing.NewBranchReferenceName(r.branch), SingleBranch: true,
	})
	if err != nil {
		os.RemoveAll(next)
		return fmt.Errorf("clone %s branch %s: %w", Redact(r.url), r.branch, classify(err))
	}
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("clear %s: %w", r.dir, err)
	}
	if err := os.Rename(next, r.dir); err != nil {
		return fmt.Errorf("move the new clone to %s: %w", r.dir, err)
	}
	repo, err := git.PlainOpen(r.dir)
	if err != nil {
		return fmt.Errorf("open the new clone in %s: %w", r.dir, err)
	}
	r.repo = repo
	if !trusted.IsZero() {
		if _, err := repo.CommitObject(trusted); err == nil {
			if err := r.MarkVerified(trusted); err != nil {
				return err
			}
		}
	}
	return nil
}

// reclone clones again a clone found damaged, carrying its trust record
// over, and says so. On error the Repo has no clone: Open returns the
// error, and nothing else uses the Repo.
func (r *Repo) reclone(ctx context.Context, damage error) error {
	r.log.Warn("the warm clone is damaged (a killed process, a full or failing disk): cloning it again",
		zap.String("dir", r.dir), zap.Error(damage))
	return r.clone(ctx, salvage(r.dir))
}

// recover checks the clone after a failed operation, and clones it again
// when it is damaged. It returns the damage, or nil when the clone is
// whole (the failure was elsewhere: the network, the remote).
func (r *Repo) recover(ctx context.Context) (damage error, err error) {
	if r.repo == nil {
		return errors.New("no clone"), r.clone(ctx, salvage(r.dir))
	}
	if damage = Check(r.repo, r.dir); damage == nil {
		return nil, nil
	}
	if err := r.reclone(ctx, damage); err != nil {
		return damage, err
	}
	if len(r.extra) > 0 {
		if _, err := r.fetch(ctx, r.extra...); err != nil {
			return damage, err
		}
	}
	return damage, nil
}

// Dir is the working tree.
func (r *Repo) Dir() string { return r.dir }

// Branch is the branch the clone follows.
func (r *Repo) Branch() string { return r.branch }

// remoteRef is where the fetched tip of branch lands.
func remoteRef(branch string) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName("origin", branch)
}

// Fetch brings the remote tip of branch (and of extra branches) into the
// clone, transferring only new objects, and returns the tip of branch. A
// fetch that fails on a damaged clone clones it again and fetches once more.
func (r *Repo) Fetch(ctx context.Context, extra ...string) (plumbing.Hash, error) {
	r.extra = extra
	if r.repo == nil {
		// Open could not clone (CloneLater); what dir holds may be a
		// damaged clone whose trust record carries over.
		if err := r.clone(ctx, salvage(r.dir)); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	tip, err := r.fetch(ctx, extra...)
	if err == nil || ctx.Err() != nil {
		return tip, err
	}
	if damage, rerr := r.recover(ctx); rerr != nil {
		return tip, errors.Join(err, rerr)
	} else if damage == nil {
		return tip, err
	}
	return r.fetch(ctx, extra...)
}

func (r *Repo) fetch(ctx context.Context, extra ...string) (plumbing.Hash, error) {
	specs := []config.RefSpec{config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", r.branch, remoteRef(r.branch)))}
	for _, b := range extra {
		specs = append(specs, config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", b, remoteRef(b))))
	}
	err := r.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: specs, Auth: r.auth, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		// A missing extra branch is not an error; the followed one is.
		if len(extra) == 0 || !strings.Contains(err.Error(), "couldn't find remote ref") {
			return plumbing.ZeroHash, fmt.Errorf("fetch %s branch %s: %w", Redact(r.url), r.branch, classify(err))
		}
		specs = specs[:1]
		if err := r.repo.FetchContext(ctx, &git.FetchOptions{RemoteName: "origin", RefSpecs: specs, Auth: r.auth, Force: true}); err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return plumbing.ZeroHash, fmt.Errorf("fetch %s branch %s: %w", Redact(r.url), r.branch, classify(err))
		}
	}
	return r.RemoteTip(r.branch)
}

// RemoteTip returns the last fetched tip of branch.
func (r *Repo) RemoteTip(branch string) (plumbing.Hash, error) {
	if r.repo == nil {
		return plumbing.ZeroHash, fmt.Errorf("branch %s not fetched: no clone yet", branch)
	}
	ref, err := r.repo.Reference(remoteRef(branch), true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("branch %s not fetched: %w", branch, err)
	}
	return ref.Hash(), nil
}

// Reset makes the working tree exactly the commit at, dropping any local
// change or untracked file, and points the local branch at it. A reset
// that fails on a damaged clone clones it again and resets once more.
func (r *Repo) Reset(at plumbing.Hash) error {
	err := r.reset(at)
	if err == nil {
		return nil
	}
	// A reset reads only local state: no context of its caller's to obey.
	ctx := context.Background()
	if damage, rerr := r.recover(ctx); rerr != nil {
		return errors.Join(err, rerr)
	} else if damage == nil {
		return err
	}
	return r.reset(at)
}

func (r *Repo) reset(at plumbing.Hash) error {
	wt, err := r.repo.Worktree()
	if err != nil {
		return fmt.Errorf("worktree: %w", err)
	}
	local := plumbing.NewBranchReferenceName(r.branch)
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(local, at)); err != nil {
		return fmt.Errorf("point %s at %s: %w", r.branch, at, err)
	}
	if err := r.repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, local)); err != nil {
		return fmt.Errorf("check out %s: %w", r.branch, err)
	}
	if err := wt.Reset(&git.ResetOptions{Commit: at, Mode: git.HardReset}); err != nil {
		return fmt.Errorf("reset to %s: %w", at, err)
	}
	if err := wt.Clean(&git.CleanOptions{Dir: true}); err != nil {
		return fmt.Errorf("clean working tree: %w", err)
	}
	return nil
}

// Sync fetches and resets to the remote tip, the start of every pass.
func (r *Repo) Sync(ctx context.Context) (plumbing.Hash, error) {
	tip, err := r.Fetch(ctx)
	if err != nil {
		return tip, err
	}
	return tip, r.Reset(tip)
}

// Signature is a commit's author or committer.
type Signature struct {
	Name  string
	Email string
}

// Commit records every change in the working tree as one commit on the
// local branch. It returns ErrNoChange when there is none: never an empty
// commit.
func (r *Repo) Commit(msg string, author Signature, signKey *openpgp.Entity) (plumbing.Hash, error) {
	wt, err := r.repo.Worktree()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("worktree: %w", err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return plumbing.ZeroHash, r.afterLocalFailure(fmt.Errorf("stage changes: %w", err))
	}
	st, err := wt.Status()
	if err != nil {
		return plumbing.ZeroHash, r.afterLocalFailure(fmt.Errorf("status: %w", err))
	}
	if st.IsClean() {
		return plumbing.ZeroHash, ErrNoChange
	}
	sig := &object.Signature{Name: author.Name, Email: author.Email, When: time.Now()}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, SignKey: signKey})
	if err != nil {
		return plumbing.ZeroHash, r.afterLocalFailure(fmt.Errorf("commit: %w", err))
	}
	return h, nil
}

// afterLocalFailure clones again a clone that a failed commit or push
// found damaged, so the next pass starts whole; the local commit is gone
// with it, and the caller's next pass redoes it. It returns err, saying so.
func (r *Repo) afterLocalFailure(err error) error {
	damage, rerr := r.recover(context.Background())
	switch {
	case rerr != nil:
		return errors.Join(err, rerr)
	case damage != nil:
		return fmt.Errorf("%w (the clone was damaged and is cloned again: %w)", err, damage)
	}
	return err
}

// Push sends the local branch to branch target on the remote as a
// fast-forward only. It returns ErrRejected when the remote moved.
func (r *Repo) Push(ctx context.Context, target string) error {
	spec := config.RefSpec(fmt.Sprintf("refs/heads/%s:refs/heads/%s", r.branch, target))
	err := r.repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: r.auth, Force: false})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return nil
	case errors.Is(err, git.ErrNonFastForwardUpdate), isRejection(err):
		return fmt.Errorf("push to %s: %w", target, ErrRejected)
	}
	err = fmt.Errorf("push %s to %s: %w", Redact(r.url), target, classify(err))
	if ctx.Err() != nil {
		return err
	}
	return r.afterLocalFailure(err)
}

// Repository exposes the go-git repository for reading history.
func (r *Repo) Repository() *git.Repository { return r.repo }

func isRejection(err error) bool {
	s := err.Error()
	return strings.Contains(s, "non-fast-forward") || strings.Contains(s, "fetch first") ||
		strings.Contains(s, "failed to update ref") || strings.Contains(s, "rejected")
}

func classify(err error) error {
	if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
		return fmt.Errorf("%w: %v", ErrAuth, err)
	}
	return errors.New(Redact(err.Error()))
}

// Redact hides the user information and the query of every URL in s, so a
// URL with a token in it never reaches a log or an error.
func Redact(s string) string { return redact.URLs(s) }

// Diff returns the unified diff between two commits, as `git diff` shows it.
func (r *Repo) Diff(from, to plumbing.Hash) (string, error) {
	a, err := r.repo.CommitObject(from)
	if err != nil {
		return "", fmt.Errorf("diff: read %s: %w", from, err)
	}
	b, err := r.repo.CommitObject(to)
	if err != nil {
		return "", fmt.Errorf("diff: read %s: %w", to, err)
	}
	p, err := a.Patch(b)
	if err != nil {
		return "", fmt.Errorf("diff %s..%s: %w", from, to, err)
	}
	return p.String(), nil
}
