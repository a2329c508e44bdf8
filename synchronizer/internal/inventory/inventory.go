// Package inventory keeps the synchronizer's ApplySet parent (KEP-3659): a
// ConfigMap in the synchronizer's namespace that records which kinds and
// namespaces the set's members live in, and carries the sync status where
// kubectl can read it.
package inventory

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
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

	"driftless.dev/synchronizer/internal/apply"
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

// Reason says why the status is what it is, in PascalCase as Flux's
// conditions do; metrics and Events use the same words.
type Reason string

// Reasons.
const (
	ReasonStarting          Reason = "Starting"
	ReasonApplied           Reason = "Applied"
	ReasonProgressing       Reason = "Progressing"
	ReasonSuspended         Reason = "Suspended"
	ReasonFetchFailed       Reason = "FetchFailed"
	ReasonUntrusted         Reason = "UntrustedRevision"
	ReasonRewound           Reason = "RewoundRevision"
	ReasonBuildFailed       Reason = "BuildFailed"
	ReasonEmptyRender       Reason = "EmptyRender"
	ReasonValidationFailed  Reason = "ValidationFailed"
	ReasonApplyFailed       Reason = "ApplyFailed"
	ReasonPruneFailed       Reason = "PruneFailed"
	ReasonPruneLimit        Reason = "PruneLimit"
	ReasonHealthCheckFailed Reason = "HealthCheckFailed"
	ReasonInventoryFailed   Reason = "InventoryFailed"
	ReasonDriftCorrected    Reason = "DriftCorrected"
	ReasonKept              Reason = "Kept"
)

// Status is what a user reads to know where the cluster stands.
type Status struct {
	Phase   Phase  `json:"phase"`
	Reason  Reason `json:"reason,omitempty"`
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
	Exists bool
	// Members are the objects the synchronizer applied, with the prune
	// choice Git declared for each: what a prune may consider, and
	// nothing else.
	Members   []apply.Member
	Suspended bool
	Status    Status
}

// GroupKinds of the members, sorted.
func (s State) GroupKinds() []schema.GroupKind {
	var gks []schema.GroupKind
	for _, m := range s.Members {
		gks = append(gks, m.GroupKind())
	}
	slices.SortFunc(gks, func(a, b schema.GroupKind) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(gks)
}

// Namespaces the members live in, sorted.
func (s State) Namespaces() []string {
	var ns []string
	for _, m := range s.Members {
		if m.Namespace != "" {
			ns = append(ns, m.Namespace)
		}
	}
	slices.Sort(ns)
	return slices.Compact(ns)
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
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	st.Status = decode(data)
	if b64, ok, _ := unstructured.NestedString(cm.Object, "binaryData", membersKey); ok {
		if st.Members, err = decodeMembers(b64); err != nil {
			return State{}, fmt.Errorf("read ApplySet parent ConfigMap %s/%s: binaryData.%s: %w", s.parent.Namespace, s.parent.Name, membersKey, err)
		}
	}
	return st, nil
}

// Write server-side-applies the parent with st's members and status.
// The KEP's annotations (kinds and namespaces) are derived from the
// members. Annotations others set (suspend) are left alone.
func (s *Store) Write(ctx context.Context, st State) error {
	var gks []string
	for _, gk := range st.GroupKinds() {
		gks = append(gks, gk.Kind+"."+gk.Group) // the KEP's <Kind>.<group>, "ConfigMap." for the core group
	}
	ns := slices.DeleteFunc(st.Namespaces(), func(n string) bool { return n == s.parent.Namespace })
	members, err := encodeMembers(st.Members)
	if err != nil {
		return fmt.Errorf("write ApplySet parent ConfigMap %s/%s: %w", s.parent.Namespace, s.parent.Name, err)
	}
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
	cm.Object["binaryData"] = map[string]any{membersKey: members}
	_, err = s.cms.Apply(ctx, s.parent.Name, cm, metav1.ApplyOptions{FieldManager: s.manager, Force: true})
	if err != nil {
		return fmt.Errorf("write ApplySet parent ConfigMap %s/%s: %w", s.parent.Namespace, s.parent.Name, err)
	}
	return nil
}

// membersKey holds the members, one per line, gzipped: 10,000 members
// take about 100 KiB of the ConfigMap's 1 MiB.
const membersKey = "members.gz"

// maxMembersBytes leaves room for the status in the 1 MiB ConfigMap.
const maxMembersBytes = 768 << 10

func encodeMembers(ms []apply.Member) (string, error) {
	sorted := slices.Clone(ms)
	apply.SortMembers(sorted)
	var buf bytes.Buffer
	// No name or time in the header: equal members give equal bytes.
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	for _, m := range sorted {
		zw.Write([]byte(memberLine(m) + "\n")) //nolint:errcheck // a bytes.Buffer does not fail
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if buf.Len() > maxMembersBytes {
		return "", fmt.Errorf("%d members take %d bytes compressed, more than a ConfigMap can hold; split the path into several synchronizers", len(ms), buf.Len())
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

func memberLine(m apply.Member) string {
	return strings.Join([]string{m.Group, m.Kind, m.Namespace, m.Name, m.Prune}, "\t")
}

func decodeMembers(b64 string) ([]apply.Member, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	var out []apply.Member
	for i, line := range strings.Split(strings.TrimSuffix(string(plain), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("line %d: want 5 tab-separated fields", i+1)
		}
		out = append(out, apply.Member{Key: apply.Key{Group: f[0], Kind: f[1], Namespace: f[2], Name: f[3]}, Prune: f[4]})
	}
	apply.SortMembers(out)
	return out, nil
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
		"reason":              string(s.Reason),
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
		Phase: Phase(d["phase"]), Reason: Reason(d["reason"]), Message: d["message"],
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
