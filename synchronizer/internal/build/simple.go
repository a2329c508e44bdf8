package build

import (
	"context"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/filters/namespace"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/provider"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	"driftless.dev/synchronizer/internal/checkoutfs"
)

// simple renders the commonest kustomization without krusty: one that
// only lists local files and folders (each with a kustomization of the
// same kind) and may set a namespace, which is also what a plain folder's
// generated kustomization is. Krusty keeps each level's resources in a
// list it scans on every append and every namespace change (O(n²)): 1,000
// objects take 0.7 s or more, most of a one-line commit's way to the
// cluster. This path renders the same objects in O(n).
//
// It is krusty, narrowed: files are read by Kustomize's own resource
// factory, the namespace is set by Kustomize's own namespace filter with
// krusty's default field specs, ids are compared as krusty compares them
// (kind, name and effective namespace), and it follows krusty's steps
// level by level. Whatever it is not sure to do exactly as krusty does, it
// declines (ok is false) and krusty renders, with krusty's errors:
//   - any other kustomization field, any path that is not a plain local
//     one, a file outside its kustomization's folder, a loop;
//   - any read or parse error, a duplicate id;
//   - objects whose references krusty rewrites even when nothing is
//     renamed (RoleBinding and ClusterRoleBinding subjects, webhook
//     configurations' services, a Node's config source);
//   - annotations Kustomize reserves for itself (build, origin,
//     local-config), which krusty acts on.
//
// TestSimpleMatchesKrusty renders every case under testdata/corpus both
// ways and requires the same objects, or both to fail.
func simple(ctx context.Context, fsys *checkoutfs.FS, dir string) (res []*resource.Resource, ok bool, err error) {
	defer func() {
		// kyaml panics on some malformed input: krusty says it better.
		if p := recover(); p != nil {
			res, ok, err = nil, false, nil
		}
	}()
	s := &fast{ctx: ctx, fsys: fsys, rf: provider.NewDefaultDepProvider().GetResourceFactory()}
	res, ok = s.target(dir, []string{dir})
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, nil
	}
	for _, r := range res {
		if !plainObject(r) {
			return nil, false, nil
		}
		r.RemoveBuildAnnotations()
	}
	return res, true, nil
}

type fast struct {
	ctx  context.Context
	fsys *checkoutfs.FS
	rf   *resource.Factory
}

// idKey is how krusty tells two objects apart (resid.ResId.Equals).
type idKey struct{ group, version, kind, name, namespace string }

func keyOf(r *resource.Resource) idKey {
	id := r.CurId()
	return idKey{id.Group, id.Version, id.Kind, id.Name, id.EffectiveNamespace()}
}

// level is one kustomization's resources, with krusty's duplicate check.
type level struct {
	res  []*resource.Resource
	seen map[idKey]bool
}

func (l *level) add(rs []*resource.Resource) bool {
	for _, r := range rs {
		k := keyOf(r)
		if l.seen[k] {
			return false
		}
		l.seen[k] = true
		l.res = append(l.res, r)
	}
	return true
}

// target renders the kustomization in the resolved folder dir; chain is
// the folders of the kustomizations that led here (krusty refuses one
// that contains any of them).
func (s *fast) target(dir string, chain []string) ([]*resource.Resource, bool) {
	if s.ctx.Err() != nil {
		return nil, false
	}
	k, ok := s.kustomization(dir)
	if !ok {
		return nil, false
	}
	l := &level{seen: map[idKey]bool{}}
	for _, entry := range k.Resources {
		if !localPath(entry) {
			return nil, false
		}
		target, isDir, err := s.fsys.Lookup(path.Join(dir, entry))
		if err != nil {
			return nil, false
		}
		if !isDir {
			// krusty's RootOnly load restriction.
			if !within(path.Dir(target), dir) {
				return nil, false
			}
			data, err := s.fsys.ReadRel(target)
			if err != nil {
				return nil, false
			}
			rs, err := s.rf.SliceFromBytes(data)
			if err != nil {
				return nil, false
			}
			// Within the file, then against the level, as krusty appends.
			if !(&level{seen: map[idKey]bool{}}).add(rs) || !l.add(rs) {
				return nil, false
			}
			continue
		}
		for _, c := range chain {
			if within(c, target) {
				return nil, false
			}
		}
		sub, ok := s.target(target, append(slices.Clone(chain), target))
		if !ok || !l.add(sub) {
			return nil, false
		}
	}
	if k.Namespace != "" {
		f := namespace.Filter{Namespace: k.Namespace, FsSlice: namespaceFieldSpecs, SetRoleBindingSubjects: namespace.DefaultSubjectsOnly}
		seen := map[idKey]bool{}
		for _, r := range l.res {
			if r.IsNilOrEmpty() {
				continue
			}
			if err := r.ApplyFilter(f); err != nil {
				return nil, false
			}
		}
		for _, r := range l.res {
			if k := keyOf(r); seen[k] {
				return nil, false
			} else {
				seen[k] = true
			}
		}
	}
	return l.res, true
}

