// Package inventory keeps the synchronizer's ApplySet parent (KEP-3659): a
// ConfigMap in the synchronizer's namespace that records which kinds and
// namespaces the set's members live in, and carries the sync status where
// kubectl can read it.
package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// The ApplySet conventions, and Driftless's own annotation.
const (
	IDLabel              = "applyset.kubernetes.io/id"
	ToolingAnnotation    = "applyset.kubernetes.io/tooling"
	GroupKindsAnnotation = "applyset.kubernetes.io/contains-group-kinds"
	NamespacesAnnotation = "applyset.kubernetes.io/additional-namespaces"
	// SuspendAnnotation "true" on the parent pauses applying and pruning.
	SuspendAnnotation = "driftless.dev/suspend"
)

// Parent names the ApplySet parent ConfigMap.
type Parent struct{ Namespace, Name string }

// ID is the ApplySet id the KEP derives from the parent's identity:
// applyset-<base64url(sha256(name.namespace.kind.group))>-v1.
func (p Parent) ID() string {
	sum := sha256.Sum256([]byte(p.Name + "." + p.Namespace + ".ConfigMap."))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

// Phase of the synchronizer, as status shows it.
type Phase string

// Phases, after Flux's and kstatus's conditions.
const (
	Ready       Phase = "Ready"
	Reconciling Phase = "Reconciling"
	Stalled     Phase = "Stalled"
	Suspended   Phase = "Suspended"
)

// Status is what a user reads to know where the cluster stands.
type Status struct {
	Phase   Phase  `json:"phase"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Revision is the last revision fetched; LastAppliedRevision the last
	// one applied in full (they differ while a bad commit is refused).
	Revision            string    `json:"revision,omitempty"`
	LastAppliedRevision string    `json:"lastAppliedRevision,omitempty"`
	LastSyncTime        time.Time `json:"lastSyncTime"`
	// Objects is how many objects the set holds; Counts is what the last
	// pass that wrote anything did, by action.
	Objects int            `json:"objects"`
	Counts  map[string]int `json:"counts,omitempty"`
}

// Equal ignores LastSyncTime, so a pass that changes nothing writes
// nothing.
func (s Status) Equal(o Status) bool {
	return s.Phase == o.Phase && s.Reason == o.Reason && s.Message == o.Message && s.Revision == o.Revision &&
		s.LastAppliedRevision == o.LastAppliedRevision && s.Objects == o.Objects && maps.Equal(s.Counts, o.Counts)
}

// State is the parent's content.
type State struct {
	Exists     bool
	GroupKinds []schema.GroupKind
	Namespaces []string
	Suspended  bool
	Status     Status
}

// Store reads and writes the parent.
type Store struct {
	cms     dynamic.ResourceInterface // ConfigMaps of the parent's namespace
	parent  Parent
	tooling string
	manager string
}

// NewStore returns a store for parent, written under field manager
// manager, naming tooling (e.g. "driftless/v0.3.0") as the KEP asks.
func NewStore(dyn dynamic.Interface, parent Parent, tooling, manager string) *Store {
	cms := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(parent.Namespace)
	return &Store{cms: cms, parent: parent, tooling: tooling, manager: manager}
}

// Parent is the parent this store keeps.
func (s *Store) Parent() Parent { return s.parent }

// Read returns the parent's state; a parent that does not exist yet is
// an empty state, not an error.
func (s *Store) Read(ctx context.Context) (State, error) {
	cm, err := s.cms.Get(ctx, s.parent.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read ApplySet parent ConfigMap %s/%s: %w", s.parent.Namespace, s.parent.Name, err)
	}
	if id := cm.GetLabels()[IDLabel]; id != "" && id != s.parent.ID() {
		return State{}, fmt.Errorf("ConfigMap %s/%s is the parent of another ApplySet (%s)", s.parent.Namespace, s.parent.Name, id)
	}
	ann := cm.GetAnnotations()
	st := State{Exists: true, Suspended: ann[SuspendAnnotation] == "true"}
	for _, gk := range split(ann[GroupKindsAnnotation]) {
		st.GroupKinds = append(st.GroupKinds, schema.ParseGroupKind(gk))
	}
	st.Namespaces = split(ann[NamespacesAnnotation])
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	st.Status = decode(data)
	return st, nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Write server-side-applies the parent with st's kinds, namespaces and
// status. Annotations others set (suspend) are left alone.
func (s *Store) Write(ctx context.Context, st State) error {
	gks := make([]string, 0, len(st.GroupKinds))
	for _, gk := range st.GroupKinds {
		gks = append(gks, gk.Kind+"."+gk.Group) // the KEP's <Kind>.<group>, "ConfigMap." for the core group
	}
	slices.Sort(gks)
	gks = slices.Compact(gks)
	ns := slices.Clone(st.Namespaces)
	ns = slices.DeleteFunc(ns, func(n string) bool { return n == "" || n == s.parent.Namespace })
	slices.Sort(ns)
	ns = slices.Compact(ns)
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}
	cm.SetName(s.parent.Name)
	cm.SetNamespace(s.parent.Namespace)
	cm.SetLabels(map[string]string{IDLabel: s.parent.ID(), "app.kubernetes.io/managed-by": "driftless"})
	cm.SetAnnotations(map[string]string{
		ToolingAnnotation:    s.tooling,
		GroupKindsAnnotation: strings.Join(gks, ","),
		NamespacesAnnotation: strings.Join(ns, ","),
	})
	data := map[string]any{}
	for k, v := range encode(st.Status) {
		data[k] = v
	}
	cm.Object["data"] = data
	_, err := s.cms.Apply(ctx, s.parent.Name, cm, metav1.ApplyOptions{FieldManager: s.manager, Force: true})
	if err != nil {
		return fmt.Errorf("write ApplySet parent ConfigMap %s/%s: %w", s.parent.Namespace, s.parent.Name, err)
	}
	return nil
}

// SetSuspended sets or clears the suspend annotation (for the CLI).
func (s *Store) SetSuspended(ctx context.Context, on bool) error {
	v := `null`
	if on {
		v = `"true"`
	}
	patch := []byte(`{"metadata":{"annotations":{"` + SuspendAnnotation + `":` + v + `}}}`)
	_, err := s.cms.Patch(ctx, s.parent.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "driftless-cli"})
	if err != nil {
		return fmt.Errorf("annotate %s/%s: %w", s.parent.Namespace, s.parent.Name, err)
	}
	return nil
}

// The status lives in the parent's data, one readable key per field.
func encode(s Status) map[string]string {
	m := map[string]string{
		"phase":               string(s.Phase),
		"reason":              s.Reason,
		"message":             s.Message,
		"revision":            s.Revision,
		"lastAppliedRevision": s.LastAppliedRevision,
		"lastSyncTime":        s.LastSyncTime.UTC().Format(time.RFC3339),
		"objects":             strconv.Itoa(s.Objects),
	}
	var counts []string
	for _, k := range slices.Sorted(maps.Keys(s.Counts)) {
		counts = append(counts, fmt.Sprintf("%s=%d", k, s.Counts[k]))
	}
	m["lastApply"] = strings.Join(counts, " ")
	return m
}

func decode(d map[string]string) Status {
	s := Status{
		Phase: Phase(d["phase"]), Reason: d["reason"], Message: d["message"],
		Revision: d["revision"], LastAppliedRevision: d["lastAppliedRevision"],
	}
	s.LastSyncTime, _ = time.Parse(time.RFC3339, d["lastSyncTime"])
	s.Objects, _ = strconv.Atoi(d["objects"])
	for _, f := range strings.Fields(d["lastApply"]) {
		k, v, ok := strings.Cut(f, "=")
		if n, err := strconv.Atoi(v); ok && err == nil {
			if s.Counts == nil {
				s.Counts = map[string]int{}
			}
			s.Counts[k] = n
		}
	}
	return s
}
