// Package checkoutfs is the only way a build sees a checkout: a read-only
// Kustomize file system (filesys.FileSystem) that holds the checkout and
// nothing else. Paths are virtual, under Mount, so no machine path ever
// reaches Kustomize or its messages; every access goes through an os.Root,
// so no path or link can leave the checkout; symbolic links are judged by
// their text (an absolute target, or one that climbs above the checkout,
// escapes it, whether or not it dangles); .git is never readable; only
// regular files are read, so a FIFO cannot stall a build.
package checkoutfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Mount is where the checkout appears to Kustomize. It names no real
// folder; Rel turns it back into repository-relative paths for messages.
const Mount = "/.driftless-checkout"

// Sentinels for what a path can do wrong, wrapped in *PathError.
var (
	ErrEscapes    = errors.New("escapes the checkout")
	ErrGit        = errors.New("reaches into .git, which a build never reads")
	ErrNotRegular = errors.New("is not a regular file")
	ErrNotFound   = errors.New("does not exist in the checkout")
	ErrReadOnly   = errors.New("the checkout is read-only to a build")
	ErrLinkLoop   = errors.New("has too many levels of symbolic links")

	errDangling = fmt.Errorf("points to a path that %w", ErrNotFound)
)

// PathError says which repository path failed and why. Path is relative to
// the checkout, never a machine path.
type PathError struct {
	Path string
	// Link is set when a symbolic link on the way caused the error.
	Link string
	Err  error
}

func (e *PathError) Error() string {
	if e.Link != "" && e.Link != e.Path {
		return fmt.Sprintf("%s: symbolic link %s %v", e.Path, e.Link, e.Err)
	}
	if e.Link != "" {
		return fmt.Sprintf("%s: symbolic link %v", e.Path, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *PathError) Unwrap() error { return e.Err }

// FS is a read-only view of one checkout.
type FS struct {
	root *os.Root
	// virtual holds generated files (kustomizations Driftless writes for
	// plain folders, as Flux does), by resolved repository path.
	virtual map[string][]byte

	mu       sync.Mutex
	reads    []Read
	refusals []*PathError
}

// Read is one file a build read, for messages (locating a field,
// keeping values out of errors).
type Read struct {
	Path string // repository-relative
	Data []byte
}

var _ filesys.FileSystem = (*FS)(nil)

// Open opens the checkout at dir. Close releases it.
func Open(dir string) (*FS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &FS{root: r, virtual: map[string][]byte{}}, nil
}

// Close releases the checkout.
func (f *FS) Close() error { return f.root.Close() }

// AddVirtual makes a generated file visible at the repository path p
// (resolved, no links). A real file there wins: generated kustomizations
// are only written where there is none.
func (f *FS) AddVirtual(p string, data []byte) {
	f.virtual[path.Clean(p)] = data
}

// Virtual returns the generated files.
func (f *FS) Virtual() map[string][]byte { return f.virtual }

// Reads returns the files read so far.
func (f *FS) Reads() []Read {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reads)
}

// Refusals returns the paths refused so far because they escape the
// checkout or reach into .git (Kustomize's message may bury them).
func (f *FS) Refusals() []*PathError {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.refusals)
}

// Abs is the virtual absolute path of the repository path p.
func Abs(p string) string {
	p = path.Clean("/" + filepath.ToSlash(p))
	if p == "/" {
		return Mount
	}
	return Mount + p
}

// Rel is the repository path of a virtual path (absolute under Mount, or
// already relative), or an error if it lies outside.
func Rel(p string) (string, error) {
	p = filepath.ToSlash(p)
	if strings.HasPrefix(p, "/") {
		if p != Mount && !strings.HasPrefix(p, Mount+"/") {
			// Name it as it stands from the checkout: ../outside.yaml.
			if r, err := filepath.Rel(Mount, p); err == nil {
				p = filepath.ToSlash(r)
			}
			return "", &PathError{Path: p, Err: ErrEscapes}
		}
		p = strings.TrimPrefix(p, Mount)
	}
	c := path.Clean("/" + p)
	// Clean("/"+p) drops leading "..": judge the raw path for that.
	if raw := path.Clean(strings.TrimPrefix(p, "/")); raw == ".." || strings.HasPrefix(raw, "../") {
		return "", &PathError{Path: raw, Err: ErrEscapes}
	}
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}

