// Package reconcile runs the synchronizer's loop: fetch, build, validate
// and apply, prune, then follow drift and health until the next revision,
// recording status in the ApplySet parent.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/metrics"
	"driftless.dev/synchronizer/internal/source"
)

// Fetcher brings the followed revision into a working tree, checked
// against the last applied one (see source.Source.Fetch).
type Fetcher interface {
	Fetch(ctx context.Context, since string) (source.Revision, error)
}

// Builder renders the objects of path inside a checkout.
type Builder func(root, path string) ([]*unstructured.Unstructured, error)

// Store keeps the inventory and status.
type Store interface {
	Read(ctx context.Context) (inventory.State, error)
	Write(ctx context.Context, st inventory.State) error
}

// Recorder emits Kubernetes Events about the synchronizer.
type Recorder interface {
	Event(warning bool, reason, message string)
}

// Config of the loop.
type Config struct {
	// Path inside the checkout to build.
	Path string
	// Interval between fetches when no webhook comes.
	Interval time.Duration
	// Resync applies everything again (ignoring what is remembered) this
	// often: the safety net under the watches.
	Resync time.Duration
	// HealthTimeout is how long objects may take to become Current after
	// an apply before the status says Stalled.
	HealthTimeout time.Duration
	// AllowEmpty lets a render with no objects prune everything.
	AllowEmpty bool
}

// Reconciler is one synchronizer's loop.
type Reconciler struct {
	cfg     Config
	src     Fetcher
	build   Builder
	eng     *apply.Engine
	store   Store
	events  Recorder
	metrics *metrics.Metrics
	log     *zap.Logger
	trigger chan struct{}

	// Loop state, touched by the loop goroutine only.
	objs       []*unstructured.Unstructured
	tree       string
	lastResync time.Time
	appliedAt  time.Time
	pending    bool            // a prune or apply is still owed
	written    inventory.State // what the parent holds
	loaded     bool

	mu     sync.Mutex
	status inventory.Status
	passes int
}

// New returns a reconciler.
func New(cfg Config, src Fetcher, build Builder, eng *apply.Engine, store Store, events Recorder, m *metrics.Metrics, log *zap.Logger) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 5 * time.Minute
	}
	return &Reconciler{cfg: cfg, src: src, build: build, eng: eng, store: store, events: events, metrics: m, log: log,
		trigger: make(chan struct{}, 1), status: inventory.Status{Phase: inventory.Reconciling, Reason: "Starting"}}
}

// Trigger asks for a pass as soon as possible (a webhook).
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Status is the current status, for /status.
func (r *Reconciler) Status() inventory.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Counts = maps.Clone(s.Counts)
	return s
}

// Passes counts completed passes.
func (r *Reconciler) Passes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.passes
}

// Run passes at every interval or trigger, heals drift as soon as it is
// seen, and follows health, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	r.Pass(ctx)
	timer := time.NewTimer(r.cfg.Interval)
	defer timer.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.trigger:
		case <-r.eng.Notify():
			r.heal(ctx)
			r.refreshHealth(ctx)
			continue
		case <-tick.C:
			// Health deadlines pass without any event.
			r.refreshHealth(ctx)
			continue
		}
		r.Pass(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(r.cfg.Interval)
	}
}

// failure is a pass that stopped, with the reason status and metrics use.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }

// Pass runs one reconcile pass and returns its report.
func (r *Reconciler) Pass(ctx context.Context) (apply.Report, error) {
	start := time.Now()
	rep, prep, rev, err := r.pass(ctx)
	var f *failure
	result := "unchanged"
	switch {
	case errors.As(err, &f) && f.reason == "Suspended":
		err = nil
		result = "suspended"
	case err != nil:
		result = "failed"
		reason := "Failed"
		if errors.As(err, &f) {
			reason = f.reason
		}
		r.metrics.Errors.WithLabelValues(reason).Inc()
		prev := r.Status()
		r.setStatus(ctx, func(s *inventory.Status) {
			s.Phase, s.Reason, s.Message = inventory.Stalled, reason, err.Error()
			if rev.Commit != "" {
				s.Revision = rev.String()
			}
		})
		if prev.Reason != reason || prev.Message != err.Error() {
			r.events.Event(true, reason, err.Error())
		}
		r.log.Error("pass failed", zap.String("reason", reason), zap.Error(err))
	case rep.Applied > 0 || len(prep.Results) > 0:
		result = "applied"
	}
	for _, x := range append(rep.Results, prep.Results...) {
		r.metrics.Objects.WithLabelValues(string(x.Action)).Inc()
	}
	r.metrics.ReconcileSeconds.WithLabelValues(result).Observe(time.Since(start).Seconds())
	r.mu.Lock()
	r.passes++
	r.mu.Unlock()
	return rep, err
}

