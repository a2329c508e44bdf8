package gitrepo

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/objfile"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// A clone on disk outlives the process that writes it, and go-git does not
// write it the way git does: a ref, HEAD, the index and the config are
// truncated and written again in place, a pack's index is written before
// its pack is renamed beside it (and kept if found there), and temporary
// files are removed only by a writer that lives to finish. A SIGKILL at
// the wrong moment leaves an empty ref, half an index, or half an .idx
// beside the complete pack the next fetch brings, and go-git then fails on
// every fetch or reset, for good. The warm clone is only a cache of the
// remote, so the cure is to notice and clone again; what the clone alone
// knows (the trust record) is carried over.

// ErrDamaged marks a clone that Check found damaged.
var ErrDamaged = errors.New("damaged clone")

// Check reports the first damage a killed writer (or a failing disk) can
// leave in the clone repo whose working tree is dir: a loose ref or HEAD
// that is empty or not a ref, an unreadable packed-refs, a pack whose
// index is missing, short or not its own, a pack cut short, a loose object
// that does not inflate to its name, a ref whose object is missing or
// unreadable, an index that does not decode. The error wraps ErrDamaged
// and names the file. It reads every loose object, so it is for start-up
// and after a failure, not for every pass.
func Check(repo *git.Repository, dir string) error {
	gitDir := filepath.Join(dir, ".git")
	for _, step := range []func() error{
		func() error { return checkRefFiles(gitDir) },
		func() error { return checkPacks(gitDir) },
		func() error { return checkLooseObjects(gitDir) },
		func() error { return checkRefs(repo) },
		func() error { return checkIndex(repo, gitDir) },
	} {
		if err := step(); err != nil {
			return fmt.Errorf("%w: %w", ErrDamaged, err)
		}
	}
	return nil
}

// checkRefFiles reads HEAD and every loose ref: each must be a hash or a
// symbolic ref, never empty (a truncate that was not followed by its write).
func checkRefFiles(gitDir string) error {
	paths := []string{filepath.Join(gitDir, "HEAD")}
	err := filepath.WalkDir(filepath.Join(gitDir, "refs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list refs: %w", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", rel(gitDir, p), err)
		}
		s := strings.TrimSpace(string(b))
		if !strings.HasPrefix(s, "ref: refs/") && !plumbing.IsHash(s) {
			return fmt.Errorf("%s holds %q, not a ref (a write cut short)", rel(gitDir, p), trim(s))
		}
	}
	return nil
}

// checkPacks checks that each pack is whole (its trailer is its name) and
// that its index decodes and belongs to it.
func checkPacks(gitDir string) error {
	packDir := filepath.Join(gitDir, "objects", "pack")
	entries, err := os.ReadDir(packDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list packs: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "pack-") || !strings.HasSuffix(name, ".pack") {
			continue
		}
		h := plumbing.NewHash(strings.TrimSuffix(strings.TrimPrefix(name, "pack-"), ".pack"))
		if err := checkPack(filepath.Join(packDir, name), h); err != nil {
			return fmt.Errorf("objects/pack/%s: %w", name, err)
		}
		idxName := strings.TrimSuffix(name, ".pack") + ".idx"
		f, err := os.Open(filepath.Join(packDir, idxName))
		if err != nil {
			return fmt.Errorf("objects/pack/%s: %w", idxName, err)
		}
		idx := idxfile.NewMemoryIndex()
		err = idxfile.NewDecoder(f).Decode(idx)
		f.Close()
		if err != nil {
			return fmt.Errorf("objects/pack/%s: %w", idxName, err)
		}
		if !bytes.Equal(idx.PackfileChecksum[:], h[:]) {
			return fmt.Errorf("objects/pack/%s indexes another pack", idxName)
		}
	}
	return nil
}

// checkPack compares the pack's trailing checksum with its name: a pack
// cut short ends elsewhere.
func checkPack(p string, h plumbing.Hash) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	const header, trailer = 12, 20
	if st.Size() < header+trailer {
		return fmt.Errorf("%d bytes, cut short", st.Size())
	}
	var sum [trailer]byte
	if _, err := f.ReadAt(sum[:], st.Size()-trailer); err != nil {
		return err
	}
	if !bytes.Equal(sum[:], h[:]) {
		return errors.New("its checksum is not its name: cut short or overwritten")
	}
	return nil
}

