package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"driftless.dev/automator/internal/checkout"
	"driftless.dev/automator/internal/policy"
	"driftless.dev/automator/internal/update"
)

// clone reads the automator's warm clone from Git's objects only: branch
// tips (the remote-tracking refs the passes fetch), the log's trailers and
// the markers of a branch's tree. The working tree is never read: the
// pass resets and rewrites it. What is read is cached by commit, which
// never changes, so a page costs a Git read only after the branch moved.
type clone struct {
	dir          string
	manifestPath string
	// mirror is the gates' bare mirror (promote's): the branches the
	// clone does not hold (those Promotion documents name) are read there.
	mirror string

	mu    sync.Mutex
	logs  map[plumbing.Hash]map[string]Commit
	trees map[plumbing.Hash]declared
}

// declared is what a branch's tree declares: its markers, and what could
// not be read (each naming file and line).
type declared struct {
	markers  []update.Marker
	problems []string
}

func newClone(dir, manifestPath, mirror string) *clone {
	return &clone{dir: dir, manifestPath: manifestPath, mirror: mirror, logs: map[plumbing.Hash]map[string]Commit{}, trees: map[plumbing.Hash]declared{}}
}

// readWaits are the pauses between the attempts of one read of the
// clone. The pass rewrites refs in place (truncated, then written) and
// adds packs while a page may be reading: a read that met a ref being
// rewritten or a pack without its index yet is done again, on a fresh
// open that sees the finished files. A branch the clone does not hold at
// all fails at once.
var readWaits = []time.Duration{0, 2 * time.Millisecond, 8 * time.Millisecond, 32 * time.Millisecond, 128 * time.Millisecond}

// read opens the clone afresh (so packs fetched since are seen) and runs fn.
func (c *clone) read(fn func(repo *git.Repository) error) error {
	return readAt(c.dir, fn)
}

// readAt opens the repository in dir afresh and runs fn, again after a
// pause while it meets files being written.
func readAt(dir string, fn func(repo *git.Repository) error) error {
	var err error
	for _, wait := range readWaits {
		time.Sleep(wait)
		var repo *git.Repository
		if repo, err = git.PlainOpen(dir); err == nil {
			if err = fn(repo); err == nil {
				return nil
			}
		}
		if errors.Is(err, errNotFetched) {
			return err
		}
	}
	return err
}

// errNotFetched: the clone holds no tip of the branch.
var errNotFetched = errors.New("not fetched by the automator (its clone, or the gates' mirror)")

// tip is the last fetched tip of branch in repo, the clone in dir.
func tip(repo *git.Repository, dir, branch string) (plumbing.Hash, error) {
	return tipAt(repo, filepath.Join(dir, ".git"), branch, plumbing.NewRemoteReferenceName("origin", branch))
}

// tipAt reads the ref name of branch in repo, whose Git folder is gitDir.
func tipAt(repo *git.Repository, gitDir, branch string, name plumbing.ReferenceName) (plumbing.Hash, error) {
	ref, err := repo.Reference(name, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		if _, serr := os.Lstat(filepath.Join(gitDir, filepath.FromSlash(name.String()))); serr == nil {
			// The ref's file is there but reads empty: being rewritten.
			return plumbing.ZeroHash, fmt.Errorf("branch %s: the ref is being written", branch)
		}
		return plumbing.ZeroHash, fmt.Errorf("branch %s: %w", branch, errNotFetched)
	}
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("branch %s: %w", branch, err)
	}
	return ref.Hash(), nil
}

// Commit is one commit of a branch.
type Commit struct {
	Hash    string    `json:"hash"`
	Author  string    `json:"author"`
	Email   string    `json:"email"`
	When    time.Time `json:"when"`
	Subject string    `json:"subject"`
	// Image is the reference the commit's Driftless-Image trailer gives
	// for the policy (the last commit a policy made).
	Image string `json:"image,omitempty"`
}

func commitOf(c *object.Commit) Commit {
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return Commit{Hash: c.Hash.String(), Author: c.Author.Name, Email: c.Author.Email, When: c.Author.When, Subject: subject}
}

// logDepth is how far back the log is searched for each policy's last bump.
const logDepth = 1000

// lastBumps returns, per policy, the newest commit on branch whose
// trailers name it (Driftless-Policy, as the automator's commit message
// ends), searching the first-parent history up to logDepth commits.
func (c *clone) lastBumps(branch string) (map[string]Commit, error) {
	var out map[string]Commit
	err := c.read(func(repo *git.Repository) error {
		h, err := tip(repo, c.dir, branch)
		if err != nil {
			return err
		}
		c.mu.Lock()
		cached, ok := c.logs[h]
		c.mu.Unlock()
		if ok {
			out = cached
			return nil
		}
		found := map[string]Commit{}
		cm, err := repo.CommitObject(h)
		for n := 0; err == nil && n < logDepth; n++ {
			for _, tr := range trailers(cm.Message) {
				if _, seen := found[tr.policy]; !seen {
					bump := commitOf(cm)
					bump.Image = tr.image
					found[tr.policy] = bump
				}
			}
			if cm.NumParents() == 0 {
				break
			}
			cm, err = cm.Parent(0)
		}
		if err != nil {
			return fmt.Errorf("read the log of %s: %w", branch, err)
		}
		c.mu.Lock()
		if len(c.logs) > 16 {
			clear(c.logs)
		}
		c.logs[h] = found
		c.mu.Unlock()
		out = found
		return nil
	})
	return out, err
}

