package apply

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// item is one object of a set, prepared for applying.
type item struct {
	key        Key
	gvr        schema.GroupVersionResource
	namespaced bool
	obj        *unstructured.Unstructured
	hash       uint64
	body       []byte // the JSON applied
	deferred   bool   // its kind comes with the set: validated after stage one
	prevRV     string // from the dry run: "" when it will be created
	recreate   bool
	force      bool // conflicts only with non-Driftless managers: taken over
	merged     *unstructured.Unstructured
}

// PlanOptions shape one Plan.
type PlanOptions struct {
	// Force plans every object, even those unchanged since the last
	// apply that nobody touched (the periodic resync).
	Force bool
	// Full keeps the dry run's whole answer for each changed object
	// (Change.Merged), for a diff. A pass needs metadata only.
	Full bool
}

// Plan is a validated set: what Execute will write, and what it may skip.
type Plan struct {
	items []*item
	// unchanged were applied before, nobody touched them since, and
	// their desired form is the same: no request.
	unchanged map[Key]bool
}

// Change is one object a plan writes.
type Change struct {
	Object Key
	// Action is Created, Configured (which may turn out unchanged) or
	// Recreated.
	Action Action
	// Merged is the object as the dry run says it will be (PlanOptions.Full).
	Merged *unstructured.Unstructured
	// Deferred: its kind comes with the set, so it is validated only once
	// its CRD is established (and nothing of the set stays if it fails).
	Deferred bool
}

// Members are every object of the plan, as the inventory records them.
func (p *Plan) Members() []Member { return membersOf(p.items) }

// Keys of every object of the plan.
func (p *Plan) Keys() map[Key]bool {
	m := make(map[Key]bool, len(p.items))
	for _, it := range p.items {
		m[it.key] = true
	}
	return m
}

// Len is the number of objects in the set.
func (p *Plan) Len() int { return len(p.items) }

// Changes lists the objects the plan writes, in key order.
func (p *Plan) Changes() []Change {
	var out []Change
	for _, it := range p.items {
		if p.unchanged[it.key] {
			continue
		}
		c := Change{Object: it.key, Action: Configured, Merged: it.merged, Deferred: it.deferred}
		switch {
		case it.recreate:
			c.Action = Recreated
		case it.prevRV == "":
			c.Action = Created
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Change) int { return compareKeys(a.Object, b.Object) })
	return out
}

