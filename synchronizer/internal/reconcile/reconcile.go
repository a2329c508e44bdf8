// Package reconcile runs the synchronizer's loop: one pass reads the
// state recorded in the cluster, fetches and builds the revision, plans
// and applies it, prunes what left Git and records the outcome; between
// passes it heals drift and follows health.
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

	"driftless.dev/shared/records"
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
type Builder func(ctx context.Context, root, path string) ([]*unstructured.Unstructured, error)

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
	// Interval between fetches when no webhook comes. Default 1m.
	Interval time.Duration
	// Resync applies everything again (ignoring what is remembered) this
	// often: the safety net under the watches.
	Resync time.Duration
	// HealthTimeout is how long objects may take to become Current after
	// an apply before the status says Stalled. Default 5m.
	HealthTimeout time.Duration
	// PassTimeout bounds one pass. Default 10m.
	PassTimeout time.Duration
	// Observer, when set, is told when a revision is applied, becomes
	// healthy and becomes degraded: the deployment record.
	Observer Observer
}

// Observer is told of the transitions a deployment record keeps. It is
// called on the loop's goroutine and must return at once: the recorder
// queues, and writes off the loop.
type Observer interface {
	Observe(Transition)
}

// Transition is a change of what runs in the cluster.
type Transition struct {
	// Event is records.Applied, records.Healthy or records.Degraded.
	Event records.Event
	// Revision is the applied revision as status shows it: ref@sha1:commit.
	Revision string
	// Time is when the loop saw it.
	Time time.Time
	// Objects are the set applied (Applied only), as applied (labelled
	// and placed). A render is not written again once planned: an
	// observer may read them from another goroutine.
	Objects []*unstructured.Unstructured
	// Message says what is not healthy (Degraded).
	Message string
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
	broken     *Failure // the build of tree failed: not retried until the tree changes
	lastResync time.Time
	appliedAt  time.Time
	written    inventory.State // what the parent holds
	loaded     bool
	told       told // what the observer was last told

	mu        sync.Mutex
	status    inventory.Status
	passes    int
	passStart time.Time // zero between passes
	history   []PassRecord
	desired   Desired
	members   []apply.Member
}

// told is the revision the observer was last told of, and its health.
type told struct {
	revision string
	health   records.Event
}

// historyLen is how many passes History keeps.
const historyLen = 100

// PassRecord is one pass as history shows it.
type PassRecord struct {
	Start    time.Time        `json:"start"`
	Duration time.Duration    `json:"duration"`
	Revision string           `json:"revision,omitempty"`
	Result   string           `json:"result"`
	Reason   inventory.Reason `json:"reason,omitempty"`
	Message  string           `json:"message,omitempty"`
	Counts   map[string]int   `json:"counts,omitempty"`
	Took     Timings          `json:"took"`
}

// History is the last passes, newest first.
func (r *Reconciler) History() []PassRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.history)
	slices.Reverse(out)
	return out
}

// Desired is the render of the last revision built: what the loop holds
// the cluster to, for a diff or a page.
type Desired struct {
	Revision source.Revision
	Objects  []*unstructured.Unstructured
}

// Desired returns the last render and the inventory a pass prunes from.
func (r *Reconciler) Desired() (Desired, []apply.Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.desired, slices.Clone(r.members)
}

// New returns a reconciler.
func New(cfg Config, src Fetcher, build Builder, eng *apply.Engine, store Store, events Recorder, m *metrics.Metrics, log *zap.Logger) *Reconciler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 5 * time.Minute
	}
	if cfg.PassTimeout <= 0 {
		cfg.PassTimeout = 10 * time.Minute
	}
	return &Reconciler{cfg: cfg, src: src, build: build, eng: eng, store: store, events: events, metrics: m, log: log,
		trigger: make(chan struct{}, 1), status: inventory.Status{Phase: inventory.Reconciling, Reason: inventory.ReasonStarting}}
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

