package build

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"driftless.dev/synchronizer/internal/checkoutfs"
)

// A `flux bootstrap` repository: clusters/dev is a plain folder whose
// flux-system subfolder holds a kustomization, next to Flux Kustomization
// objects; apps/dev is an overlay with patch files that are not objects.
// Each path renders as Flux's kustomize-controller renders it.
func TestFluxBootstrapLayout(t *testing.T) {
	root := "testdata/flux"
	objs, err := Build(t.Context(), root, "clusters/dev")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Kustomization flux-system/apps",
		"Namespace flux-system", "CustomResourceDefinition kustomizations.kustomize.toolkit.fluxcd.io",
		"ServiceAccount flux-system/kustomize-controller", "Deployment flux-system/kustomize-controller",
		"GitRepository flux-system/flux-system", "Kustomization flux-system/flux-system",
		"Kustomization flux-system/infrastructure",
	}
	if got := ids(objs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("clusters/dev rendered\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The kustomization Flux would write for clusters/dev.
	fsys, err := checkoutfs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close()
	if err := generate(t.Context(), fsys, "clusters/dev"); err != nil {
		t.Fatal(err)
	}
	gen := string(fsys.Virtual()["clusters/dev/kustomization.yaml"])
	if wantGen := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ./apps.yaml\n- ./flux-system\n- ./infrastructure.yaml\n"; gen != wantGen {
		t.Fatalf("generated kustomization:\n%s\nwant:\n%s", gen, wantGen)
	}
	// Krusty alone renders the same.
	ref, err := Build(t.Context(), root, "clusters/dev", krustyOnly)
	if err != nil || dump(t, ref) != dump(t, objs) {
		t.Fatalf("krusty: %v\n%s", err, dump(t, ref))
	}

	dev, err := Build(t.Context(), root, "apps/dev")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(dev), ", "); got != "Namespace podinfo, Deployment podinfo/podinfo, Service podinfo/podinfo" {
		t.Fatalf("apps/dev rendered %s", got)
	}
	d := dev[1]
	replicas, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if replicas != 2 || !strings.Contains(fmt.Sprint(containers), "#34577c") {
		t.Fatalf("apps/dev patches not applied: replicas %d, containers %v", replicas, containers)
	}
}

// A plain folder is read as Flux reads one.
func TestPlainFolderRules(t *testing.T) {
	root := tree(t, map[string]string{
		"p/a.yaml":                   cm,
		"p/b/c.yml":                  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nested}\n",
		"p/b/d.json":                 `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"json"}}`,
		"p/c/kustomization.yaml":     "namespace: unit\nresources: [cm.yaml]\n",
		"p/c/cm.yaml":                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: in-unit}\n",
		"p/c/patch.yaml":             "- op: replace\n  path: /data\n  value: {}\n",
		"p/.github/workflows/x.yaml": "on: push\n",
		"p/cloudbuild.yaml":          "steps: []\n",
		"p/README.md":                "# notes\n",
		"p/z.yaml":                   "# only a comment\n",
	})
	objs, err := Build(t.Context(), root, "p", WithOrder(DeclarationOrder))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ids(objs), ", "); got != "ConfigMap settings, ConfigMap nested, ConfigMap unit/in-unit" {
		t.Fatalf("rendered %s", got)
	}
	// A folder with nothing to render renders nothing, without an error.
	empty := tree(t, map[string]string{"e/README.md": "x"})
	if objs, err := Build(t.Context(), empty, "e"); err != nil || len(objs) != 0 {
		t.Fatalf("empty folder: %v %v", objs, err)
	}
	// A file that is not an object is named, with its document and line.
	bad := tree(t, map[string]string{"p/a.yaml": cm, "p/patch.yaml": "- op: replace\n  path: /spec/replicas\n  value: 2\n"})
	_, err = Build(t.Context(), bad, "p")
	if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "p/patch.yaml: document 1 (line 1): not a Kubernetes object") {
		t.Fatalf("patch in a plain folder: got %v", err)
	}
	// Two units of the same objects collide as they do in Flux.
	_, err = Build(t.Context(), "testdata/flux", "apps")
	if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "already registered id") {
		t.Fatalf("apps/ (base and overlay): got %v", err)
	}
}

func ids(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+" "+objectName(o))
	}
	return out
}
