package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ApplyOptions shape one Execute.
type ApplyOptions struct {
	// WaitTimeout bounds the wait for the set's CRDs to be Established.
	// Default 30s.
	WaitTimeout time.Duration
}

// ChangeSet is what an Execute did, object by object.
type ChangeSet struct {
	Results []Result
}

// Count returns how many results have action a.
func (c ChangeSet) Count(a Action) int {
	n := 0
	for _, x := range c.Results {
		if x.Action == a {
			n++
		}
	}
	return n
}

// Changed is how many objects the cluster holds differently now:
// created, configured or re-created. A write the server found to change
// nothing is Unchanged.
func (c ChangeSet) Changed() int {
	return c.Count(Created) + c.Count(Configured) + c.Count(Recreated)
}

// Execute writes a plan in stages: CRDs and Namespaces, a wait for the
// CRDs to be Established, the validation of the custom resources whose
// kinds just appeared, then everything else, 16 requests in flight. If
// those custom resources fail validation, the CRDs and Namespaces this
// Execute created are deleted again and nothing of the set stays.
func (e *Engine) Execute(ctx context.Context, p *Plan, opts ApplyOptions) (ChangeSet, error) {
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = 30 * time.Second
	}
	var cs ChangeSet
	var first, rest, deferred []*item
	for _, it := range p.items {
		switch {
		case p.unchanged[it.key]:
			cs.Results = append(cs.Results, Result{Object: it.key, Action: Unchanged})
		case stageOne(it.key):
			first = append(first, it)
		default:
			rest = append(rest, it)
			if it.deferred {
				deferred = append(deferred, it)
			}
		}
	}
	res, err := e.write(ctx, first)
	cs.Results = append(cs.Results, res...)
	if err != nil {
		return cs, err
	}
	if err := e.waitEstablished(ctx, first, opts.WaitTimeout); err != nil {
		return cs, err
	}
	if len(deferred) > 0 {
		problems := e.mapDeferred(ctx, deferred)
		if len(problems) == 0 {
			problems = e.dryRun(ctx, deferred, "", false)
		}
		if len(problems) > 0 {
			slices.SortFunc(problems, func(a, b Problem) int { return compareKeysString(a.Object, b.Object) })
			return cs, &ValidationError{Problems: problems, RolledBack: e.rollback(ctx, first, res)}
		}
	}
	res, err = e.write(ctx, rest)
	cs.Results = append(cs.Results, res...)
	e.track.retain(p.Keys())
	return cs, err
}

func compareKeysString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rollback deletes the stage-one objects this Execute created, so a set
// whose custom resources failed leaves nothing behind.
func (e *Engine) rollback(ctx context.Context, first []*item, res []Result) []Key {
	created := map[Key]bool{}
	for _, r := range res {
		if r.Action == Created {
			created[r.Object] = true
		}
	}
	var gone []Key
	for _, it := range first {
		if !created[it.key] {
			continue
		}
		uid := e.track.uid(it.key)
		bg := metav1.DeletePropagationBackground
		err := e.resource(it.gvr, "").Delete(ctx, it.key.Name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			e.log.Error("roll back a created object", zap.String("object", it.key.String()), zap.Error(err))
			continue
		}
		e.track.forget(it.key)
		gone = append(gone, it.key)
	}
	return gone
}

// write applies items concurrently and records them. Every failure is an
// *ApplyError; they are joined.
func (e *Engine) write(ctx context.Context, items []*item) ([]Result, error) {
	results := make([]Result, len(items))
	errs := make([]error, len(items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.opts.Concurrency)
	for i, it := range items {
		g.Go(func() error {
			act, err := e.applyOne(gctx, it)
			results[i] = Result{Object: it.key, Action: act}
			if err != nil {
				results[i] = Result{Object: it.key, Action: Failed, Reason: reason(err)}
				errs[i] = &ApplyError{Object: it.key, Err: err}
			}
			return nil
		})
	}
	_ = g.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return results, fmt.Errorf("apply failed for %d object(s): %w", len(failed), errors.Join(failed...))
	}
	return results, nil
}

func (e *Engine) applyOne(ctx context.Context, it *item) (Action, error) {
	act := Configured
	if it.recreate {
		if err := e.remove(ctx, it); err != nil {
			return Failed, fmt.Errorf("delete to re-create: %w", err)
		}
		act, it.prevRV = Recreated, ""
	}
	live, err := e.ssa(ctx, it, patchOpts{})
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
	e.track.record(it, live)
	return act, nil
}

// remove deletes an object and waits until it is gone.
func (e *Engine) remove(ctx context.Context, it *item) error {
	ri := e.resource(it.gvr, it.key.Namespace)
	fg := metav1.DeletePropagationForeground
	if err := ri.Delete(ctx, it.key.Name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := ri.Get(ctx, it.key.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s to be deleted: %w", it.key, err)
	}
	return nil
}

// waitEstablished waits until the CRDs among items serve their kinds, as
// kstatus judges a CRD (Established, names accepted).
func (e *Engine) waitEstablished(ctx context.Context, items []*item, timeout time.Duration) error {
	var mu sync.Mutex
	var last string
	g, gctx := errgroup.WithContext(ctx)
	for _, it := range items {
		if it.key.GroupKind() != crdGK {
			continue
		}
		g.Go(func() error {
			err := wait.PollUntilContextTimeout(gctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
				u, err := e.resource(it.gvr, "").Get(ctx, it.key.Name, metav1.GetOptions{})
				if err != nil {
					return false, nil
				}
				h := health(u)
				if h.Status != status.CurrentStatus {
					mu.Lock()
					last = h.Message
					mu.Unlock()
				}
				return h.Status == status.CurrentStatus, nil
			})
			if err != nil {
				return fmt.Errorf("%s: not Established after %s (%s): %w", it.key, timeout, last, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func health(u *unstructured.Unstructured) *status.Result {
	r, err := status.Compute(u)
	if err != nil {
		return &status.Result{Status: status.UnknownStatus, Message: err.Error()}
	}
	return r
}