type trailer struct{ policy, image string }

// trailers reads the Driftless-Policy and Driftless-Image trailers of a
// commit message, paired in order, as DefaultMessage writes them.
func trailers(msg string) []trailer {
	if !strings.Contains(msg, "Driftless-Policy: ") {
		return nil
	}
	var out []trailer
	for line := range strings.SplitSeq(msg, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "Driftless-Policy: "); ok {
			out = append(out, trailer{policy: strings.TrimSpace(v)})
		} else if v, ok := strings.CutPrefix(line, "Driftless-Image: "); ok && len(out) > 0 && out[len(out)-1].image == "" {
			out[len(out)-1].image = strings.TrimSpace(v)
		}
	}
	return out
}

// branch reads the tip of branch and what its tree declares: from the
// clone, or from the gates' mirror for a branch the clone does not hold.
func (c *clone) branch(name string) (Commit, declared, error) {
	cm, d, err := c.branchAt(c.dir, name, func(repo *git.Repository) (plumbing.Hash, error) { return tip(repo, c.dir, name) })
	if errors.Is(err, errNotFetched) && c.mirror != "" {
		var merr error
		cm, d, merr = c.branchAt(c.mirror, name, func(repo *git.Repository) (plumbing.Hash, error) {
			return tipAt(repo, c.mirror, name, plumbing.NewBranchReferenceName(name))
		})
		if !errors.Is(merr, errNotFetched) {
			err = merr
		}
	}
	return cm, d, err
}

func (c *clone) branchAt(dir, name string, tipOf func(*git.Repository) (plumbing.Hash, error)) (Commit, declared, error) {
	var cm Commit
	var d declared
	err := readAt(dir, func(repo *git.Repository) error {
		h, err := tipOf(repo)
		if err != nil {
			return err
		}
		commit, err := repo.CommitObject(h)
		if err != nil {
			return fmt.Errorf("commit %s of %s: %w", h, name, err)
		}
		cm = commitOf(commit)
		c.mu.Lock()
		cached, ok := c.trees[h]
		c.mu.Unlock()
		if ok {
			d = cached
			return nil
		}
		if d, err = c.scanTree(repo, commit); err != nil {
			return fmt.Errorf("read the markers of %s at %s: %w", name, h, err)
		}
		c.mu.Lock()
		if len(c.trees) > 16 {
			clear(c.trees)
		}
		c.trees[h] = d
		c.mu.Unlock()
		return nil
	})
	return cm, d, err
}

// scanTree reads the markers of commit's tree with the pass's own code
// (update.Scan over a checkout.Tree), so what the fleet page says a
// branch declares is what a pass on that branch would read. The tree is
// written to a temporary folder through an os.Root: every folder and
// link as committed, and every file, with its content only when it holds
// a marker (update.Scan reads no other), so links resolve exactly as in
// the pass's checkout and nothing lands outside the folder.
func (c *clone) scanTree(repo *git.Repository, commit *object.Commit) (declared, error) {
	tree, err := commit.Tree()
	if err != nil {
		return declared{}, err
	}
	dir, err := os.MkdirTemp("", "driftless-fleet-")
	if err != nil {
		return declared{}, err
	}
	defer os.RemoveAll(dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return declared{}, err
	}
	defer root.Close()
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return declared{}, err
		}
		if err := materialize(root, repo, name, entry); err != nil {
			return declared{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	t, err := checkout.Open(dir)
	if err != nil {
		return declared{}, err
	}
	defer t.Close()
	markers, err := update.Scan(t, c.manifestPath)
	d := declared{markers: markers}
	for _, e := range policy.Flatten(err) {
		d.problems = append(d.problems, e.Error())
	}
	return d, nil
}

func materialize(root *os.Root, repo *git.Repository, name string, e object.TreeEntry) error {
	switch e.Mode {
	case filemode.Dir:
		return root.MkdirAll(name, 0o755)
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		data, err := blob(repo, e)
		if err != nil {
			return err
		}
		if !bytes.Contains(data, []byte("$imagepolicy")) {
			data = nil
		}
		return root.WriteFile(name, data, 0o644)
	case filemode.Symlink:
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return err
		}
		target, err := blob(repo, e)
		if err != nil {
			return err
		}
		// Written as committed: checkout.Tree refuses, as in the pass,
		// a link that leads outside or into .git.
		return root.Symlink(string(target), name)
	}
	return nil // submodules: nothing to read
}

func blob(repo *git.Repository, e object.TreeEntry) ([]byte, error) {
	b, err := repo.BlobObject(e.Hash)
	if err != nil {
		return nil, err
	}
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
