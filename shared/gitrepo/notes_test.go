package gitrepo_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// gitCLI runs the real git in dir, as a person with a clone would.
func gitCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Person", "GIT_AUTHOR_EMAIL=p@example.com", "GIT_COMMITTER_NAME=Person", "GIT_COMMITTER_EMAIL=p@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// cloneCLI clones url with the real git and fetches the notes too.
func cloneCLI(t *testing.T, url string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "person")
	gitCLI(t, t.TempDir(), "clone", "--quiet", url, dir)
	gitCLI(t, dir, "fetch", "--quiet", "origin", "+refs/notes/*:refs/notes/*")
	return dir
}

// commitsOf makes n commits on the server's main with the real git, and
// returns them oldest first.
func commitsOf(t *testing.T, srv *testenv.GitServer, n int) []plumbing.Hash {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "committer")
	gitCLI(t, t.TempDir(), "clone", "--quiet", srv.RepoURL("fleet"), dir)
	var hs []plumbing.Hash
	for i := range n {
		os.WriteFile(filepath.Join(dir, "app.yaml"), fmt.Appendf(nil, "image: app:2.%d.0\n", i), 0o644)
		gitCLI(t, dir, "commit", "--quiet", "-am", fmt.Sprintf("commit %d", i))
		hs = append(hs, plumbing.NewHash(strings.TrimSpace(gitCLI(t, dir, "rev-parse", "HEAD"))))
	}
	gitCLI(t, dir, "push", "--quiet", "origin", "main")
	return hs
}

func TestNotesAreGitNotes(t *testing.T) {
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{})
	url, err := srv.CreateRepo(t.Context(), "fleet", "main")
	if err != nil {
		t.Fatal(err)
	}
	// Each Seed is a new root commit pushed over main: keep the last
	// three, one after another, as a branch's history.
	person := t.TempDir()
	gitCLI(t, person, "init", "--quiet", "--initial-branch=main")
	var cs []plumbing.Hash
	for i := range 3 {
		os.WriteFile(filepath.Join(person, "app.yaml"), fmt.Appendf(nil, "image: app:1.%d.0\n", i), 0o644)
		gitCLI(t, person, "add", "-A")
		gitCLI(t, person, "commit", "--quiet", "-m", fmt.Sprintf("commit %d", i))
		cs = append(cs, plumbing.NewHash(strings.TrimSpace(gitCLI(t, person, "rev-parse", "HEAD"))))
	}
	gitCLI(t, person, "push", "--quiet", url, "main")

	m, err := gitrepo.OpenMirror("", url, gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	n := m.Notes("driftless")
	if tip, err := n.Fetch(t.Context()); err != nil || !tip.IsZero() {
		t.Fatalf("no notes yet: tip %s, %v", tip, err)
	}
	res, err := n.Append(t.Context(), map[plumbing.Hash][]string{
		cs[0]: {"time=2026-01-01T00:00:00Z event=applied cluster=dev"},
		cs[2]: {"time=2026-01-01T00:00:01Z event=applied cluster=dev", "time=2026-01-01T00:00:02Z event=healthy cluster=dev"},
	}, gitrepo.AppendOptions{Author: author})
	if err != nil || res.Added != 3 || res.Commit.IsZero() {
		t.Fatalf("append: %+v %v", res, err)
	}

	// A person's clone reads them with git itself.
	clone := cloneCLI(t, url)
	if got := gitCLI(t, clone, "notes", "--ref=driftless", "show", cs[2].String()); got != "time=2026-01-01T00:00:01Z event=applied cluster=dev\ntime=2026-01-01T00:00:02Z event=healthy cluster=dev\n" {
		t.Fatalf("git notes show:\n%s", got)
	}
	log := gitCLI(t, clone, "log", "--notes=driftless", "--format=%H%n%N--")
	if !strings.Contains(log, cs[0].String()+"\ntime=2026-01-01T00:00:00Z event=applied cluster=dev\n") {
		t.Fatalf("git log --notes=driftless:\n%s", log)
	}

	// A person appends with git; Driftless reads it and appends after it,
	// and an existing line is not written twice.
	gitCLI(t, clone, "notes", "--ref=driftless", "append", "-m", "checked by hand", cs[0].String())
	gitCLI(t, clone, "push", "--quiet", "origin", "refs/notes/driftless")
	res, err = n.Append(t.Context(), map[plumbing.Hash][]string{
		cs[0]: {"time=2026-01-01T00:00:00Z event=applied cluster=dev", "time=2026-01-01T00:00:03Z event=healthy cluster=dev"},
	}, gitrepo.AppendOptions{Author: author})
	if err != nil || res.Added != 1 {
		t.Fatalf("append after the person's note: %+v %v", res, err)
	}
	gitCLI(t, clone, "fetch", "--quiet", "origin", "+refs/notes/*:refs/notes/*")
	want := "time=2026-01-01T00:00:00Z event=applied cluster=dev\n\nchecked by hand\ntime=2026-01-01T00:00:03Z event=healthy cluster=dev\n"
	if got := gitCLI(t, clone, "notes", "--ref=driftless", "show", cs[0].String()); got != want {
		t.Fatalf("note after both writers:\n%q\nwant\n%q", got, want)
	}
	all, err := n.All()
	if err != nil || len(all) != 2 || all[cs[0]] != want {
		t.Fatalf("All: %q %v", all, err)
	}
	if got, _ := n.Read(cs[1]); got != "" {
		t.Fatalf("a commit without a note reads %q", got)
	}
}

