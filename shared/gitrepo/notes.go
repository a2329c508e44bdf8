package gitrepo

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// NotesRef is the full name of the notes ref name: refs/notes/<name>.
func NotesRef(name string) plumbing.ReferenceName {
	return plumbing.ReferenceName("refs/notes/" + name)
}

// Notes is one notes ref of a mirror's remote, in Git's own layout: the
// ref points at a commit whose tree maps each annotated commit's hash to
// a blob holding its note, either flat or fanned out into folders named
// by the hash's first two digits (Git fans out when notes are many), so
// `git notes show` and `git log --notes=<name>` read what Notes writes,
// and the other way round.
type Notes struct {
	m   *Mirror
	ref plumbing.ReferenceName
	// texts caches notes by blob hash: a note's text never changes
	// under its hash.
	texts map[plumbing.Hash]string
	// signed is what Signed has read so far.
	signed *signedNotes
}

// Notes returns the notes ref name (refs/notes/<name>) of the mirror.
func (m *Mirror) Notes(name string) *Notes {
	return &Notes{m: m, ref: NotesRef(name), texts: map[plumbing.Hash]string{}}
}

// Ref is the notes ref's full name.
func (n *Notes) Ref() plumbing.ReferenceName { return n.ref }

// Fetch brings the remote's notes into the mirror and returns their tip;
// zero when the remote has no note yet.
func (n *Notes) Fetch(ctx context.Context) (plumbing.Hash, error) {
	tips, err := n.m.Fetch(ctx, n.ref)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return tips[n.ref], nil
}

// Tip is the notes commit as last fetched or pushed; zero when none.
func (n *Notes) Tip() plumbing.Hash { return n.m.Tip(n.ref) }

// Read returns the note on commit as last fetched ("" when it has none).
func (n *Notes) Read(commit plumbing.Hash) (string, error) {
	root, err := n.tree(n.Tip())
	if err != nil {
		return "", err
	}
	_, blob, err := n.find(root, commit.String())
	if err != nil || blob.IsZero() {
		return "", err
	}
	return n.text(blob)
}

// All returns every note as last fetched, by commit.
func (n *Notes) All() (map[plumbing.Hash]string, error) {
	root, err := n.tree(n.Tip())
	if err != nil {
		return nil, err
	}
	out, err := allNotes(n.m.repo.Storer, root, n.text)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", n.ref, err)
	}
	return out, nil
}

// ReadNotes returns every note of the notes ref in a repository (a
// person's clone, where `git fetch origin refs/notes/*:refs/notes/*`
// brought them), by commit; none when the ref is absent.
func ReadNotes(repo *git.Repository, ref plumbing.ReferenceName) (map[plumbing.Hash]string, error) {
	r, err := repo.Reference(ref, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return map[plumbing.Hash]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	c, err := repo.CommitObject(r.Hash())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	text := func(h plumbing.Hash) (string, error) {
		b, err := readBlob(repo.Storer, h)
		return string(b), err
	}
	out, err := allNotes(repo.Storer, c.TreeHash, text)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	return out, nil
}

// allNotes walks a notes tree, flat or fanned out.
func allNotes(s storer.EncodedObjectStorer, root plumbing.Hash, text func(plumbing.Hash) (string, error)) (map[plumbing.Hash]string, error) {
	out := map[plumbing.Hash]string{}
	var walk func(tree plumbing.Hash, prefix string) error
	walk = func(tree plumbing.Hash, prefix string) error {
		entries, err := readTree(s, tree)
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := prefix + e.Name
			switch {
			case e.Mode == filemode.Dir && len(name) < 40 && isHex(e.Name):
				if err := walk(e.Hash, name); err != nil {
					return err
				}
			case e.Mode != filemode.Dir && len(name) == 40 && isHex(e.Name):
				t, err := text(e.Hash)
				if err != nil {
					return err
				}
				out[plumbing.NewHash(name)] = t
			}
		}
		return nil
	}
	return out, walk(root, "")
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && len(s)%2 == 0
}

func (n *Notes) text(blob plumbing.Hash) (string, error) {
	if t, ok := n.texts[blob]; ok {
		return t, nil
	}
	b, err := readBlob(n.m.repo.Storer, blob)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", n.ref, err)
	}
	n.texts[blob] = string(b)
	return string(b), nil
}

// tree is the root tree of the notes commit tip; zero for none.
func (n *Notes) tree(tip plumbing.Hash) (plumbing.Hash, error) {
	if tip.IsZero() {
		return plumbing.ZeroHash, nil
	}
	c, err := n.m.repo.CommitObject(tip)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read %s at %s: %w", n.ref, tip, err)
	}
	return c.TreeHash, nil
}

