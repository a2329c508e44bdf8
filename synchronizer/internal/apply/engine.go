// Package apply makes the cluster match a set of objects with server-side
// apply: it validates the whole set with a dry run before writing any of
// it, applies CRDs and Namespaces first, remembers what it applied so an
// unchanged object costs no request, watches what it manages to heal
// drift, and prunes what left the set.
package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Options shape every pass.
type Options struct {
	// FieldManager owns every field the synchronizer applies.
	FieldManager string
	// SetID is the ApplySet id; members carry it in PartOfLabel.
	SetID string
	// Tenant, when set, confines everything to that namespace: objects
	// without a namespace go there, anything else is refused.
	Tenant string
	// DefaultNamespace is where namespaced objects without one go
	// outside tenant mode.
	DefaultNamespace string
	// Concurrency bounds requests in flight.
	Concurrency int
	// Recreate lets every object hit by an immutable-field change be
	// deleted and re-created; otherwise only those annotated so.
	Recreate bool
	// MaxPrune refuses a pass that would delete more than this many
	// objects (0: no limit).
	MaxPrune int
	// AllowPruneProtected lets Namespaces, CRDs and PVCs be pruned
	// without their own opt-in annotation.
	AllowPruneProtected bool
}

// PartOfLabel marks an ApplySet member (KEP-3659).
const PartOfLabel = "applyset.kubernetes.io/part-of"

// entry is what the engine remembers of one managed object.
type entry struct {
	gvr     schema.GroupVersionResource
	desired *unstructured.Unstructured
	hash    uint64
	rv      string // live resourceVersion last seen
	inSync  bool   // applied, and no foreign change seen since
	health  status.Status
	message string
}

// Engine applies sets of objects to one cluster.
type Engine struct {
	dyn    dynamic.Interface
	raw    rest.Interface // server-side apply, answered with metadata only
	mapper meta.ResettableRESTMapper
	opts   Options
	log    *zap.Logger

	mu      sync.Mutex
	objs    map[Key]*entry
	drifted map[Key]bool
	watches map[schema.GroupVersionResource]bool // resources being watched
	// notify gets a value when drift is seen or health changes.
	notify chan struct{}
	// requests counts API calls made by passes (not watches), for tests.
	requests int
}

// New returns an engine. mapper maps kinds to resources; it is reset when
// a CRD of the set is established.
func New(dyn dynamic.Interface, mapper meta.ResettableRESTMapper, opts Options, log *zap.Logger) *Engine {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "driftless"
	}
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "default"
	}
	return &Engine{
		dyn: dyn, mapper: mapper, opts: opts, log: log,
		objs: map[Key]*entry{}, drifted: map[Key]bool{},
		watches: map[schema.GroupVersionResource]bool{},
		notify:  make(chan struct{}, 1),
	}
}

// Notify signals drift to heal or a change of health.
func (e *Engine) Notify() <-chan struct{} { return e.notify }