// Plan prepares objs for applying and validates every object that
// changed with a server-side dry run, writing nothing. Any problem, in
// any object, fails the whole plan with a *ValidationError.
//
// Objects in a Namespace the set creates are dry-run in a temporary
// namespace (a dry run cannot create into a namespace that does not
// exist), so a rejected object is found before its Namespace is written.
// Custom resources whose CRD comes with the set cannot be checked before
// the CRD exists: they are validated by Execute after stage one, which
// deletes again what it created if they fail.
func (e *Engine) Plan(ctx context.Context, objs []*unstructured.Unstructured, opts PlanOptions) (*Plan, error) {
	if len(objs) == 0 && !e.opts.AllowEmpty {
		return nil, ErrEmptyRender
	}
	items, problems := e.prepare(objs, opts.Full)
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	p := &Plan{items: items, unchanged: map[Key]bool{}}
	var todo []*item
	for _, it := range items {
		if !opts.Force && e.track.unchanged(it) {
			p.unchanged[it.key] = true
			continue
		}
		todo = append(todo, it)
	}
	for _, it := range todo {
		if err := it.marshal(); err != nil {
			problems = append(problems, problem(it.key.String(), err))
		}
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	if problems := e.validate(ctx, todo, opts.Full); len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return p, nil
}

// validate dry-runs items: stage one first, then the rest, those in new
// namespaces inside a stand-in namespace.
func (e *Engine) validate(ctx context.Context, items []*item, full bool) []Problem {
	first := slices.DeleteFunc(slices.Clone(items), func(it *item) bool { return !stageOne(it.key) })
	rest := slices.DeleteFunc(slices.Clone(items), func(it *item) bool { return stageOne(it.key) })
	problems := e.dryRun(ctx, first, "", full)
	newNS := map[string]*item{}
	for _, it := range first {
		if it.key.GroupKind() == namespaceGK && it.prevRV == "" {
			newNS[it.key.Name] = it
		}
	}
	byNS := map[string][]*item{}
	var now []*item
	for _, it := range rest {
		switch {
		case it.deferred:
		case newNS[it.key.Namespace] != nil:
			byNS[it.key.Namespace] = append(byNS[it.key.Namespace], it)
		default:
			now = append(now, it)
		}
	}
	problems = append(problems, e.dryRun(ctx, now, "", full)...)
	for ns, its := range byNS {
		problems = append(problems, e.dryRunInStandIn(ctx, newNS[ns], its, full)...)
	}
	slices.SortFunc(problems, func(a, b Problem) int { return strings.Compare(a.Object, b.Object) })
	return problems
}

// StandInLabel marks the temporary namespaces objects of a new Namespace
// are validated in; a leftover one (a crash between create and delete) is
// removed by the next plan that makes one.
const StandInLabel = "driftless.dev/dry-run"

// dryRunInStandIn validates the objects of a Namespace the set creates in
// a temporary namespace carrying the same labels (so admission that
// selects namespaces by label judges them alike), then deletes it. If the
// stand-in cannot be made (no right to create namespaces), the objects
// are validated after their Namespace is written instead, and Execute
// deletes that Namespace again if they fail.
func (e *Engine) dryRunInStandIn(ctx context.Context, nsItem *item, items []*item, full bool) []Problem {
	name := "driftless-dry-run-" + randomSuffix()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
	ns.SetName(name)
	labels := map[string]string{}
	for k, v := range nsItem.obj.GetLabels() {
		if k != PartOfLabel {
			labels[k] = v
		}
	}
	labels[StandInLabel] = "true"
	labels["kubernetes.io/metadata.name"] = nsItem.key.Name
	ns.SetLabels(labels)
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	e.removeStaleStandIns(ctx)
	created, err := e.dyn.Resource(nsGVR).Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		e.log.Info("cannot make a stand-in namespace; objects of a new namespace are validated after it is created", zap.Error(err))
		for _, it := range items {
			it.deferred = true
		}
		return nil
	}
	defer func() {
		// Not the pass's context: a pass ended by shutdown still cleans up.
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		uid := created.GetUID()
		if err := e.dyn.Resource(nsGVR).Delete(dctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
			e.log.Info("delete the stand-in namespace", zap.Error(err))
		}
	}()
	problems := e.dryRun(ctx, items, name, full)
	for i := range problems {
		// Messages name the namespace the user wrote.
		problems[i].Reason = strings.ReplaceAll(problems[i].Reason, name, nsItem.key.Name)
	}
	for _, it := range items {
		it.prevRV = ""
		if it.merged != nil {
			it.merged.SetNamespace(nsItem.key.Name)
		}
	}
	return problems
}

