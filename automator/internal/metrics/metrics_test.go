package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"driftless.dev/automator/internal/automate"
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
