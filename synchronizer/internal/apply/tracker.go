package apply

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/pager"
)

// entry is what the tracker remembers of one applied object.
type entry struct {
	gvr     schema.GroupVersionResource
	desired *unstructured.Unstructured
	hash    uint64
	uid     types.UID
	rv      string // live resourceVersion last seen
	inSync  bool   // applied, and no foreign change seen since
	health  status.Status
	message string
}

// Tracker remembers what was applied, so an unchanged object costs no
// request, and watches it: a live object that no longer holds what was
// applied (or is gone) is drift, and a change of kstatus health is
// signalled.
type Tracker struct {
	e *Engine

	mu      sync.Mutex
	objs    map[Key]*entry
	drifted map[Key]bool
	watches map[schema.GroupVersionResource]bool
	listed  map[schema.GroupVersionResource]bool // watches past their first list
	notify  chan struct{}
}

func newTracker(e *Engine) *Tracker {
	return &Tracker{e: e, objs: map[Key]*entry{}, drifted: map[Key]bool{},
		watches: map[schema.GroupVersionResource]bool{}, listed: map[schema.GroupVersionResource]bool{}, notify: make(chan struct{}, 1)}
}

// Notify signals drift to heal or a change of health.
func (t *Tracker) Notify() <-chan struct{} { return t.notify }

func (t *Tracker) signal() {
	select {
	case t.notify <- struct{}{}:
	default:
	}
}

// unchanged: applied in this form and untouched since. The same object
// (a render planned again: the loop owns it and nothing changes it) is
// known without marshalling it; another one is marshalled and compared by
// hash, and adopted when equal, so the next pass is cheap again.
func (t *Tracker) unchanged(it *item) bool {
	t.mu.Lock()
	m := t.objs[it.key]
	if m == nil || !m.inSync {
		t.mu.Unlock()
		return false
	}
	if m.desired == it.obj {
		it.hash = m.hash
		t.mu.Unlock()
		return true
	}
	t.mu.Unlock()
	if it.marshal() != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.objs[it.key]; m != nil && m.inSync && m.hash == it.hash {
		m.desired = it.obj
		return true
	}
	return false
}

func (t *Tracker) uid(k Key) types.UID {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.objs[k]; m != nil {
		return m.uid
	}
	return ""
}

// record remembers what was applied and the live copy the server
// answered with.
func (t *Tracker) record(it *item, live *unstructured.Unstructured) {
	h := health(live)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.objs[it.key]
	if m == nil {
		m = &entry{}
		t.objs[it.key] = m
	}
	m.gvr, m.desired, m.hash, m.inSync = it.gvr, it.obj, it.hash, true
	m.uid, m.rv = live.GetUID(), live.GetResourceVersion()
	m.health, m.message = h.Status, h.Message
	delete(t.drifted, it.key)
}

func (t *Tracker) forget(k Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.objs, k)
	delete(t.drifted, k)
}

// retain forgets objects no longer in the set.
func (t *Tracker) retain(keep map[Key]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.objs {
		if !keep[k] {
			delete(t.objs, k)
			delete(t.drifted, k)
		}
	}
}

// Watch starts watching the resources of every tracked object that is
// not watched yet. Watches end with ctx. A watch keeps no copy of the
// objects: each event is compared with what was applied and dropped,
// which is what keeps memory flat with many objects.
func (t *Tracker) Watch(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.objs {
		if t.watches[m.gvr] {
			continue
		}
		t.watches[m.gvr] = true
		go func(gvr schema.GroupVersionResource) {
			t.follow(ctx, gvr)
			// Ended with its context (leadership lost, shutdown): the
			// next Watch starts it again.
			t.mu.Lock()
			delete(t.watches, gvr)
			delete(t.listed, gvr)
			t.mu.Unlock()
		}(m.gvr)
	}
}

