package promote_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap/zaptest"

	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
	"driftless.dev/shared/testenv"
)

var automator = gitrepo.Signature{Name: "Driftless Automator", Email: "automator@driftless.dev"}

const gate = `apiVersion: driftless.dev/v1alpha1
kind: Promotion
metadata: {name: dev-to-prod}
spec:
  from: dev
  to: prod
  healthyIn: [dev]
  soak: 10m
%s`

// fleet is a repository on a real Git server with a dev and a prod
// branch, written with the real git as people (and the synchronizers'
// records) would.
type fleet struct {
	t    testing.TB
	srv  *testenv.GitServer
	url  string
	work string
	// notes writes records as a synchronizer does.
	notes *gitrepo.Notes
}

func newFleet(t testing.TB, promotion string) *fleet {
	t.Helper()
	f := &fleet{t: t, srv: testenv.NewGitServer(t, testenv.GitServerOptions{})}
	var err error
	if f.url, err = f.srv.CreateRepo(t.Context(), "fleet", "dev"); err != nil {
		t.Fatal(err)
	}
	f.work = t.TempDir()
	f.git("init", "--quiet", "--initial-branch=dev")
	f.write(map[string]string{
		"apps/web/deploy.yaml":             "image: web:1.0.0\n",
		"clusters/prod/kustomization.yaml": "resources: [../../apps/web]\n",
		"policies/promotion.yaml":          promotion,
	}, "seed", "")
	f.git("branch", "prod")
	f.git("push", "--quiet", f.url, "dev", "prod")
	m, err := gitrepo.OpenMirror("", f.url, gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	f.notes = m.Notes(records.DefaultNotes)
	return f
}

func (f *fleet) git(args ...string) string {
	f.t.Helper()
	return runGit(f.t, f.work, nil, args...)
}

func runGit(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// write commits files (an empty body deletes) on the checked-out branch
// with message; author "automator" makes it the automator's.
func (f *fleet) write(files map[string]string, message, author string) string {
	f.t.Helper()
	for rel, body := range files {
		p := filepath.Join(f.work, rel)
		if body == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	f.git("add", "-A")
	var env []string
	if author == "automator" {
		env = []string{"GIT_AUTHOR_NAME=" + automator.Name, "GIT_AUTHOR_EMAIL=" + automator.Email}
	}
	runGit(f.t, f.work, env, "commit", "--quiet", "-m", message)
	return f.git("rev-parse", "HEAD")
}

// commit commits on branch and pushes it.
func (f *fleet) commit(branch string, files map[string]string, message, author string) string {
	f.t.Helper()
	f.git("fetch", "--quiet", f.url, "+refs/heads/*:refs/remotes/origin/*")
	f.git("checkout", "--quiet", "-B", branch, "origin/"+branch)
	h := f.write(files, message, author)
	f.git("push", "--quiet", f.url, branch)
	return h
}

func (f *fleet) head(branch string) string {
	f.t.Helper()
	h, err := f.srv.Head(f.t.Context(), "fleet", branch)
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

// record writes records on commit as the cluster's synchronizer would.
func (f *fleet) record(commit string, recs ...records.Record) {
	f.t.Helper()
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.Format())
	}
	if _, err := f.notes.Append(f.t.Context(), map[plumbing.Hash][]string{plumbing.NewHash(commit): lines}, gitrepo.AppendOptions{Author: gitrepo.Signature{Name: "sync", Email: "s@x"}}); err != nil {
		f.t.Fatal(err)
	}
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func (f *fleet) runner(cfg promote.Config) *promote.Runner {
	f.t.Helper()
	m, err := gitrepo.OpenMirror(filepath.Join(f.t.TempDir(), "mirror"), f.url, gitrepo.Auth{})
	if err != nil {
		f.t.Fatal(err)
	}
	if cfg.Branch == "" {
		cfg.Branch = "dev"
	}
	if cfg.PolicyPath == "" {
		cfg.PolicyPath = "policies"
	}
	if cfg.Targets == nil {
		cfg.Targets = []string{"prod"}
	}
	cfg.Author = automator
	r, err := promote.New(cfg, m, zaptest.NewLogger(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func pass(t testing.TB, r *promote.Runner, dryRun bool) promote.Result {
	t.Helper()
	res, err := r.Pass(t.Context(), dryRun)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func only(t testing.TB, res promote.Result) promote.Gate {
	t.Helper()
	if res.DocErrs != nil || len(res.Gates) != 1 {
		t.Fatalf("gates %+v, document errors %v", res.Gates, res.DocErrs)
	}
	return res.Gates[0]
}

func newKey(t *testing.T) (*openpgp.Entity, *gitrepo.Keyring) {
	t.Helper()
	e, err := openpgp.NewEntity("Automator", "", "automator@driftless.dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	e.Serialize(w)
	w.Close()
	k, err := gitrepo.ParseKeyring(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return e, k
}

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// TestHealthyCommitIsPromotedAfterTheSoakAndNotBefore: a dev commit
// recorded healthy in dev waits out its soak time (the gate says for
// what, since when and until when; prod does not move), and is then
// merged into prod: a merge signed by the automator, whose parents are
// prod's head and the commit, whose tree is the commit's, and whose
// promotion is recorded on the commit.
func TestHealthyCommitIsPromotedAfterTheSoakAndNotBefore(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	prodBefore := f.head("prod")
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "Update web to 1.1.0", "automator")
	key, keyring := newKey(t)
	clk := &clock{t: t0}
	r := f.runner(promote.Config{Now: clk.Now, SignKey: key})

	// No record yet: it waits for dev's.
	g := only(t, pass(t, r, false))
	if g.State != promote.Waiting || g.Candidate != x || !g.Until.IsZero() || !strings.Contains(g.Reason, "dev: no record yet") {
		t.Fatalf("before any record: %+v", g)
	}
	f.record(x, records.Record{Time: t0, Event: records.Applied, Cluster: "dev", Ref: "dev"},
		records.Record{Time: t0.Add(time.Second), Event: records.Healthy, Cluster: "dev", Ref: "dev"})
	soakEnd := t0.Add(time.Second + 10*time.Minute)
	clk.set(soakEnd.Add(-time.Nanosecond))
	res := pass(t, r, false)
	g = only(t, res)
	if g.State != promote.Waiting || !g.Until.Equal(soakEnd) || !g.Since.Equal(t0) || !res.Next.Equal(soakEnd) ||
		!strings.Contains(g.Reason, "dev: healthy since 2026-11-26 09:00:01Z, soaking until 2026-11-26 09:10:01Z") {
		t.Fatalf("a nanosecond before the soak ends: %+v (next %s)", g, res.Next)
	}
	if f.head("prod") != prodBefore {
		t.Fatal("prod moved before the soak time was over")
	}

	clk.set(soakEnd)
	g = only(t, pass(t, r, false))
	if g.State != promote.Promoted || g.Commit == "" {
		t.Fatalf("at the soak's end: %+v", g)
	}
	merge := f.head("prod")
	if merge != g.Commit {
		t.Fatalf("prod %s, gate pushed %s", merge, g.Commit)
	}
	f.git("fetch", "--quiet", f.url, "+refs/heads/*:refs/remotes/origin/*")
	parents := f.git("log", "-1", "--format=%P", merge)
	if parents != prodBefore+" "+x || f.git("rev-parse", merge+"^{tree}") != f.git("rev-parse", x+"^{tree}") {
		t.Fatalf("merge parents %s (want %s %s), tree differs from the commit's", parents, prodBefore, x)
	}
	msg := f.git("log", "-1", "--format=%B", merge)
	for _, want := range []string{"Promote dev@" + x[:10] + " to prod", "Update web to 1.1.0", "Driftless-Promotion: dev-to-prod", "Driftless-Promoted: " + x, "Driftless-Evidence: dev healthy since 2026-11-26T09:00:01Z"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("merge message lacks %q:\n%s", want, msg)
		}
	}
	c, err := f.notes.Fetch(t.Context())
	if err != nil || c.IsZero() {
		t.Fatal(err)
	}
	note, _ := f.notes.Read(plumbing.NewHash(x))
	recs, _ := records.ParseNote(note)
	if last := recs[len(recs)-1]; last.Event != records.Promoted || last.Commit != merge || last.To != "prod" || last.Gate != "dev-to-prod" || last.By != automator.Name {
		t.Fatalf("promotion record: %+v", last)
	}
	m, _ := gitrepo.OpenMirror("", f.url, gitrepo.Auth{})
	m.Fetch(t.Context(), gitrepo.BranchRef("prod"))
	if err := gitrepo.VerifyHistory(m.Repository().Storer, keyring, plumbing.NewHash(merge), plumbing.NewHash(prodBefore), plumbing.NewHash(x)); err != nil {
		t.Fatalf("the merge is not signed by the automator: %v", err)
	}
	// Nothing left: up to date, and no second merge.
	g = only(t, pass(t, r, false))
	if g.State != promote.UpToDate || f.head("prod") != merge {
		t.Fatalf("after the promotion: %+v", g)
	}
}

// TestDegradedCommitIsNeverPromoted: a commit whose last record in dev is
// degraded is refused however long ago it was healthy; an older commit
// that soaked is promoted instead, and the degraded one is not in prod.
func TestDegradedCommitIsNeverPromoted(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	w := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "Update web to 1.1.0", "automator")
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.2.0\n"}, "Update web to 1.2.0", "automator")
	f.record(x, records.Record{Time: t0, Event: records.Applied, Cluster: "dev"},
		records.Record{Time: t0.Add(time.Second), Event: records.Healthy, Cluster: "dev"},
		records.Record{Time: t0.Add(time.Minute), Event: records.Degraded, Cluster: "dev", Message: "Deployment.apps web/web Failed (Progress deadline exceeded)"})
	clk := &clock{t: t0.Add(24 * time.Hour)}
	r := f.runner(promote.Config{Now: clk.Now})
	g := only(t, pass(t, r, false))
	if g.State != promote.Refused || g.Candidate != x || g.RefusedFor != "degraded" || !g.Since.Equal(t0.Add(time.Minute)) ||
		!strings.Contains(g.Reason, "is never promoted: dev: degraded at 2026-11-26 09:01:00Z: Deployment.apps web/web Failed") {
		t.Fatalf("degraded head: %+v", g)
	}
	prod := f.head("prod")
	// The commit before it soaked (healthy an hour before the next
	// applied): that one goes.
	f.record(w, records.Record{Time: t0.Add(-2 * time.Hour), Event: records.Applied, Cluster: "dev"},
		records.Record{Time: t0.Add(-2*time.Hour + time.Second), Event: records.Healthy, Cluster: "dev"})
	g = only(t, pass(t, r, false))
	if g.State != promote.Promoted || g.Candidate != w || len(g.PassedOver) != 1 || !strings.HasPrefix(g.PassedOver[0], x[:10]) {
		t.Fatalf("with an older soaked commit: %+v", g)
	}
	if f.head("prod") == prod {
		t.Fatal("prod did not move")
	}
	f.git("fetch", "--quiet", f.url, "+refs/heads/*:refs/remotes/origin/*")
	if err := exec.Command("git", "-C", f.work, "merge-base", "--is-ancestor", x, "origin/prod").Run(); err == nil {
		t.Fatal("the degraded commit reached prod")
	}
	// The next pass refuses the degraded head again, and pushes nothing.
	before := f.head("prod")
	if g = only(t, pass(t, r, false)); g.State != promote.Refused || f.head("prod") != before {
		t.Fatalf("after: %+v", g)
	}
}

// TestTwoAutomatorsPromoteOnce: two automators evaluate the same gate at
// the same moment; prod gets one merge, and the commit one record.
func TestTwoAutomatorsPromoteOnce(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "Update web to 1.1.0", "automator")
	f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
	clk := &clock{t: t0.Add(time.Hour)}
	runners := []*promote.Runner{f.runner(promote.Config{Now: clk.Now}), f.runner(promote.Config{Now: clk.Now})}
	for round := range 3 {
		var wg sync.WaitGroup
		gates := make([]promote.Gate, len(runners))
		for i, r := range runners {
			wg.Go(func() {
				res, err := r.Pass(t.Context(), false)
				if err == nil && len(res.Gates) == 1 {
					gates[i] = res.Gates[0]
				}
			})
		}
		wg.Wait()
		t.Logf("round %d: %s / %s", round, gates[0].State, gates[1].State)
		for _, g := range gates {
			if g.State != promote.Promoted && g.State != promote.UpToDate {
				t.Fatalf("gate %+v", g)
			}
		}
	}
	f.git("fetch", "--quiet", f.url, "+refs/heads/*:refs/remotes/origin/*")
	if n := f.git("rev-list", "--count", "--merges", "origin/prod"); n != "1" {
		t.Fatalf("%s merges on prod, want 1:\n%s", n, f.git("log", "--oneline", "--graph", "origin/prod"))
	}
	f.notes.Fetch(t.Context())
	note, _ := f.notes.Read(plumbing.NewHash(x))
	if n := strings.Count(note, "event=promoted"); n != 1 {
		t.Fatalf("%d promotion records:\n%s", n, note)
	}
}

// TestPullRequestMode: the commit that passes is pushed to a review
// branch (fast-forward only), prod is left to the reviewer, and once the
// reviewer merged it the gate is up to date.
func TestPullRequestMode(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, "  mode: pull-request\n"))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "Update web to 1.1.0", "automator")
	f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
	prod := f.head("prod")
	r := f.runner(promote.Config{Now: func() time.Time { return t0.Add(time.Hour) }})
	g := only(t, pass(t, r, false))
	if g.State != promote.Proposed || f.head("promote/dev-to-prod") != x || f.head("prod") != prod {
		t.Fatalf("proposed: %+v, review branch %s", g, f.head("promote/dev-to-prod"))
	}
	if g = only(t, pass(t, r, false)); g.State != promote.InReview || !strings.Contains(g.Reason, "promote/dev-to-prod holds dev@"+x[:10]+" for review") {
		t.Fatalf("in review: %+v", g)
	}
	// The reviewer merges.
	f.git("fetch", "--quiet", f.url, "+refs/heads/*:refs/remotes/origin/*")
	f.git("checkout", "--quiet", "-B", "prod", "origin/prod")
	f.git("merge", "--quiet", "--no-ff", "-m", "Merge pull request #1", "origin/promote/dev-to-prod")
	f.git("push", "--quiet", f.url, "prod")
	if g = only(t, pass(t, r, false)); g.State != promote.UpToDate {
		t.Fatalf("after the review: %+v", g)
	}
}

// TestWhatIsRefused: a gate that cannot promote says why and pushes
// nothing: a target the automator may not push to, a conflict with
// prod's own change, a target branch that does not exist.
func TestWhatIsRefused(t *testing.T) {
	t.Run("target not allowed", func(t *testing.T) {
		f := newFleet(t, fmt.Sprintf(gate, ""))
		x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "automator")
		f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
		prod := f.head("prod")
		r := f.runner(promote.Config{Targets: []string{}, Now: func() time.Time { return t0.Add(time.Hour) }})
		g := only(t, pass(t, r, false))
		if g.State != promote.Refused || g.RefusedFor != "target" || g.Reason != "this automator may not push to prod: --promotion-targets allows none" || f.head("prod") != prod {
			t.Fatalf("%+v", g)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		f := newFleet(t, fmt.Sprintf(gate, ""))
		f.commit("prod", map[string]string{"apps/web/deploy.yaml": "image: web:0.9.0 # pinned in prod by hand\n"}, "pin prod", "")
		x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "automator")
		f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
		prod := f.head("prod")
		g := only(t, pass(t, f.runner(promote.Config{Now: func() time.Time { return t0.Add(time.Hour) }}), false))
		if g.State != promote.Refused || g.RefusedFor != "conflict" || !strings.Contains(g.Reason, "changed differently on both sides: apps/web/deploy.yaml") || f.head("prod") != prod {
			t.Fatalf("%+v", g)
		}
	})
	t.Run("prod's own change merges", func(t *testing.T) {
		f := newFleet(t, fmt.Sprintf(gate, ""))
		f.commit("prod", map[string]string{"clusters/prod/kustomization.yaml": "resources: [../../apps/web]\nreplicas: [{name: web, count: 3}]\n"}, "prod replicas", "")
		x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "automator")
		f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
		g := only(t, pass(t, f.runner(promote.Config{Now: func() time.Time { return t0.Add(time.Hour) }}), false))
		if g.State != promote.Promoted {
			t.Fatalf("%+v", g)
		}
		f.git("fetch", "--quiet", f.url, "+refs/heads/*:refs/remotes/origin/*")
		if got := f.git("show", "origin/prod:clusters/prod/kustomization.yaml"); !strings.Contains(got, "count: 3") {
			t.Fatalf("prod's own change lost: %s", got)
		}
		if got := f.git("show", "origin/prod:apps/web/deploy.yaml"); got != "image: web:1.1.0" {
			t.Fatalf("the promoted change is missing: %s", got)
		}
	})
	t.Run("no target branch", func(t *testing.T) {
		f := newFleet(t, strings.Replace(fmt.Sprintf(gate, ""), "to: prod", "to: staging", 1))
		g := only(t, pass(t, f.runner(promote.Config{Targets: []string{"staging"}}), false))
		if g.State != promote.Refused || g.RefusedFor != "branch" || !strings.Contains(g.Reason, "branch staging not found") {
			t.Fatalf("%+v", g)
		}
	})
}

