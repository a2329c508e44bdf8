package web

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"driftless.dev/shared/webui"
	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/diff"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/reconcile"
)

// Overview is GET /api/v1/overview and the page /ui/.
type Overview struct {
	Synchronizer string `json:"synchronizer"`
	Repository   string `json:"repository"`
	Ref          string `json:"ref,omitempty"`
	Path         string `json:"path"`
	Leader       bool   `json:"leader"`
	// Status is the loop's: phase, reason, message, revisions, counts.
	Status inventory.Status `json:"status"`
	// Applied is the commit of Status.LastAppliedRevision, when the
	// checkout holds it.
	Applied *Commit `json:"applied,omitempty"`
	// Suspended is the suspend annotation as the cluster holds it now; the
	// phase says Suspended once a pass has seen it.
	Suspended bool                  `json:"suspended"`
	LastPass  *reconcile.PassRecord `json:"lastPass,omitempty"`
	Passes    int                   `json:"passes"`
	// Health counts the applied objects by kstatus status.
	Health  map[status.Status]int `json:"health"`
	Objects int                   `json:"objects"`
	Drifted int                   `json:"drifted"`
	// NextPass is when the loop fetches again without a webhook (zero
	// when unknown: before the first pass, or on a standby replica).
	NextPass time.Time     `json:"nextPass,omitzero"`
	Interval time.Duration `json:"interval"`
	// Resync is how often every object is re-applied regardless of what
	// the watches say (0: never).
	Resync time.Duration `json:"resync"`
}

func (h *Handler) overview(r *http.Request) (any, error) {
	st := h.src.Loop.Status()
	o := Overview{
		Synchronizer: h.cfg.Parent.Namespace + "/" + h.cfg.Parent.Name, Repository: h.cfg.Repository, Path: h.cfg.Path,
		Leader: h.cfg.Leading(), Status: st, Passes: h.src.Loop.Passes(), Health: map[status.Status]int{},
		Interval: h.cfg.Interval, Resync: h.cfg.Resync,
	}
	parent, err := h.src.Store.Read(r.Context())
	if err != nil {
		return nil, err
	}
	o.Suspended = parent.Suspended
	for _, obj := range h.src.Tracker.Objects() {
		o.Health[obj.Health]++
		o.Objects++
		if obj.Drifted {
			o.Drifted++
		}
	}
	if hist := h.src.Loop.History(); len(hist) > 0 {
		last := hist[0]
		o.LastPass = &last
		if o.Leader && h.cfg.Interval > 0 {
			o.NextPass = last.Start.Add(last.Duration).Add(h.cfg.Interval)
		}
	}
	desired, _ := h.src.Loop.Desired()
	o.Ref = desired.Revision.Ref
	if hash := commitOf(st.LastAppliedRevision); hash != "" && desired.Revision.Dir != "" {
		if c, err := readCommit(desired.Revision.Dir, hash); err == nil {
			o.Applied = &c
		}
	}
	return o, nil
}

// commitOf is the hash in a revision string (ref@sha1:hash).
func commitOf(rev string) string {
	_, hash, ok := strings.Cut(rev, "@sha1:")
	if !ok {
		return ""
	}
	return hash
}

// Objects is GET /api/v1/objects and the page /ui/objects: every applied
// object matching the filter, by namespace and kind.
type Objects struct {
	// The filter: q matches kind, namespace, name, health and message
	// (case-insensitive); health is one kstatus status; drifted only the
	// objects changed outside Git and not healed yet.
	Query   string `json:"q,omitempty"`
	Health  string `json:"health,omitempty"`
	Drifted bool   `json:"drifted,omitempty"`
	Total   int    `json:"total"`
	Shown   int    `json:"shown"`
	// HealthValues are the statuses the health filter takes.
	HealthValues []status.Status `json:"healthValues"`
	Namespaces   []Namespace     `json:"namespaces"`
}

// Namespace groups the objects of one namespace ("" for cluster-scoped).
type Namespace struct {
	Namespace string `json:"namespace"`
	Kinds     []Kind `json:"kinds"`
	// Unlisted says why the Pods and ReplicaSets of this namespace are not
	// shown (the synchronizer may not list them).
	Unlisted string `json:"unlisted,omitempty"`
}

// Kind groups the objects of one kind.
type Kind struct {
	Kind    string   `json:"kind"` // Kind[.group]
	Objects []Object `json:"objects"`
}

// Object is one applied object.
type Object struct {
	Group     string        `json:"group,omitempty"`
	Kind      string        `json:"kind"`
	Namespace string        `json:"namespace,omitempty"`
	Name      string        `json:"name"`
	Health    status.Status `json:"health"`
	Message   string        `json:"message,omitempty"`
	Drifted   bool          `json:"drifted,omitempty"`
	// Children are the ReplicaSets and Pods it owns, read live.
	Children []Child `json:"children,omitempty"`
}