// Live reports a loop that no longer makes progress: a pass running
// longer than its timeout allows (something that ignores its context),
// so /healthz fails and the kubelet restarts the Pod.
func (r *Reconciler) Live() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := r.cfg.PassTimeout + min(time.Minute, r.cfg.PassTimeout/2)
	if !r.passStart.IsZero() && time.Since(r.passStart) > limit {
		return fmt.Errorf("a pass has run for %s, more than its timeout of %s", time.Since(r.passStart).Round(time.Second), r.cfg.PassTimeout)
	}
	return nil
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
		case <-r.eng.Tracker().Notify():
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

// Failure is a pass that stopped: the reason status and metrics use, and
// the error.
type Failure struct {
	Reason inventory.Reason
	Err    error
}

func (f *Failure) Error() string { return f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

func fail(reason inventory.Reason, err error) *Failure { return &Failure{Reason: reason, Err: err} }

// Result is one pass, as data.
type Result struct {
	Revision  source.Revision
	Suspended bool
	Changes   apply.ChangeSet
	Pruned    apply.PruneReport
	// Err is nil or a *Failure.
	Err  error
	Took Timings
}

// Changed reports whether the pass changed the cluster.
func (res Result) Changed() bool {
	return res.Changes.Changed() > 0 || len(res.Pruned.Results) > 0
}

// Timings of a pass's phases, for the log and the benchmarks.
type Timings struct{ Fetch, Build, Plan, Apply, Prune time.Duration }

// Pass runs one reconcile pass and records its outcome.
func (r *Reconciler) Pass(ctx context.Context) Result {
	start := time.Now()
	r.mu.Lock()
	r.passStart = start
	r.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PassTimeout)
	res := r.pass(pctx)
	cancel()
	// Watches outlive the pass: they end with the loop.
	r.eng.Tracker().Watch(ctx)
	r.record(ctx, res)
	result := "unchanged"
	switch {
	case res.Suspended:
		result = "suspended"
	case res.Err != nil:
		result = "failed"
	case res.Changed():
		result = "applied"
	}
	for _, x := range append(slices.Clone(res.Changes.Results), res.Pruned.Results...) {
		r.metrics.Objects.WithLabelValues(string(x.Action)).Inc()
	}
	r.metrics.ReconcileSeconds.WithLabelValues(result).Observe(time.Since(start).Seconds())
	st := r.Status()
	rec := PassRecord{Start: start, Duration: time.Since(start), Revision: res.Revision.String(), Result: result, Took: res.Took}
	if res.Changed() {
		rec.Counts = counts(res)
	}
	if res.Err != nil {
		rec.Reason, rec.Message = st.Reason, st.Message
	}
	r.mu.Lock()
	r.passes++
	r.passStart = time.Time{}
	r.history = append(r.history, rec)
	if len(r.history) > historyLen {
		r.history = slices.Delete(r.history, 0, len(r.history)-historyLen)
	}
	r.mu.Unlock()
	return res
}

// pass: readState → fetchAndBuild → apply → prune.
func (r *Reconciler) pass(ctx context.Context) (res Result) {
	st, err := r.readState(ctx)
	if err != nil {
		res.Err = fail(inventory.ReasonInventoryFailed, err)
		return res
	}
	if res.Suspended = st.Suspended; res.Suspended {
		return res
	}
	if res.Revision, res.Err = r.fetchAndBuild(ctx, &res.Took); res.Err != nil {
		return res
	}
	plan, err := r.apply(ctx, &res)
	if err != nil {
		res.Err = err
		return res
	}
	res.Err = r.prune(ctx, plan, &res)
	return res
}

// readState reads the parent. The first read of a process also makes
// the recorded status this process's starting point: what was applied
// is a fact about the cluster, not about the process that applied it.
func (r *Reconciler) readState(ctx context.Context) (inventory.State, error) {
	st, err := r.store.Read(ctx)
	if err != nil {
		return st, err
	}
	if !r.loaded {
		r.written, r.loaded = st, true
		r.mu.Lock()
		r.members = st.Members
		if st.Exists && st.Status.Phase != "" {
			r.status = st.Status
		}
		r.mu.Unlock()
	}
	r.written.Suspended = st.Suspended
	r.metrics.Suspended.Set(b2f(st.Suspended))
	return st, nil
}

