// Package metrics holds the synchronizer's Prometheus metrics
// (driftless_synchronizer_*). Labels carry actions and reasons, never an
// object's content or a credential.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the synchronizer's instruments.
type Metrics struct {
	ReconcileSeconds *prometheus.HistogramVec
	Objects          *prometheus.CounterVec
	DriftCorrections prometheus.Counter
	Errors           *prometheus.CounterVec
	Managed          prometheus.Gauge
	Ready            prometheus.Gauge
	Suspended        prometheus.Gauge
	LastApplied      prometheus.Gauge
	// Records counts deployment records by result: written (in Git),
	// failed (a write attempt failed; the record stays queued and is
	// retried), dropped (lost to a full queue).
	Records        *prometheus.CounterVec
	RecordsPending prometheus.Gauge
	// RecordLatency is the time from a transition (applied, healthy,
	// degraded) to its record in Git.
	RecordLatency prometheus.Histogram
}

// New registers the metrics with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ReconcileSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "driftless_synchronizer_reconcile_duration_seconds",
			Help: "Duration of reconcile passes, by result (applied, unchanged, failed).", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}, []string{"result"}),
		Objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_synchronizer_objects_total",
			Help: "Objects handled by passes, by action (created, configured, unchanged, recreated, pruned, orphaned, failed)."}, []string{"action"}),
		DriftCorrections: prometheus.NewCounter(prometheus.CounterOpts{Name: "driftless_synchronizer_drift_corrections_total",
			Help: "Objects re-applied after someone else changed or deleted them."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_synchronizer_errors_total",
			Help: "Failed passes, by reason (FetchFailed, UntrustedRevision, BuildFailed, EmptyRender, ValidationFailed, ApplyFailed, PruneFailed, PruneLimit, HealthCheckFailed, InventoryFailed)."}, []string{"reason"}),
		Managed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "driftless_synchronizer_managed_objects",
			Help: "Objects in the applied set."}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: "driftless_synchronizer_ready",
			Help: "1 when the last revision is applied and every object is healthy."}),
		Suspended: prometheus.NewGauge(prometheus.GaugeOpts{Name: "driftless_synchronizer_suspended",
			Help: "1 while suspended."}),
		LastApplied: prometheus.NewGauge(prometheus.GaugeOpts{Name: "driftless_synchronizer_last_applied_timestamp_seconds",
			Help: "When a revision was last applied in full."}),
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "driftless_synchronizer_records_total",
			Help: "Deployment records (Git notes, --record), by result: written, failed (a write attempt failed; retried), dropped (queue full)."}, []string{"result"}),
		RecordsPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "driftless_synchronizer_records_pending",
			Help: "Deployment records waiting to be written to Git."}),
		RecordLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "driftless_synchronizer_record_latency_seconds",
			Help: "Time from an applied, healthy or degraded transition to its record in Git.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12)}),
	}
	reg.MustRegister(m.ReconcileSeconds, m.Objects, m.DriftCorrections, m.Errors, m.Managed, m.Ready, m.Suspended, m.LastApplied,
		m.Records, m.RecordsPending, m.RecordLatency)
	return m
}