func (e *Engine) signal() {
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// item is one object of a set, prepared for applying.
type item struct {
	key        Key
	gvr        schema.GroupVersionResource
	namespaced bool
	obj        *unstructured.Unstructured
	hash       uint64
	body       []byte // the JSON applied
	deferred   bool   // its kind or namespace comes with the set
	prevRV     string // from the dry run: "" when it will be created
	recreate   bool
}

// Report is the data of one pass.
type Report struct {
	Results []Result
	// Applied counts objects written; Skipped those unchanged without a
	// request.
	Applied, Skipped int
}

// Count returns how many results have action a.
func (r Report) Count(a Action) int {
	n := 0
	for _, x := range r.Results {
		if x.Action == a {
			n++
		}
	}
	return n
}

// Apply makes the cluster hold objs. The set is validated first (mapped,
// confined to the tenant, dry-run on the server); if any object fails,
// nothing is written and a *ValidationError lists them. Objects whose
// desired form is unchanged and whose live copy nobody touched since the
// last apply cost no request, unless force. before, if not nil, runs once
// the set is valid and before anything is written (the caller records its
// inventory there, so a crash mid-apply leaves nothing it cannot find).
func (e *Engine) Apply(ctx context.Context, objs []*unstructured.Unstructured, force bool, before func() error) (Report, error) {
	items, problems := e.prepare(objs)
	if len(problems) > 0 {
		return Report{}, &ValidationError{Problems: problems}
	}
	var rep Report
	var todo []*item
	e.mu.Lock()
	for _, it := range items {
		if m := e.objs[it.key]; !force && m != nil && m.inSync && m.hash == it.hash {
			rep.Results = append(rep.Results, Result{Object: it.key, Action: Unchanged})
			rep.Skipped++
			continue
		}
		todo = append(todo, it)
	}
	e.mu.Unlock()

	// Validate everything that can be validated now.
	newNS := map[string]bool{}
	for _, it := range todo {
		if it.key.GroupKind() == namespaceGK {
			newNS[it.key.Name] = true
		}
	}
	if p := e.dryRun(ctx, todo, newNS); len(p) > 0 {
		return rep, &ValidationError{Problems: p}
	}
	if before != nil {
		if err := before(); err != nil {
			return rep, err
		}
	}
	first := slices.DeleteFunc(slices.Clone(todo), func(it *item) bool { return !stageOne(it.key) })
	rest := slices.DeleteFunc(slices.Clone(todo), func(it *item) bool { return stageOne(it.key) })
	res, err := e.write(ctx, first)
	rep.Results = append(rep.Results, res...)
	rep.Applied += len(first)
	if err != nil {
		return rep, err
	}
	if err := e.waitEstablished(ctx, first); err != nil {
		return rep, err
	}
	// Kinds and namespaces that came with the set exist now.
	var deferred []*item
	for _, it := range rest {
		if it.deferred {
			deferred = append(deferred, it)
		}
	}
	if len(deferred) > 0 {
		p := e.mapDeferred(ctx, deferred)
		if len(p) == 0 {
			p = e.dryRun(ctx, deferred, nil)
		}
		if len(p) > 0 {
			return rep, &ValidationError{Problems: p}
		}
	}
	res, err = e.write(ctx, rest)
	rep.Results = append(rep.Results, res...)
	rep.Applied += len(rest)
	e.retain(items)
	return rep, err
}

var (
	namespaceGK = schema.GroupKind{Kind: "Namespace"}
	crdGK       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
)

// mapDeferred maps the items whose kinds came with the set. Discovery
// serves a new CRD's kind a moment after the CRD is Established, so an
// unknown kind is retried for a few seconds before it is a problem.
func (e *Engine) mapDeferred(ctx context.Context, items []*item) []Problem {
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mapper.Reset()
		var p []Problem
		for _, it := range items {
			if err := e.mapItem(it); err != nil {
				p = append(p, Problem{Object: it.key.String(), Reason: err.Error()})
			}
		}
		if len(p) == 0 || time.Now().After(deadline) {
			return p
		}
		select {
		case <-ctx.Done():
			return append(p, Problem{Object: "(set)", Reason: ctx.Err().Error()})
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stageOne: CRDs and Namespaces go first, so the rest can use them.
func stageOne(k Key) bool {
	gk := k.GroupKind()
	return gk == namespaceGK || gk == crdGK
}

// prepare maps every object, applies the namespace rules and labels it as
// a member of the set.
func (e *Engine) prepare(objs []*unstructured.Unstructured) ([]*item, []Problem) {
	var problems []Problem
	crdKinds := map[schema.GroupKind]bool{}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			g, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			k, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
			crdKinds[schema.GroupKind{Group: g, Kind: k}] = scope != "Cluster"
		}
	}
	seen := map[Key]bool{}
	items := make([]*item, 0, len(objs))
	for _, o := range objs {
		o = o.DeepCopy()
		name := describe(o)
		if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
			problems = append(problems, Problem{Object: name, Reason: "apiVersion, kind and metadata.name are required"})
			continue
		}
		it := &item{obj: o}
		if err := e.mapItem(it); err != nil {
			gk := o.GroupVersionKind().GroupKind()
			namespaced, ok := crdKinds[gk]
			if !ok {
				problems = append(problems, Problem{Object: name, Reason: err.Error()})
				continue
			}
			it.deferred, it.namespaced = true, namespaced
		}
		if it.namespaced {
			switch ns := o.GetNamespace(); {
			case e.opts.Tenant != "" && ns == "":
				o.SetNamespace(e.opts.Tenant)
			case e.opts.Tenant != "" && ns != e.opts.Tenant:
				problems = append(problems, Problem{Object: name, Reason: fmt.Sprintf("namespace %q is outside this synchronizer's namespace %q (tenant mode)", ns, e.opts.Tenant)})
				continue
			case ns == "":
				o.SetNamespace(e.opts.DefaultNamespace)
			}
		} else {
			if e.opts.Tenant != "" {
				problems = append(problems, Problem{Object: name, Reason: fmt.Sprintf("cluster-scoped objects are not allowed in tenant mode (namespace %q)", e.opts.Tenant)})
				continue
			}
			o.SetNamespace("")
		}
		it.key = keyOf(o)
		if seen[it.key] {
			problems = append(problems, Problem{Object: it.key.String(), Reason: "defined more than once"})
			continue
		}
		seen[it.key] = true
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[PartOfLabel] = e.opts.SetID
		o.SetLabels(labels)
		body, err := o.MarshalJSON()
		if err != nil {
			problems = append(problems, Problem{Object: it.key.String(), Reason: err.Error()})
			continue
		}
		it.hash, it.body = hashOf(body), body
		items = append(items, it)
	}
	return items, problems
}

