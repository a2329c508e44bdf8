// Package metrics holds the automator's Prometheus metrics
// (driftless_automator_*). Labels carry policy keys and reasons, never a
// registry credential or URL.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/automator/internal/registry"
	"driftless.dev/shared/gitrepo"
)

// Metrics are the automator's instruments.
type Metrics struct {
	Passes      *prometheus.CounterVec
	Scans       *prometheus.CounterVec
	TagsSeen    *prometheus.GaugeVec
	Updates     *prometheus.CounterVec
	PushRetries prometheus.Counter
	Errors      *prometheus.CounterVec
	PassSeconds prometheus.Histogram
	// UntrustedHead is 1 while the head of the branch fails verification
	// against --verify-keyring (the automator builds nothing on it).
	UntrustedHead prometheus.Gauge
	// Gates: promotion gates and the revert rule (promote.Runner).
	GatePasses   *prometheus.CounterVec
	GateWaiting  *prometheus.GaugeVec
	Promotions   *prometheus.CounterVec
	GateRefusals *prometheus.CounterVec
	Reverts      *prometheus.CounterVec
}

// New registers the metrics with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_passes_total",
			Help: "Automation passes, by result (committed, unchanged, failed)."}, []string{"result"}),
		Scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_scans_total",
			Help: "Registry scans, by policy and result (ok, error)."}, []string{"policy", "result"}),
		TagsSeen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "driftless_automator_tags_seen",
			Help: "Tags listed at the last scan of each policy."}, []string{"policy"}),
		Updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_updates_total",
			Help: "Image bumps committed, by policy."}, []string{"policy"}),
		PushRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "driftless_automator_push_retries_total",
			Help: "Pushes redone on a new tip after the remote moved."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_errors_total",
			Help: "Errors, by reason."}, []string{"reason"}),
		PassSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "driftless_automator_pass_duration_seconds",
			Help: "Duration of automation passes.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10)}),
		UntrustedHead: prometheus.NewGauge(prometheus.GaugeOpts{Name: "driftless_automator_untrusted_head",
			Help: "1 while the head of the branch fails verification against --verify-keyring: nothing is built on it."}),
		GatePasses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_gate_passes_total",
			Help: "Evaluations of the promotion gates and the revert rule, by result (ok, failed)."}, []string{"result"}),
		GateWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "driftless_automator_gate_waiting",
			Help: "1 while a promotion waits: for records, its soak time, its window, or a review."}, []string{"promotion"}),
		Promotions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_gate_promoted_total",
			Help: "Commits promoted, by promotion and mode (merge: merged into the target; pull-request: pushed for review)."}, []string{"promotion", "mode"}),
		GateRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_gate_refused_total",
			Help: "Commits a gate refused, once per commit and reason (degraded, untrusted, conflict, target, branch)."}, []string{"promotion", "reason"}),
		Reverts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_automator_reverts_total",
			Help: "Reverts of a head recorded degraded, by result (reverted, declined: outside --revert's scope, failed)."}, []string{"result"}),
	}
	reg.MustRegister(m.Passes, m.Scans, m.TagsSeen, m.Updates, m.PushRetries, m.Errors, m.PassSeconds, m.UntrustedHead,
		m.GatePasses, m.GateWaiting, m.Promotions, m.GateRefusals, m.Reverts)
	return m
}

// ObserveGates records one evaluation of the gates and the revert rule.
func (m *Metrics) ObserveGates(res promote.Result, err error) {
	if err != nil {
		m.GatePasses.WithLabelValues("failed").Inc()
		m.Errors.WithLabelValues(Reason(err)).Inc()
		return
	}
	m.GatePasses.WithLabelValues("ok").Inc()
	if res.DocErrs != nil {
		m.Errors.WithLabelValues("promotion").Inc()
	}
	m.GateWaiting.Reset()
	for _, g := range res.Gates {
		m.GateWaiting.WithLabelValues(g.Name).Set(b2f(g.State == promote.Waiting || g.State == promote.InReview))
		switch g.State {
		case promote.Promoted:
			m.Promotions.WithLabelValues(g.Name, promote.ModeMerge).Inc()
		case promote.Proposed:
			m.Promotions.WithLabelValues(g.Name, promote.ModePullRequest).Inc()
		case promote.Refused:
			if g.Changed {
				m.GateRefusals.WithLabelValues(g.Name, g.RefusedFor).Inc()
			}
		case promote.Failed:
			m.Errors.WithLabelValues(Reason(g.Err)).Inc()
		}
	}
	if rv := res.Revert; rv != nil {
		switch {
		case rv.Revert != "":
			m.Reverts.WithLabelValues("reverted").Inc()
		case rv.Err != nil:
			m.Reverts.WithLabelValues("failed").Inc()
		case rv.Changed:
			m.Reverts.WithLabelValues("declined").Inc()
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Observe records one pass.
func (m *Metrics) Observe(res automate.Result, err error, seconds float64) {
	m.PassSeconds.Observe(seconds)
	switch {
	case res.Untrusted != nil:
		m.UntrustedHead.Set(1)
	case err == nil || res.Policies != nil:
		// The pass got past verification.
		m.UntrustedHead.Set(0)
	}
	switch {
	case err != nil:
		m.Passes.WithLabelValues("failed").Inc()
		m.Errors.WithLabelValues(Reason(err)).Inc()
	case res.Commit != "":
		m.Passes.WithLabelValues("committed").Inc()
	default:
		m.Passes.WithLabelValues("unchanged").Inc()
	}
	if res.PolicyErrs != nil {
		m.Errors.WithLabelValues("policy").Inc()
	}
	if res.Attempts > 1 {
		m.PushRetries.Add(float64(res.Attempts - 1))
	}
	for _, pr := range res.Policies {
		key := pr.Policy.Key()
		if pr.Err != nil {
			m.Scans.WithLabelValues(key, "error").Inc()
			m.Errors.WithLabelValues(Reason(pr.Err)).Inc()
			continue
		}
		m.Scans.WithLabelValues(key, "ok").Inc()
		m.TagsSeen.WithLabelValues(key).Set(float64(pr.Tags))
	}
	if res.Commit != "" {
		seen := map[string]bool{}
		for _, c := range res.Changes {
			if !seen[c.Policy] {
				seen[c.Policy] = true
				m.Updates.WithLabelValues(c.Policy).Inc()
			}
		}
	}
}

// Reason names the kind of an error, for the errors metric.
func Reason(err error) string {
	switch {
	case errors.Is(err, registry.ErrUnauthorized):
		return "registry_unauthorized"
	case errors.Is(err, registry.ErrNotFound):
		return "registry_not_found"
	case errors.Is(err, registry.ErrUnreachable):
		return "registry_unreachable"
	case errors.Is(err, registry.ErrThrottled):
		return "registry_throttled"
	case errors.Is(err, gitrepo.ErrAuth):
		return "git_auth"
	case errors.Is(err, gitrepo.ErrRejected):
		return "git_rejected"
	case errors.Is(err, gitrepo.ErrUntrusted):
		return "untrusted_head"
	case errors.Is(err, automate.ErrPermanent):
		return "manifests"
	case errors.Is(err, gitrepo.ErrConflict):
		return "conflict"
	}
	return "other"
}
