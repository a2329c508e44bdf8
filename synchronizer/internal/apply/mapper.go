package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// mapper maps kinds to resources from the API server's aggregated
// discovery (two requests: /api and /apis), refreshed on Reset and when a
// kind is not found. client-go's discovery client would do the same, but
// it links the whole typed scheme, every API group's code: megabytes of
// resident memory for a synchronizer that only needs this table.
type mapper struct {
	raw rest.Interface

	mu      sync.Mutex
	m       meta.RESTMapper
	fetched time.Time
}

func newMapper(raw rest.Interface) *mapper { return &mapper{raw: raw} }

// aggregated asks for discovery as one APIGroupDiscoveryList.
const aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

func (d *mapper) load(ctx context.Context) (meta.RESTMapper, error) {
	var groups []apidiscoveryv2.APIGroupDiscovery
	for _, path := range []string{"/api", "/apis"} {
		raw, err := d.raw.Get().AbsPath(path).SetHeader("Accept", aggregated).DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("discovery %s: %w", path, err)
		}
		var l apidiscoveryv2.APIGroupDiscoveryList
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, fmt.Errorf("discovery %s: %w", path, err)
		}
		groups = append(groups, l.Items...)
	}
	var preferred []schema.GroupVersion
	for _, g := range groups {
		if len(g.Versions) > 0 {
			preferred = append(preferred, schema.GroupVersion{Group: g.Name, Version: g.Versions[0].Version})
		}
	}
	m := meta.NewDefaultRESTMapper(preferred)
	for _, g := range groups {
		for _, v := range g.Versions {
			for _, r := range v.Resources {
				if r.ResponseKind == nil || r.ResponseKind.Kind == "" {
					continue
				}
				scope := meta.RESTScopeRoot
				if r.Scope == apidiscoveryv2.ScopeNamespace {
					scope = meta.RESTScopeNamespace
				}
				gv := schema.GroupVersion{Group: g.Name, Version: v.Version}
				m.AddSpecific(gv.WithKind(r.ResponseKind.Kind), gv.WithResource(r.Resource), gv.WithResource(r.SingularResource), scope)
			}
		}
	}
	return m, nil
}

// current returns the table, loading it when there is none or when
// stale is set and the table is older than a second (so a burst of
// unknown kinds costs one refresh).
func (d *mapper) current(stale bool) (meta.RESTMapper, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m != nil && (!stale || time.Since(d.fetched) < time.Second) {
		return d.m, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := d.load(ctx)
	if err != nil {
		if d.m != nil {
			return d.m, nil
		}
		return nil, err
	}
	d.m, d.fetched = m, time.Now()
	return m, nil
}

func (d *mapper) Reset() {
	d.mu.Lock()
	d.m = nil
	d.mu.Unlock()
}

// RESTMapping maps a kind, refreshing once if it is unknown.
func (d *mapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	m, err := d.current(false)
	if err != nil {
		return nil, err
	}
	rm, err := m.RESTMapping(gk, versions...)
	if meta.IsNoMatchError(err) {
		if m, err2 := d.current(true); err2 == nil {
			return m.RESTMapping(gk, versions...)
		}
	}
	return rm, err
}

func (d *mapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	m, err := d.current(false)
	if err != nil {
		return nil, err
	}
	return m.RESTMappings(gk, versions...)
}

func (d *mapper) KindFor(r schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	m, err := d.current(false)
	if err != nil {
		return schema.GroupVersionKind{}, err
	}
	return m.KindFor(r)
}

func (d *mapper) KindsFor(r schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	m, err := d.current(false)
	if err != nil {
		return nil, err
	}
	return m.KindsFor(r)
}

func (d *mapper) ResourceFor(r schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	m, err := d.current(false)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	return m.ResourceFor(r)
}

func (d *mapper) ResourcesFor(r schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	m, err := d.current(false)
	if err != nil {
		return nil, err
	}
	return m.ResourcesFor(r)
}

func (d *mapper) ResourceSingularizer(resource string) (string, error) {
	m, err := d.current(false)
	if err != nil {
		return "", err
	}
	return m.ResourceSingularizer(resource)
}
