package gitrepo

import (
	"container/heap"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// ErrUntrusted: a commit is neither signed by a key of the keyring nor an
// unsigned merge that only joins trusted parents. *UntrustedError wraps it
// and names the commit.
var ErrUntrusted = errors.New("commit not trusted")

// UntrustedError is the first commit of a history that failed
// verification, and why.
type UntrustedError struct {
	// Commit is the full hash of the commit refused.
	Commit string
	// Reason says what is wrong with it, for a person, after the commit:
	// "is not signed", "is signed by a key outside the keyring", "is an
	// unsigned merge with content of its own in apps/web.yaml ...".
	Reason string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("commit %s %s", e.Commit, e.Reason)
}

func (e *UntrustedError) Unwrap() error { return ErrUntrusted }

// Keyring holds the OpenPGP public keys whose signatures are trusted.
type Keyring struct {
	keys openpgp.EntityList
}

// ParseKeyring reads an armored OpenPGP public keyring.
func ParseKeyring(armored string) (*Keyring, error) {
	keys, err := openpgp.ReadArmoredKeyRing(strings.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("read the OpenPGP keyring: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("read the OpenPGP keyring: it holds no key")
	}
	return &Keyring{keys: keys}, nil
}

// VerifyHistory checks every commit reachable from tip and from none of
// trusted, the commits already verified (the last one applied) or named
// by an administrator (a trust anchor). A commit passes if a key of k
// signed it, or if it is an unsigned merge that introduces no content of
// its own: wherever its tree differs from one parent, it equals another
// parent. An "evil merge" that carries edits of its own needs a signature
// like any other commit.
//
// With no trusted commit (a first start with nothing recorded) only tip
// is checked, and, when it is an unsigned merge, the parents it joins:
// nothing older can be vouched for without a point to start from.
//
// The history between trusted and tip must be in s (a full, not shallow,
// fetch); a missing commit is an error, never a pass.
func VerifyHistory(s storer.EncodedObjectStorer, k *Keyring, tip plumbing.Hash, trusted ...plumbing.Hash) error {
	v := &verifier{s: s, k: k, done: map[plumbing.Hash]bool{}}
	var bases []plumbing.Hash
	for _, h := range trusted {
		if !h.IsZero() {
			bases = append(bases, h)
		}
	}
	if len(bases) == 0 {
		return v.tipOnly(tip)
	}
	todo, err := v.unverified(tip, bases)
	if err != nil {
		return err
	}
	// Parents before children, so the error names the first bad commit
	// of the range, not a good one built on it.
	for _, c := range parentsFirst(todo) {
		if err := v.check(c); err != nil {
			// The walk may over-count when committer clocks disagree
			// (a parent dated after its child); a commit that is in
			// fact trusted history is excused here, exactly.
			if old, aerr := v.ancestorOfAny(c.Hash, bases); aerr != nil {
				return aerr
			} else if old {
				continue
			}
			return err
		}
	}
	return nil
}

type verifier struct {
	s    storer.EncodedObjectStorer
	k    *Keyring
	done map[plumbing.Hash]bool
	// old is every ancestor of the trusted commits, computed only when a
	// commit fails (see VerifyHistory).
	old map[plumbing.Hash]bool
}

func (v *verifier) commit(h plumbing.Hash) (*object.Commit, error) {
	c, err := object.GetCommit(v.s, h)
	if err != nil {
		return nil, fmt.Errorf("verify history: commit %s is not available (the history must be fetched in full): %w", h, err)
	}
	return c, nil
}

// tipOnly checks tip, and the parents of an unsigned merge, recursively.
func (v *verifier) tipOnly(h plumbing.Hash) error {
	if v.done[h] {
		return nil
	}
	c, err := v.commit(h)
	if err != nil {
		return err
	}
	if err := v.check(c); err != nil {
		return err
	}
	if c.PGPSignature == "" {
		for _, p := range c.ParentHashes {
			if err := v.tipOnly(p); err != nil {
				return err
			}
		}
	}
	v.done[h] = true
	return nil
}

// check says whether one commit passes on its own: signed by the keyring,
// or an unsigned merge without content of its own. Its parents are
// checked by the caller.
func (v *verifier) check(c *object.Commit) error {
	if c.PGPSignature != "" {
		return v.signed(c)
	}
	if len(c.ParentHashes) < 2 {
		return &UntrustedError{Commit: c.Hash.String(), Reason: "is not signed"}
	}
	return v.cleanMerge(c)
}

func (v *verifier) signed(c *object.Commit) error {
	if n := strings.Count(c.PGPSignature, "-----BEGIN PGP SIGNATURE-----"); n != 1 {
		return &UntrustedError{Commit: c.Hash.String(), Reason: "has a signature that is not one OpenPGP signature"}
	}
	enc := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(enc); err != nil {
		return fmt.Errorf("verify %s: %w", c.Hash, err)
	}
	r, err := enc.Reader()
	if err != nil {
		return fmt.Errorf("verify %s: %w", c.Hash, err)
	}
	if _, err := openpgp.CheckArmoredDetachedSignature(v.k.keys, r, strings.NewReader(c.PGPSignature), nil); err != nil {
		reason := "has a signature that does not verify: " + err.Error()
		if errors.Is(err, pgperrors.ErrUnknownIssuer) {
			reason = "is signed by a key outside the keyring"
		}
		return &UntrustedError{Commit: c.Hash.String(), Reason: reason}
	}
	return nil
}

// cleanMerge refuses a merge whose tree has content that none of its
// parents has: for every path where it differs from one parent, it must
// equal another parent there.
func (v *verifier) cleanMerge(c *object.Commit) error {
	tree, err := c.Tree()
	if err != nil {
		return fmt.Errorf("verify %s: read tree: %w", c.Hash, err)
	}
	parents := make([]*object.Tree, len(c.ParentHashes))
	for i, ph := range c.ParentHashes {
		p, err := v.commit(ph)
		if err != nil {
			return err
		}
		if parents[i], err = p.Tree(); err != nil {
			return fmt.Errorf("verify %s: read the tree of parent %s: %w", c.Hash, ph, err)
		}
	}
	for i, pt := range parents {
		changes, err := object.DiffTree(pt, tree)
		if err != nil {
			return fmt.Errorf("verify %s: diff against parent %s: %w", c.Hash, c.ParentHashes[i], err)
		}
		for _, ch := range changes {
			path := ch.To.Name
			if path == "" {
				path = ch.From.Name
			}
			if !fromAnotherParent(parents, i, path, ch.To.TreeEntry) {
				return &UntrustedError{Commit: c.Hash.String(),
					Reason: fmt.Sprintf("is an unsigned merge with content of its own in %s (it matches none of its parents there): sign it", path)}
			}
		}
	}
	return nil
}

// fromAnotherParent reports whether some parent other than skip holds
// exactly want at path (want's zero value: the path is absent).
func fromAnotherParent(parents []*object.Tree, skip int, path string, want object.TreeEntry) bool {
	for j, pt := range parents {
		if j == skip {
			continue
		}
		e, err := pt.FindEntry(path)
		switch {
		case err != nil && want.Hash.IsZero():
			return true // absent in both
		case err == nil && !want.Hash.IsZero() && e.Hash == want.Hash && e.Mode == want.Mode:
			return true
		}
	}
	return false
}

// unverified returns the commits reachable from tip and from none of
// bases. It paints down from both sides by commit date and
// stops once every commit left to visit is reachable from a base, as git
// does for merge bases, so the cost follows the new commits, not the
// whole history.
func (v *verifier) unverified(tip plumbing.Hash, bases []plumbing.Hash) ([]*object.Commit, error) {
	const fromTip, fromBase = 1, 2
	flags := map[plumbing.Hash]uint8{}
	byHash := map[plumbing.Hash]*object.Commit{}
	q := &dateQueue{}
	push := func(h plumbing.Hash, f uint8, missingOK bool) error {
		old := flags[h]
		if old|f == old {
			return nil
		}
		flags[h] = old | f
		c, ok := byHash[h]
		if !ok {
			var err error
			if c, err = object.GetCommit(v.s, h); err != nil {
				if missingOK {
					return nil // history behind a base need not be there
				}
				return fmt.Errorf("verify history: commit %s is not available (the history must be fetched in full): %w", h, err)
			}
			byHash[h] = c
		}
		heap.Push(q, c)
		return nil
	}
	if err := push(tip, fromTip, false); err != nil {
		return nil, err
	}
	for _, b := range bases {
		if err := push(b, fromBase, true); err != nil {
			return nil, err
		}
	}
	for q.Len() > 0 && q.anyWithout(flags, fromBase) {
		c := heap.Pop(q).(*object.Commit)
		f := flags[c.Hash]
		for _, p := range c.ParentHashes {
			if err := push(p, f, f&fromBase != 0); err != nil {
				return nil, err
			}
		}
	}
	var out []*object.Commit
	for h, f := range flags {
		if f == fromTip {
			out = append(out, byHash[h])
		}
	}
	return out, nil
}

// parentsFirst orders cs so that every commit comes after those of its
// parents that are in cs; otherwise oldest first, then by hash, so the
// order never depends on map iteration.
func parentsFirst(cs []*object.Commit) []*object.Commit {
	sort.Slice(cs, func(i, j int) bool { return newer(cs[j], cs[i]) })
	in := make(map[plumbing.Hash]*object.Commit, len(cs))
	for _, c := range cs {
		in[c.Hash] = c
	}
	out := make([]*object.Commit, 0, len(cs))
	placed := make(map[plumbing.Hash]bool, len(cs))
	type frame struct {
		c    *object.Commit
		next int // the next parent to visit
	}
	for _, root := range cs {
		if placed[root.Hash] {
			continue
		}
		stack := []frame{{c: root}}
		placed[root.Hash] = true
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next < len(top.c.ParentHashes) {
				p := in[top.c.ParentHashes[top.next]]
				top.next++
				if p != nil && !placed[p.Hash] {
					placed[p.Hash] = true
					stack = append(stack, frame{c: p})
				}
				continue
			}
			out = append(out, top.c)
			stack = stack[:len(stack)-1]
		}
	}
	return out
}

// ancestorOfAny reports whether h is reachable from one of bases, walking
// their whole history once.
func (v *verifier) ancestorOfAny(h plumbing.Hash, bases []plumbing.Hash) (bool, error) {
	if v.old == nil {
		v.old = map[plumbing.Hash]bool{}
		stack := append([]plumbing.Hash(nil), bases...)
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if v.old[x] {
				continue
			}
			c, err := object.GetCommit(v.s, x)
			if err != nil {
				continue // the end of what was fetched behind a base
			}
			v.old[x] = true
			stack = append(stack, c.ParentHashes...)
		}
	}
	return v.old[h], nil
}