// simpleKustomization is all a kustomization on the fast path may say.
type simpleKustomization struct {
	Resources []string
	Namespace string
}

func (s *fast) kustomization(dir string) (simpleKustomization, bool) {
	var k simpleKustomization
	name := ""
	for _, n := range konfig.RecognizedKustomizationFileNames() {
		if resolved, isDir, err := s.fsys.Lookup(path.Join(dir, n)); err == nil && !isDir {
			if name != "" || !within(path.Dir(resolved), dir) {
				return k, false // krusty refuses two, and one it may not load
			}
			name = n
		}
	}
	if name == "" {
		return k, false
	}
	data, err := s.fsys.ReadRel(path.Join(dir, name))
	if err != nil {
		return k, false
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return k, false
	}
	for key, v := range m {
		switch key {
		case "apiVersion":
			if v != types.KustomizationVersion {
				return k, false
			}
		case "kind":
			if v != types.KustomizationKind {
				return k, false
			}
		case "namespace":
			ns, isString := v.(string)
			if !isString {
				return k, false
			}
			k.Namespace = ns
		case "resources":
			list, isList := v.([]any)
			if !isList {
				return k, false
			}
			for _, e := range list {
				entry, isString := e.(string)
				if !isString {
					return k, false
				}
				k.Resources = append(k.Resources, entry)
			}
		default:
			return k, false
		}
	}
	if len(k.Resources) == 0 && k.Namespace == "" {
		return k, false // krusty: an empty kustomization
	}
	return k, true
}

// localPath accepts only what krusty can only read as a local file or
// folder: no scheme, host, user, query or git spelling, no absolute
// path, no segment like "base - .." that krusty refuses as ambiguous.
func localPath(p string) bool {
	if p == "" || strings.ContainsAny(p, ":@?\\ \t") || path.IsAbs(p) {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg != ".." && strings.Contains(seg, "..") {
			return false
		}
		if strings.HasSuffix(seg, ".git") || seg == "_git" {
			return false
		}
	}
	first := strings.ToLower(strings.Split(p, "/")[0])
	return !strings.Contains(first, ".com") && !strings.Contains(first, ".org") && !strings.Contains(first, ".io") &&
		first != "gh" && !strings.HasPrefix(first, "git")
}

// plainObject says whether krusty would leave r as the fast path does:
// no reserved annotation, no reference krusty rewrites on its own.
func plainObject(r *resource.Resource) bool {
	// krusty's last step (IgnoreLocal) drops empty objects and refuses
	// one without kind or name.
	if r.IsNilOrEmpty() {
		return false
	}
	if _, err := r.GetValidatedMetadata(); err != nil {
		return false
	}
	for k := range r.GetAnnotations() {
		for _, prefix := range reservedAnnotationPrefixes {
			if strings.HasPrefix(k, prefix) {
				return false
			}
		}
	}
	gvk := r.GetGvk()
	return !rewrittenReferrers[resid.Gvk{Group: gvk.Group, Kind: gvk.Kind}]
}

// reservedAnnotationPrefixes cover resource.BuildAnnotations, the origin
// and transformation annotations and local-config (a test checks the
// first list stays covered).
var reservedAnnotationPrefixes = []string{
	"config.kubernetes.io/", "internal.config.kubernetes.io/", "alpha.config.kubernetes.io/",
	"kustomize.config.k8s.io/", "config.k8s.io/",
}

// rewrittenReferrers are the kinds whose references krusty's name
// reference pass (FixBackReferences) sets as a mapping, name and
// namespace, even when nothing was renamed.
var rewrittenReferrers = map[resid.Gvk]bool{
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}:                       true,
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}:                true,
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}: true,
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:   true,
	{Group: "", Kind: "Node"}: true,
}

// namespaceFieldSpecs are krusty's default field specs for `namespace:`
// (api/internal/konfig/builtinpluginconsts/namespace.go, v0.21.2), which
// Kustomize does not export.
var namespaceFieldSpecs = types.FsSlice{
	{Gvk: resid.Gvk{Kind: "Namespace"}, Path: "metadata/name", CreateIfNotPresent: true},
	{Gvk: resid.Gvk{Group: "apiregistration.k8s.io", Kind: "APIService"}, Path: "spec/service/namespace", CreateIfNotPresent: true},
	{Gvk: resid.Gvk{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}, Path: "spec/conversion/webhook/clientConfig/service/namespace"},
}
