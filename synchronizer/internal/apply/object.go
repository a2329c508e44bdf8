package apply

import (
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Annotations users put on objects in Git.
const (
	// PruneAnnotation "disabled" keeps an object in the cluster when it
	// leaves Git; "enabled" lets a Namespace, CRD or PersistentVolumeClaim
	// be pruned at all.
	PruneAnnotation = "driftless.dev/prune"
	// RecreateAnnotation "enabled" lets the synchronizer delete and
	// re-create an object whose change hits an immutable field.
	RecreateAnnotation = "driftless.dev/recreate"
)

// Key identifies an object across versions of its API.
type Key struct {
	Group, Kind, Namespace, Name string
}

func keyOf(u *unstructured.Unstructured) Key {
	gvk := u.GroupVersionKind()
	return Key{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// String is the object as messages name it: Kind[.group] namespace/name.
func (k Key) String() string {
	kind := k.Kind
	if k.Group != "" {
		kind += "." + k.Group
	}
	if k.Namespace == "" {
		return kind + " " + k.Name
	}
	return kind + " " + k.Namespace + "/" + k.Name
}

// GroupKind of the object.
func (k Key) GroupKind() schema.GroupKind { return schema.GroupKind{Group: k.Group, Kind: k.Kind} }

// Action is what a pass did to one object.
type Action string

// Actions.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	Recreated  Action = "recreated"
	Pruned     Action = "pruned"
	Orphaned   Action = "orphaned" // left in the cluster, no longer managed
	Failed     Action = "failed"
)

// Result is one object's outcome.
type Result struct {
	Object Key    `json:"object"`
	Action Action `json:"action"`
	Reason string `json:"reason,omitempty"`
}

// Problem names an object and what is wrong with it. Err keeps the API
// server's error (errors.As finds *apierrors.StatusError), Reason is the
// one line a person reads.
type Problem struct {
	Object string `json:"object"`
	Reason string `json:"reason"`
	Err    error  `json:"-"`
}

func problem(object string, err error) Problem {
	return Problem{Object: object, Reason: reason(err), Err: err}
}

// ValidationError lists every object that stopped a set from being
// applied. Nothing of the set was written (RolledBack names what a pass
// created and deleted again to keep that promise).
type ValidationError struct {
	Problems   []Problem
	RolledBack []Key
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d object(s) failed validation, nothing applied", len(e.Problems))
	if len(e.RolledBack) > 0 {
		fmt.Fprintf(&b, " (%d created and deleted again)", len(e.RolledBack))
	}
	for i, p := range e.Problems {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-10)
			break
		}
		fmt.Fprintf(&b, "; %s: %s", p.Object, p.Reason)
	}
	return b.String()
}

// Unwrap gives the API errors behind the problems.
func (e *ValidationError) Unwrap() []error {
	var errs []error
	for _, p := range e.Problems {
		if p.Err != nil {
			errs = append(errs, p.Err)
		}
	}
	return errs
}

// ApplyError is one object the API server refused to write.
type ApplyError struct {
	Object Key
	Err    error
}

func (e *ApplyError) Error() string { return e.Object.String() + ": " + reason(e.Err) }
func (e *ApplyError) Unwrap() error { return e.Err }

// ConflictError: another Driftless synchronizer owns fields this one
// would change. Server-side apply would let a force win; two
// synchronizers fighting over one object is a mistake in Git to report,
// not a race to win.
type ConflictError struct {
	// Managers are the other synchronizers' field managers.
	Managers []string
	// Fields are the contested fields, as the API server names them.
	Fields []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("fields %s are managed by another Driftless synchronizer (%s): remove them from one of the two repositories",
		strings.Join(e.Fields, ", "), strings.Join(e.Managers, ", "))
}

// ErrEmptyRender: the set is empty, and applying it would prune
// everything.
var ErrEmptyRender = errors.New("renders no objects: refusing to prune everything (run with --allow-empty if that is intended)")

func hashOf(body []byte) uint64 {
	h := fnv.New64a()
	h.Write(body)
	return h.Sum64()
}

// subset reports whether every field of want is in have with the same
// value. It is how a watch event tells drift from someone else's change
// to fields the synchronizer does not own (status, defaults, other
// managers' labels): server-side apply leaves those alone too. A false
// "drift" only costs one no-op apply.
func subset(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok {
				if wv == nil {
					continue
				}
				if m, isMap := wv.(map[string]any); isMap && len(m) == 0 {
					continue
				}
				return false
			}
			if !subset(wv, hv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok {
			return false
		}
		if len(h) == len(w) {
			all := true
			for i := range w {
				if !subset(w[i], h[i]) {
					all = false
					break
				}
			}
			if all {
				return true
			}
		}
		// Others may add items to a list we share (merged by key).
		for _, wi := range w {
			found := false
			for _, hi := range h {
				if subset(wi, hi) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	case int64:
		switch h := have.(type) {
		case int64:
			return w == h
		case float64:
			return float64(w) == h
		}
		return false
	case float64:
		switch h := have.(type) {
		case int64:
			return w == float64(h)
		case float64:
			return w == h
		}
		return false
	case int:
		return subset(int64(w), have)
	default:
		return reflect.DeepEqual(want, have)
	}
}

// Member is one object a synchronizer applied, as its inventory keeps it:
// the object and the prune choice Git declared for it (the value of
// PruneAnnotation when it was applied). Prune decisions read this, never
// the live object, which anyone allowed to patch it could relabel.
type Member struct {
	Key
	Prune string
}

// members returns the set's members as Git declares them.
func membersOf(items []*item) []Member {
	out := make([]Member, 0, len(items))
	for _, it := range items {
		out = append(out, Member{Key: it.key, Prune: it.obj.GetAnnotations()[PruneAnnotation]})
	}
	return out
}

// SortMembers orders members by group, kind, namespace and name: the one
// order the inventory keeps them in, so equal sets compare equal.
func SortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return compareKeys(a.Key, b.Key) })
}