func newer(a, b *object.Commit) bool {
	if !a.Committer.When.Equal(b.Committer.When) {
		return a.Committer.When.After(b.Committer.When)
	}
	return a.Hash.String() < b.Hash.String()
}

// dateQueue pops the newest commit first.
type dateQueue []*object.Commit

func (q dateQueue) Len() int           { return len(q) }
func (q dateQueue) Less(i, j int) bool { return newer(q[i], q[j]) }
func (q dateQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *dateQueue) Push(x any)        { *q = append(*q, x.(*object.Commit)) }
func (q *dateQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

// anyWithout reports whether a commit still queued lacks flag f.
func (q dateQueue) anyWithout(flags map[plumbing.Hash]uint8, f uint8) bool {
	for _, c := range q {
		if flags[c.Hash]&f == 0 {
			return true
		}
	}
	return false
}

// verifiedRef records, in the clone, the last commit its history was
// verified up to, so a restart with a warm clone checks only what is new.
const verifiedRef = plumbing.ReferenceName("refs/driftless/verified")

// Verify checks the history of tip with k from the last commit this clone
// verified (or made on verified history) and from anchor, when not zero
// (see VerifyHistory), and records tip as verified when it passes. With
// neither, a new clone with nothing recorded, only tip is checked.
func (r *Repo) Verify(k *Keyring, tip, anchor plumbing.Hash) error {
	return verifyRecorded(r.repo, r.branch, k, tip, anchor)
}

// verifyRecorded is Verify on any repository; branch names the history
// in messages.
func verifyRecorded(repo *git.Repository, branch string, k *Keyring, tip, anchor plumbing.Hash) error {
	var trusted []plumbing.Hash
	if ref, err := repo.Reference(verifiedRef, true); err == nil {
		trusted = append(trusted, ref.Hash())
	}
	if !anchor.IsZero() {
		if _, err := repo.CommitObject(anchor); err != nil {
			where := "the history"
			if branch != "" {
				where = "the history of " + branch
			}
			return fmt.Errorf("%w: the trust anchor %s is not in %s", ErrUntrusted, anchor, where)
		}
		trusted = append(trusted, anchor)
	}
	if err := VerifyHistory(repo.Storer, k, tip, trusted...); err != nil {
		return err
	}
	return markVerified(repo, tip)
}

// MarkVerified records h as verified: a commit this program made on top of
// verified history.
//
// The record is written through a rename, never in place: a kill leaves
// the old record or the new one, and a clone cloned again keeps it (see
// Check). Losing it would shorten the history the next pass verifies.
func (r *Repo) MarkVerified(h plumbing.Hash) error { return markVerified(r.repo, h) }

func markVerified(repo *git.Repository, h plumbing.Hash) error {
	err := func() error {
		fs, ok := repo.Storer.(*filesystem.Storage)
		if !ok {
			return repo.Storer.SetReference(plumbing.NewHashReference(verifiedRef, h))
		}
		gitDir := fs.Filesystem().Root()
		return writeAtomic(gitDir, filepath.Join(gitDir, filepath.FromSlash(verifiedRef.String())), []byte(h.String()+"\n"))
	}()
	if err != nil {
		return fmt.Errorf("record %s as verified: %w", h, err)
	}
	return nil
}

// ParseSigningKey reads an armored OpenPGP private key, decrypting it with
// passphrase when it is encrypted.
func ParseSigningKey(armored, passphrase []byte) (*openpgp.Entity, error) {
	ents, err := openpgp.ReadArmoredKeyRing(strings.NewReader(string(armored)))
	if err != nil || len(ents) == 0 {
		return nil, errors.New("not an armored OpenPGP key")
	}
	e := ents[0]
	if e.PrivateKey == nil {
		return nil, errors.New("holds no private key")
	}
	if e.PrivateKey.Encrypted {
		if len(passphrase) == 0 {
			return nil, errors.New("the key is encrypted: give its passphrase")
		}
		if err := e.PrivateKey.Decrypt(passphrase); err != nil {
			return nil, errors.New("wrong passphrase")
		}
	}
	return e, nil
}
