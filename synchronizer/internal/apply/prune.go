package apply

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// PruneReport is the data of one prune.
type PruneReport struct {
	Results []Result
	// Remaining are the kinds that still have members in the cluster
	// (a failed delete, or a kind that could not be listed): they stay in
	// the inventory so the next pass finds them again.
	Remaining []schema.GroupKind
}

// ErrPruneLimit: the pass would delete more objects than allowed.
type ErrPruneLimit struct{ Count, Max int }

func (e *ErrPruneLimit) Error() string {
	return fmt.Sprintf("prune refused: %d objects left Git, more than the limit of %d per pass (raise --max-prune if this is intended)", e.Count, e.Max)
}

// protected kinds are never pruned without an opt-in: deleting them
// takes data or whole applications with them.
func protected(k Key) bool {
	gk := k.GroupKind()
	return gk == namespaceGK || gk == crdGK || gk == (schema.GroupKind{Kind: "PersistentVolumeClaim"})
}

// Prune deletes the members of the set, of the kinds in gks, that are not
// in keep. A kind that cannot be listed is kept for the next pass, never
// taken as empty. Opted-out and protected objects are orphaned: their
// membership label is removed and they stay.
func (e *Engine) Prune(ctx context.Context, gks []schema.GroupKind, keep map[Key]bool) (PruneReport, error) {
	var rep PruneReport
	var errs []string
	type candidate struct {
		key Key
		gvr schema.GroupVersionResource
		obj unstructured.Unstructured
	}
	var doomed, orphan []candidate
	remaining := map[schema.GroupKind]bool{}
	for _, gk := range gks {
		m, err := e.mapper.RESTMapping(gk)
		if err != nil {
			// Its CRD is gone, and with it every object of the kind.
			continue
		}
		items, err := e.members(ctx, m.Resource)
		if err != nil {
			remaining[gk] = true
			errs = append(errs, fmt.Sprintf("list %s: %s", gk, reason(err)))
			continue
		}
		for _, u := range items {
			k := keyOf(&u)
			if keep[k] || u.GetDeletionTimestamp() != nil {
				continue
			}
			c := candidate{key: k, gvr: m.Resource, obj: u}
			switch a := u.GetAnnotations()[PruneAnnotation]; {
			case a == "disabled":
				orphan = append(orphan, c)
			case protected(k) && a != "enabled" && !e.opts.AllowPruneProtected:
				orphan = append(orphan, c)
			default:
				doomed = append(doomed, c)
			}
		}
	}
	if e.opts.MaxPrune > 0 && len(doomed) > e.opts.MaxPrune {
		for gk := range remaining {
			rep.Remaining = append(rep.Remaining, gk)
		}
		for _, c := range doomed {
			rep.Remaining = append(rep.Remaining, c.key.GroupKind())
		}
		rep.Remaining = uniqueGKs(rep.Remaining)
		return rep, &ErrPruneLimit{Count: len(doomed), Max: e.opts.MaxPrune}
	}
	bg := metav1.DeletePropagationBackground
	for _, c := range doomed {
		err := e.resource(c.gvr, c.key.Namespace).Delete(ctx, c.key.Name, metav1.DeleteOptions{
			PropagationPolicy: &bg,
			// Delete exactly what was listed, not a successor of the
			// same name created since.
			Preconditions: &metav1.Preconditions{UID: ptr(c.obj.GetUID())},
		})
		e.count()
		if err != nil && !apierrors.IsNotFound(err) {
			remaining[c.key.GroupKind()] = true
			rep.Results = append(rep.Results, Result{Object: c.key, Action: Failed, Reason: "delete: " + reason(err)})
			errs = append(errs, fmt.Sprintf("delete %s: %s", c.key, reason(err)))
			continue
		}
		rep.Results = append(rep.Results, Result{Object: c.key, Action: Pruned})
	}
	for _, c := range orphan {
		why := "annotated " + PruneAnnotation + ": disabled"
		if protected(c.key) && c.obj.GetAnnotations()[PruneAnnotation] != "disabled" {
			why = fmt.Sprintf("%s objects are never pruned without the annotation %s: enabled", c.key.Kind, PruneAnnotation)
		}
		patch := []byte(`{"metadata":{"labels":{"` + PartOfLabel + `":null}}}`)
		_, err := e.resource(c.gvr, c.key.Namespace).Patch(ctx, c.key.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		e.count()
		if err != nil && !apierrors.IsNotFound(err) {
			remaining[c.key.GroupKind()] = true
			errs = append(errs, fmt.Sprintf("release %s: %s", c.key, reason(err)))
			continue
		}
		rep.Results = append(rep.Results, Result{Object: c.key, Action: Orphaned, Reason: why})
	}
	for gk := range remaining {
		rep.Remaining = append(rep.Remaining, gk)
	}
	rep.Remaining = uniqueGKs(rep.Remaining)
	if len(errs) > 0 {
		slices.Sort(errs)
		return rep, fmt.Errorf("prune: %d problem(s): %s", len(errs), errs)
	}
	return rep, nil
}

// members lists the set's members of one resource, page by page.
func (e *Engine) members(ctx context.Context, gvr schema.GroupVersionResource) ([]unstructured.Unstructured, error) {
	ri := e.dyn.Resource(gvr).Namespace(e.opts.Tenant)
	opts := metav1.ListOptions{LabelSelector: PartOfLabel + "=" + e.opts.SetID, Limit: 500}
	var out []unstructured.Unstructured
	for {
		l, err := ri.List(ctx, opts)
		e.count()
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
		if l.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = l.GetContinue()
	}
}

func uniqueGKs(gks []schema.GroupKind) []schema.GroupKind {
	slices.SortFunc(gks, func(a, b schema.GroupKind) int {
		if a.String() < b.String() {
			return -1
		} else if a.String() > b.String() {
			return 1
		}
		return 0
	})
	return slices.Compact(gks)
}

func ptr[T any](v T) *T { return &v }

// Count is how many objects the prune deleted.
func (r PruneReport) Count() int {
	n := 0
	for _, x := range r.Results {
		if x.Action == Pruned {
			n++
		}
	}
	return n
}