// Message rewrites virtual paths in a message into repository paths.
func Message(s string) string {
	s = strings.ReplaceAll(s, Mount+"/", "")
	return strings.ReplaceAll(s, Mount, ".")
}

// Resolve follows the symbolic links in the repository path p and returns
// the path they lead to, with no link left in it. A link is judged by its
// text: an absolute target escapes the checkout even when the checkout
// rewrote it to point inside (go-git does), and so does a relative one
// that climbs above the checkout.
func (f *FS) Resolve(p string) (string, error) {
	rel, err := Rel(p)
	if err == nil {
		rel, err = f.resolve(rel)
	}
	var pe *PathError
	if errors.As(err, &pe) && !errors.Is(err, ErrNotFound) {
		f.mu.Lock()
		f.refusals = append(f.refusals, pe)
		f.mu.Unlock()
	}
	return rel, err
}

func (f *FS) resolve(rel string) (string, error) {
	if rel == "." {
		return ".", nil
	}
	pending := strings.Split(rel, "/")
	var done []string
	hops := 0
	via := "" // the last link followed: what went wrong after it is its doing
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", &PathError{Path: rel, Link: via, Err: ErrEscapes}
			}
			done = done[:len(done)-1]
			continue
		case ".git":
			return "", &PathError{Path: rel, Link: via, Err: ErrGit}
		}
		cur := path.Join(append(slices.Clone(done), c)...)
		if _, ok := f.virtual[cur]; ok {
			done = append(done, c)
			continue
		}
		st, err := f.root.Lstat(cur)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if via != "" {
					return "", &PathError{Path: rel, Link: via, Err: errDangling}
				}
				return "", &PathError{Path: rel, Err: ErrNotFound}
			}
			return "", &PathError{Path: rel, Err: cleanErr(err)}
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		if hops++; hops > 40 {
			return "", &PathError{Path: rel, Link: cur, Err: ErrLinkLoop}
		}
		via = cur
		target, err := f.root.Readlink(cur)
		if err != nil {
			return "", &PathError{Path: rel, Link: cur, Err: cleanErr(err)}
		}
		target = filepath.ToSlash(target)
		if path.IsAbs(target) || filepath.IsAbs(target) {
			return "", &PathError{Path: rel, Link: cur, Err: ErrEscapes}
		}
		// Judge the target as written, relative to the link's folder.
		joined := path.Join(append(slices.Clone(done), target)...)
		if len(done) == 0 {
			joined = path.Clean(target)
		}
		if joined == ".." || strings.HasPrefix(joined, "../") {
			return "", &PathError{Path: rel, Link: cur, Err: ErrEscapes}
		}
		if joined == "." {
			joined = ""
		}
		var next []string
		if joined != "" {
			next = strings.Split(joined, "/")
		}
		pending = append(next, pending...)
		done = nil
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

// stat returns the kind of the resolved repository path r: a directory, a
// regular (or generated) file, or an error.
func (f *FS) stat(r string) (dir bool, err error) {
	if _, ok := f.virtual[r]; ok {
		return false, nil
	}
	st, err := f.root.Lstat(r)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, &PathError{Path: r, Err: ErrNotFound}
		}
		return false, &PathError{Path: r, Err: cleanErr(err)}
	}
	switch {
	case st.IsDir():
		return true, nil
	case st.Mode().IsRegular():
		return false, nil
	default:
		return false, &PathError{Path: r, Err: ErrNotRegular}
	}
}

// Lookup resolves the repository path p and says whether it is a folder.
func (f *FS) Lookup(p string) (resolved string, dir bool, err error) {
	r, err := f.Resolve(p)
	if err != nil {
		return "", false, err
	}
	dir, err = f.stat(r)
	return r, dir, err
}

// ReadRel reads the repository path p (following links inside the
// checkout) and records the read.
func (f *FS) ReadRel(p string) ([]byte, error) {
	r, dir, err := f.Lookup(p)
	if err != nil {
		return nil, err
	}
	if dir {
		return nil, &PathError{Path: r, Err: ErrNotRegular}
	}
	data, ok := f.virtual[r]
	if !ok {
		if data, err = f.root.ReadFile(r); err != nil {
			return nil, &PathError{Path: r, Err: cleanErr(err)}
		}
	}
	f.mu.Lock()
	f.reads = append(f.reads, Read{Path: r, Data: data})
	f.mu.Unlock()
	return data, nil
}

