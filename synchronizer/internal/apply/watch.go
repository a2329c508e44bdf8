package apply

import (
	"context"
	"slices"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// Watch starts watching the resources of every managed object that is
// not watched yet. Watches end with ctx. A watch keeps no copy of the
// objects: each event is compared with what was applied and dropped,
// which is what keeps memory flat with many objects.
func (e *Engine) Watch(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.objs {
		if e.watches[m.gvr] {
			continue
		}
		e.watches[m.gvr] = true
		go func(gvr schema.GroupVersionResource) {
			e.follow(ctx, gvr)
			// Ended with its context (leadership lost, shutdown): the
			// next Watch starts it again.
			e.mu.Lock()
			delete(e.watches, gvr)
			e.mu.Unlock()
		}(m.gvr)
	}
}

// follow lists then watches one resource, filtered by the set's label,
// resuming from the last resourceVersion and listing again when the
// server has compacted past it.
func (e *Engine) follow(ctx context.Context, gvr schema.GroupVersionResource) {
	ri := e.dyn.Resource(gvr).Namespace(e.opts.Tenant)
	sel := PartOfLabel + "=" + e.opts.SetID
	log := e.log.With(zap.String("resource", gvr.String()))
	backoff := 200 * time.Millisecond
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			// Page by page, so a large set never sits decoded in memory
			// at once; only keys are kept to find what went missing.
			present := map[Key]bool{}
			opts := metav1.ListOptions{LabelSelector: sel, Limit: 250}
			var err error
			for {
				var list *unstructured.UnstructuredList
				if list, err = ri.List(ctx, opts); err != nil {
					break
				}
				for i := range list.Items {
					present[keyOf(&list.Items[i])] = true
					e.observe(watch.Modified, &list.Items[i])
				}
				rv = list.GetResourceVersion()
				if opts.Continue = list.GetContinue(); opts.Continue == "" {
					break
				}
			}
			if err != nil {
				rv = ""
				log.Debug("list for watch", zap.Error(err))
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(backoff*2, 10*time.Second)
				continue
			}
			e.missing(gvr, present)
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			log.Debug("watch", zap.Error(err))
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				rv = ""
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				if apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) || apierrors.IsGone(apierrors.FromObject(ev.Object)) {
					rv = ""
				}
				break
			}
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			rv = u.GetResourceVersion()
			if ev.Type != watch.Bookmark {
				e.observe(ev.Type, u)
			}
		}
		w.Stop()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// observe compares one live object with what was applied to it.
func (e *Engine) observe(t watch.EventType, live *unstructured.Unstructured) {
	k := keyOf(live)
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.objs[k]
	if m == nil || m.desired == nil {
		return
	}
	if t == watch.Deleted {
		// Deleted, or our label taken away: either way it must come back.
		m.inSync, m.rv = false, ""
		m.health, m.message = status.NotFoundStatus, "deleted outside Git"
		e.drifted[k] = true
		e.signal()
		return
	}
	h := health(live)
	if h.Status != m.health {
		m.health, m.message = h.Status, h.Message
		e.signal()
	}
	if live.GetResourceVersion() == m.rv {
		return
	}
	m.rv = live.GetResourceVersion()
	if m.inSync && !subset(m.desired.Object, live.Object) {
		m.inSync = false
		e.drifted[k] = true
		e.signal()
	}
}

// missing marks managed objects of gvr that a fresh list did not return:
// they were deleted (or unlabelled) while the watch was down.
func (e *Engine) missing(gvr schema.GroupVersionResource, present map[Key]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, m := range e.objs {
		if m.gvr == gvr && m.inSync && !present[k] {
			m.inSync = false
			e.drifted[k] = true
			e.signal()
		}
	}
}

// Drifted is how many managed objects wait to be healed.
func (e *Engine) Drifted() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.drifted)
}

// Heal re-applies every object changed or deleted by someone else since
// it was applied. Their desired form was validated when its revision was
// applied, so there is no dry run.
func (e *Engine) Heal(ctx context.Context) ([]Result, error) {
	e.mu.Lock()
	var items []*item
	for k := range e.drifted {
		m := e.objs[k]
		if m == nil || m.desired == nil {
			delete(e.drifted, k)
			continue
		}
		items = append(items, &item{key: k, gvr: m.gvr, obj: m.desired, hash: m.hash, prevRV: m.rv})
	}
	e.mu.Unlock()
	slices.SortFunc(items, func(a, b *item) int { return compareKeys(a.key, b.key) })
	return e.write(ctx, items)
}

func compareKeys(a, b Key) int {
	for _, c := range [][2]string{{a.Group, b.Group}, {a.Kind, b.Kind}, {a.Namespace, b.Namespace}, {a.Name, b.Name}} {
		if c[0] != c[1] {
			if c[0] < c[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Health of one object.
type Health struct {
	Object  string        `json:"object"`
	Status  status.Status `json:"status"`
	Message string        `json:"message,omitempty"`
}

// Health sums up the set: counts by kstatus status, and the objects that
// are not Current (at most limit of them).
func (e *Engine) Health(limit int) (map[status.Status]int, []Health) {
	e.mu.Lock()
	defer e.mu.Unlock()
	counts := map[status.Status]int{}
	var not []Health
	for k, m := range e.objs {
		counts[m.health]++
		if m.health != status.CurrentStatus {
			not = append(not, Health{Object: k.String(), Status: m.health, Message: m.message})
		}
	}
	slices.SortFunc(not, func(a, b Health) int {
		if a.Object < b.Object {
			return -1
		}
		return 1
	})
	if len(not) > limit {
		not = not[:limit]
	}
	return counts, not
}
