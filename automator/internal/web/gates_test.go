package web_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"driftless.dev/automator/internal/promote"
	"driftless.dev/automator/internal/web"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
)

const promotionYAML = `apiVersion: driftless.dev/v1alpha1
kind: Promotion
metadata: {name: main-to-prod}
spec: {from: main, to: prod, healthyIn: [dev], soak: 10m}
`

// A Promotion the gates skip: its file and line show on the fleet page.
const badPromotionYAML = `apiVersion: driftless.dev/v1alpha1
kind: Promotion
metadata: {name: nowhere}
spec: {from: main, to: prod, healthyIn: [dev], soak: forever}
`

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// record appends records to commit's note on the Git server with the
// notes code the synchronizers' recorder writes with.
func record(t *testing.T, f *fixture, commit string, recs ...records.Record) {
	t.Helper()
	m, err := gitrepo.OpenMirror("", f.git.RepoURL("fleet"), gitrepo.Auth{Username: "bot", Password: gitPassword})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.Format())
	}
	if _, err := m.Notes(records.DefaultNotes).Append(t.Context(), map[plumbing.Hash][]string{plumbing.NewHash(commit): lines},
		gitrepo.AppendOptions{Author: gitrepo.Signature{Name: "Driftless Synchronizer", Email: "sync@driftless.dev"}}); err != nil {
		t.Fatal(err)
	}
}

func branchOf(t *testing.T, fl web.Fleet, name string) (int, web.Branch) {
	t.Helper()
	for i, b := range fl.Branches {
		if b.Name == name {
			return i, b
		}
	}
	t.Fatalf("no branch %s in %+v", name, fl.Branches)
	return 0, web.Branch{}
}

