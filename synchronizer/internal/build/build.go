// Package build renders the objects of one path of a checkout, as
// `kustomize build` does: with Kustomize (bases, overlays, components)
// when the path has a kustomization, and for a plain folder with the
// kustomization Flux's kustomize-controller would generate for it.
//
// A build reads the checkout only through checkoutfs (nothing outside it,
// no .git, links judged by their text) and cannot reach the network:
// krusty runs in a process of its own with no HTTP transport and no git
// (child.go says why). It is bounded in time, and its errors name files
// and fields, never values.
package build

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/resource"

	"driftless.dev/synchronizer/internal/checkoutfs"
)

// ErrBuild marks a render that cannot succeed until the repository is
// fixed: retrying the same commit is pointless.
var ErrBuild = errors.New("render failed")

// DefaultTimeout bounds a build unless WithTimeout says otherwise.
const DefaultTimeout = 2 * time.Minute

// Order is the order of the rendered objects.
type Order int

const (
	// DeclarationOrder keeps the order the kustomizations list the
	// objects in (krusty's default, and what a pass applies from: the
	// apply engine orders writes itself).
	DeclarationOrder Order = iota
	// LegacyOrder is `kustomize build`'s default: Namespaces, CRDs and
	// the like first, webhooks last, then by kind, namespace and name.
	LegacyOrder
)

type options struct {
	timeout time.Duration
	order   Order
	// krustyOnly skips the fast path (tests compare the two).
	krustyOnly bool
}

// Option changes how Build works.
type Option func(*options)

// WithTimeout bounds the build (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithOrder sets the order of the objects (default DeclarationOrder).
func WithOrder(order Order) Option { return func(o *options) { o.order = order } }

// TimeoutError is a build stopped at its time limit. It matches ErrBuild
// and context.DeadlineExceeded.
type TimeoutError struct {
	Path  string
	Limit time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("build of %s stopped: it did not finish within %s", e.Path, e.Limit)
}

func (e *TimeoutError) Is(target error) bool {
	return target == ErrBuild || target == context.DeadlineExceeded
}

// Build renders root/path, where root is the checkout.
func Build(ctx context.Context, root, path string, opts ...Option) ([]*unstructured.Unstructured, error) {
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	rootAbs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("%w: checkout %s: %v", ErrBuild, root, err)
	}
	fsys, err := checkoutfs.Open(rootAbs)
	if err != nil {
		return nil, fmt.Errorf("%w: open the checkout: %v", ErrBuild, err)
	}
	defer fsys.Close()
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, &TimeoutError{Path: path, Limit: o.timeout})
	defer cancel()
	defer collectOften()()
	objs, err := render(ctx, fsys, rootAbs, path, o)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	if err := checkSecrets(objs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBuild, err)
	}
	return objs, nil
}