// TestNotesFannedOut: a notes tree that Git fanned out (many notes) is
// read, and a note added to it goes where Git looks for it.
func TestNotesFannedOut(t *testing.T) {
	srv, url := seeded(t, nil)
	cs := commitsOf(t, srv, 2)
	clone := cloneCLI(t, url)
	// Build a fanned-out notes tree with git's plumbing: ab/cdef… for the
	// first commit, as git writes it past a few hundred notes.
	hash := cs[0].String()
	blob := strings.TrimSpace(gitCLIStdin(t, clone, "old note\n", "hash-object", "-w", "--stdin"))
	sub := strings.TrimSpace(gitCLIStdin(t, clone, fmt.Sprintf("100644 blob %s\t%s\n", blob, hash[2:]), "mktree"))
	root := strings.TrimSpace(gitCLIStdin(t, clone, fmt.Sprintf("040000 tree %s\t%s\n", sub, hash[:2]), "mktree"))
	gitCLI(t, clone, "fetch", "--quiet", "origin", "+refs/heads/*:refs/remotes/origin/*")
	commit := strings.TrimSpace(gitCLIStdin(t, clone, "", "commit-tree", root, "-m", "notes"))
	gitCLI(t, clone, "update-ref", "refs/notes/driftless", commit)
	gitCLI(t, clone, "push", "--quiet", "origin", "refs/notes/driftless")
	if got := gitCLI(t, clone, "notes", "--ref=driftless", "show", hash); got != "old note\n" {
		t.Fatalf("git reads its fanned-out layout: %q", got)
	}

	m, _ := gitrepo.OpenMirror(filepath.Join(t.TempDir(), "mirror"), url, gitrepo.Auth{})
	n := m.Notes("driftless")
	if _, err := n.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Read(cs[0]); err != nil || got != "old note\n" {
		t.Fatalf("read fanned out: %q %v", got, err)
	}
	if _, err := n.Append(t.Context(), map[plumbing.Hash][]string{cs[0]: {"new line"}, cs[1]: {"other"}}, gitrepo.AppendOptions{Author: author}); err != nil {
		t.Fatal(err)
	}
	gitCLI(t, clone, "fetch", "--quiet", "origin", "+refs/notes/*:refs/notes/*")
	if got := gitCLI(t, clone, "notes", "--ref=driftless", "show", hash); got != "old note\nnew line\n" {
		t.Fatalf("git reads the appended note: %q", got)
	}
	if got := gitCLI(t, clone, "notes", "--ref=driftless", "show", cs[1].String()); got != "other\n" {
		t.Fatalf("git reads the new note: %q", got)
	}
	ls := gitCLI(t, clone, "ls-tree", "-r", "--name-only", "refs/notes/driftless")
	if !strings.Contains(ls, cs[1].String()[:2]+"/"+cs[1].String()[2:]) {
		t.Fatalf("the new note is not fanned out like the others:\n%s", ls)
	}
	// git's own fsck finds the trees well formed (sorted, no duplicates).
	gitCLI(t, clone, "fsck", "--strict", "--no-dangling")
}