// Child is a live object owned by a workload.
type Child struct {
	Kind     string        `json:"kind"`
	Name     string        `json:"name"`
	Health   status.Status `json:"health"`
	Message  string        `json:"message,omitempty"`
	Children []Child       `json:"children,omitempty"`
}

// workloads own Pods directly or through ReplicaSets.
var workloads = map[schema.GroupKind]bool{
	{Group: "apps", Kind: "Deployment"}: true, {Group: "apps", Kind: "ReplicaSet"}: true,
	{Group: "apps", Kind: "StatefulSet"}: true, {Group: "apps", Kind: "DaemonSet"}: true, {Group: "batch", Kind: "Job"}: true,
}

var (
	replicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	pods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

var healthValues = []status.Status{status.CurrentStatus, status.InProgressStatus, status.FailedStatus, status.TerminatingStatus,
	status.NotFoundStatus, status.UnknownStatus}

// healthOrder is the order the overview lists health counts in.
func healthOrder() []status.Status { return healthValues }

func (h *Handler) objects(r *http.Request) (any, error) {
	q := r.URL.Query()
	out := Objects{Query: strings.TrimSpace(q.Get("q")), Health: q.Get("health"), Drifted: q.Get("drifted") != "", HealthValues: healthValues}
	if out.Health != "" && !slices.Contains(healthValues, status.Status(out.Health)) {
		return nil, webui.Errorf(http.StatusBadRequest, "health %q: want one of %v", out.Health, healthValues)
	}
	needle := strings.ToLower(out.Query)
	all := h.src.Tracker.Objects()
	out.Total = len(all)
	byNS := map[string]map[string][]Object{}
	withWorkloads := map[string]bool{}
	for _, s := range all {
		k := s.Object
		kind := k.Kind
		if k.Group != "" {
			kind += "." + k.Group
		}
		if out.Health != "" && string(s.Health) != out.Health || out.Drifted && !s.Drifted {
			continue
		}
		if needle != "" && !strings.Contains(strings.ToLower(kind+" "+k.Namespace+"/"+k.Name+" "+string(s.Health)+" "+s.Message), needle) {
			continue
		}
		if byNS[k.Namespace] == nil {
			byNS[k.Namespace] = map[string][]Object{}
		}
		byNS[k.Namespace][kind] = append(byNS[k.Namespace][kind], Object{Group: k.Group, Kind: k.Kind, Namespace: k.Namespace, Name: k.Name,
			Health: s.Health, Message: s.Message, Drifted: s.Drifted})
		if workloads[k.GroupKind()] && k.Namespace != "" {
			withWorkloads[k.Namespace] = true
		}
		out.Shown++
	}
	live := h.liveChildren(r.Context(), slices.Sorted(maps.Keys(withWorkloads)))
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		group := Namespace{Namespace: ns}
		lc := live[ns]
		if lc != nil {
			group.Unlisted = lc.err
		}
		for _, kind := range slices.Sorted(maps.Keys(byNS[ns])) {
			objs := byNS[ns][kind]
			if lc != nil {
				for i := range objs {
					objs[i].Children = lc.under(objs[i].Kind, objs[i].Name)
				}
			}
			group.Kinds = append(group.Kinds, Kind{Kind: kind, Objects: objs})
		}
		out.Namespaces = append(out.Namespaces, group)
	}
	return out, nil
}

// children are a namespace's ReplicaSets and Pods by owner.
type children struct {
	owned map[string][]*unstructured.Unstructured // "Kind/name" of the owner
	err   string
}

func (c *children) under(kind, name string) []Child {
	var out []Child
	for _, u := range c.owned[kind+"/"+name] {
		ch := Child{Kind: u.GetKind(), Name: u.GetName()}
		if res, err := status.Compute(u); err == nil {
			ch.Health, ch.Message = res.Status, res.Message
		}
		if u.GetKind() == "ReplicaSet" {
			ch.Children = c.under("ReplicaSet", u.GetName())
		}
		out = append(out, ch)
	}
	return out
}

