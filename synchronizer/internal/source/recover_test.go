package source_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
	"driftless.dev/synchronizer/internal/source"
)

// TestCheckoutRecoversFromAKill leaves, in the checkout, each state a
// SIGKILL can leave (testenv.CloneDamages), in both fetch modes (full
// history; the tip alone) and whether or not the branch moved meanwhile,
// then "restarts": a new Source's first Fetch, checked against the last
// applied commit as the cluster records it, must check out the branch's
// head with its exact files, never refuse it as a rewind, and leave
// nothing a killed writer left behind.
func TestCheckoutRecoversFromAKill(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "sync", Password: "s3cret-token"}
	srv, w := repo(t, auth)
	creds := gitrepo.Auth{Username: auth.Username, Password: auth.Password}
	modes := []struct {
		name    string
		rewinds bool
		moved   bool
	}{{"history, branch moved", false, true}, {"history, branch still", false, false}, {"tip alone, branch moved", true, true}}
	n := 0
	for _, m := range modes {
		for _, d := range testenv.CloneDamages() {
			t.Run(m.name+"/"+d.Name, func(t *testing.T) {
				ctx := t.Context()
				cfg := source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: filepath.Join(t.TempDir(), "c"), Auth: creds, AllowRewind: m.rewinds}
				src := mustNew(t, cfg)
				n++
				commit(t, w, "cm.yaml", fmt.Sprintf("v: first-%d\n", n), nil)
				first, err := src.Fetch(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				n++
				commit(t, w, "more.yaml", fmt.Sprintf("v: second-%d\n", n), nil)
				applied, err := src.Fetch(ctx, first.String())
				if err != nil {
					t.Fatal(err)
				}
				if m.moved {
					n++
					commit(t, w, "cm.yaml", fmt.Sprintf("v: third-%d\n", n), nil)
				}
				if err := d.Apply(cfg.Dir); errors.Is(err, testenv.ErrNotApplicable) && d.Name == "a loose object cut short" {
					// A source only fetches: packs, never loose objects.
					return
				} else if err != nil {
					t.Fatalf("damage: %v", err)
				}

				src = mustNew(t, cfg)
				rev, err := src.Fetch(ctx, applied.String())
				if err != nil {
					t.Fatalf("fetch after %s: %v", d.Name, err)
				}
				head, _ := srv.Head(ctx, "app", "main")
				if rev.Commit != head {
					t.Fatalf("checked out %s, want the head %s", rev.Commit, head)
				}
				for _, f := range []string{"cm.yaml", "more.yaml"} {
					want, _ := srv.Git(ctx, "app", "show", "main:"+f)
					if got := read(t, rev, f); strings.TrimSpace(got) != strings.TrimSpace(want) {
						t.Fatalf("%s after recovery: %q, want %q", f, got, want)
					}
				}
				if left := testenv.Leftovers(cfg.Dir); len(left) > 0 {
					t.Fatalf("left behind: %v", left)
				}
			})
		}
	}
}

// Both fetch modes, reopened on an undamaged checkout, download nothing
// new and keep what they fetched: the check costs no clone.
func TestWholeCheckoutIsKept(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "sync", Password: "s3cret-token"}
	srv, _ := repo(t, auth)
	cfg := source.Config{URL: srv.RepoURL("app"), Branch: "main", Dir: filepath.Join(t.TempDir(), "c"),
		Auth: gitrepo.Auth{Username: auth.Username, Password: auth.Password}}
	rev, err := mustNew(t, cfg).Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(filepath.Join(cfg.Dir, ".git", "objects", "pack"))
	again, err := mustNew(t, cfg).Fetch(t.Context(), rev.String())
	if err != nil || again.Commit != rev.Commit {
		t.Fatalf("reopened: %+v %v", again, err)
	}
	after, _ := os.ReadDir(filepath.Join(cfg.Dir, ".git", "objects", "pack"))
	if len(before) == 0 || len(after) != len(before) {
		t.Fatalf("packs before %d, after %d: a whole checkout was fetched again", len(before), len(after))
	}
}