func (r *Reconciler) pass(ctx context.Context) (apply.Report, apply.PruneReport, source.Revision, error) {
	var rep apply.Report
	var prep apply.PruneReport
	st, err := r.store.Read(ctx)
	if err != nil {
		return rep, prep, source.Revision{}, &failure{"InventoryFailed", err}
	}
	if !r.loaded {
		r.written, r.loaded = st, true
	}
	r.metrics.Suspended.Set(b2f(st.Suspended))
	if st.Suspended {
		r.setStatus(ctx, func(s *inventory.Status) {
			s.Phase, s.Reason, s.Message = inventory.Suspended, "Suspended", "annotated "+inventory.SuspendAnnotation+"=true: nothing is applied or pruned until it is removed"
		})
		return rep, prep, source.Revision{}, &failure{"Suspended", errors.New("suspended")}
	}
	var took timings
	t0 := time.Now()
	rev, err := r.src.Fetch(ctx, st.Status.LastAppliedRevision)
	took.fetch = time.Since(t0)
	if err != nil {
		reason := "FetchFailed"
		if errors.Is(err, source.ErrUntrusted) {
			reason = "UntrustedRevision"
		}
		return rep, prep, rev, &failure{reason, err}
	}
	if rev.Tree != r.tree || r.objs == nil {
		t0 := time.Now()
		objs, err := r.build(rev.Dir, r.cfg.Path)
		took.build = time.Since(t0)
		if err != nil {
			return rep, prep, rev, &failure{"BuildFailed", err}
		}
		if len(objs) == 0 && !r.cfg.AllowEmpty {
			return rep, prep, rev, &failure{"EmptyRender", fmt.Errorf("path %q of %s renders no objects: refusing to prune everything (run with --allow-empty if that is intended)", r.cfg.Path, rev)}
		}
		r.objs, r.tree, r.pending = objs, rev.Tree, true
	}
	force := r.cfg.Resync > 0 && time.Since(r.lastResync) >= r.cfg.Resync
	// The inventory is widened once the set is valid and before any
	// member is written, so a crash mid-apply leaves nothing the next
	// pass cannot find.
	gks, nss := kinds(r.objs)
	inv := st
	inv.GroupKinds = union(st.GroupKinds, gks)
	inv.Namespaces = unionStrings(st.Namespaces, nss)
	invErr := errors.New("inventory")
	t0 = time.Now()
	defer func() { took.apply = time.Since(t0) - took.prune }()
	rep, err = r.eng.Apply(ctx, r.objs, force, func() error {
		if err := r.writeInventory(ctx, inv); err != nil {
			return fmt.Errorf("%w: %w", invErr, err)
		}
		return nil
	})
	r.eng.Watch(ctx)
	if err != nil {
		var ve *apply.ValidationError
		switch {
		case errors.As(err, &ve):
			return rep, prep, rev, &failure{"ValidationFailed", err}
		case errors.Is(err, invErr):
			return rep, prep, rev, &failure{"InventoryFailed", err}
		}
		return rep, prep, rev, &failure{"ApplyFailed", err}
	}
	if force {
		r.lastResync = time.Now()
	}
	if r.pending || force || len(inv.GroupKinds) > len(gks) {
		keep := make(map[apply.Key]bool, len(rep.Results))
		for _, x := range rep.Results {
			keep[x.Object] = true
		}
		tp := time.Now()
		prep, err = r.eng.Prune(ctx, inv.GroupKinds, keep)
		took.prune = time.Since(tp)
		inv.GroupKinds = union(gks, prep.Remaining)
		inv.Namespaces = nss
		if werr := r.writeInventory(ctx, inv); werr != nil && err == nil {
			err = werr
		}
		if err != nil {
			var limit *apply.ErrPruneLimit
			if errors.As(err, &limit) {
				return rep, prep, rev, &failure{"PruneLimit", err}
			}
			return rep, prep, rev, &failure{"PruneFailed", err}
		}
		r.pending = false
	}
	changed := rep.Applied > 0 || len(prep.Results) > 0
	if changed {
		r.appliedAt = time.Now()
		r.metrics.LastApplied.SetToCurrentTime()
		r.events.Event(false, "Applied", summary(rev, rep, prep))
		took.apply = time.Since(t0) - took.prune
		r.log.Info("applied", zap.String("revision", rev.String()), zap.Int("applied", rep.Applied),
			zap.Duration("fetch", took.fetch), zap.Duration("build", took.build), zap.Duration("apply", took.apply), zap.Duration("prune", took.prune),
			zap.Int("unchanged", rep.Count(apply.Unchanged)), zap.Int("pruned", prep.Count()))
	}
	r.metrics.Managed.Set(float64(len(r.objs)))
	r.setStatus(ctx, func(s *inventory.Status) {
		s.Revision, s.LastAppliedRevision, s.Objects = rev.String(), rev.String(), len(r.objs)
		if changed {
			s.Counts = counts(rep, prep)
		}
		r.health(s)
	})
	return rep, prep, rev, nil
}