// TestPlanPushesNothing: a dry run says the commit is ready, and leaves
// prod and the notes alone.
func TestPlanPushesNothing(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "automator")
	f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
	prod := f.head("prod")
	notes, _ := f.srv.Git(t.Context(), "fleet", "rev-parse", "refs/notes/driftless")
	g := only(t, pass(t, f.runner(promote.Config{Now: func() time.Time { return t0.Add(time.Hour) }}), true))
	after, _ := f.srv.Git(t.Context(), "fleet", "rev-parse", "refs/notes/driftless")
	if g.State != promote.Ready || g.Candidate != x || f.head("prod") != prod || notes != after {
		t.Fatalf("plan: %+v", g)
	}
}

// TestWindowHoldsAPassingCommit: outside its window a passing commit
// waits for the window to open, and the gate says when.
func TestWindowHoldsAPassingCommit(t *testing.T) {
	win := "  window: {days: [Mon, Tue, Wed, Thu, Fri], start: \"09:00\", end: \"17:00\", timeZone: Europe/Berlin}\n"
	f := newFleet(t, fmt.Sprintf(gate, win))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "automator")
	f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
	// Saturday 28 November 2026, noon in Berlin: closed until Monday 09:00.
	sat := time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC)
	clk := &clock{t: sat}
	r := f.runner(promote.Config{Now: clk.Now})
	g := only(t, pass(t, r, false))
	monday := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	if g.State != promote.Waiting || !g.Until.Equal(monday) || !strings.Contains(g.Reason, "waiting for the window") {
		t.Fatalf("on Saturday: %+v", g)
	}
	clk.set(monday)
	if g = only(t, pass(t, r, false)); g.State != promote.Promoted {
		t.Fatalf("on Monday at 09:00 in Berlin: %+v", g)
	}
}