func (r *Reconciler) fetchAndBuild(ctx context.Context, took *Timings) (source.Revision, error) {
	t0 := time.Now()
	// Verification and the rewind check start from what the cluster
	// says was applied last.
	rev, err := r.src.Fetch(ctx, r.Status().LastAppliedRevision)
	took.Fetch = time.Since(t0)
	switch {
	case errors.Is(err, source.ErrUntrusted):
		return rev, fail(inventory.ReasonUntrusted, err)
	case errors.Is(err, source.ErrRewound):
		return rev, fail(inventory.ReasonRewound, err)
	case err != nil:
		return rev, fail(inventory.ReasonFetchFailed, err)
	}
	if rev.Tree == r.tree && r.objs != nil {
		return rev, nil
	}
	if rev.Tree == r.tree && r.broken != nil {
		// The same tree fails the same way: no rebuild until Git moves.
		return rev, r.broken
	}
	t0 = time.Now()
	objs, err := r.build(ctx, rev.Dir, r.cfg.Path)
	took.Build = time.Since(t0)
	if ctx.Err() != nil {
		// Out of time, not a broken commit: the next pass builds again.
		return rev, fail(inventory.ReasonBuildFailed, fmt.Errorf("build of %q at %s did not finish within the pass timeout of %s: %w", r.cfg.Path, rev, r.cfg.PassTimeout, ctx.Err()))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// The build's own limit: the next pass tries again too.
		return rev, fail(inventory.ReasonBuildFailed, err)
	}
	r.tree = rev.Tree
	if err != nil {
		r.objs, r.broken = nil, fail(inventory.ReasonBuildFailed, fmt.Errorf("%w (not retried until the branch moves)", err))
		return rev, r.broken
	}
	r.objs, r.broken = objs, nil
	return rev, nil
}

// apply plans the set (validating all of it), widens the inventory to
// the plan's members before any write, so a crash mid-apply leaves
// nothing the next pass cannot find, and executes the plan.
func (r *Reconciler) apply(ctx context.Context, res *Result) (*apply.Plan, error) {
	force := r.cfg.Resync > 0 && time.Since(r.lastResync) >= r.cfg.Resync
	t0 := time.Now()
	plan, err := r.eng.Plan(ctx, r.objs, apply.PlanOptions{Force: force})
	res.Took.Plan = time.Since(t0)
	// Published once planned: Plan labels and places the render in place
	// the first time, and never writes it again, so readers (the UI) see
	// it settled.
	r.mu.Lock()
	r.desired = Desired{Revision: res.Revision, Objects: r.objs}
	r.mu.Unlock()
	var ve *apply.ValidationError
	switch {
	case errors.Is(err, apply.ErrEmptyRender):
		return nil, fail(inventory.ReasonEmptyRender, fmt.Errorf("path %q of %s %w", r.cfg.Path, res.Revision, err))
	case errors.As(err, &ve):
		return nil, fail(inventory.ReasonValidationFailed, err)
	case err != nil:
		return nil, fail(inventory.ReasonApplyFailed, err)
	}
	inv := r.written
	inv.Members = unionMembers(r.written.Members, plan.Members())
	if err := r.writeInventory(ctx, inv); err != nil {
		return nil, fail(inventory.ReasonInventoryFailed, err)
	}
	t0 = time.Now()
	res.Changes, err = r.eng.Execute(ctx, plan, apply.ApplyOptions{})
	res.Took.Apply = time.Since(t0)
	switch {
	case errors.As(err, &ve):
		return nil, fail(inventory.ReasonValidationFailed, err)
	case err != nil:
		return nil, fail(inventory.ReasonApplyFailed, err)
	}
	if force {
		r.lastResync = time.Now()
	}
	return plan, nil
}

