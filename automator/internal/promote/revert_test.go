package promote_test

import (
	"strings"
	"testing"
	"time"

	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/records"
)

const bumpMessage = "Update registry.local/team/web to 1.1.0\n\n- web:web: registry.local/team/web:1.0.0 -> registry.local/team/web:1.1.0\n\nDriftless-Policy: web:web\nDriftless-Image: registry.local/team/web:1.1.0\n"

// TestDegradedBumpIsReverted: the head of the followed branch is the
// automator's bump, recorded degraded in dev with a revert asked for: the
// automator pushes a revert (the parent's tree, a message naming the
// record), records it, and from then on skips the image it reverted.
func TestDegradedBumpIsReverted(t *testing.T) {
	f := newFleet(t, "")
	before := f.head("dev")
	bump := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: registry.local/team/web:1.1.0\n"}, bumpMessage, "automator")
	degraded := records.Record{Time: t0, Event: records.Degraded, Cluster: "dev", Ref: "dev", Revert: true, Message: "not healthy: Deployment.apps web/web Failed (Progress deadline exceeded)"}
	f.record(bump, records.Record{Time: t0.Add(-time.Minute), Event: records.Applied, Cluster: "dev", Ref: "dev"}, degraded)
	r := f.runner(promote.Config{Now: func() time.Time { return t0.Add(time.Second) }})

	plan := pass(t, r, true)
	if plan.Revert == nil || plan.Revert.Revert != "" || plan.Revert.Reason != "a run reverts it" || f.head("dev") != bump {
		t.Fatalf("plan: %+v", plan.Revert)
	}
	res := pass(t, r, false)
	rr := res.Revert
	if rr == nil || rr.Err != nil || rr.Revert == "" || rr.Commit != bump || rr.Cluster != "dev" || strings.Join(rr.Images, ",") != "registry.local/team/web:1.1.0" {
		t.Fatalf("revert: %+v", rr)
	}
	if f.head("dev") != rr.Revert {
		t.Fatalf("dev %s, revert %s", f.head("dev"), rr.Revert)
	}
	f.git("fetch", "--quiet", f.url, "+refs/heads/*:refs/remotes/origin/*")
	if f.git("rev-parse", rr.Revert+"^{tree}") != f.git("rev-parse", before+"^{tree}") || f.git("rev-parse", rr.Revert+"^") != bump {
		t.Fatal("the revert is not the bump's parent's tree on top of the bump")
	}
	msg := f.git("log", "-1", "--format=%B", rr.Revert)
	for _, want := range []string{`Revert "Update registry.local/team/web to 1.1.0"`, "This reverts commit " + bump + ": its rollout failed in dev.",
		"Record: " + degraded.Format(), "Driftless-Revert: " + bump, "Driftless-Reverted-Image: registry.local/team/web:1.1.0"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("revert message lacks %q:\n%s", want, msg)
		}
	}
	if author := f.git("log", "-1", "--format=%an <%ae>", rr.Revert); author != "Driftless Automator <automator@driftless.dev>" {
		t.Fatalf("revert author %s", author)
	}
	f.notes.Fetch(t.Context())
	note, _ := f.notes.Read(plumbingHash(bump))
	recs, _ := records.ParseNote(note)
	last := recs[len(recs)-1]
	if last.Event != records.Reverted || last.Commit != rr.Revert || strings.Join(last.Images, ",") != "registry.local/team/web:1.1.0" || !strings.Contains(last.Message, "rollout failed in dev") {
		t.Fatalf("reverted record: %+v", last)
	}
	skipped, err := r.Skipped(t.Context())
	if err != nil || !strings.Contains(skipped["registry.local/team/web:1.1.0"], "reverted after a failed rollout") {
		t.Fatalf("skipped %v %v", skipped, err)
	}
	// Once: the next pass judges the revert, which has no record.
	if res = pass(t, r, false); res.Revert != nil || f.head("dev") != rr.Revert {
		t.Fatalf("second pass: %+v", res.Revert)
	}
}

// TestRevertRuleScope: what is and is not reverted.
func TestRevertRuleScope(t *testing.T) {
	degraded := func(revert bool) records.Record {
		return records.Record{Time: t0, Event: records.Degraded, Cluster: "dev", Revert: revert, Message: "x"}
	}
	cases := []struct {
		name    string
		author  string
		message string
		scope   promote.Scope
		recs    []records.Record
		want    string // "reverted", "" (rule silent), or a reason
	}{
		{"a person's commit, bumps only", "", "tweak", promote.RevertBumps, []records.Record{degraded(true)}, "is not a bump this automator made"},
		{"a person's commit, all", "", "tweak", promote.RevertAll, []records.Record{degraded(true)}, "reverted"},
		{"no revert asked for", "automator", bumpMessage, promote.RevertBumps, []records.Record{degraded(false)}, ""},
		{"healthy again", "automator", bumpMessage, promote.RevertBumps, []records.Record{degraded(true), {Time: t0.Add(time.Minute), Event: records.Healthy, Cluster: "dev"}}, ""},
		{"rule off", "automator", bumpMessage, promote.RevertOff, []records.Record{degraded(true)}, ""},
		{"a trailer without the automator's author", "", bumpMessage, promote.RevertBumps, []records.Record{degraded(true)}, "is not a bump this automator made"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFleet(t, "")
			head := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: registry.local/team/web:1.1.0\n"}, c.message, c.author)
			f.record(head, c.recs...)
			res := pass(t, f.runner(promote.Config{Revert: c.scope}), false)
			switch {
			case c.want == "":
				if res.Revert != nil || f.head("dev") != head {
					t.Fatalf("revert: %+v", res.Revert)
				}
			case c.want == "reverted":
				if res.Revert == nil || res.Revert.Revert == "" || f.head("dev") != res.Revert.Revert {
					t.Fatalf("revert: %+v", res.Revert)
				}
			default:
				if res.Revert == nil || res.Revert.Revert != "" || !strings.Contains(res.Revert.Reason, c.want) || f.head("dev") != head {
					t.Fatalf("revert: %+v", res.Revert)
				}
			}
		})
	}
}
