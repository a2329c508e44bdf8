// Package checkout gives the automator's file access to a Git checkout,
// confined to it by construction: every read and write goes through an
// os.Root, so no path and no link committed to the repository can reach
// outside the checkout, and .git is never read or written.
//
// Links inside the checkout are followed (a marked file may be a link to
// a shared one); a link that leaves the checkout, or leads into .git, is
// refused with an error naming it. Files are written through a temporary
// file with a random name created exclusively, then renamed: a file
// committed under the temporary name (a link planted to redirect the
// write) makes the write fail, never follow.
package checkout

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ErrOutside: a path or link leads out of the checkout, or into .git.
var ErrOutside = errors.New("leads outside the checkout")

// LinkError is a committed link that may not be followed.
type LinkError struct {
	// Path is where the link is, relative to the checkout.
	Path string
	// Target is what it points at, as committed.
	Target string
	// Git: it leads into .git, inside the checkout but never read.
	Git bool
}

func (e *LinkError) Error() string {
	if e.Git {
		return fmt.Sprintf("%s: a link to %s, which leads into .git: not read", e.Path, e.Target)
	}
	return fmt.Sprintf("%s: a link to %s, which %v: not read", e.Path, e.Target, ErrOutside)
}

func (e *LinkError) Unwrap() error { return ErrOutside }

// Tree is an open checkout.
type Tree struct {
	root *os.Root
	dir  string
}

// Open opens the checkout in dir.
func Open(dir string) (*Tree, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open checkout: %w", err)
	}
	return &Tree{root: r, dir: dir}, nil
}

// Close releases the checkout's handle.
func (t *Tree) Close() error { return t.root.Close() }

// Dir is the checkout's folder, for messages.
func (t *Tree) Dir() string { return t.dir }

// maxLinks bounds the links followed to resolve one path, as the kernel
// does (ELOOP).
const maxLinks = 40

// Resolve returns the path rel (slash-separated, relative to the
// checkout) names once every link in it is followed: the real file or
// folder. A link that is absolute, climbs above the checkout or leads into
// .git is a *LinkError naming it.
func (t *Tree) Resolve(rel string) (string, error) {
	todo := splitPath(rel)
	var done []string
	hops := 0
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", fmt.Errorf("%s: %w", rel, ErrOutside)
			}
			done = done[:len(done)-1]
			continue
		}
		cur := path.Join(append(slices.Clone(done), p)...)
		if cur == ".git" {
			return "", fmt.Errorf("%s: %w (.git)", rel, ErrOutside)
		}
		fi, err := t.root.Lstat(filepath.FromSlash(cur))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, p)
			continue
		}
		if hops++; hops > maxLinks {
			return "", fmt.Errorf("%s: more than %d links", rel, maxLinks)
		}
		target, err := t.root.Readlink(filepath.FromSlash(cur))
		if err != nil {
			return "", err
		}
		target = filepath.ToSlash(target)
		if path.IsAbs(target) || escapes(done, target) {
			return "", &LinkError{Path: cur, Target: target}
		}
		if res := path.Clean(path.Join(path.Join(done...), target)); res == ".git" || strings.HasPrefix(res, ".git/") {
			return "", &LinkError{Path: cur, Target: target, Git: true}
		}
		todo = append(splitPath(target), todo...)
	}
	return path.Join(done...), nil
}

// escapes reports whether target, relative to the folder done, climbs
// above the checkout.
func escapes(done []string, target string) bool {
	depth := len(done)
	for _, p := range splitPath(target) {
		switch p {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func splitPath(p string) []string { return strings.Split(filepath.ToSlash(p), "/") }

// ReadFile reads rel, a real path (see Resolve) or one with links inside
// the checkout.
func (t *Tree) ReadFile(rel string) ([]byte, error) {
	real, err := t.Resolve(rel)
	if err != nil {
		return nil, err
	}
	return t.root.ReadFile(filepath.FromSlash(real))
}

// WriteFile replaces the content of the existing file rel (following
// links inside the checkout, so a linked file is edited where it lives),
// through a temporary file and a rename: no reader ever sees half a file.
// It keeps the file's permissions.
func (t *Tree) WriteFile(rel string, data []byte) (err error) {
	real, err := t.Resolve(rel)
	if err != nil {
		return err
	}
	name := filepath.FromSlash(real)
	st, err := t.root.Stat(name)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", real)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := name + ".driftless-tmp-" + hex.EncodeToString(rnd[:])
	f, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = t.root.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return t.root.Rename(tmp, name)
}

// Walk calls fn for every file under dir (relative to the checkout)
// whose name keep accepts, once per real file: links inside the checkout
// are followed (to files and folders), .git is skipped. rel is the real
// path of the file, data its content. A link that leads outside is
// reported to fn's caller through refused, not read; the walk goes on.
func (t *Tree) Walk(dir string, keep func(name string) bool, fn func(rel string, data []byte) error, refused func(error)) error {
	start, err := t.Resolve(dir)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var walk func(dir string) error
	walk = func(dir string) error {
		if seen[dir+"/"] {
			return nil // a folder reached again through a link
		}
		seen[dir+"/"] = true
		return fs.WalkDir(t.root.FS(), dirOrDot(dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == ".git" {
					return fs.SkipDir
				}
				if p != dirOrDot(dir) {
					seen[p+"/"] = true
				}
				return nil
			}
			real := p
			if d.Type()&fs.ModeSymlink != 0 {
				if real, err = t.Resolve(p); err != nil {
					// Refused only where it would have been read: a link
					// of another name (say a temporary file's) is none of
					// the walk's business.
					if keep(path.Base(p)) {
						refused(err)
					}
					return nil
				}
				st, err := t.root.Stat(filepath.FromSlash(real))
				if err != nil {
					refused(fmt.Errorf("%s: %w", p, err))
					return nil
				}
				if st.IsDir() {
					return walk(real)
				}
				if !st.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			if !keep(path.Base(p)) || seen[real] {
				return nil
			}
			seen[real] = true
			data, err := t.root.ReadFile(filepath.FromSlash(real))
			if err != nil {
				return err
			}
			return fn(real, data)
		})
	}
	return walk(start)
}

func dirOrDot(d string) string {
	if d == "" {
		return "."
	}
	return d
}
