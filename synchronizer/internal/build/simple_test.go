package build

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	return dir
}

func canonical(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

// The fast path renders exactly what krusty renders, where it applies.
func TestSimpleMatchesKrusty(t *testing.T) {
	objects := `apiVersion: v1
kind: ConfigMap
metadata: {name: a, labels: {x: "1"}}
data: {n: "1", z: "true"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: elsewhere}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1", ports: [{containerPort: 80}]}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
`
	cases := map[string]map[string]string{
		"namespace": {
			"app/kustomization.yaml": "namespace: team\nresources: [objects.yaml, more.json]\n",
			"app/objects.yaml":       objects,
			"app/more.json":          `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}`,
		},
		"nested, no namespace": {
			"app/kustomization.yaml":      "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [base, extra.yaml]\n",
			"app/base/kustomization.yaml": "namespace: base-ns\nresources: [objects.yaml]\n",
			"app/base/objects.yaml":       objects,
			"app/extra.yaml":              "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n",
		},
		"overlay namespace wins": {
			"app/kustomization.yaml":  "namespace: overlay\nresources: [../base]\n",
			"base/kustomization.yaml": "namespace: base-ns\nresources: [objects.yaml]\n",
			"base/objects.yaml":       objects,
		},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			dir := write(t, files)
			root, _ := filepath.EvalSymlinks(dir)
			fast, ok, err := simple(root, filepath.Join(root, "app"))
			if !ok || err != nil {
				t.Fatalf("fast path not taken: %v", err)
			}
			slow, err := kustomize(root, filepath.Join(root, "app"))
			if err != nil {
				t.Fatal(err)
			}
			if a, b := canonical(t, fast), canonical(t, slow); !slices.Equal(a, b) {
				t.Fatalf("fast path:\n%s\nkrusty:\n%s", strings.Join(a, "---\n"), strings.Join(b, "---\n"))
			}
		})
	}
}

func TestSimpleLeavesTheRestToKrusty(t *testing.T) {
	for name, k := range map[string]string{
		"a transformer":        "namePrefix: x-\nresources: [cm.yaml]\n",
		"a RoleBinding":        "namespace: team\nresources: [rb.yaml]\n",
		"an unknown kind":      "namespace: team\nresources: [w.yaml]\n",
		"a folder without one": "resources: [plain]\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := write(t, map[string]string{
				"app/kustomization.yaml": k,
				"app/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
				"app/rb.yaml":            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: rb}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: default}]\n",
				"app/w.yaml":             "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
				"app/plain/cm.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
			})
			root, _ := filepath.EvalSymlinks(dir)
			if _, ok, _ := simple(root, filepath.Join(root, "app")); ok {
				t.Fatal("fast path taken")
			}
		})
	}
}