// removeStaleStandIns deletes stand-in namespaces older than a minute:
// what a crash between create and delete left behind.
func (e *Engine) removeStaleStandIns(ctx context.Context) {
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	l, err := e.meta.Resource(nsGVR).List(ctx, metav1.ListOptions{LabelSelector: StandInLabel + "=true"})
	if err != nil {
		return
	}
	for _, n := range l.Items {
		if time.Since(n.CreationTimestamp.Time) > time.Minute && n.DeletionTimestamp == nil {
			_ = e.meta.Resource(nsGVR).Delete(ctx, n.Name, metav1.DeleteOptions{})
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dryRun validates items on the server, in namespace ns instead of their
// own when ns is set.
func (e *Engine) dryRun(ctx context.Context, items []*item, ns string, full bool) []Problem {
	var mu sync.Mutex
	var problems []Problem
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for _, it := range items {
		g.Go(func() error {
			live, err := e.ssa(gctx, it, patchOpts{dryRun: true, full: full, namespace: ns})
			if err == nil {
				// Empty for an object that does not exist yet.
				it.prevRV = live.GetResourceVersion()
				if full {
					it.merged = live
				}
				return nil
			}
			if field, ok := immutable(err); ok {
				if e.opts.Recreate || it.obj.GetAnnotations()[RecreateAnnotation] == "enabled" {
					it.recreate = true
					return nil
				}
				err = &immutableError{field: field, err: err}
			}
			mu.Lock()
			problems = append(problems, problem(it.key.String(), err))
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil && len(problems) == 0 {
		problems = append(problems, problem("(set)", ctx.Err()))
	}
	return problems
}

// prepare maps every object, applies the namespace rules and labels it as
// a member of the set. It does so in place unless copy is set: a pass owns
// its render, and holding it once rather than twice is what keeps 10,000
// objects' memory down; an object labelled and placed already is not
// written again, so a render stays read-only after its first plan (the
// UI reads it, with copy set). An object the tracker applied and that is
// the same pointer needs no marshalling either (see Tracker.unchanged).
func (e *Engine) prepare(objs []*unstructured.Unstructured, copy bool) ([]*item, []Problem) {
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
	reserved := map[Key]bool{}
	for _, k := range e.opts.Reserved {
		reserved[k] = true
	}
	seen := map[Key]bool{}
	items := make([]*item, 0, len(objs))
	for _, o := range objs {
		if copy {
			o = o.DeepCopy()
		}
		name := describe(o)
		if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
			problems = append(problems, problem(name, errors.New("apiVersion, kind and metadata.name are required")))
			continue
		}
		it := &item{obj: o}
		if err := e.mapItem(it); err != nil {
			gk := o.GroupVersionKind().GroupKind()
			namespaced, ok := crdKinds[gk]
			if !ok {
				problems = append(problems, problem(name, err))
				continue
			}
			it.deferred, it.namespaced = true, namespaced
		}
		if it.namespaced {
			switch ns := o.GetNamespace(); {
			case e.opts.Tenant != "" && ns == "":
				setNamespace(o, e.opts.Tenant)
			case e.opts.Tenant != "" && ns != e.opts.Tenant:
				problems = append(problems, problem(name, fmt.Errorf("namespace %q is outside this synchronizer's namespace %q (tenant mode)", ns, e.opts.Tenant)))
				continue
			case ns == "":
				setNamespace(o, e.opts.DefaultNamespace)
			}
		} else {
			if e.opts.Tenant != "" {
				problems = append(problems, problem(name, fmt.Errorf("cluster-scoped objects are not allowed in tenant mode (namespace %q)", e.opts.Tenant)))
				continue
			}
			setNamespace(o, "")
		}
		it.key = keyOf(o)
		if reserved[it.key] {
			problems = append(problems, problem(it.key.String(), errors.New("this is the synchronizer's own status or lease: a synchronizer never manages itself")))
			continue
		}
		if seen[it.key] {
			problems = append(problems, problem(it.key.String(), errors.New("defined more than once")))
			continue
		}
		seen[it.key] = true
		if labels := o.GetLabels(); labels[PartOfLabel] != e.opts.SetID {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[PartOfLabel] = e.opts.SetID
			o.SetLabels(labels)
		}
		items = append(items, it)
	}
	return items, problems
}

// setNamespace writes the namespace only when it differs.
func setNamespace(o *unstructured.Unstructured, ns string) {
	if o.GetNamespace() != ns {
		o.SetNamespace(ns)
	}
}

// marshal fills the item's body and hash, once.
func (it *item) marshal() error {
	if it.body != nil {
		return nil
	}
	body, err := it.obj.MarshalJSON()
	if err != nil {
		return err
	}
	it.hash, it.body = hashOf(body), body
	return nil
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

// mapDeferred maps the items whose kinds came with the set. Discovery
// serves a new CRD's kind a moment after the CRD is Established, so an
// unknown kind is retried for a few seconds before it is a problem.
func (e *Engine) mapDeferred(ctx context.Context, items []*item) []Problem {
	var p []Problem
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		e.mapper.Reset()
		p = p[:0]
		for _, it := range items {
			if !it.deferred || it.gvr.Resource != "" {
				continue
			}
			if err := e.mapItem(it); err != nil {
				p = append(p, problem(it.key.String(), err))
			} else {
				it.deferred = true // mapped now, still to be validated
			}
		}
		return len(p) == 0, nil
	})
	if err != nil && len(p) == 0 {
		p = append(p, problem("(set)", err))
	}
	return p
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

// reason is an error as one line a user can act on (an API error's
// Error is the server's message).
func reason(err error) string { return strings.TrimSpace(err.Error()) }

// immutableError: the change hits a field the API server will not change
// in place.
type immutableError struct {
	field string
	err   error
}

func (e *immutableError) Error() string {
	return fmt.Sprintf("%s: field is immutable; to delete and re-create the object, annotate it %s: enabled", e.field, RecreateAnnotation)
}
func (e *immutableError) Unwrap() error { return e.err }

// patchOpts shape one server-side apply request.
type patchOpts struct {
	dryRun bool
	// full asks for the whole object back, not only its metadata.
	full bool
	// namespace replaces the item's own (a stand-in namespace).
	namespace string
}

// ssa server-side-applies one item (or dry-runs it). A conflict with
// fields other managers set (a person's kubectl edit, a controller) is
// taken over, as Flux does; a conflict with another Driftless
// synchronizer is not: it is a *ConflictError.
func (e *Engine) ssa(ctx context.Context, it *item, o patchOpts) (*unstructured.Unstructured, error) {
	live, err := e.patch(ctx, it, o, it.force)
	if it.force || !apierrors.IsConflict(err) {
		return live, err
	}
	managers, fields := conflicts(err)
	var ours []string
	for _, m := range managers {
		if e.foreignSynchronizer(m) {
			ours = append(ours, m)
		}
	}
	if len(ours) > 0 {
		return nil, &ConflictError{Managers: ours, Fields: fields}
	}
	it.force = true
	return e.patch(ctx, it, o, true)
}

var managerRE = regexp.MustCompile(`conflict with "([^"]+)"`)

// conflicts reads the managers and fields out of a conflict error.
func conflicts(err error) (managers, fields []string) {
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Details == nil {
		return nil, nil
	}
	for _, c := range se.ErrStatus.Details.Causes {
		if m := managerRE.FindStringSubmatch(c.Message); m != nil && !slices.Contains(managers, m[1]) {
			managers = append(managers, m[1])
		}
		if c.Field != "" {
			fields = append(fields, c.Field)
		}
	}
	return managers, fields
}

// patch sends one apply request. Metadata is all a pass needs back (the
// resourceVersion, for what changed); decoding whole objects on the same
// CPUs as the API server would cost as much as the requests.
func (e *Engine) patch(ctx context.Context, it *item, o patchOpts, force bool) (*unstructured.Unstructured, error) {
	ns := it.key.Namespace
	body := it.body
	if o.namespace != "" && ns != "" {
		ns = o.namespace
		c := it.obj.DeepCopy()
		c.SetNamespace(ns)
		b, err := c.MarshalJSON()
		if err != nil {
			return nil, err
		}
		body = b
	}
	opts := metav1.PatchOptions{FieldManager: e.opts.FieldManager, Force: &force}
	if o.dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if o.full {
		return e.resource(it.gvr, ns).Patch(ctx, it.key.Name, types.ApplyPatchType, body, opts)
	}
	ri := e.meta.Resource(it.gvr)
	var pm *metav1.PartialObjectMetadata
	var err error
	if ns != "" {
		pm, err = ri.Namespace(ns).Patch(ctx, it.key.Name, types.ApplyPatchType, body, opts)
	} else {
		pm, err = ri.Patch(ctx, it.key.Name, types.ApplyPatchType, body, opts)
	}
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(it.obj.GetAPIVersion())
	u.SetKind(it.obj.GetKind())
	u.SetName(pm.Name)
	u.SetNamespace(pm.Namespace)
	u.SetUID(pm.UID)
	u.SetResourceVersion(pm.ResourceVersion)
	u.SetGeneration(pm.Generation)
	return u, nil
}