// TestUntrustedHeadIsNotRead: with a keyring, a followed branch whose head
// is not signed is not read at all: no document, no promotion.
func TestUntrustedHeadIsNotRead(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "")
	f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"})
	_, keyring := newKey(t)
	prod := f.head("prod")
	r := f.runner(promote.Config{Keyring: keyring, Now: func() time.Time { return t0.Add(time.Hour) }})
	res, err := r.Pass(t.Context(), false)
	var ue *gitrepo.UntrustedError
	if !errors.As(err, &ue) || res.Untrusted == nil || ue.Commit != x || len(res.Gates) != 0 || f.head("prod") != prod {
		t.Fatalf("untrusted head: %v %+v", err, res)
	}
}

func plumbingHash(s string) plumbing.Hash { return plumbing.NewHash(s) }

// TestRecordKeyringIgnoresForgedRecords: with a record keyring, a healthy
// record pushed by someone without the synchronizers' key does not count,
// and a degraded record they signed cannot be erased by rewriting the note.
func TestRecordKeyringIgnoresForgedRecords(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "automator")
	syncKey, syncRing := newKey(t)
	f.record(x, records.Record{Time: t0, Event: records.Healthy, Cluster: "dev"}) // forged: unsigned
	prod := f.head("prod")
	r := f.runner(promote.Config{RecordKeyring: syncRing, Now: func() time.Time { return t0.Add(time.Hour) }})
	if g := only(t, pass(t, r, false)); g.State != promote.Waiting || !strings.Contains(g.Reason, "dev: no record yet") || f.head("prod") != prod {
		t.Fatalf("with a forged record only: %+v", g)
	}
	// The synchronizer's signed records: healthy, then degraded.
	signed := func(recs ...records.Record) {
		var lines []string
		for _, rec := range recs {
			lines = append(lines, rec.Format())
		}
		if _, err := f.notes.Append(t.Context(), map[plumbing.Hash][]string{plumbing.NewHash(x): lines}, gitrepo.AppendOptions{SignKey: syncKey}); err != nil {
			t.Fatal(err)
		}
	}
	signed(records.Record{Time: t0.Add(time.Second), Event: records.Healthy, Cluster: "dev"},
		records.Record{Time: t0.Add(time.Minute), Event: records.Degraded, Cluster: "dev", Message: "failed"})
	// Someone rewrites the note without the degraded line.
	f.git("fetch", "--quiet", f.url, "+refs/notes/*:refs/notes/*")
	f.git("notes", "--ref=driftless", "add", "-f", "-m", records.Record{Time: t0.Add(time.Second), Event: records.Healthy, Cluster: "dev"}.Format(), x)
	f.git("push", "--quiet", f.url, "refs/notes/driftless")
	if g := only(t, pass(t, r, false)); g.State != promote.Refused || g.RefusedFor != "degraded" || f.head("prod") != prod {
		t.Fatalf("after the signed degraded record was erased from the note: %+v", g)
	}
}

