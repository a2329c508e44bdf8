package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/gitrepo"
)

func TestUntrustedHeadGaugeAndReason(t *testing.T) {
	m := New(prometheus.NewRegistry())
	ue := &gitrepo.UntrustedError{Commit: "abc", Reason: "is not signed"}
	m.Observe(automate.Result{Untrusted: ue}, fmt.Errorf("refusing to build on main: %w", ue), 0.1)
	if got := testutil.ToFloat64(m.UntrustedHead); got != 1 {
		t.Fatalf("untrusted head gauge %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("untrusted_head")); got != 1 {
		t.Fatalf("errors{reason=untrusted_head} %v, want 1", got)
	}
	m.Observe(automate.Result{Base: "def"}, nil, 0.1)
	if got := testutil.ToFloat64(m.UntrustedHead); got != 0 {
		t.Fatalf("untrusted head gauge %v after a trusted pass, want 0", got)
	}
}

// TestGateMetrics: waiting is a gauge per promotion (gone with the
// promotion), a promotion counts once per push, a refusal once per commit
// and reason however many passes repeat it, a revert once.
func TestGateMetrics(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.ObserveGates(promote.Result{Gates: []promote.Gate{{Name: "a", State: promote.Waiting}, {Name: "b", State: promote.Refused, RefusedFor: "degraded", Changed: true}}}, nil)
	m.ObserveGates(promote.Result{Gates: []promote.Gate{{Name: "a", State: promote.Promoted}, {Name: "b", State: promote.Refused, RefusedFor: "degraded"}}}, nil)
	m.ObserveGates(promote.Result{Gates: []promote.Gate{{Name: "b", State: promote.Proposed}}, Revert: &promote.RevertResult{Revert: "r"}}, nil)
	m.ObserveGates(promote.Result{}, fmt.Errorf("fetch: %w", gitrepo.ErrAuth))
	for name, c := range map[string]struct {
		got  float64
		want float64
	}{
		"promoted a":         {testutil.ToFloat64(m.Promotions.WithLabelValues("a", "merge")), 1},
		"proposed b":         {testutil.ToFloat64(m.Promotions.WithLabelValues("b", "pull-request")), 1},
		"refused b":          {testutil.ToFloat64(m.GateRefusals.WithLabelValues("b", "degraded")), 1},
		"reverted":           {testutil.ToFloat64(m.Reverts.WithLabelValues("reverted")), 1},
		"failed evaluations": {testutil.ToFloat64(m.GatePasses.WithLabelValues("failed")), 1},
		"ok evaluations":     {testutil.ToFloat64(m.GatePasses.WithLabelValues("ok")), 3},
		"git_auth errors":    {testutil.ToFloat64(m.Errors.WithLabelValues("git_auth")), 1},
		"waiting series":     {float64(testutil.CollectAndCount(m.GateWaiting)), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", name, c.got, c.want)
		}
	}
}