// liveChildren lists the ReplicaSets and the Pods of each namespace,
// once each, up to eight lists at a time.
func (h *Handler) liveChildren(ctx context.Context, namespaces []string) map[string]*children {
	out := make(map[string]*children, len(namespaces))
	for _, ns := range namespaces {
		out[ns] = &children{owned: map[string][]*unstructured.Unstructured{}}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, ns := range namespaces {
		for _, gvr := range []schema.GroupVersionResource{replicaSets, pods} {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				l, err := h.src.Kube.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
				mu.Lock()
				defer mu.Unlock()
				c := out[ns]
				if err != nil {
					if c.err == "" {
						c.err = "Pods and ReplicaSets not shown:"
					}
					c.err += fmt.Sprintf(" list %s: %v;", gvr.Resource, err)
					return
				}
				for i := range l.Items {
					u := &l.Items[i]
					for _, ref := range u.GetOwnerReferences() {
						if ref.Controller != nil && *ref.Controller {
							c.owned[ref.Kind+"/"+ref.Name] = append(c.owned[ref.Kind+"/"+ref.Name], u)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	for _, c := range out {
		c.err = strings.TrimSuffix(c.err, ";")
		for _, l := range c.owned {
			slices.SortFunc(l, func(a, b *unstructured.Unstructured) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
	}
	return out
}

// Diff is GET /api/v1/diff (the whole set, or one object with group,
// kind, namespace and name) and the page /ui/diff: diff.Compute's answer,
// each object also as side-by-side rows.
type Diff struct {
	// Object is the one object asked for (nil: the whole set).
	Object   *apply.Key   `json:"object,omitempty"`
	Revision string       `json:"revision"`
	Refused  string       `json:"refused,omitempty"`
	Objects  []DiffObject `json:"objects"`
}

// DiffObject is one object of diff.Compute (see diff.Object) with its
// side-by-side view.
type DiffObject struct {
	Object  apply.Key    `json:"object"`
	Action  apply.Action `json:"action"`
	Live    string       `json:"live,omitempty"`
	Git     string       `json:"git,omitempty"`
	Unified string       `json:"unified,omitempty"`
	Note    string       `json:"note,omitempty"`
	Rows    []Row        `json:"rows,omitempty"`
}

func (h *Handler) diff(r *http.Request) (any, error) {
	desired, members := h.src.Loop.Desired()
	if desired.Objects == nil {
		return nil, webui.Errorf(http.StatusServiceUnavailable, "%v", errNoRender)
	}
	out := Diff{Revision: desired.Revision.String()}
	objs := desired.Objects
	q := r.URL.Query()
	var one *apply.Key
	if q.Has("kind") || q.Has("name") {
		k := apply.Key{Group: q.Get("group"), Kind: q.Get("kind"), Namespace: q.Get("namespace"), Name: q.Get("name")}
		if k.Kind == "" || k.Name == "" {
			return nil, webui.Errorf(http.StatusBadRequest, "a diff of one object needs kind and name (and group, namespace where they apply)")
		}
		one, out.Object = &k, &k
		if found := findDesired(objs, k); len(found) > 0 {
			// Only this object, against only its own inventory entry: a
			// prune plan of one member has nothing else to delete.
			objs = found
			members = slices.DeleteFunc(members, func(m apply.Member) bool { return m.Key != k })
		}
	}
	res, err := diff.Compute(r.Context(), h.src.Engine, objs, members)
	if err != nil {
		return nil, fmt.Errorf("compute the diff: %w", err)
	}
	out.Refused = res.Refused
	for _, o := range res.Objects {
		if one != nil && o.Object != *one {
			continue
		}
		out.Objects = append(out.Objects, DiffObject{Object: o.Object, Action: o.Action, Live: o.Live, Git: o.Git, Unified: o.Unified, Note: o.Note,
			Rows: sideBySide(o.Live, o.Git)})
	}
	if one != nil && len(out.Objects) == 0 && !h.known(*one) {
		return nil, webui.Errorf(http.StatusNotFound, "%s is neither in the last render nor applied by this synchronizer", one)
	}
	return out, nil
}

// known reports whether k is an object the synchronizer applied.
func (h *Handler) known(k apply.Key) bool {
	for _, o := range h.src.Tracker.Objects() {
		if o.Object == k {
			return true
		}
	}
	desired, _ := h.src.Loop.Desired()
	return len(findDesired(desired.Objects, k)) > 0
}

// History is GET /api/v1/history and the page /ui/history.
type History struct {
	// Passes are the last passes of this process, newest first.
	Passes []reconcile.PassRecord `json:"passes"`
	// Log is the followed branch's history as the checkout holds it,
	// newest first; Shallow says the checkout holds only part of it.
	Log     []Commit `json:"log"`
	Shallow bool     `json:"shallow"`
	LogNote string   `json:"logNote,omitempty"`
}

// logLen is how many commits the history shows.
const logLen = 50

func (h *Handler) history(*http.Request) (any, error) {
	out := History{Passes: h.src.Loop.History()}
	if out.Passes == nil {
		out.Passes = []reconcile.PassRecord{}
	}
	desired, _ := h.src.Loop.Desired()
	if desired.Revision.Dir == "" {
		out.LogNote = errNoRender.Error()
		return out, nil
	}
	log, shallow, err := readLog(desired.Revision.Dir, desired.Revision.Commit, logLen)
	out.Log, out.Shallow = log, shallow
	switch {
	case err != nil:
		out.LogNote = "the checkout's log could not be read: " + err.Error()
	case shallow:
		out.LogNote = fmt.Sprintf("The synchronizer's checkout is shallow: it holds only the %d commit(s) shown. The whole history of %s is on the Git server (git log %s).",
			len(log), desired.Revision.Ref, desired.Revision.Ref)
	}
	if out.Log == nil {
		out.Log = []Commit{}
	}
	return out, nil
}