// TestDryRunLeavesTheLoopsChangesToIt: a dry run (plan, the fleet page)
// in the same process as the gate loop says whether a gate changed, but
// does not remember it: the loop's next pass still finds the change, so
// it logs it and counts it once (a refusal counted by the metrics).
func TestDryRunLeavesTheLoopsChangesToIt(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "Update web to 1.1.0", "automator")
	r := f.runner(promote.Config{Now: (&clock{t: t0}).Now})
	f.record(x, records.Record{Time: t0, Event: records.Applied, Cluster: "dev", Ref: "dev"},
		records.Record{Time: t0.Add(time.Second), Event: records.Degraded, Cluster: "dev", Ref: "dev", Message: "web Failed"})
	for i := range 2 {
		if g := only(t, pass(t, r, true)); g.State != promote.Refused || !g.Changed {
			t.Fatalf("dry run %d: %+v", i, g)
		}
	}
	res := pass(t, r, false)
	if g := only(t, res); g.State != promote.Refused || !g.Changed || g.RefusedFor != "degraded" {
		t.Fatalf("the loop's pass after dry runs: %+v", g)
	}
	if g := only(t, pass(t, r, false)); g.Changed {
		t.Fatalf("the loop's second pass says the refusal again: %+v", g)
	}
	if res.Log == nil || len(res.Log.Of(x)) != 2 {
		t.Fatalf("the pass's records: %+v", res.Log)
	}
}