// follow lists then watches one resource, filtered by the set's label,
// resuming from the last resourceVersion and listing again when the
// server has compacted past it. client-go's Reflector would do this, but
// it gathers the whole initial list in memory before handing it over;
// pager.EachListItem hands over page by page, which is what keeps 10,000
// objects from sitting decoded at once.
func (t *Tracker) follow(ctx context.Context, gvr schema.GroupVersionResource) {
	e := t.e
	ri := e.dyn.Resource(gvr).Namespace(e.opts.Tenant)
	sel := PartOfLabel + "=" + e.opts.SetID
	log := e.log.With(zap.String("resource", gvr.String()))
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 10 * time.Second}
	delay := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff.Step()):
			return true
		}
	}
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			present := map[Key]bool{}
			listRV := ""
			p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				l, err := ri.List(ctx, opts)
				if err == nil && listRV == "" {
					listRV = l.GetResourceVersion()
				}
				return l, err
			})
			p.PageSize = 250
			err := p.EachListItem(ctx, metav1.ListOptions{LabelSelector: sel}, func(o runtime.Object) error {
				u := o.(*unstructured.Unstructured)
				present[keyOf(u)] = true
				t.observe(watch.Modified, u)
				return nil
			})
			if err != nil {
				log.Debug("list for watch", zap.Error(err))
				if !delay() {
					return
				}
				continue
			}
			rv = listRV
			t.missing(gvr, present)
			t.mu.Lock()
			t.listed[gvr] = true
			t.mu.Unlock()
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			log.Debug("watch", zap.Error(err))
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				rv = ""
			}
			if !delay() {
				return
			}
			continue
		}
		backoff.Duration = 200 * time.Millisecond
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				if err := apierrors.FromObject(ev.Object); apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
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
				t.observe(ev.Type, u)
			}
		}
		w.Stop()
	}
}

// observe compares one live object with what was applied to it.
func (t *Tracker) observe(et watch.EventType, live *unstructured.Unstructured) {
	k := keyOf(live)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.objs[k]
	if m == nil || m.desired == nil {
		return
	}
	if et == watch.Deleted {
		// Deleted, or our label taken away: either way it must come back.
		m.inSync, m.rv = false, ""
		m.health, m.message = status.NotFoundStatus, "deleted outside Git"
		t.drifted[k] = true
		t.signal()
		return
	}
	h := health(live)
	if h.Status != m.health {
		m.health, m.message = h.Status, h.Message
		t.signal()
	}
	if live.GetResourceVersion() == m.rv {
		return
	}
	m.rv = live.GetResourceVersion()
	m.uid = live.GetUID()
	if m.inSync && !subset(m.desired.Object, live.Object) {
		m.inSync = false
		t.drifted[k] = true
		t.signal()
	}
}

// missing marks tracked objects of gvr that a fresh list did not return:
// they were deleted (or unlabelled) while the watch was down.
func (t *Tracker) missing(gvr schema.GroupVersionResource, present map[Key]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, m := range t.objs {
		if m.gvr == gvr && m.inSync && !present[k] {
			m.inSync = false
			t.drifted[k] = true
			t.signal()
		}
	}
}

// Listed is how many resources are watched with their first list done:
// drift in them is seen as it happens.
func (t *Tracker) Listed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.listed)
}

// Drifted is how many tracked objects wait to be healed.
func (t *Tracker) Drifted() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.drifted)
}

// Heal re-applies every object changed or deleted by someone else since
// it was applied. Their desired form was validated when its revision was
// applied, so there is no dry run. Only the drifted objects are written.
func (e *Engine) Heal(ctx context.Context) ([]Result, error) {
	t := e.track
	t.mu.Lock()
	var items []*item
	for k := range t.drifted {
		m := t.objs[k]
		if m == nil || m.desired == nil {
			delete(t.drifted, k)
			continue
		}
		body, err := m.desired.MarshalJSON()
		if err != nil {
			continue
		}
		items = append(items, &item{key: k, gvr: m.gvr, obj: m.desired, hash: m.hash, prevRV: m.rv, body: body})
	}
	t.mu.Unlock()
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

// ObjectState is one applied object as the tracker knows it now.
type ObjectState struct {
	Object  Key                         `json:"object"`
	Health  status.Status               `json:"health"`
	Message string                      `json:"message,omitempty"`
	Drifted bool                        `json:"drifted,omitempty"`
	GVR     schema.GroupVersionResource `json:"-"`
}

// Objects lists every applied object with its health, in key order.
func (t *Tracker) Objects() []ObjectState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ObjectState, 0, len(t.objs))
	for k, m := range t.objs {
		out = append(out, ObjectState{Object: k, Health: m.health, Message: m.message, Drifted: t.drifted[k], GVR: m.gvr})
	}
	slices.SortFunc(out, func(a, b ObjectState) int { return compareKeys(a.Object, b.Object) })
	return out
}

// Health of one object.
type Health struct {
	Object  string        `json:"object"`
	Status  status.Status `json:"status"`
	Message string        `json:"message,omitempty"`
}

// Health sums up the set: counts by kstatus status, and the objects that
// are not Current (at most limit of them).
func (t *Tracker) Health(limit int) (map[status.Status]int, []Health) {
	t.mu.Lock()
	defer t.mu.Unlock()
	counts := map[status.Status]int{}
	var not []Health
	for k, m := range t.objs {
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
