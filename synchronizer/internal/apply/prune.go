package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

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

// pruneTarget is one member a prune deletes or releases.
type pruneTarget struct {
	member Member
	gvr    schema.GroupVersionResource
	uid    types.UID
	why    string
}

// PrunePlan is what a prune would do, decided from the inventory alone:
// only objects this synchronizer applied (recorded in its inventory, still
// labelled, still carrying its field manager) are candidates, and the
// opt-ins are those Git declared, not what the live object says now.
type PrunePlan struct {
	del, release []pruneTarget
	// gone are members no longer live or no longer this synchronizer's:
	// they leave the inventory without a request.
	gone []Member
	// unlisted are members of kinds that could not be listed: kept for
	// the next pass, never taken as gone.
	unlisted []Member
	listErrs []error
	// Refused is set when the prune must not run (the per-pass limit).
	Refused error
}

// Results are the plan as data: Pruned for each delete, Orphaned (with
// why) for each release.
func (p PrunePlan) Results() []Result {
	var out []Result
	for _, t := range p.del {
		out = append(out, Result{Object: t.member.Key, Action: Pruned})
	}
	for _, t := range p.release {
		out = append(out, Result{Object: t.member.Key, Action: Orphaned, Reason: t.why})
	}
	slices.SortFunc(out, func(a, b Result) int { return compareKeys(a.Object, b.Object) })
	return out
}

// PlanPrune decides what leaves the cluster: the members (from the
// inventory) not in keep.
func (e *Engine) PlanPrune(ctx context.Context, members []Member, keep map[Key]bool) PrunePlan {
	var p PrunePlan
	byGK := map[schema.GroupKind][]Member{}
	for _, m := range members {
		if !keep[m.Key] {
			byGK[m.GroupKind()] = append(byGK[m.GroupKind()], m)
		}
	}
	gks := make([]schema.GroupKind, 0, len(byGK))
	for gk := range byGK {
		gks = append(gks, gk)
	}
	slices.SortFunc(gks, func(a, b schema.GroupKind) int { return compareKeysString(a.String(), b.String()) })
	for _, gk := range gks {
		cands := byGK[gk]
		m, err := e.mapper.RESTMapping(gk)
		if err != nil {
			// Its CRD is gone, and with it every object of the kind.
			p.gone = append(p.gone, cands...)
			continue
		}
		live, err := e.liveMembers(ctx, gk, m.Resource)
		if err != nil {
			p.unlisted = append(p.unlisted, cands...)
			p.listErrs = append(p.listErrs, fmt.Errorf("list %s: %w", gk, err))
			continue
		}
		for _, c := range cands {
			o, ok := live[c.Key]
			if !ok || o.DeletionTimestamp != nil || !e.applied(o) {
				p.gone = append(p.gone, c)
				continue
			}
			t := pruneTarget{member: c, gvr: m.Resource, uid: o.UID}
			switch {
			case c.Prune == "disabled":
				t.why = fmt.Sprintf("%s left Git and was kept: annotated %s: disabled", c.Key, PruneAnnotation)
				p.release = append(p.release, t)
			case protected(c.Key) && c.Prune != "enabled" && !e.opts.AllowPruneProtected:
				t.why = fmt.Sprintf("%s left Git and was kept: %s objects are pruned only when Git annotates them %s: enabled (or with --prune-protected)", c.Key, c.Kind, PruneAnnotation)
				p.release = append(p.release, t)
			default:
				p.del = append(p.del, t)
			}
		}
	}
	if e.opts.MaxPrune > 0 && len(p.del) > e.opts.MaxPrune {
		p.Refused = &ErrPruneLimit{Count: len(p.del), Max: e.opts.MaxPrune}
	}
	return p
}

// applied reports whether o carries this synchronizer's applied fields:
// someone who can only label an object cannot make it a member.
func (e *Engine) applied(o metav1.PartialObjectMetadata) bool {
	for _, mf := range o.ManagedFields {
		if mf.Manager == e.opts.FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// liveMembers lists the set's labelled objects of one resource, metadata
// only.
func (e *Engine) liveMembers(ctx context.Context, gk schema.GroupKind, gvr schema.GroupVersionResource) (map[Key]metav1.PartialObjectMetadata, error) {
	ri := e.meta.Resource(gvr)
	opts := metav1.ListOptions{LabelSelector: PartOfLabel + "=" + e.opts.SetID, Limit: 500}
	out := map[Key]metav1.PartialObjectMetadata{}
	for {
		var l *metav1.PartialObjectMetadataList
		var err error
		if e.opts.Tenant != "" {
			l, err = ri.Namespace(e.opts.Tenant).List(ctx, opts)
		} else {
			l, err = ri.List(ctx, opts)
		}
		if err != nil {
			return nil, err
		}
		for _, o := range l.Items {
			// Items of a PartialObjectMetadataList are typed as such:
			// the kind is the resource's.
			out[Key{Group: gk.Group, Kind: gk.Kind, Namespace: o.Namespace, Name: o.Name}] = o
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

// PruneReport is the data of one prune.
type PruneReport struct {
	Results []Result
	// Remaining are members that stay in the inventory although they
	// left Git: failed deletes and kinds that could not be listed, found
	// again by the next pass.
	Remaining []Member
}

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

// Prune carries out a plan: deletes (with the listed object's UID as a
// precondition, so a successor of the same name is never deleted) and
// releases (the membership label removed, the object left as it is).
func (e *Engine) Prune(ctx context.Context, p PrunePlan) (PruneReport, error) {
	rep := PruneReport{Remaining: slices.Clone(p.unlisted)}
	if p.Refused != nil {
		for _, t := range append(slices.Clone(p.del), p.release...) {
			rep.Remaining = append(rep.Remaining, t.member)
		}
		return rep, p.Refused
	}
	errs := slices.Clone(p.listErrs)
	bg := metav1.DeletePropagationBackground
	for _, t := range p.del {
		uid := t.uid
		err := e.resource(t.gvr, t.member.Namespace).Delete(ctx, t.member.Name, metav1.DeleteOptions{
			PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			rep.Remaining = append(rep.Remaining, t.member)
			rep.Results = append(rep.Results, Result{Object: t.member.Key, Action: Failed, Reason: "delete: " + reason(err)})
			errs = append(errs, &ApplyError{Object: t.member.Key, Err: fmt.Errorf("delete: %w", err)})
			continue
		}
		rep.Results = append(rep.Results, Result{Object: t.member.Key, Action: Pruned})
	}
	patch := []byte(`{"metadata":{"labels":{"` + PartOfLabel + `":null}}}`)
	for _, t := range p.release {
		_, err := e.resource(t.gvr, t.member.Namespace).Patch(ctx, t.member.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			rep.Remaining = append(rep.Remaining, t.member)
			errs = append(errs, &ApplyError{Object: t.member.Key, Err: fmt.Errorf("release: %w", err)})
			continue
		}
		rep.Results = append(rep.Results, Result{Object: t.member.Key, Action: Orphaned, Reason: t.why})
	}
	if len(errs) > 0 {
		return rep, fmt.Errorf("prune: %d problem(s): %w", len(errs), errors.Join(errs...))
	}
	return rep, nil
}
