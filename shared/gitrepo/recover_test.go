package gitrepo_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// TestWarmCloneRecoversFromAKill leaves, in a warm clone, each state a
// SIGKILL can leave (testenv.CloneDamages: refs, HEAD, the index or the
// config emptied or cut short mid-write, a pack's index cut short, partial
// objects, temporary and lock files, a half-written working file, a clone
// stopped before it was whole) while another writer moves the branch, then
// "restarts": Open and Sync must reach the remote tip with its exact
// files, the next commit must push on top of everyone's, the trust record
// must survive, and nothing a killed writer left may stay behind.
func TestWarmCloneRecoversFromAKill(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "bot", Password: "tok3n"}
	srv, url := seeded(t, auth)
	creds := gitrepo.Auth{Username: auth.Username, Password: auth.Password}
	other, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "other"), url, "main", creds)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	// push commits a change to file as another writer would.
	push := func(t *testing.T, r *gitrepo.Repo, file string) string {
		t.Helper()
		if _, err := r.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		n++
		os.MkdirAll(filepath.Join(r.Dir(), filepath.Dir(file)), 0o755)
		if err := os.WriteFile(filepath.Join(r.Dir(), file), []byte(strings.Repeat("line\n", 50*n)), 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := r.Commit("change "+file, author, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Push(t.Context(), "main"); err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	for _, d := range testenv.CloneDamages() {
		t.Run(d.Name, func(t *testing.T) {
			ctx := t.Context()
			dir := filepath.Join(t.TempDir(), "clone")
			r, err := gitrepo.Open(ctx, dir, url, "main", creds)
			if err != nil {
				t.Fatal(err)
			}
			// A clone with history of every kind: a fetched pack, loose
			// objects of its own commit, a trust record.
			push(t, other, "apps/other.yaml")
			mine := push(t, r, "apps/mine.yaml")
			if err := r.MarkVerified(plumbing.NewHash(mine)); err != nil {
				t.Fatal(err)
			}
			theirs := push(t, other, "apps/theirs.yaml")
			if err := d.Apply(dir); err != nil {
				t.Fatalf("damage: %v", err)
			}

			r, err = gitrepo.Open(ctx, dir, url, "main", creds)
			if err != nil {
				t.Fatalf("reopen after %s: %v", d.Name, err)
			}
			tip, err := r.Sync(ctx)
			if err != nil {
				t.Fatalf("sync after %s: %v", d.Name, err)
			}
			if tip.String() != theirs {
				t.Fatalf("tip %s, want the remote's %s", tip, theirs)
			}
			want, _ := srv.Git(ctx, "fleet", "show", "main:apps/theirs.yaml")
			if got, err := os.ReadFile(filepath.Join(dir, "apps", "theirs.yaml")); err != nil || string(got) != want+"\n" && string(got) != want {
				t.Fatalf("apps/theirs.yaml after recovery: %q %v", got, err)
			}
			if rec, err := os.ReadFile(filepath.Join(dir, ".git", "refs", "driftless", "verified")); err != nil || strings.TrimSpace(string(rec)) != mine {
				t.Fatalf("trust record after recovery: %q %v, want %s", rec, err, mine)
			}
			next := push(t, r, "apps/next.yaml")
			log, _ := srv.Git(ctx, "fleet", "log", "--format=%H", "main")
			for _, c := range []string{mine, theirs, next} {
				if !strings.Contains(log, c) {
					t.Fatalf("commit %s lost from main:\n%s", c, log)
				}
			}
			if left := testenv.Leftovers(dir); len(left) > 0 {
				t.Fatalf("left behind: %v", left)
			}
		})
	}
}

// TestCloneLaterWhileTheRemoteIsDown: with CloneLater, Open succeeds while
// the remote is unreachable (a program must not exit, and wait out a
// restart back-off, because Git was away when it started); each Fetch
// tries the clone, fails while the remote is down, and clones once it is
// back. Without it, Open says why it cannot clone.
func TestCloneLaterWhileTheRemoteIsDown(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "bot", Password: "tok3n"}
	srv, _ := seeded(t, auth)
	p, err := testenv.StartFaultProxy(srv.URL, testenv.FaultProxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	url := p.URL + "/fleet.git"
	creds := gitrepo.Auth{Username: auth.Username, Password: auth.Password}
	p.Set(testenv.Fault{Down: true})
	dir := filepath.Join(t.TempDir(), "clone")
	if _, err := gitrepo.Open(t.Context(), dir, url, "main", creds); err == nil || !strings.Contains(err.Error(), "clone") {
		t.Fatalf("Open with the remote down: %v, want the clone's error", err)
	}
	r, err := gitrepo.Open(t.Context(), dir, url, "main", creds, gitrepo.CloneLater())
	if err != nil {
		t.Fatalf("Open with CloneLater: %v", err)
	}
	if _, err := r.Fetch(t.Context()); err == nil {
		t.Fatal("Fetch with the remote down succeeded")
	}
	p.Set(testenv.Fault{})
	tip, err := r.Sync(t.Context())
	head, _ := srv.Head(t.Context(), "fleet", "main")
	if err != nil || tip.String() != head {
		t.Fatalf("Sync once the remote is back: %s %v, want %s", tip, err, head)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "app.yaml")); err != nil || string(b) != "image: app:1.0.0\n" {
		t.Fatalf("working tree: %q %v", b, err)
	}
}

// TestDamagedCloneKeepsItsRecordWhileTheRemoteIsDown: a damaged clone
// that cannot be cloned again yet (the remote is down) stays as it is,
// trust record included, until a clone succeeds: a failed clone must not
// shorten the history the next pass verifies.
func TestDamagedCloneKeepsItsRecordWhileTheRemoteIsDown(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "bot", Password: "tok3n"}
	srv, _ := seeded(t, auth)
	p, err := testenv.StartFaultProxy(srv.URL, testenv.FaultProxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	url := p.URL + "/fleet.git"
	creds := gitrepo.Auth{Username: auth.Username, Password: auth.Password}
	dir := filepath.Join(t.TempDir(), "clone")
	r, err := gitrepo.Open(t.Context(), dir, url, "main", creds)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := srv.Head(t.Context(), "fleet", "main")
	if err := r.MarkVerified(plumbing.NewHash(head)); err != nil {
		t.Fatal(err)
	}
	os.Truncate(filepath.Join(dir, ".git", "HEAD"), 0)
	p.Set(testenv.Fault{Down: true})
	record := filepath.Join(dir, ".git", "refs", "driftless", "verified")
	for _, opts := range [][]gitrepo.Option{nil, {gitrepo.CloneLater()}} {
		r, _ = gitrepo.Open(t.Context(), dir, url, "main", creds, opts...)
		if b, err := os.ReadFile(record); err != nil || strings.TrimSpace(string(b)) != head {
			t.Fatalf("trust record after a clone that failed: %q %v", b, err)
		}
	}
	if _, err := r.Fetch(t.Context()); err == nil {
		t.Fatal("Fetch with the remote down succeeded")
	}
	p.Set(testenv.Fault{})
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(record); err != nil || strings.TrimSpace(string(b)) != head {
		t.Fatalf("trust record after the clone: %q %v", b, err)
	}
}
