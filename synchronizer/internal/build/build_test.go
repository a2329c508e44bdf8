package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const base = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [deploy.yaml, cm.yaml]
`
const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "ghcr.io/org/web:1.0.0"}]}
`
const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {color: blue}\n"

func TestBaseAndOverlays(t *testing.T) {
	root := tree(t, map[string]string{
		"base/kustomization.yaml": base, "base/deploy.yaml": deploy, "base/cm.yaml": cm,
		"clusters/dev/kustomization.yaml":  "resources: [../../base]\nnamespace: dev\nimages:\n  - name: ghcr.io/org/web\n    newTag: 1.1.0\n",
		"clusters/prod/kustomization.yaml": "resources: [../../base]\nnamespace: prod\npatches:\n  - target: {kind: Deployment, name: web}\n    patch: |-\n      - op: replace\n        path: /spec/replicas\n        value: 3\n",
	})
	dev, err := Build(t.Context(), root, "clusters/dev")
	if err != nil {
		t.Fatal(err)
	}
	if len(dev) != 2 || dev[0].GetNamespace() != "dev" {
		t.Fatalf("dev: %d objects, namespace %q", len(dev), dev[0].GetNamespace())
	}
	for _, o := range dev {
		if o.GetKind() == "Deployment" {
			img := fmt.Sprint(o.Object["spec"].(map[string]any)["template"])
			if !strings.Contains(img, "ghcr.io/org/web:1.1.0") {
				t.Fatalf("dev image not overridden: %s", img)
			}
		}
	}
	prod, err := Build(t.Context(), root, "clusters/prod")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range prod {
		if o.GetKind() == "Deployment" {
			if r := fmt.Sprint(o.Object["spec"].(map[string]any)["replicas"]); r != "3" {
				t.Fatalf("prod replicas %v", r)
			}
		}
	}
}

func TestPlainDirectory(t *testing.T) {
	root := tree(t, map[string]string{
		"apps/a.yaml":      deploy + "---\n" + cm,
		"apps/sub/b.yml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yml}\n",
		"apps/sub/c.json":  `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"json-is-not-read-as-flux-does"}}`,
		"apps/list.yaml":   "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: item-1}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: item-2}}\n",
		"apps/README.md":   "not read",
		"apps/.git/x.yaml": "not: read",
	})
	objs, err := Build(t.Context(), root, "apps")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	want := "Deployment/web ConfigMap/settings ConfigMap/item-1 ConfigMap/item-2 ConfigMap/from-yml"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

func TestBadInputIsARenderErrorNamingTheFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		path  string
		want  []string
	}{
		{"invalid yaml", map[string]string{"apps/a.yaml": "kind: [\n"}, "apps", []string{"apps/a.yaml: line 1: did not find expected node content"}},
		{"no kind", map[string]string{"apps/a.yaml": "apiVersion: v1\nmetadata: {name: x}\n"}, "apps", []string{"apps/a.yaml: document 1 (line 1): not a Kubernetes object: no kind"}},
		{"no name, second document", map[string]string{"apps/a.yaml": cm + "---\napiVersion: v1\nkind: ConfigMap\n"}, "apps", []string{"apps/a.yaml: document 2 (line 6): not a Kubernetes object: no metadata.name"}},
		{"broken kustomization", map[string]string{"k/kustomization.yaml": "resources: [missing.yaml]\n"}, "k", []string{"kustomize build k", "missing.yaml"}},
		{"path argument escape", map[string]string{"k/a.yaml": cm}, "../", []string{`path "../" escapes the checkout`}},
		{"remote base", map[string]string{"k/kustomization.yaml": "resources: ['https://github.com/org/repo//deploy?ref=v1']\n"}, "k", []string{`k/kustomization.yaml: resources[0] "https://github.com/org/repo//deploy?ref=v1": remote files are not read: only files inside the checkout`}},
		{"remote base in a base", map[string]string{"k/kustomization.yaml": "resources: [../b]\n", "b/kustomization.yaml": "resources: [github.com/org/repo/deploy]\n"}, "k", []string{`b/kustomization.yaml: resources[0] "github.com/org/repo/deploy": remote files are not read`}},
		{"missing path", map[string]string{"k/a.yaml": cm}, "nope", []string{`path "nope" does not exist in the checkout`}},
		{"a file as path", map[string]string{"k/a.yaml": cm}, "k/a.yaml", []string{`path "k/a.yaml" is not a folder of the checkout`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.files)
			_, err := Build(t.Context(), root, tc.path)
			if !errors.Is(err, ErrBuild) {
				t.Fatalf("got %v, want ErrBuild", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestSymlinkOutOfTheCheckoutIsRefused(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte(cm), 0o644)
	root := tree(t, map[string]string{"apps/a.yaml": cm})
	if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(root, "apps", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(t.Context(), root, "apps"); !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "apps/link.yaml: symbolic link escapes the checkout") {
		t.Fatalf("got %v", err)
	}
	root2 := tree(t, map[string]string{"k/kustomization.yaml": "resources: [link.yaml]\n"})
	os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(root2, "k", "link.yaml"))
	if _, err := Build(t.Context(), root2, "k"); !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "escapes the checkout") {
		t.Fatalf("kustomize through a symlink: got %v", err)
	}
}

func TestPathEscapeIsRefused(t *testing.T) {
	root := tree(t, map[string]string{"k/kustomization.yaml": "resources: [../../outside.yaml]\n"})
	// The file exists, next to the checkout: it must still not be read.
	os.WriteFile(filepath.Join(filepath.Dir(root), "outside.yaml"), []byte(cm), 0o644)
	_, err := Build(t.Context(), root, "k")
	if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), `k/kustomization.yaml: resources[0] "../../outside.yaml": escapes the checkout`) {
		t.Fatalf("got %v", err)
	}
}

// A relative checkout path (build --dir .) works like an absolute one.
func TestRelativeCheckout(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "app"), 0o755)
	os.WriteFile(filepath.Join(dir, "app", "kustomization.yaml"), []byte("namePrefix: x-\nresources: [cm.yaml]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "app", "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"), 0o644)
	t.Chdir(dir)
	objs, err := Build(t.Context(), ".", "app")
	if err != nil || len(objs) != 1 || objs[0].GetName() != "x-a" {
		t.Fatalf("relative checkout: %v %v", objs, err)
	}
}