func render(ctx context.Context, fsys *checkoutfs.FS, root, p string, o options) ([]*unstructured.Unstructured, error) {
	dir, isDir, err := fsys.Lookup(p)
	if err != nil {
		var pe *checkoutfs.PathError
		if errors.As(err, &pe) && pe.Link == "" {
			return nil, fmt.Errorf("%w: path %q %v", ErrBuild, p, pe.Err)
		}
		return nil, fmt.Errorf("%w: path %q: %v", ErrBuild, p, err)
	}
	if !isDir {
		return nil, fmt.Errorf("%w: path %q is not a folder of the checkout", ErrBuild, p)
	}
	if kustomizationFile(fsys, dir) == "" {
		if err := generate(ctx, fsys, dir); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrBuild, explain(err, fsys.Reads()))
		}
	}
	var res []*resource.Resource
	ok := false
	if !o.krustyOnly {
		if res, ok, err = simple(ctx, fsys, dir); err != nil {
			return nil, err
		}
	}
	if ok {
		if o.order == LegacyOrder {
			legacySort(res)
		}
		return fromResources(res)
	}
	resp, err := runChild(ctx, request{Root: root, Path: dir, Virtual: fsys.Virtual(), Legacy: o.order == LegacyOrder})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrBuild, err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("%w: %s", ErrBuild, resp.Error)
	}
	out := make([]*unstructured.Unstructured, 0, len(resp.Objects))
	for _, b := range resp.Objects {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%w: kustomize build %s: an object: %v", ErrBuild, dir, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// While a build runs, the heap is collected at +25 % rather than the
// default +100 %. Parsing is most of what a build allocates, and short
// lived: kyaml's reader copies every node it parses, so the trees of a
// 10,000-object render (37 MiB) are made twice over in under a second,
// and at the default pace the heap grew to 130 MiB before a collection
// caught up; the synchronizer's resident size peaked there (208 MiB of
// which 179 heap, BenchmarkSynchronizerScale). At +25 % the build peaks
// at 66 MiB of heap and takes 1.1 s instead of 0.8 s; a pass applying
// the same objects takes 20 s or more. The setting is the process's, so
// builds running at once (tenants) share one: the first sets it, the last
// puts back what was there.
var gcPace struct {
	sync.Mutex
	builds int
	prev   int
}

func collectOften() (restore func()) {
	gcPace.Lock()
	if gcPace.builds == 0 {
		gcPace.prev = debug.SetGCPercent(25)
	}
	gcPace.builds++
	gcPace.Unlock()
	return func() {
		gcPace.Lock()
		gcPace.builds--
		if gcPace.builds == 0 {
			debug.SetGCPercent(gcPace.prev)
		}
		gcPace.Unlock()
	}
}

// kustomizationFile returns the name of the kustomization file in the
// resolved folder dir, or "".
func kustomizationFile(fsys *checkoutfs.FS, dir string) string {
	for _, n := range konfig.RecognizedKustomizationFileNames() {
		if _, isDir, err := fsys.Lookup(path.Join(dir, n)); err == nil && !isDir {
			return n
		}
	}
	return ""
}

// fromResources converts Kustomize's resources to the objects the apply
// engine takes, through JSON so numbers are int64/float64 as client-go
// expects (kyaml's Map gives int, which DeepCopy refuses). It decodes each
// YAML node as kyaml's RNode.MarshalJSON (what krusty's output goes
// through) does, without printing it to YAML text and parsing it back,
// which took half the fast path's time.
func fromResources(res []*resource.Resource) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(res))
	for i, r := range res {
		// Each YAML tree is let go once converted: kept to the end, the
		// trees of 10,000 objects (two copies each: kyaml's reader copies
		// every node) and their conversions are live together.
		res[i] = nil
		m := map[string]any{}
		if err := r.YNode().Decode(&m); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBuild, r.CurId(), err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBuild, r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBuild, r.CurId(), err)
		}
		out = append(out, u)
	}
	return out, nil
}

// checkSecrets refuses a Secret whose data is not base64, before the API
// server sees it, naming the field and never the value.
func checkSecrets(objs []*unstructured.Unstructured) error {
	var errs []error
	for _, o := range objs {
		if o.GetKind() != "Secret" || o.GroupVersionKind().Group != "" {
			continue
		}
		data, ok := o.Object["data"].(map[string]any)
		if !ok {
			continue
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s, isString := data[k].(string)
			if !isString {
				//lint:ignore ST1005 messages start with the object, and its kind is capitalized
				errs = append(errs, fmt.Errorf("Secret %s: data.%s: not a string (data holds base64-encoded strings)", objectName(o), k))
				continue
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				//lint:ignore ST1005 messages start with the object, and its kind is capitalized
				errs = append(errs, fmt.Errorf("Secret %s: data.%s: not valid base64 (data holds base64-encoded values; put plain text under stringData)", objectName(o), k))
			}
		}
	}
	return errors.Join(errs...)
}

func objectName(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}