// TestFleetRecordsAndGates: with the promotion gates wired in (as run
// wires them), the fleet shows the branch a Promotion names (its tip and
// markers read from the gates' mirror, which alone holds it), and under
// each branch tip what the records written to Git notes say in each
// cluster and where each gate stands, in the gates' own words: a view
// with no recent evaluation makes a dry run (the soak not over: Waiting;
// over: Ready, and nothing is pushed), an evaluation of the gate loop is
// shown as it is (Promoted, the merge it pushed, prod's cluster not yet
// on it), and a Promotion document the gates skip is named with its file
// and line.
func TestFleetRecordsAndGates(t *testing.T) {
	clk := &clock{}
	f := newFixture(t, options{noLoop: true,
		gates: &promote.Config{Branch: "main", PolicyPath: "policies", Targets: []string{"prod"}, Now: clk.Now,
			Author: gitrepo.Signature{Name: "Driftless Automator", Email: "automator@driftless.dev"}},
		files: map[string]string{"policies/promotion.yaml": promotionYAML, "policies/bad-gate.yaml": badPromotionYAML}})
	ctx := t.Context()
	if _, err := f.git.Git(ctx, "fleet", "branch", "prod", "main"); err != nil {
		t.Fatal(err)
	}
	prod0 := f.head("prod")
	res, err := f.auto.Run(ctx, nil)
	if err != nil || res.Commit == "" {
		t.Fatalf("the bump: %v %+v", err, res)
	}
	bump := res.Commit
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	record(t, f, bump,
		records.Record{Time: t0, Event: records.Applied, Cluster: "dev", Ref: "main", Digest: "sha256:1", Images: []string{f.reg.Host + "/team/web:1.1.0"}},
		records.Record{Time: t0.Add(time.Second), Event: records.Healthy, Cluster: "dev", Ref: "main"})
	record(t, f, prod0,
		records.Record{Time: t0, Event: records.Applied, Cluster: "prod", Ref: "prod", Digest: "sha256:0", Images: []string{f.reg.Host + "/team/web:1.0.0"}},
		records.Record{Time: t0.Add(2 * time.Second), Event: records.Healthy, Cluster: "prod", Ref: "prod"})

	// No evaluation yet: the view makes a dry run, while dev soaks.
	clk.set(t0.Add(time.Minute))
	var fl web.Fleet
	f.api("/api/v1/fleet", &fl)
	if !fl.Records || fl.RecordsError != "" || len(fl.Branches) != 2 {
		t.Fatalf("fleet: %+v", fl)
	}
	_, main := branchOf(t, fl, "main")
	ev := main.Evidence
	if main.Tip == nil || main.Tip.Hash != bump || ev == nil || !ev.DryRun || len(ev.Gates) != 1 || len(ev.Clusters) != 1 {
		t.Fatalf("main: %+v, evidence %+v", main, ev)
	}
	if !slices.ContainsFunc(main.Roles, func(r string) bool {
		return strings.HasPrefix(r, "promotes to prod: gate main-to-prod (merge, policies/promotion.yaml)")
	}) {
		t.Fatalf("main's roles: %q", main.Roles)
	}
	g, dev := ev.Gates[0], ev.Clusters[0]
	if g.Name != "main-to-prod" || g.State != string(promote.Waiting) || g.Candidate != bump || !g.Until.Equal(t0.Add(time.Second+10*time.Minute)) ||
		!strings.Contains(g.Reason, "soaking until 2026-11-26 09:10:01Z") {
		t.Fatalf("the gate while dev soaks: %+v", g)
	}
	if dev.Cluster != "dev" || dev.State != "healthy" || !dev.Since.Equal(t0.Add(time.Second)) || dev.Runs != "" ||
		dev.Message != "healthy since 2026-11-26 09:00:01Z, soaking until 2026-11-26 09:10:01Z" {
		t.Fatalf("dev's record of the bump: %+v", dev)
	}
	if len(ev.Problems) != 1 || !strings.HasPrefix(ev.Problems[0], "policies/bad-gate.yaml:") || !strings.Contains(ev.Problems[0], "soak") {
		t.Fatalf("the skipped Promotion: %q", ev.Problems)
	}
	_, prod := branchOf(t, fl, "prod")
	if prod.Error != "" || prod.Tip == nil || prod.Tip.Hash != prod0 || prod.Markers != 2 || prod.Evidence == nil ||
		len(prod.Evidence.Clusters) != 1 || prod.Evidence.Clusters[0].Cluster != "prod" || prod.Evidence.Clusters[0].State != "healthy" {
		t.Fatalf("prod, read from the gates' mirror: %+v %+v", prod, prod.Evidence)
	}

	// The soak is over: a dry run says Ready and pushes nothing.
	clk.set(t0.Add(11 * time.Minute))
	dry, err := web.NewGates(f.runner, time.Hour).Evidence(ctx, "main", bump)
	if err != nil || !dry.DryRun || len(dry.Gates) != 1 || dry.Gates[0].State != "Ready" {
		t.Fatalf("a dry run after the soak: %+v %v", dry, err)
	}
	if f.head("prod") != prod0 {
		t.Fatal("a view's dry run pushed to prod")
	}

	// The gate loop promotes; the view shows its evaluation.
	gres, err := f.runner.Pass(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	f.gates.Observe(gres, err)
	merge := f.head("prod")
	if merge == prod0 {
		t.Fatalf("the gate did not promote: %+v", gres.Gates)
	}
	fl = web.Fleet{}
	f.api("/api/v1/fleet", &fl)
	_, main = branchOf(t, fl, "main")
	pi, prod := branchOf(t, fl, "prod")
	if ev := main.Evidence; ev.DryRun || ev.Gates[0].State != "Promoted" || ev.Gates[0].Commit != merge {
		t.Fatalf("main after the promotion: %+v", ev)
	}
	if prod.Tip == nil || prod.Tip.Hash != merge || len(prod.Evidence.Clusters) != 1 {
		t.Fatalf("prod after the promotion: %+v", prod)
	}
	if pc := prod.Evidence.Clusters[0]; pc.State != "pending" || pc.Runs != prod0 || pc.Message != "no record yet (not applied there)" {
		t.Fatalf("prod's cluster, not yet on the merge: %+v", pc)
	}
	for _, row := range fl.Images {
		if row.Policy == "apps:web" && (!slices.Equal(row.Branches[pi].Versions, []string{"1.1.0"}) || row.Differs) {
			t.Fatalf("apps:web after the promotion: %+v", row)
		}
	}
	page := f.get("/ui/fleet", f.viewer).Body
	for _, want := range []string{`id="branch-prod"`, `id="gate-main-to-prod"`, "Promoted", `id="cluster-main-dev"`, `id="cluster-prod-prod"`, "healthy since 2026-11-26 09:00:01Z",
		"by the gate loop", "policies/bad-gate.yaml:", "runs <span class=\"mono\" title=\"" + prod0 + "\">"} {
		if !strings.Contains(page, want) {
			t.Errorf("/ui/fleet lacks %q", want)
		}
	}
}

// TestFleetWhenTheGatesCannotRead: gates that cannot read the repository
// (here their credentials are refused) are said on the page, without the
// credentials; the branches and versions Git holds stay.
func TestFleetWhenTheGatesCannotRead(t *testing.T) {
	const wrong = "not-the-password-51c0"
	f := newFixture(t, options{noLoop: true, gatesPassword: wrong,
		gates: &promote.Config{Branch: "main", PolicyPath: "policies", Targets: []string{"prod"}},
		files: map[string]string{"policies/promotion.yaml": promotionYAML}})
	if _, err := f.auto.Run(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	a := f.get("/api/v1/fleet", f.viewer)
	if a.Code != 200 {
		t.Fatalf("fleet: %d %s", a.Code, a.Body)
	}
	var fl web.Fleet
	f.api("/api/v1/fleet", &fl)
	if !strings.HasPrefix(fl.RecordsError, "the promotion gates could not be evaluated: ") || len(fl.Branches) != 1 || fl.Branches[0].Markers != 2 || fl.Branches[0].Evidence != nil {
		t.Fatalf("fleet with gates that cannot read: %+v", fl)
	}
	page := f.get("/ui/fleet", f.viewer).Body
	for _, body := range []string{a.Body, page} {
		if strings.Contains(body, wrong) || strings.Contains(body, gitPassword) {
			t.Fatal("the fleet shows a Git password")
		}
	}
	if !strings.Contains(page, "the promotion gates could not be evaluated") {
		t.Fatal("the page does not say the gates failed")
	}
}
