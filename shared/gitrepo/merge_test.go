package gitrepo_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// TestMergeTreesAsGitDoes: where both sides changed different paths (or
// the same path the same way), the merged tree is exactly the one `git
// merge-tree` writes; where they changed one path differently, it is a
// conflict naming the path, even when git could merge the lines.
func TestMergeTreesAsGitDoes(t *testing.T) {
	base := map[string]string{
		"apps/web/deploy.yaml":      "image: web:1.0.0\nreplicas: 2\nport: 80\n",
		"apps/web/service.yaml":     "port: 80\n",
		"clusters/prod/kust.yaml":   "resources: [../../apps/web]\n",
		"clusters/dev/kust.yaml":    "resources: [../../apps/web]\n",
		"policies/web.yaml":         "range: ^1.0.0\n",
		"docs/README.md":            "hello\n",
		"clusters/prod/extra.yaml":  "x: 1\n",
		"clusters/prod/remove.yaml": "y: 1\n",
	}
	cases := []struct {
		name         string
		ours, theirs map[string]string // "" deletes
		conflicts    []string          // nil: clean, and equal to git's tree
		gitConflicts bool              // git conflicts too
	}{
		{name: "disjoint", ours: map[string]string{"clusters/prod/kust.yaml": "resources: [../../apps/web]\nreplicas: 3\n"},
			theirs: map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\nreplicas: 2\nport: 80\n"}},
		{name: "same change on both", ours: map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\nreplicas: 2\nport: 80\n"},
			theirs: map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\nreplicas: 2\nport: 80\n", "docs/README.md": "hi\n"}},
		{name: "added folder and deleted file", ours: map[string]string{"clusters/prod/remove.yaml": ""},
			theirs: map[string]string{"apps/api/deploy.yaml": "image: api:1.0.0\n", "docs/README.md": ""}},
		{name: "same line both sides", ours: map[string]string{"apps/web/deploy.yaml": "image: web:0.9.0\nreplicas: 2\nport: 80\n"},
			theirs:    map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\nreplicas: 2\nport: 80\n"},
			conflicts: []string{"apps/web/deploy.yaml"}, gitConflicts: true},
		{name: "deleted on one side, changed on the other", ours: map[string]string{"apps/web/service.yaml": ""},
			theirs:    map[string]string{"apps/web/service.yaml": "port: 8080\n"},
			conflicts: []string{"apps/web/service.yaml"}, gitConflicts: true},
		{name: "different lines of one file: git merges, Driftless refuses", ours: map[string]string{"apps/web/deploy.yaml": "image: web:1.0.0\nreplicas: 2\nport: 81\n"},
			theirs:    map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\nreplicas: 2\nport: 80\n"},
			conflicts: []string{"apps/web/deploy.yaml"}},
	}
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := strings.ReplaceAll(tc.name, " ", "-")
			repo = strings.ReplaceAll(repo, ",", "")
			repo = strings.ReplaceAll(repo, ":", "")
			url, err := srv.CreateRepo(t.Context(), repo, "main")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			gitCLI(t, dir, "init", "--quiet", "--initial-branch=main")
			write := func(files map[string]string) {
				for rel, body := range files {
					p := filepath.Join(dir, rel)
					if body == "" {
						os.Remove(p)
						continue
					}
					os.MkdirAll(filepath.Dir(p), 0o755)
					os.WriteFile(p, []byte(body), 0o644)
				}
				gitCLI(t, dir, "add", "-A")
				gitCLI(t, dir, "commit", "--quiet", "--allow-empty", "-m", "change")
			}
			write(base)
			gitCLI(t, dir, "branch", "theirs")
			write(tc.ours)
			gitCLI(t, dir, "checkout", "--quiet", "theirs")
			write(tc.theirs)
			gitCLI(t, dir, "push", "--quiet", url, "main", "theirs")

			m, _ := gitrepo.OpenMirror("", url, gitrepo.Auth{})
			tips, err := m.Fetch(t.Context(), gitrepo.BranchRef("main"), gitrepo.BranchRef("theirs"))
			if err != nil {
				t.Fatal(err)
			}
			ours, _ := m.Commit(tips[gitrepo.BranchRef("main")])
			theirs, _ := m.Commit(tips[gitrepo.BranchRef("theirs")])
			bases, err := ours.MergeBase(theirs)
			if err != nil || len(bases) != 1 {
				t.Fatalf("merge base: %v %v", bases, err)
			}
			got, err := gitrepo.MergeTrees(m.Repository().Storer, bases[0].TreeHash, ours.TreeHash, theirs.TreeHash)

			cmd := exec.Command("git", "merge-tree", "--write-tree", "--name-only", "main", "theirs")
			cmd.Dir = dir
			out, gerr := cmd.Output()
			gitTree := strings.SplitN(string(out), "\n", 2)[0]
			if gitClean := gerr == nil; gitClean == tc.gitConflicts {
				t.Fatalf("git merge-tree: clean=%v, the case says conflicts=%v:\n%s", gitClean, tc.gitConflicts, out)
			}
			if tc.conflicts == nil {
				if err != nil {
					t.Fatalf("merge: %v", err)
				}
				if got != plumbing.NewHash(gitTree) {
					t.Fatalf("merged tree %s, git's %s", got, gitTree)
				}
				return
			}
			var ce *gitrepo.ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, gitrepo.ErrConflict) || strings.Join(ce.Paths, ",") != strings.Join(tc.conflicts, ",") {
				t.Fatalf("merge: %v, want a conflict on %v", err, tc.conflicts)
			}
		})
	}
}

// TestSignedCommitVerifies: a commit the mirror makes with a key passes
// history verification with that key's keyring, and one without does not.
func TestSignedCommitVerifies(t *testing.T) {
	_, url := seeded(t, nil)
	m, _ := gitrepo.OpenMirror("", url, gitrepo.Auth{})
	main := gitrepo.BranchRef("main")
	if _, err := m.Fetch(t.Context(), main); err != nil {
		t.Fatal(err)
	}
	seed, _ := m.Commit(m.Tip(main))
	key := newKey(t, "Automator")
	signed, err := m.NewCommit(seed.TreeHash, []plumbing.Hash{seed.Hash}, "merge", author, key)
	if err != nil {
		t.Fatal(err)
	}
	unsigned, _ := m.NewCommit(seed.TreeHash, []plumbing.Hash{seed.Hash}, "merge", author, nil)
	k := keyring(t, key)
	if err := gitrepo.VerifyHistory(m.Repository().Storer, k, signed, seed.Hash); err != nil {
		t.Fatalf("signed: %v", err)
	}
	wantUntrusted(t, gitrepo.VerifyHistory(m.Repository().Storer, k, unsigned, seed.Hash), unsigned, "is not signed")
}