// prune removes the members that left Git and narrows the inventory to
// what stays.
func (r *Reconciler) prune(ctx context.Context, plan *apply.Plan, res *Result) error {
	t0 := time.Now()
	pp := r.eng.PlanPrune(ctx, r.written.Members, plan.Keys())
	rep, err := r.eng.Prune(ctx, pp)
	res.Pruned = rep
	res.Took.Prune = time.Since(t0)
	inv := r.written
	inv.Members = unionMembers(plan.Members(), rep.Remaining)
	if werr := r.writeInventory(ctx, inv); werr != nil && err == nil {
		return fail(inventory.ReasonInventoryFailed, werr)
	}
	var limit *apply.ErrPruneLimit
	switch {
	case errors.As(err, &limit):
		return fail(inventory.ReasonPruneLimit, err)
	case err != nil:
		return fail(inventory.ReasonPruneFailed, err)
	}
	return nil
}

// record turns a pass into status, Events, metrics and a log line.
func (r *Reconciler) record(ctx context.Context, res Result) {
	var f *Failure
	switch {
	case res.Suspended:
		r.setStatus(ctx, func(s *inventory.Status) {
			s.Phase, s.Reason, s.Message = inventory.Suspended, inventory.ReasonSuspended, "annotated "+inventory.SuspendAnnotation+"=true: nothing is applied or pruned until it is removed"
		})
	case errors.As(res.Err, &f):
		r.metrics.Errors.WithLabelValues(string(f.Reason)).Inc()
		prev := r.Status()
		msg := f.Error()
		r.setStatus(ctx, func(s *inventory.Status) {
			// What was applied last stays: only the phase and why change.
			s.Phase, s.Reason, s.Message = inventory.Stalled, f.Reason, msg
			if res.Revision.Commit != "" {
				s.Revision = res.Revision.String()
			}
		})
		if prev.Reason != f.Reason || prev.Message != msg {
			r.events.Event(true, string(f.Reason), msg)
		}
		r.log.Error("pass failed", zap.String("reason", string(f.Reason)), zap.Error(res.Err))
	default:
		rev := res.Revision.String()
		if res.Changed() {
			r.appliedAt = time.Now()
			r.metrics.LastApplied.SetToCurrentTime()
			r.events.Event(false, string(inventory.ReasonApplied), summary(res))
			r.log.Info("applied", zap.String("revision", rev), zap.Int("changed", res.Changes.Changed()),
				zap.Int("unchanged", res.Changes.Count(apply.Unchanged)), zap.Int("pruned", res.Pruned.Count()),
				zap.Duration("fetch", res.Took.Fetch), zap.Duration("build", res.Took.Build), zap.Duration("plan", res.Took.Plan),
				zap.Duration("apply", res.Took.Apply), zap.Duration("prune", res.Took.Prune))
		}
		if kept := kept(res.Pruned); kept != "" {
			r.events.Event(false, string(inventory.ReasonKept), kept)
		}
		if r.appliedAt.IsZero() {
			// A new process: health is measured from its first pass.
			r.appliedAt = time.Now()
		}
		r.metrics.Managed.Set(float64(len(r.objs)))
		r.setStatus(ctx, func(s *inventory.Status) {
			s.Revision, s.LastAppliedRevision, s.Objects = rev, rev, len(r.objs)
			if res.Changed() {
				s.Counts = counts(res)
			}
			r.health(s)
		})
		r.tell(r.Status())
	}
}