func gitCLIStdin(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Person", "GIT_AUTHOR_EMAIL=p@example.com", "GIT_COMMITTER_NAME=Person", "GIT_COMMITTER_EMAIL=p@example.com")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// TestConcurrentNoteWritersLoseNothing: many writers (clusters) append to
// the same notes at once, each through its own mirror; every line reaches
// the server exactly once, because pushes are fast-forward only and a
// rejected writer redoes its edit on the new tip.
func TestConcurrentNoteWritersLoseNothing(t *testing.T) {
	srv, url := seeded(t, nil)
	cs := commitsOf(t, srv, 3)
	const writers, each = 8, 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	attempts := 0
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			m, err := gitrepo.OpenMirror("", url, gitrepo.Auth{})
			if err != nil {
				errs <- err
				return
			}
			n := m.Notes("driftless")
			for i := range each {
				line := fmt.Sprintf("time=2026-01-01T00:00:%02dZ event=applied cluster=c%d", i, w)
				res, err := n.Append(t.Context(), map[plumbing.Hash][]string{cs[(w+i)%len(cs)]: {line}}, gitrepo.AppendOptions{Author: author, Attempts: 50})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				attempts += res.Attempts
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d appends took %d pushes", writers*each, attempts)
	clone := cloneCLI(t, url)
	var got []string
	for _, c := range cs {
		for _, l := range strings.Split(strings.TrimSpace(gitCLI(t, clone, "notes", "--ref=driftless", "show", c.String())), "\n") {
			got = append(got, c.String()[:7]+" "+l)
		}
	}
	var want []string
	for w := range writers {
		for i := range each {
			want = append(want, cs[(w+i)%len(cs)].String()[:7]+" "+fmt.Sprintf("time=2026-01-01T00:00:%02dZ event=applied cluster=c%d", i, w))
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("notes on the server:\n%s\nwant every line once:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The notes history is one line of fast-forwards: no writer's commit
	// was replaced.
	if merges := gitCLI(t, clone, "rev-list", "--merges", "--count", "refs/notes/driftless"); strings.TrimSpace(merges) != "0" {
		t.Fatalf("%s merges in the notes history", merges)
	}
}

// TestMirrorPushIsFastForwardOnly: a mirror behind the remote is refused,
// never forced; after a fetch the same push of a descendant goes through.
func TestMirrorPushIsFastForwardOnly(t *testing.T) {
	srv, url := seeded(t, nil)
	ctx := t.Context()
	a, _ := gitrepo.OpenMirror("", url, gitrepo.Auth{})
	b, _ := gitrepo.OpenMirror("", url, gitrepo.Auth{})
	main := gitrepo.BranchRef("main")
	for _, m := range []*gitrepo.Mirror{a, b} {
		if _, err := m.Fetch(ctx, main); err != nil {
			t.Fatal(err)
		}
	}
	seed := a.Tip(main)
	tree := func(m *gitrepo.Mirror) plumbing.Hash {
		c, err := m.Commit(m.Tip(main))
		if err != nil {
			t.Fatal(err)
		}
		return c.TreeHash
	}
	ca, err := a.NewCommit(tree(a), []plumbing.Hash{seed}, "a", author, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, ca, main); err != nil {
		t.Fatal(err)
	}
	cb, _ := b.NewCommit(tree(b), []plumbing.Hash{seed}, "b", author, nil)
	if err := b.Push(ctx, cb, main); !errors.Is(err, gitrepo.ErrRejected) {
		t.Fatalf("push behind the remote: %v, want ErrRejected", err)
	}
	if h, _ := srv.Head(ctx, "fleet", "main"); h != ca.String() {
		t.Fatalf("remote main %s, want a's %s", h, ca)
	}
	if _, err := b.Fetch(ctx, main); err != nil {
		t.Fatal(err)
	}
	cb, _ = b.NewCommit(tree(b), []plumbing.Hash{ca}, "b", author, nil)
	if err := b.Push(ctx, cb, main); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.IsAncestor(ca, cb); err != nil || !ok {
		t.Fatalf("a's commit is under b's: %v %v", ok, err)
	}
	// A branch the remote lacks is created; one it lacks is absent from Fetch.
	if err := b.Push(ctx, cb, gitrepo.BranchRef("promote/x")); err != nil {
		t.Fatal(err)
	}
	tips, err := a.Fetch(ctx, gitrepo.BranchRef("promote/x"), gitrepo.BranchRef("nope"))
	if err != nil || tips[gitrepo.BranchRef("promote/x")] != cb || len(tips) != 1 {
		t.Fatalf("fetch: %v %v", tips, err)
	}
}

// TestSignedNotesTrustOnlyTheirWriters: Signed keeps the lines a commit
// signed by the keyring added, and only those: not a line an unsigned
// writer or another key added, and a signed line stays when someone
// removes it from the note.
func TestSignedNotesTrustOnlyTheirWriters(t *testing.T) {
	srv, url := seeded(t, nil)
	cs := commitsOf(t, srv, 2)
	ctx := t.Context()
	trusted, other := newKey(t, "Sync"), newKey(t, "Other")
	k := keyring(t, trusted)
	write := func(key *openpgp.Entity, c plumbing.Hash, line string) {
		t.Helper()
		m, _ := gitrepo.OpenMirror("", url, gitrepo.Auth{})
		opts := gitrepo.AppendOptions{Author: author, SignKey: key}
		if _, err := m.Notes("driftless").Append(ctx, map[plumbing.Hash][]string{c: {line}}, opts); err != nil {
			t.Fatal(err)
		}
	}
	write(trusted, cs[0], "healthy by the synchronizer")
	write(trusted, cs[1], "applied by the synchronizer")
	write(nil, cs[0], "forged: unsigned")
	write(other, cs[1], "forged: another key")
	// Someone removes the trusted line with git itself.
	clone := cloneCLI(t, url)
	gitCLI(t, clone, "notes", "--ref=driftless", "add", "-f", "-m", "forged: unsigned", cs[0].String())
	gitCLI(t, clone, "push", "--quiet", "origin", "refs/notes/driftless")

	reader, _ := gitrepo.OpenMirror("", url, gitrepo.Auth{})
	n := reader.Notes("driftless")
	if _, err := n.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := n.Signed(k)
	if err != nil {
		t.Fatal(err)
	}
	if got[cs[0]] != "healthy by the synchronizer\n" || got[cs[1]] != "applied by the synchronizer\n" || len(got) != 2 {
		t.Fatalf("signed lines: %q", got)
	}
	if all, _ := n.All(); strings.Contains(all[cs[0]], "healthy") || !strings.Contains(all[cs[1]], "forged") {
		t.Fatalf("the notes as they are: %q", all)
	}
	// Read again after one more signed line: only the new commit is read.
	write(trusted, cs[0], "degraded by the synchronizer")
	n.Fetch(ctx)
	if got, _ = n.Signed(k); got[cs[0]] != "healthy by the synchronizer\ndegraded by the synchronizer\n" {
		t.Fatalf("after a new line: %q", got[cs[0]])
	}
}