// Entry is one name in a folder.
type Entry struct {
	Name string
	// Link is true for a symbolic link (not yet followed).
	Link bool
	Dir  bool
}

// List returns the entries of the resolved folder r, sorted by name.
// Generated files are included.
func (f *FS) List(r string) ([]Entry, error) {
	d, err := f.root.Open(r)
	if err != nil {
		return nil, &PathError{Path: r, Err: cleanErr(err)}
	}
	defer d.Close()
	des, err := d.ReadDir(-1)
	if err != nil {
		return nil, &PathError{Path: r, Err: cleanErr(err)}
	}
	var out []Entry
	seen := map[string]bool{}
	for _, de := range des {
		seen[de.Name()] = true
		out = append(out, Entry{Name: de.Name(), Link: de.Type()&fs.ModeSymlink != 0, Dir: de.IsDir()})
	}
	for v := range f.virtual {
		if path.Dir(v) == r || (r == "." && !strings.Contains(v, "/")) {
			if n := path.Base(v); !seen[n] {
				out = append(out, Entry{Name: n})
			}
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// cleanErr drops the machine path from an os error, keeping its reason.
func cleanErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// The filesys.FileSystem methods Kustomize calls, on virtual paths.

// CleanedAbs resolves path's links and splits it into its folder and file
// name, as Kustomize's on-disk file system does.
func (f *FS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	r, dir, err := f.Lookup(p)
	if err != nil {
		return "", "", err
	}
	if dir {
		return filesys.ConfirmedDir(Abs(r)), "", nil
	}
	return filesys.ConfirmedDir(Abs(path.Dir(r))), path.Base(r), nil
}

// ReadFile reads a file of the checkout.
func (f *FS) ReadFile(p string) ([]byte, error) { return f.ReadRel(p) }

// Open opens a file of the checkout for reading.
func (f *FS) Open(p string) (filesys.File, error) {
	r, dir, err := f.Lookup(p)
	if err != nil {
		return nil, err
	}
	if _, ok := f.virtual[r]; ok {
		return nil, &PathError{Path: r, Err: errors.ErrUnsupported}
	}
	if dir {
		return nil, &PathError{Path: r, Err: ErrNotRegular}
	}
	file, err := f.root.Open(r)
	if err != nil {
		return nil, &PathError{Path: r, Err: cleanErr(err)}
	}
	return file, nil
}

// Exists says whether p names a file or folder of the checkout.
func (f *FS) Exists(p string) bool {
	_, _, err := f.Lookup(p)
	return err == nil
}

// IsDir says whether p names a folder of the checkout.
func (f *FS) IsDir(p string) bool {
	_, dir, err := f.Lookup(p)
	return err == nil && dir
}

// ReadDir lists a folder of the checkout.
func (f *FS) ReadDir(p string) ([]string, error) {
	r, dir, err := f.Lookup(p)
	if err != nil {
		return nil, err
	}
	if !dir {
		return nil, &PathError{Path: r, Err: errors.New("is not a folder")}
	}
	es, err := f.List(r)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name
	}
	return names, nil
}

// Glob is not offered: Kustomize's build does not glob.
func (f *FS) Glob(pattern string) ([]string, error) {
	return nil, fmt.Errorf("glob %q: %w", Message(pattern), errors.ErrUnsupported)
}

// Walk is not offered: Kustomize's build does not walk.
func (f *FS) Walk(p string, _ filepath.WalkFunc) error {
	return fmt.Errorf("walk %q: %w", Message(p), errors.ErrUnsupported)
}

// The writes a Kustomize build could attempt (a clone's clean-up, a
// localized file) all fail: nothing in or out of the checkout changes.

func (f *FS) Create(p string) (filesys.File, error) { return nil, f.readOnly(p) }
func (f *FS) Mkdir(p string) error                  { return f.readOnly(p) }
func (f *FS) MkdirAll(p string) error               { return f.readOnly(p) }
func (f *FS) RemoveAll(p string) error              { return f.readOnly(p) }
func (f *FS) WriteFile(p string, _ []byte) error    { return f.readOnly(p) }

func (f *FS) readOnly(p string) error {
	return &PathError{Path: Message(p), Err: ErrReadOnly}
}