// find returns where the note of commit (its hash in hex) lives under
// root and its blob, or the path a new note takes: flat, or fanned out
// like the notes already there.
func (n *Notes) find(root plumbing.Hash, commit string) ([]string, plumbing.Hash, error) {
	var path []string
	tree, rest := root, commit
	for {
		entries, err := readTree(n.m.repo.Storer, tree)
		if err != nil {
			return nil, plumbing.ZeroHash, fmt.Errorf("read %s: %w", n.ref, err)
		}
		fanned := false
		var next plumbing.Hash
		for _, e := range entries {
			switch {
			case e.Name == rest && e.Mode != filemode.Dir:
				return append(path, rest), e.Hash, nil
			case e.Mode == filemode.Dir && len(e.Name) == 2 && isHex(e.Name):
				fanned = true
				if strings.HasPrefix(rest, e.Name) {
					next = e.Hash
				}
			}
		}
		if !fanned || len(rest) <= 2 {
			return append(path, rest), plumbing.ZeroHash, nil
		}
		path = append(path, rest[:2])
		tree, rest = next, rest[2:]
		if tree.IsZero() {
			// A new folder at this level: the rest of the hash is the name.
			return append(path, rest), plumbing.ZeroHash, nil
		}
	}
}

// AppendOptions say who writes the notes commit.
type AppendOptions struct {
	Author Signature
	// SignKey signs the notes commit when set.
	SignKey *openpgp.Entity
	// Message of the notes commit. Default "Notes added by Driftless".
	Message string
	// Attempts bounds fetch-edit-push rounds when other writers push
	// first. Default 10.
	Attempts int
}

// AppendResult is what an Append did.
type AppendResult struct {
	// Commit is the notes commit pushed; zero when every line was there.
	Commit plumbing.Hash
	// Added counts the lines added.
	Added int
	// Attempts is how many pushes it took.
	Attempts int
}

// Append adds lines to the notes of commits and pushes the notes ref as
// a fast-forward: a writer that pushed first is never overwritten. When
// the push is rejected because another writer (another cluster) pushed
// meanwhile, it fetches and redoes the edit on the new tip, as the
// automator redoes a bump. A line already in a note is not added again,
// so a redo after a push whose answer was lost adds nothing twice.
func (n *Notes) Append(ctx context.Context, lines map[plumbing.Hash][]string, opts AppendOptions) (AppendResult, error) {
	if opts.Attempts <= 0 {
		opts.Attempts = 10
	}
	if opts.Message == "" {
		opts.Message = "Notes added by Driftless"
	}
	commits := make([]plumbing.Hash, 0, len(lines))
	for c := range lines {
		commits = append(commits, c)
	}
	slices.SortFunc(commits, func(a, b plumbing.Hash) int { return strings.Compare(a.String(), b.String()) })
	var res AppendResult
	for res.Attempts = 1; res.Attempts <= opts.Attempts; res.Attempts++ {
		tip, err := n.Fetch(ctx)
		if err != nil {
			return res, err
		}
		root, err := n.tree(tip)
		if err != nil {
			return res, err
		}
		res.Added = 0
		for _, c := range commits {
			path, blob, err := n.find(root, c.String())
			if err != nil {
				return res, err
			}
			old := ""
			if !blob.IsZero() {
				if old, err = n.text(blob); err != nil {
					return res, err
				}
			}
			text := old
			for _, l := range lines[c] {
				if l = strings.TrimRight(l, "\n"); l == "" || hasLine(text, l) {
					continue
				}
				if text != "" && !strings.HasSuffix(text, "\n") {
					text += "\n"
				}
				text += l + "\n"
				res.Added++
			}
			if text == old {
				continue
			}
			nb, err := writeBlob(n.m.repo.Storer, []byte(text))
			if err != nil {
				return res, fmt.Errorf("write note: %w", err)
			}
			if root, err = setPath(n.m.repo.Storer, root, path, nb); err != nil {
				return res, fmt.Errorf("write notes tree: %w", err)
			}
		}
		if res.Added == 0 {
			return res, nil
		}
		var parents []plumbing.Hash
		if !tip.IsZero() {
			parents = []plumbing.Hash{tip}
		}
		h, err := n.m.NewCommit(root, parents, opts.Message, opts.Author, opts.SignKey)
		if err != nil {
			return res, err
		}
		err = n.m.Push(ctx, h, n.ref)
		if errors.Is(err, ErrRejected) {
			// Writers that collided would collide again in step: spread
			// their next tries a little.
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(min(res.Attempts*20, 200)) * int64(time.Millisecond)))):
			}
			continue
		}
		if err != nil {
			return res, err
		}
		res.Commit = h
		return res, nil
	}
	res.Attempts = opts.Attempts
	return res, fmt.Errorf("append to %s: still rejected after %d attempts: %w", n.ref, opts.Attempts, ErrRejected)
}

func hasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// signedNotes is what Signed has read of a notes history: the lines each
// signed commit added, in the order they were added.
type signedNotes struct {
	k     *Keyring
	seen  map[plumbing.Hash]bool
	lines map[plumbing.Hash][]string
	has   map[plumbing.Hash]map[string]bool
}

// Signed returns the notes as last fetched, keeping only the lines that a
// notes commit signed by a key of k added: a line is trusted as far as the
// commit that wrote it, whoever can push to the notes ref. A line once
// added by a signed commit stays, even where a later commit removed it: a
// record cannot be taken back by rewriting the note. Lines come in the
// order they were added. Each call reads only the notes commits that are
// new since the last.
func (n *Notes) Signed(k *Keyring) (map[plumbing.Hash]string, error) {
	if n.signed == nil || n.signed.k != k {
		n.signed = &signedNotes{k: k, seen: map[plumbing.Hash]bool{}, lines: map[plumbing.Hash][]string{}, has: map[plumbing.Hash]map[string]bool{}}
	}
	sn := n.signed
	s := n.m.repo.Storer
	// The new commits of the notes history, parents first.
	var todo []*object.Commit
	stack := []plumbing.Hash{}
	if tip := n.Tip(); !tip.IsZero() {
		stack = append(stack, tip)
	}
	queued := map[plumbing.Hash]bool{}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if sn.seen[h] || queued[h] {
			continue
		}
		c, err := object.GetCommit(s, h)
		if err != nil {
			return nil, fmt.Errorf("read %s history: %w", n.ref, err)
		}
		queued[h] = true
		todo = append(todo, c)
		stack = append(stack, c.ParentHashes...)
	}
	v := &verifier{s: s, k: k}
	for _, c := range parentsFirst(todo) {
		sn.seen[c.Hash] = true
		if c.PGPSignature == "" || v.signed(c) != nil {
			continue
		}
		added, err := n.added(c)
		if err != nil {
			return nil, err
		}
		for commit, lines := range added {
			if sn.has[commit] == nil {
				sn.has[commit] = map[string]bool{}
			}
			for _, l := range lines {
				if !sn.has[commit][l] {
					sn.has[commit][l] = true
					sn.lines[commit] = append(sn.lines[commit], l)
				}
			}
		}
	}
	out := make(map[plumbing.Hash]string, len(sn.lines))
	for commit, lines := range sn.lines {
		out[commit] = strings.Join(lines, "\n") + "\n"
	}
	return out, nil
}

// added returns the lines notes commit c added to each note: lines of its
// note that its parents' notes of the same commit lack. A commit with one
// parent (every commit Append makes) is read by its diff alone.
func (n *Notes) added(c *object.Commit) (map[plumbing.Hash][]string, error) {
	s := n.m.repo.Storer
	out := map[plumbing.Hash][]string{}
	newLines := func(commit plumbing.Hash, text string, olds ...string) {
		for _, l := range strings.Split(text, "\n") {
			if strings.TrimSpace(l) == "" || slices.ContainsFunc(olds, func(o string) bool { return hasLine(o, l) }) {
				continue
			}
			out[commit] = append(out[commit], l)
		}
	}
	if len(c.ParentHashes) == 1 {
		pc, err := object.GetCommit(s, c.ParentHashes[0])
		if err != nil {
			return nil, fmt.Errorf("read %s history: %w", n.ref, err)
		}
		from, err := pc.Tree()
		if err != nil {
			return nil, err
		}
		to, err := c.Tree()
		if err != nil {
			return nil, err
		}
		changes, err := object.DiffTree(from, to)
		if err != nil {
			return nil, fmt.Errorf("diff %s: %w", n.ref, err)
		}
		for _, ch := range changes {
			name := strings.ReplaceAll(ch.To.Name, "/", "")
			if len(name) != 40 || !isHex(name) || ch.To.TreeEntry.Hash.IsZero() {
				continue
			}
			text, err := n.text(ch.To.TreeEntry.Hash)
			if err != nil {
				return nil, err
			}
			old := ""
			if !ch.From.TreeEntry.Hash.IsZero() {
				if old, err = n.text(ch.From.TreeEntry.Hash); err != nil {
					return nil, err
				}
			}
			newLines(plumbing.NewHash(name), text, old)
		}
		return out, nil
	}
	mine, err := allNotes(s, c.TreeHash, n.text)
	if err != nil {
		return nil, err
	}
	var parents []map[plumbing.Hash]string
	for _, p := range c.ParentHashes {
		pc, err := object.GetCommit(s, p)
		if err != nil {
			return nil, fmt.Errorf("read %s history: %w", n.ref, err)
		}
		pn, err := allNotes(s, pc.TreeHash, n.text)
		if err != nil {
			return nil, err
		}
		parents = append(parents, pn)
	}
	for commit, text := range mine {
		var olds []string
		for _, pn := range parents {
			olds = append(olds, pn[commit])
		}
		newLines(commit, text, olds...)
	}
	return out, nil
}