func describe(o *unstructured.Unstructured) string {
	k := Key{Group: o.GroupVersionKind().Group, Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
	if k.Kind == "" {
		k.Kind = "(no kind)"
	}
	if k.Name == "" {
		k.Name = "(no name)"
	}
	return k.String()
}

func (e *Engine) mapItem(it *item) error {
	gvk := it.obj.GroupVersionKind()
	m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("unknown kind %s in %s: no such resource on the API server (is its CRD installed?)", gvk.Kind, gvk.GroupVersion())
		}
		return fmt.Errorf("map %s: %w", gvk, err)
	}
	it.gvr = m.Resource
	it.namespaced = m.Scope.Name() == meta.RESTScopeNameNamespace
	it.deferred = false
	return nil
}

func (e *Engine) resource(gvr schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
	if ns == "" {
		return e.dyn.Resource(gvr)
	}
	return e.dyn.Resource(gvr).Namespace(ns)
}

// dryRun validates items on the server. Items whose namespace or kind
// comes with the set are deferred until those exist.
func (e *Engine) dryRun(ctx context.Context, items []*item, newNS map[string]bool) []Problem {
	var mu sync.Mutex
	var problems []Problem
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for _, it := range items {
		if it.deferred {
			continue
		}
		g.Go(func() error {
			live, err := e.ssa(gctx, it, true)
			if err == nil {
				// Empty for an object that does not exist yet.
				it.prevRV = live.GetResourceVersion()
				return nil
			}
			if apierrors.IsNotFound(err) && newNS[it.key.Namespace] {
				it.deferred = true
				return nil
			}
			if field, ok := immutable(err); ok {
				if e.opts.Recreate || it.obj.GetAnnotations()[RecreateAnnotation] == "enabled" {
					it.recreate = true
					return nil
				}
				err = fmt.Errorf("%s: field is immutable; to delete and re-create the object, annotate it %s: enabled", field, RecreateAnnotation)
			}
			mu.Lock()
			problems = append(problems, Problem{Object: it.key.String(), Reason: reason(err)})
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil && len(problems) == 0 {
		problems = append(problems, Problem{Object: "(set)", Reason: ctx.Err().Error()})
	}
	slices.SortFunc(problems, func(a, b Problem) int { return strings.Compare(a.Object, b.Object) })
	return problems
}

// immutable reports the field an Invalid error says cannot change.
func immutable(err error) (string, bool) {
	var se *apierrors.StatusError
	if !errors.As(err, &se) || !apierrors.IsInvalid(err) {
		return "", false
	}
	if se.ErrStatus.Details != nil {
		for _, c := range se.ErrStatus.Details.Causes {
			if strings.Contains(c.Message, "immutable") {
				return c.Field, true
			}
		}
	}
	if strings.Contains(se.ErrStatus.Message, "immutable") {
		return "a field", true
	}
	return "", false
}

// reason is an API error as one line a user can act on.
func reason(err error) string {
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		return strings.TrimSpace(se.ErrStatus.Message)
	}
	return err.Error()
}

// write applies items concurrently and records them.
func (e *Engine) write(ctx context.Context, items []*item) ([]Result, error) {
	results := make([]Result, len(items))
	var mu sync.Mutex
	var failures []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for i, it := range items {
		g.Go(func() error {
			act, err := e.applyOne(gctx, it)
			results[i] = Result{Object: it.key, Action: act}
			if err != nil {
				results[i] = Result{Object: it.key, Action: Failed, Reason: reason(err)}
				mu.Lock()
				failures = append(failures, it.key.String()+": "+reason(err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(failures) > 0 {
		slices.Sort(failures)
		return results, fmt.Errorf("apply failed for %d object(s): %s", len(failures), strings.Join(failures, "; "))
	}
	return results, nil
}

func (e *Engine) applyOne(ctx context.Context, it *item) (Action, error) {
	ri := e.resource(it.gvr, it.key.Namespace)
	act := Configured
	if it.recreate {
		if err := e.remove(ctx, ri, it.key); err != nil {
			return Failed, fmt.Errorf("delete to re-create: %w", err)
		}
		act, it.prevRV = Recreated, ""
	}
	live, err := e.ssa(ctx, it, false)
	if err != nil {
		return Failed, err
	}
	switch {
	case act == Recreated:
	case it.prevRV == "":
		act = Created
	case live.GetResourceVersion() == it.prevRV:
		act = Unchanged
	}
	e.record(it, live)
	return act, nil
}

// remove deletes an object and waits until it is gone.
func (e *Engine) remove(ctx context.Context, ri dynamic.ResourceInterface, k Key) error {
	fg := metav1.DeletePropagationForeground
	if err := ri.Delete(ctx, k.Name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	e.count()
	for {
		_, err := ri.Get(ctx, k.Name, metav1.GetOptions{})
		e.count()
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be deleted: %w", k, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// record remembers what was applied and the live copy the server
// answered with.
func (e *Engine) record(it *item, live *unstructured.Unstructured) {
	h := health(live)
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.objs[it.key]
	if m == nil {
		m = &entry{}
		e.objs[it.key] = m
	}
	m.gvr, m.desired, m.hash, m.inSync = it.gvr, it.obj, it.hash, true
	m.rv = live.GetResourceVersion()
	m.health, m.message = h.Status, h.Message
	delete(e.drifted, it.key)
}

// retain forgets objects no longer in the set.
func (e *Engine) retain(items []*item) {
	keep := make(map[Key]bool, len(items))
	for _, it := range items {
		keep[it.key] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.objs {
		if !keep[k] {
			delete(e.objs, k)
			delete(e.drifted, k)
		}
	}
}

func (e *Engine) count() {
	e.mu.Lock()
	e.requests++
	e.mu.Unlock()
}

// Requests is how many API requests passes have made so far.
func (e *Engine) Requests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

func health(u *unstructured.Unstructured) *status.Result {
	r, err := status.Compute(u)
	if err != nil {
		return &status.Result{Status: status.UnknownStatus, Message: err.Error()}
	}
	return r
}

// waitEstablished waits until the CRDs among items serve their kinds.
func (e *Engine) waitEstablished(ctx context.Context, items []*item) error {
	for _, it := range items {
		if it.key.GroupKind() != crdGK {
			continue
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			u, err := e.resource(it.gvr, "").Get(ctx, it.key.Name, metav1.GetOptions{})
			e.count()
			if err == nil && established(u) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not Established after 30s", it.key)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// NewForConfig returns an engine talking to the cluster of cfg, mapping
// kinds through aggregated discovery.
func NewForConfig(cfg *rest.Config, opts Options, log *zap.Logger) (*Engine, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	// A REST client without a typed scheme: requests are built and
	// answers decoded here (see ssa and mapper).
	sch := runtime.NewScheme()
	metav1.AddToGroupVersion(sch, schema.GroupVersion{Version: "v1"})
	rc := rest.CopyConfig(cfg)
	rc.APIPath, rc.GroupVersion, rc.NegotiatedSerializer = "/", &schema.GroupVersion{}, serializer.NewCodecFactory(sch).WithoutConversion()
	raw, err := rest.RESTClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("REST client: %w", err)
	}
	e := New(dyn, newMapper(raw), opts, log)
	e.raw = raw
	return e, nil
}

// Preview is one object as a dry run says it would become.
type Preview struct {
	Object Key
	// Live is nil when the object does not exist yet.
	Live, Merged *unstructured.Unstructured
}

// Preview validates objs like Apply and returns, for each, the live
// object and the result of applying it, without writing anything. Kinds
// of CRDs in the set that are not installed yet cannot be previewed and
// are reported as problems.
func (e *Engine) Preview(ctx context.Context, objs []*unstructured.Unstructured) ([]Preview, error) {
	items, problems := e.prepare(objs)
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	out := make([]Preview, len(items))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for i, it := range items {
		g.Go(func() error {
			out[i].Object = it.key
			if it.deferred {
				mu.Lock()
				problems = append(problems, Problem{Object: it.key.String(), Reason: "its CRD is not installed yet: apply the CRD first to preview it"})
				mu.Unlock()
				return nil
			}
			ri := e.resource(it.gvr, it.key.Namespace)
			live, err := ri.Get(gctx, it.key.Name, metav1.GetOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("get %s: %w", it.key, err)
			}
			if err == nil {
				out[i].Live = live
			}
			merged, err := ri.Apply(gctx, it.key.Name, it.obj, metav1.ApplyOptions{FieldManager: e.opts.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				mu.Lock()
				problems = append(problems, Problem{Object: it.key.String(), Reason: reason(err)})
				mu.Unlock()
				return nil
			}
			out[i].Merged = merged
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		slices.SortFunc(problems, func(a, b Problem) int { return strings.Compare(a.Object, b.Object) })
		return nil, &ValidationError{Problems: problems}
	}
	return out, nil
}

// Members returns the keys of the set's live members of the kinds gks.
func (e *Engine) Members(ctx context.Context, gks []schema.GroupKind) ([]Key, error) {
	var keys []Key
	for _, gk := range gks {
		m, err := e.mapper.RESTMapping(gk)
		if err != nil {
			continue
		}
		items, err := e.members(ctx, m.Resource)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", gk, err)
		}
		for i := range items {
			keys = append(keys, keyOf(&items[i]))
		}
	}
	return keys, nil
}

// partialMetadata asks the API server to answer with the object's
// metadata only: a pass needs the resourceVersion, and decoding 1,000
// whole objects (managed fields and all) twice per cold apply costs the
// client, on the same CPUs as the API server, as much as the requests.
const partialMetadata = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

// ssa server-side-applies one item (or dry-runs it) and returns the
// object's identity, metadata and kind: enough for its resourceVersion
// and a first kstatus (the watch brings the rest).
func (e *Engine) ssa(ctx context.Context, it *item, dryRun bool) (*unstructured.Unstructured, error) {
	path := "/apis/" + it.gvr.Group + "/" + it.gvr.Version
	if it.gvr.Group == "" {
		path = "/api/" + it.gvr.Version
	}
	if it.key.Namespace != "" {
		path += "/namespaces/" + it.key.Namespace
	}
	if it.body == nil {
		b, err := it.obj.MarshalJSON()
		if err != nil {
			return nil, err
		}
		it.body = b
	}
	req := e.raw.Patch(types.ApplyPatchType).AbsPath(path, it.gvr.Resource, it.key.Name).
		Param("fieldManager", e.opts.FieldManager).Param("force", "true").
		SetHeader("Accept", partialMetadata).Body(it.body)
	if dryRun {
		req = req.Param("dryRun", metav1.DryRunAll)
	}
	raw, err := req.DoRaw(ctx)
	e.count()
	if err != nil {
		// The answer is a Status; decode it ourselves, whatever the
		// negotiated content type, so the reason reaches the user.
		var st metav1.Status
		if json.Unmarshal(raw, &st) == nil && st.Kind == "Status" {
			return nil, &apierrors.StatusError{ErrStatus: st}
		}
		return nil, err
	}
	var pm metav1.PartialObjectMetadata
	if err := json.Unmarshal(raw, &pm); err != nil {
		return nil, fmt.Errorf("decode the API server's answer: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(it.obj.GetAPIVersion())
	u.SetKind(it.obj.GetKind())
	u.SetName(pm.Name)
	u.SetNamespace(pm.Namespace)
	u.SetResourceVersion(pm.ResourceVersion)
	u.SetGeneration(pm.Generation)
	return u, nil
}
