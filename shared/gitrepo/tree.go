package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// writeCommit stores a commit and returns its hash; signed with key, as
// go-git's worktree signs (an armored detached signature of the commit
// without its signature), when key is not nil.
func writeCommit(s storer.EncodedObjectStorer, tree plumbing.Hash, parents []plumbing.Hash, msg string, author Signature, key *openpgp.Entity, when time.Time) (plumbing.Hash, error) {
	sig := object.Signature{Name: author.Name, Email: author.Email, When: when}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: parents}
	if key != nil {
		unsigned := s.NewEncodedObject()
		if err := c.EncodeWithoutSignature(unsigned); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("encode commit: %w", err)
		}
		rd, err := unsigned.Reader()
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("encode commit: %w", err)
		}
		var b bytes.Buffer
		err = openpgp.ArmoredDetachSign(&b, key, rd, nil)
		rd.Close()
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("sign commit: %w", err)
		}
		c.PGPSignature = b.String()
	}
	obj := s.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode commit: %w", err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store commit: %w", err)
	}
	return h, nil
}

// writeBlob stores data and returns its hash.
func writeBlob(s storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

func readBlob(s storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	b, err := object.GetBlob(s, h)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// readTree returns the entries of tree h; none for the zero hash.
func readTree(s storer.EncodedObjectStorer, h plumbing.Hash) ([]object.TreeEntry, error) {
	if h.IsZero() {
		return nil, nil
	}
	t, err := object.GetTree(s, h)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", h, err)
	}
	return t.Entries, nil
}

// writeTree stores entries as a tree, in Git's order (a folder sorts as
// if its name ended in '/'), which is what makes the hash Git's own.
func writeTree(s storer.EncodedObjectStorer, entries []object.TreeEntry) (plumbing.Hash, error) {
	sort.Slice(entries, func(i, j int) bool { return sortName(entries[i]) < sortName(entries[j]) })
	obj := s.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode tree: %w", err)
	}
	return s.SetEncodedObject(obj)
}

func sortName(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}

// setPath returns tree root with the file at path p (its folders made
// as needed) set to blob, and every tree on the way written.
func setPath(s storer.EncodedObjectStorer, root plumbing.Hash, p []string, blob plumbing.Hash) (plumbing.Hash, error) {
	entries, err := readTree(s, root)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	entries = append([]object.TreeEntry(nil), entries...)
	i := -1
	for k, e := range entries {
		if e.Name == p[0] {
			i = k
		}
	}
	e := object.TreeEntry{Name: p[0], Mode: filemode.Regular, Hash: blob}
	if len(p) > 1 {
		var sub plumbing.Hash
		if i >= 0 && entries[i].Mode == filemode.Dir {
			sub = entries[i].Hash
		}
		h, err := setPath(s, sub, p[1:], blob)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		e = object.TreeEntry{Name: p[0], Mode: filemode.Dir, Hash: h}
	}
	if i >= 0 {
		entries[i] = e
	} else {
		entries = append(entries, e)
	}
	return writeTree(s, entries)
}

// ErrConflict: a merge found paths changed differently on both sides.
var ErrConflict = errors.New("merge conflict")

// ConflictError names the paths both sides changed differently.
type ConflictError struct {
	Paths []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("changed differently on both sides: %s", strings.Join(e.Paths, ", "))
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// MergeTrees merges the trees theirs and ours, whose common ancestor's
// tree is base (zero hashes for empty trees), path by path and stores the
// result: a path changed on one side only takes that side, a path changed
// the same way on both sides takes it, and a path changed differently on
// both sides (or a file on one side where the other has a folder) is a
// conflict: *ConflictError names every such path and nothing is decided
// for a person. No line-level merge is attempted, so a result never holds
// text that neither side wrote.
//
// A revert of commit C onto ours is MergeTrees(C's tree, ours, C's
// parent's tree).
func MergeTrees(s storer.EncodedObjectStorer, base, ours, theirs plumbing.Hash) (plumbing.Hash, error) {
	var conflicts []string
	h, err := mergeTrees(s, "", base, ours, theirs, &conflicts)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(conflicts) > 0 {
		sort.Strings(conflicts)
		return plumbing.ZeroHash, &ConflictError{Paths: conflicts}
	}
	if h.IsZero() {
		return writeTree(s, nil) // a commit needs a tree, even an empty one
	}
	return h, nil
}

type side struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

func (a side) same(b side) bool { return a.hash == b.hash && a.mode == b.mode }

func mergeTrees(s storer.EncodedObjectStorer, dir string, base, ours, theirs plumbing.Hash, conflicts *[]string) (plumbing.Hash, error) {
	if ours == theirs {
		return ours, nil
	}
	if ours == base {
		return theirs, nil
	}
	if theirs == base {
		return ours, nil
	}
	index := func(h plumbing.Hash) (map[string]side, error) {
		es, err := readTree(s, h)
		if err != nil {
			return nil, err
		}
		m := make(map[string]side, len(es))
		for _, e := range es {
			m[e.Name] = side{e.Hash, e.Mode}
		}
		return m, nil
	}
	b, err := index(base)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	o, err := index(ours)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	t, err := index(theirs)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	names := map[string]bool{}
	for _, m := range []map[string]side{b, o, t} {
		for n := range m {
			names[n] = true
		}
	}
	var out []object.TreeEntry
	for n := range names {
		bs, os, ts := b[n], o[n], t[n]
		var got side
		switch {
		case os.same(ts):
			got = os
		case os.same(bs):
			got = ts
		case ts.same(bs):
			got = os
		case os.mode == filemode.Dir && ts.mode == filemode.Dir && (bs.mode == filemode.Dir || bs.hash.IsZero()):
			h, err := mergeTrees(s, path.Join(dir, n), bs.hash, os.hash, ts.hash, conflicts)
			if err != nil {
				return plumbing.ZeroHash, err
			}
			got = side{h, filemode.Dir}
		default:
			*conflicts = append(*conflicts, path.Join(dir, n))
			continue
		}
		if got.hash.IsZero() {
			continue // deleted
		}
		out = append(out, object.TreeEntry{Name: n, Mode: got.mode, Hash: got.hash})
	}
	if len(out) == 0 {
		return plumbing.ZeroHash, nil
	}
	return writeTree(s, out)
}
