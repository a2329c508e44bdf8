package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"driftless.dev/automator/internal/history"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
	"driftless.dev/shared/testenv"
)

// story is a repository where web 1.1.0 was bumped on dev, healthy there,
// promoted to prod by the gate and healthy there; 1.2.0 was bumped,
// degraded in dev and reverted; written with the real git at fixed times.
type story struct {
	srv                *testenv.GitServer
	url                string
	t0                 time.Time
	b1, merge, b2, rev string
}

func gitAt(t *testing.T, dir string, at time.Time, author string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	name, email := "Dev", "dev@example.com"
	if author == "automator" {
		name, email = "Driftless Automator", "automator@driftless.dev"
	}
	date := at.Format(time.RFC3339)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME="+name, "GIT_AUTHOR_EMAIL="+email,
		"GIT_COMMITTER_NAME="+name, "GIT_COMMITTER_EMAIL="+email, "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func newStory(t *testing.T) *story {
	t.Helper()
	// In the future: a soak that began then is not over now, whenever
	// the test runs.
	s := &story{srv: testenv.NewGitServer(t, testenv.GitServerOptions{}), t0: time.Now().UTC().Truncate(time.Hour).Add(2 * time.Hour)}
	var err error
	if s.url, err = s.srv.CreateRepo(t.Context(), "fleet", "dev"); err != nil {
		t.Fatal(err)
	}
	w := t.TempDir()
	at := func(d time.Duration) time.Time { return s.t0.Add(d) }
	write := func(rel, body string) {
		os.MkdirAll(filepath.Dir(filepath.Join(w, rel)), 0o755)
		os.WriteFile(filepath.Join(w, rel), []byte(body), 0o644)
	}
	gitAt(t, w, at(-time.Hour), "", "init", "--quiet", "--initial-branch=dev")
	write("policies/promotion.yaml", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: dev-to-prod}\nspec: {from: dev, to: prod, healthyIn: [dev], soak: 10m}\n")
	write("apps/web.yaml", "image: reg.local/team/web:1.0.0\n")
	gitAt(t, w, at(-time.Hour), "", "add", "-A")
	gitAt(t, w, at(-time.Hour), "", "commit", "--quiet", "-m", "seed")
	gitAt(t, w, at(-time.Hour), "", "branch", "prod")
	bump := func(tag string, d time.Duration) string {
		write("apps/web.yaml", "image: reg.local/team/web:"+tag+"\n")
		gitAt(t, w, at(d), "automator", "commit", "--quiet", "-am", fmt.Sprintf("Update reg.local/team/web to %s\n\nDriftless-Policy: web\nDriftless-Image: reg.local/team/web:%s\n", tag, tag))
		return gitAt(t, w, at(d), "", "rev-parse", "HEAD")
	}
	s.b1 = bump("1.1.0", 0)
	gitAt(t, w, at(10*time.Minute), "", "checkout", "--quiet", "prod")
	gitAt(t, w, at(10*time.Minute), "automator", "merge", "--quiet", "--no-ff", "-m", "Promote dev@"+s.b1[:10]+" to prod\n\nDriftless-Promotion: dev-to-prod\nDriftless-Promoted: "+s.b1, s.b1)
	s.merge = gitAt(t, w, at(10*time.Minute), "", "rev-parse", "HEAD")
	gitAt(t, w, at(10*time.Minute), "", "checkout", "--quiet", "dev")
	s.b2 = bump("1.2.0", 20*time.Minute)
	gitAt(t, w, at(21*time.Minute), "automator", "revert", "--no-edit", "HEAD")
	s.rev = gitAt(t, w, at(21*time.Minute), "", "rev-parse", "HEAD")
	gitAt(t, w, at(21*time.Minute), "", "push", "--quiet", s.url, "dev", "prod")

	m, _ := gitrepo.OpenMirror("", s.url, gitrepo.Auth{})
	img := func(tag string) []string { return []string{"reg.local/team/web:" + tag} }
	rec := func(d time.Duration, ev records.Event, cluster string, r records.Record) string {
		r.Time, r.Event, r.Cluster, r.Ref = at(d), ev, cluster, cluster
		return r.Format()
	}
	notes := map[plumbing.Hash][]string{
		plumbing.NewHash(s.b1): {rec(time.Second, records.Applied, "dev", records.Record{Images: img("1.1.0")}), rec(2*time.Second, records.Healthy, "dev", records.Record{})},
		plumbing.NewHash(s.merge): {rec(10*time.Minute+time.Second, records.Applied, "prod", records.Record{Images: img("1.1.0")}),
			rec(10*time.Minute+3*time.Second, records.Healthy, "prod", records.Record{})},
		plumbing.NewHash(s.b2): {rec(20*time.Minute+time.Second, records.Applied, "dev", records.Record{Images: img("1.2.0")}),
			rec(20*time.Minute+30*time.Second, records.Degraded, "dev", records.Record{Revert: true, Message: "Deployment.apps web/web Failed"}),
			records.Record{Time: at(21 * time.Minute), Event: records.Reverted, Commit: s.rev, Images: img("1.2.0"), By: "Driftless Automator", Message: "rollout failed in dev"}.Format()},
		plumbing.NewHash(s.rev): {rec(21*time.Minute+time.Second, records.Applied, "dev", records.Record{Images: img("1.1.0")}), rec(21*time.Minute+2*time.Second, records.Healthy, "dev", records.Record{})},
	}
	if _, err := m.Notes(records.DefaultNotes).Append(t.Context(), notes, gitrepo.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHistoryFromAClone: `automator history` reads a person's clone (with
// the notes fetched) and tells where each version went and when, as text
// and as JSON, without any cluster; --git-url reads the same.
func TestHistoryFromAClone(t *testing.T) {
	s := newStory(t)
	clone := filepath.Join(t.TempDir(), "clone")
	gitAt(t, t.TempDir(), s.t0, "", "clone", "--quiet", s.url, clone)
	var out bytes.Buffer
	err := run(t.Context(), []string{"history", "--dir", clone, "--git-branch", "dev", "--policy-path", "policies"}, noEnv, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "refs/notes/driftless is not in the clone") || !strings.Contains(err.Error(), "git fetch origin") {
		t.Fatalf("a clone without the notes: %v", err)
	}
	gitAt(t, clone, s.t0, "", "fetch", "--quiet", "origin", "refs/notes/*:refs/notes/*")

	out.Reset()
	if err := run(t.Context(), []string{"history", "--dir", clone, "--git-branch", "dev", "--policy-path", "policies"}, noEnv, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"reg.local/team/web:1.2.0\n  committed   " + s.ts(20*time.Minute+0*time.Second) + "  dev      " + s.b2[:10] + "  by Driftless Automator\n" +
			"  dev         applied " + s.ts(20*time.Minute+1*time.Second) + " (+1s), degraded " + s.ts(20*time.Minute+30*time.Second) + ": Deployment.apps web/web Failed; gone " + s.ts(21*time.Minute+1*time.Second) + "\n" +
			"  reverted    " + s.ts(21*time.Minute+0*time.Second) + "  " + s.rev[:10] + "  by Driftless Automator: rollout failed in dev\n",
		"reg.local/team/web:1.1.0\n  committed   " + s.ts(0*time.Minute+0*time.Second) + "  dev      " + s.b1[:10] + "  by Driftless Automator\n" +
			"  promoted    " + s.ts(10*time.Minute+0*time.Second) + "  prod     " + s.merge[:10] + "  by Driftless Automator (gate dev-to-prod) (+10m0s)\n" +
			"  dev         applied " + s.ts(0*time.Minute+1*time.Second) + " (+1s), healthy " + s.ts(0*time.Minute+2*time.Second) + " (+2s); running since " + s.ts(21*time.Minute+1*time.Second) + "\n" +
			"  prod        applied " + s.ts(10*time.Minute+1*time.Second) + " (+10m1s), healthy " + s.ts(10*time.Minute+3*time.Second) + " (+10m3s); running since " + s.ts(10*time.Minute+1*time.Second) + "\n" +
			"  lead time   10m3s (bump commit → healthy in prod)\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("history lacks\n%s\nin\n%s", want, text)
		}
	}
	if strings.Index(text, "web:1.2.0") > strings.Index(text, "web:1.1.0") {
		t.Error("the newest version is not first")
	}

	// JSON, from the URL, narrowed to one version.
	out.Reset()
	if err := run(t.Context(), []string{"history", "--git-url", s.url, "--git-branch", "dev", "--policy-path", "policies", "--image", "web:1.1.0", "--output", "json"}, noEnv, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	var rep history.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(rep.Versions) != 1 || strings.Join(rep.Production, ",") != "prod" {
		t.Fatalf("report: %+v", rep)
	}
	v := rep.Versions[0]
	if v.Image != "reg.local/team/web:1.1.0" || v.Bump.Hash != s.b1 || v.LeadTimeSeconds != 603 ||
		len(v.Promotions) != 1 || v.Promotions[0].Hash != s.merge || v.Promotions[0].Gate != "dev-to-prod" || len(v.Clusters) != 2 || !v.Clusters[1].Running {
		t.Fatalf("version: %+v", v)
	}
	if !strings.Contains(out.String(), `"leadTimeSeconds": 603`) {
		t.Fatalf("JSON lead time in seconds:\n%s", out.String())
	}
	// --since leaves out what came before.
	out.Reset()
	if err := run(t.Context(), []string{"history", "--dir", clone, "--git-branch", "dev", "--policy-path", "policies", "--since", s.t0.Add(15 * time.Minute).Format(time.RFC3339)}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "web:1.1.0") || !strings.Contains(out.String(), "web:1.2.0") {
		t.Fatalf("--since:\n%s", out.String())
	}
	if err := run(t.Context(), []string{"history", "--dir", clone, "--since", "last week"}, noEnv, &out, &out); err == nil || !strings.Contains(err.Error(), `--since "last week": want a duration`) {
		t.Fatalf("bad --since: %v", err)
	}
}

// TestPlanShowsEachGate: plan says, per Promotion, what it waits for and
// since when, or why it is refused, and pushes nothing.
func TestPlanShowsEachGate(t *testing.T) {
	s := newStory(t)
	args := []string{"plan", "--git-url", s.url, "--git-branch", "dev", "--policy-path", "policies", "--workdir", filepath.Join(t.TempDir(), "w")}
	var out bytes.Buffer
	if err := run(t.Context(), args, noEnv, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "promotion dev-to-prod (dev → prod, merge; policies/promotion.yaml)\n  state: Refused\n  this automator may not push to prod: --promotion-targets allows none\n") {
		t.Fatalf("plan without --promotion-targets:\n%s", out.String())
	}
	out.Reset()
	if err := run(t.Context(), append(args, "--promotion-targets", "prod"), noEnv, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	want := "  state: Waiting\n  dev@" + s.rev[:10] + " waits: dev: healthy since " + s.ts(21*time.Minute+2*time.Second) + ", soaking until " + s.ts(31*time.Minute+2*time.Second) + "\n  since: " + s.ts(21*time.Minute+1*time.Second) + "\n  until: " + s.ts(31*time.Minute+2*time.Second) + ""
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "  passed over "+s.b2[:10]+": dev: degraded at "+s.ts(20*time.Minute+30*time.Second)+"") {
		t.Fatalf("plan:\n%s\nwant\n%s", out.String(), want)
	}
	if h, _ := s.srv.Head(t.Context(), "fleet", "prod"); h != s.merge {
		t.Fatal("plan pushed")
	}
}

func TestGateFlagsAreChecked(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"plan", "--git-url", "http://127.0.0.1:1/x.git", "--git-branch", "dev", "--revert", "everything",
		"--promotion-targets", "refs/heads/prod", "--promotion-targets", "dev", "--record-notes", "a/b"}, noEnv, &out, &out)
	for _, want := range []string{`--revert "everything": want bumps, all or off`, `--promotion-targets "refs/heads/prod": want a branch's short name`,
		`--promotion-targets "dev" is the followed branch`, `--record-notes "a/b"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

func TestValidateNamesBadPromotions(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "policies"), 0o755)
	os.WriteFile(filepath.Join(dir, "policies", "promotion.yaml"), []byte("apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: p}\nspec:\n  from: dev\n  to: prod\n  healthyIn: [dev]\n  soak: soon\n"), 0o644)
	var out bytes.Buffer
	err := run(t.Context(), []string{"validate", "--dir", dir, "--policy-path", "policies"}, noEnv, &out, &out)
	if err == nil || exitCode(err) != 2 || !strings.Contains(out.String(), `policies/promotion.yaml:8: spec.soak: "soon" is not a duration`) {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

// ts is t0+d as history and plan print times.
func (s *story) ts(d time.Duration) string { return s.t0.Add(d).Format("2006-01-02 15:04:05Z") }