// checkLooseObjects inflates every loose object and compares its hash
// with its name.
func checkLooseObjects(gitDir string) error {
	objDir := filepath.Join(gitDir, "objects")
	dirs, err := os.ReadDir(objDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("list objects: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() || len(d.Name()) != 2 {
			continue
		}
		files, err := os.ReadDir(filepath.Join(objDir, d.Name()))
		if err != nil {
			return fmt.Errorf("list objects/%s: %w", d.Name(), err)
		}
		for _, f := range files {
			name := d.Name() + f.Name()
			if !plumbing.IsHash(name) {
				continue
			}
			if err := checkLoose(filepath.Join(objDir, d.Name(), f.Name()), plumbing.NewHash(name)); err != nil {
				return fmt.Errorf("objects/%s/%s: %w", d.Name(), f.Name(), err)
			}
		}
	}
	return nil
}

func checkLoose(p string, want plumbing.Hash) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := objfile.NewReader(f)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, _, err := r.Header(); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if got := r.Hash(); got != want {
		return fmt.Errorf("inflates to %s: cut short or overwritten", got)
	}
	return nil
}

// checkRefs lists every ref (packed too) and reads what each points at:
// a commit and its root tree must be whole.
func checkRefs(repo *git.Repository) error {
	refs, err := repo.References()
	if err != nil {
		return fmt.Errorf("list refs: %w", err)
	}
	defer refs.Close()
	return refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference {
			return nil
		}
		obj, err := repo.Storer.EncodedObject(plumbing.AnyObject, ref.Hash())
		if err != nil {
			return fmt.Errorf("%s points at %s: %w", ref.Name(), ref.Hash(), err)
		}
		if obj.Type() != plumbing.CommitObject {
			return nil
		}
		c, err := object.DecodeCommit(repo.Storer, obj)
		if err != nil {
			return fmt.Errorf("%s: read commit %s: %w", ref.Name(), ref.Hash(), err)
		}
		if _, err := c.Tree(); err != nil {
			return fmt.Errorf("%s: read the tree of %s: %w", ref.Name(), ref.Hash(), err)
		}
		return nil
	})
}

func checkIndex(repo *git.Repository, gitDir string) error {
	if _, err := os.Stat(filepath.Join(gitDir, "index")); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := repo.Storer.Index(); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// RemoveLeftovers deletes what killed writers leave behind and nothing
// reads: go-git's temporary packs and objects, a pack index whose pack
// never arrived (the next fetch of the same pack would keep it, even cut
// short), packed-refs temporaries, lock files (git's; go-git would take
// refs/heads/main.lock for a ref), and the automator's temporary files
// beside the files it edits. Call it only while no one writes the clone.
func RemoveLeftovers(dir string) error {
	gitDir := filepath.Join(dir, ".git")
	var errs []error
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		name := d.Name()
		inGit := p == gitDir || strings.HasPrefix(p, gitDir+string(filepath.Separator))
		leftover := false
		switch {
		case d.IsDir():
			return nil
		case inGit && strings.HasSuffix(name, ".lock"),
			inGit && strings.HasPrefix(name, "._packed-refs"),
			inGit && strings.HasPrefix(name, tmpPrefix),
			inGit && filepath.Base(filepath.Dir(p)) == "pack" && strings.HasPrefix(name, "tmp_"):
			leftover = true
		case inGit && filepath.Base(filepath.Dir(p)) == "pack" && strings.HasSuffix(name, ".idx"):
			_, err := os.Stat(strings.TrimSuffix(p, ".idx") + ".pack")
			leftover = errors.Is(err, fs.ErrNotExist)
		case !inGit && strings.Contains(name, ".driftless-tmp-"):
			leftover = true
		}
		if leftover {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// tmpPrefix names this package's own temporary files in .git.
const tmpPrefix = "driftless-tmp-"

// writeAtomic replaces the file at p (under .git) through a temporary file
// in .git and a rename, so a kill leaves the old content or the new one.
// The temporary file is outside refs/, where a leftover would read as a
// ref.
func writeAtomic(gitDir, p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(gitDir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// salvage reads the trust record of the clone in dir, if it is whole.
func salvage(dir string) plumbing.Hash {
	b, err := os.ReadFile(filepath.Join(dir, ".git", filepath.FromSlash(verifiedRef.String())))
	if err != nil || !plumbing.IsHash(strings.TrimSpace(string(b))) {
		return plumbing.ZeroHash
	}
	return plumbing.NewHash(strings.TrimSpace(string(b)))
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