// timings of a pass's phases, for the log.
type timings struct{ fetch, build, apply, prune time.Duration }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// health sets the phase from the objects' kstatus.
func (r *Reconciler) health(s *inventory.Status) {
	if s.LastAppliedRevision != s.Revision || s.Revision == "" {
		return
	}
	counts, not := r.eng.Health(5)
	switch {
	case len(not) == 0:
		s.Phase, s.Reason, s.Message = inventory.Ready, "Applied", fmt.Sprintf("%d objects applied and healthy", counts[status.CurrentStatus])
	case time.Since(r.appliedAt) > r.cfg.HealthTimeout || counts[status.FailedStatus] > 0:
		s.Phase, s.Reason, s.Message = inventory.Stalled, "HealthCheckFailed", "not healthy: "+describe(not)
	default:
		s.Phase, s.Reason, s.Message = inventory.Reconciling, "Progressing", "waiting for: "+describe(not)
	}
}

func describe(not []apply.Health) string {
	var parts []string
	for _, h := range not {
		p := h.Object + " " + string(h.Status)
		if h.Message != "" {
			p += " (" + h.Message + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// refreshHealth re-reads health after an event or a tick.
func (r *Reconciler) refreshHealth(ctx context.Context) {
	r.mu.Lock()
	s := r.status
	r.mu.Unlock()
	if s.Phase != inventory.Reconciling && s.Phase != inventory.Ready && !(s.Phase == inventory.Stalled && s.Reason == "HealthCheckFailed") {
		return
	}
	before := s.Phase
	r.setStatus(ctx, r.health)
	if after := r.Status(); after.Phase != before {
		r.events.Event(after.Phase == inventory.Stalled, string(after.Phase), after.Message)
		if after.Phase == inventory.Stalled {
			r.metrics.Errors.WithLabelValues(after.Reason).Inc()
		}
	}
}

// heal re-applies what someone else changed, unless suspended (as of the
// last pass): then drift waits for the resume.
func (r *Reconciler) heal(ctx context.Context) {
	if r.eng.Drifted() == 0 || r.Status().Phase == inventory.Suspended {
		return
	}
	res, err := r.eng.Heal(ctx)
	var names []string
	for _, x := range res {
		if x.Action != apply.Failed {
			r.metrics.DriftCorrections.Inc()
			names = append(names, x.Object.String())
		}
	}
	if len(names) > 0 {
		if len(names) > 5 {
			names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
		}
		r.events.Event(false, "DriftCorrected", "re-applied after a change outside Git: "+strings.Join(names, ", "))
		r.log.Info("drift corrected", zap.Strings("objects", names))
	}
	if err != nil {
		r.metrics.Errors.WithLabelValues("DriftCorrectionFailed").Inc()
		r.log.Error("drift correction", zap.Error(err))
	}
}

// setStatus changes the status and writes it to the parent when it
// differs from what was written, so a quiet pass writes nothing.
func (r *Reconciler) setStatus(ctx context.Context, f func(*inventory.Status)) {
	r.mu.Lock()
	s := r.status
	s.Counts = maps.Clone(s.Counts)
	f(&s)
	s.LastSyncTime = time.Now()
	r.status = s
	r.mu.Unlock()
	r.metrics.Ready.Set(b2f(s.Phase == inventory.Ready))
	if s.Equal(r.written.Status) {
		return
	}
	inv := r.written
	inv.Status = s
	if err := r.writeInventory(ctx, inv); err != nil {
		r.log.Error("write status", zap.Error(err))
	}
}

func (r *Reconciler) writeInventory(ctx context.Context, inv inventory.State) error {
	if inv.Status.Phase == "" {
		inv.Status = r.Status()
	}
	if r.written.Exists && slices.Equal(inv.GroupKinds, r.written.GroupKinds) &&
		slices.Equal(inv.Namespaces, r.written.Namespaces) && inv.Status.Equal(r.written.Status) {
		return nil
	}
	if err := r.store.Write(ctx, inv); err != nil {
		return err
	}
	inv.Exists = true
	r.written = inv
	return nil
}

func kinds(objs []*unstructured.Unstructured) ([]schema.GroupKind, []string) {
	var gks []schema.GroupKind
	var nss []string
	for _, o := range objs {
		gks = append(gks, o.GroupVersionKind().GroupKind())
		if ns := o.GetNamespace(); ns != "" {
			nss = append(nss, ns)
		}
	}
	return union(nil, gks), unionStrings(nil, nss)
}

func union(a, b []schema.GroupKind) []schema.GroupKind {
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, func(x, y schema.GroupKind) int { return strings.Compare(x.String(), y.String()) })
	return slices.Compact(out)
}

func unionStrings(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func counts(rep apply.Report, prep apply.PruneReport) map[string]int {
	c := map[string]int{}
	for _, x := range append(rep.Results, prep.Results...) {
		c[string(x.Action)]++
	}
	return c
}

func summary(rev source.Revision, rep apply.Report, prep apply.PruneReport) string {
	c := counts(rep, prep)
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%d %s", c[k], k))
	}
	return "revision " + rev.String() + ": " + strings.Join(parts, ", ")
}
