// Package apply makes the cluster match a set of objects with server-side
// apply, in the shape of fluxcd/pkg/ssa: Plan maps, confines and
// validates the whole set with a dry run (nothing is written), Execute
// writes a valid plan in stages (CRDs and Namespaces first), PlanPrune and
// Prune remove what left the set, and a Tracker watches what was applied
// to heal drift and follow health.
package apply

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// Options shape an engine: who it is and what it may touch.
type Options struct {
	// FieldManager owns every field the synchronizer applies; one per
	// synchronizer (FieldManagerFor), so two synchronizers never take
	// each other's fields silently.
	FieldManager string
	// SetID is the ApplySet id; members carry it in PartOfLabel.
	SetID string
	// Tenant, when set, confines everything to that namespace: objects
	// without a namespace go there, anything else is refused.
	Tenant string
	// DefaultNamespace is where namespaced objects without one go
	// outside tenant mode. Default "default".
	DefaultNamespace string
	// Concurrency bounds requests in flight. Default 16.
	Concurrency int
	// Recreate lets every object hit by an immutable-field change be
	// deleted and re-created; otherwise only those annotated so.
	Recreate bool
	// MaxPrune refuses a prune that would delete more than this many
	// objects (0: no limit).
	MaxPrune int
	// AllowPruneProtected lets Namespaces, CRDs and PVCs be pruned
	// without their own opt-in annotation.
	AllowPruneProtected bool
	// AllowEmpty lets an empty set be planned (and so prune everything).
	AllowEmpty bool
	// Reserved objects are refused: the synchronizer's own status
	// ConfigMap and Lease, so no commit can steer the synchronizer.
	Reserved []Key
	// Mapper maps kinds to resources; engines of one process (tenants)
	// share one, so discovery is asked and held once. Default: a mapper of
	// the engine's own (NewMapper).
	Mapper meta.ResettableRESTMapper
}

// FieldManagerPrefix starts every Driftless synchronizer's field manager.
// ("driftless", the one manager all synchronizers shared before, lacks the
// slash: its fields are taken over, not contested.)
const FieldManagerPrefix = "driftless/"

// FieldManagerFor names the field manager of the synchronizer whose
// ApplySet parent is namespace/name.
func FieldManagerFor(namespace, name string) string {
	return FieldManagerPrefix + namespace + "/" + name
}

// PartOfLabel marks an ApplySet member (KEP-3659).
const PartOfLabel = "applyset.kubernetes.io/part-of"

// Engine applies sets of objects to one cluster.
type Engine struct {
	dyn    dynamic.Interface
	meta   metadata.Interface // answers with PartialObjectMetadata
	mapper meta.ResettableRESTMapper
	opts   Options
	log    *zap.Logger
	track  *Tracker
}

// New returns an engine for the cluster of cfg, mapping kinds through
// aggregated discovery.
func New(cfg *rest.Config, opts Options, log *zap.Logger) (*Engine, error) {
	if opts.SetID == "" {
		return nil, fmt.Errorf("apply: an ApplySet id is required")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.FieldManager == "" {
		return nil, fmt.Errorf("apply: a field manager is required")
	}
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "default"
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	mapper := opts.Mapper
	if mapper == nil {
		if mapper, err = NewMapper(cfg); err != nil {
			return nil, err
		}
	}
	e := &Engine{dyn: dyn, meta: md, mapper: mapper, opts: opts, log: log}
	e.track = newTracker(e)
	return e, nil
}

// Mapper maps kinds to resources and can be told to forget (a CRD came).
type Mapper = meta.ResettableRESTMapper

// NewMapper returns a mapper of kinds to resources over the aggregated
// discovery of the cluster of cfg, refreshed when a kind is unknown.
// Discovery goes through a REST client without a typed scheme: client-go's
// discovery client would link every API group's types (see mapper).
func NewMapper(cfg *rest.Config) (meta.ResettableRESTMapper, error) {
	sch := runtime.NewScheme()
	metav1.AddToGroupVersion(sch, schema.GroupVersion{Version: "v1"})
	rc := rest.CopyConfig(cfg)
	rc.APIPath, rc.GroupVersion, rc.NegotiatedSerializer = "/", &schema.GroupVersion{}, serializer.NewCodecFactory(sch).WithoutConversion()
	raw, err := rest.RESTClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("REST client: %w", err)
	}
	return newMapper(raw), nil
}

// Tracker is what the engine knows of the objects it applied: their
// drift and health, kept current by watches.
func (e *Engine) Tracker() *Tracker { return e.track }

// FieldManager is the engine's field manager.
func (e *Engine) FieldManager() string { return e.opts.FieldManager }

func (e *Engine) resource(gvr schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
	if ns == "" {
		return e.dyn.Resource(gvr)
	}
	return e.dyn.Resource(gvr).Namespace(ns)
}

var (
	namespaceGK = schema.GroupKind{Kind: "Namespace"}
	crdGK       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
)

// stageOne: CRDs and Namespaces go first, so the rest can use them.
func stageOne(k Key) bool {
	gk := k.GroupKind()
	return gk == namespaceGK || gk == crdGK
}

// foreignSynchronizer reports whether manager is another Driftless
// synchronizer's field manager.
func (e *Engine) foreignSynchronizer(manager string) bool {
	return strings.HasPrefix(manager, FieldManagerPrefix) && manager != e.opts.FieldManager
}

// Get reads one live object (for a diff's "before").
func (e *Engine) Get(ctx context.Context, k Key) (*unstructured.Unstructured, error) {
	m, err := e.mapper.RESTMapping(k.GroupKind())
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", k.GroupKind(), err)
	}
	u, err := e.resource(m.Resource, k.Namespace).Get(ctx, k.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", k, err)
	}
	return u, nil
}