// tell gives the observer the transitions between what it was last told
// and s: a revision applied (once per revision and process: a restart
// tells it again and the recorder knows it from Git), then healthy or
// degraded as the phase moves between Ready and Stalled on health.
func (r *Reconciler) tell(s inventory.Status) {
	o := r.cfg.Observer
	if o == nil || s.LastAppliedRevision == "" || s.Revision != s.LastAppliedRevision {
		return
	}
	now := time.Now()
	if s.LastAppliedRevision != r.told.revision {
		r.told = told{revision: s.LastAppliedRevision}
		o.Observe(Transition{Event: records.Applied, Revision: r.told.revision, Time: now, Objects: r.objs})
	}
	var health records.Event
	switch {
	case s.Phase == inventory.Ready:
		health = records.Healthy
	case s.Phase == inventory.Stalled && s.Reason == inventory.ReasonHealthCheckFailed:
		health = records.Degraded
	}
	if health != "" && health != r.told.health {
		r.told.health = health
		t := Transition{Event: health, Revision: r.told.revision, Time: now}
		if health == records.Degraded {
			t.Message = s.Message
		}
		o.Observe(t)
	}
}

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
	counts, not := r.eng.Tracker().Health(5)
	switch {
	case len(not) == 0:
		s.Phase, s.Reason, s.Message = inventory.Ready, inventory.ReasonApplied, fmt.Sprintf("%d objects applied and healthy", counts[status.CurrentStatus])
	case time.Since(r.appliedAt) > r.cfg.HealthTimeout || counts[status.FailedStatus] > 0:
		s.Phase, s.Reason, s.Message = inventory.Stalled, inventory.ReasonHealthCheckFailed, "not healthy: "+describe(not)
	default:
		s.Phase, s.Reason, s.Message = inventory.Reconciling, inventory.ReasonProgressing, "waiting for: "+describe(not)
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
	s := r.Status()
	if s.Phase != inventory.Reconciling && s.Phase != inventory.Ready && !(s.Phase == inventory.Stalled && s.Reason == inventory.ReasonHealthCheckFailed) {
		return
	}
	before := s.Phase
	r.setStatus(ctx, r.health)
	after := r.Status()
	r.tell(after)
	if after.Phase != before {
		r.events.Event(after.Phase == inventory.Stalled, string(after.Phase), after.Message)
		if after.Phase == inventory.Stalled {
			r.metrics.Errors.WithLabelValues(string(after.Reason)).Inc()
		}
	}
}

// heal re-applies what someone else changed, unless suspended (as of the
// last pass): then drift waits for the resume.
func (r *Reconciler) heal(ctx context.Context) {
	if r.eng.Tracker().Drifted() == 0 || r.Status().Phase == inventory.Suspended {
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
		r.events.Event(false, string(inventory.ReasonDriftCorrected), "re-applied after a change outside Git: "+strings.Join(names, ", "))
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
	if !r.loaded {
		// Nothing read yet (the parent could not be read): writing now
		// would put a blank over what the cluster holds.
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
	if r.written.Exists && slices.Equal(inv.Members, r.written.Members) && inv.Status.Equal(r.written.Status) {
		return nil
	}
	if err := r.store.Write(ctx, inv); err != nil {
		return err
	}
	inv.Exists = true
	r.written = inv
	r.mu.Lock()
	r.members = inv.Members
	r.mu.Unlock()
	return nil
}

// unionMembers is a then b, b's prune choice winning for a key in both,
// sorted.
func unionMembers(a, b []apply.Member) []apply.Member {
	byKey := make(map[apply.Key]apply.Member, len(a)+len(b))
	for _, m := range a {
		byKey[m.Key] = m
	}
	for _, m := range b {
		byKey[m.Key] = m
	}
	out := slices.Collect(maps.Values(byKey))
	apply.SortMembers(out)
	return out
}

func counts(res Result) map[string]int {
	c := map[string]int{}
	for _, x := range append(slices.Clone(res.Changes.Results), res.Pruned.Results...) {
		c[string(x.Action)]++
	}
	return c
}

func summary(res Result) string {
	c := counts(res)
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%d %s", c[k], k))
	}
	return "revision " + res.Revision.String() + ": " + strings.Join(parts, ", ")
}

// kept names the objects a prune left in the cluster, and why.
func kept(rep apply.PruneReport) string {
	var whys []string
	for _, x := range rep.Results {
		if x.Action == apply.Orphaned {
			whys = append(whys, x.Reason)
		}
	}
	if len(whys) > 5 {
		whys = append(whys[:5], fmt.Sprintf("and %d more", len(whys)-5))
	}
	return strings.Join(whys, "; ")
}
