package build

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

const canary = "CANARY-3f9a1b7c"

// Errors name files, fields and objects, never values: a Secret's value
// (here a canary) appears in no error, whichever Kustomize or Driftless
// error it would have been quoted in.
func TestErrorsNeverShowValues(t *testing.T) {
	secret := "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: " + canary + "}\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // what the error must still say
	}{
		{"a malformed inline patch", map[string]string{
			"k/kustomization.yaml": "resources: [s.yaml]\npatches:\n- target: {kind: Secret, name: db}\n  patch: |-\n    apiVersion: v1\n    kind: Secret\n    metadata:\n      name: db\n    stringData:\n      password: " + canary + "\n     bad: indentation\n",
			"k/s.yaml":             secret,
		}, []string{"kustomize build k", "unable to parse SM or JSON patch", "password: ***"}},
		{"an id conflict that quotes the objects", map[string]string{
			"k/kustomization.yaml": "namespace: team\nresources: [../a, ../b]\n",
			"a/kustomization.yaml": "namespace: a\nresources: [s.yaml]\n", "a/s.yaml": secret,
			"b/kustomization.yaml": "namespace: b\nresources: [s.yaml]\n", "b/s.yaml": secret,
		}, []string{"namespace transformation produces ID conflict", `"name":"db"`}},
		{"a generator literal", map[string]string{
			"k/kustomization.yaml": "secretGenerator:\n- name: s\n  literals: [" + canary + "]\n",
		}, []string{"invalid literal source"}},
		{"a JSON patch value", map[string]string{
			"k/kustomization.yaml": "resources: [s.yaml]\npatches:\n- target: {kind: Secret}\n  patch: '[{\"op\": \"bogus\", \"path\": \"/stringData/x\", \"value\": \"" + canary + "\"}]'\n",
			"k/s.yaml":             secret,
		}, []string{"bogus"}},
		{"an object without a name, via Kustomize", map[string]string{
			"k/kustomization.yaml": "resources: [cm.yaml]\n",
			"k/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  annotations: {token: " + canary + "}\n",
		}, []string{"missing metadata.name"}},
		{"a plain file that is not an object", map[string]string{
			"k/cm.yaml": "password: " + canary + "\n",
		}, []string{"k/cm.yaml: document 1 (line 1): not a Kubernetes object: no apiVersion, kind, metadata.name"}},
		{"bad base64 in a Secret", map[string]string{
			"k/s.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: team}\ndata: {password: " + canary + "!!, ok: aGVsbG8=}\n",
		}, []string{"Secret team/db: data.password: not valid base64 (data holds base64-encoded values; put plain text under stringData)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.files)
			for _, opts := range [][]Option{nil, {krustyOnly}} {
				_, err := Build(t.Context(), root, "k", opts...)
				if !errors.Is(err, ErrBuild) {
					t.Fatalf("got %v, want ErrBuild", err)
				}
				if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "CANARY") {
					t.Fatalf("the error shows the value:\n%v", err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\nlacks %q", err, w)
					}
				}
			}
		})
	}
}

// Helm charts are not rendered; the error says so, where, and what to do,
// not "must specify --enable-helm" (a flag Driftless does not have).
func TestHelmChartsSayWhatIsTrue(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"helmCharts", map[string]string{"k/kustomization.yaml": "helmCharts:\n- name: podinfo\n  repo: " + srv.URL + "\n  version: 6.7.0\n"},
			"k/kustomization.yaml: helmCharts: Helm charts are not rendered by Driftless: render the chart into Git (helm template) and list the output under resources"},
		{"a HelmChartInflationGenerator", map[string]string{
			"k/kustomization.yaml": "generators: [helm.yaml]\n",
			"k/helm.yaml":          "apiVersion: builtin\nkind: HelmChartInflationGenerator\nmetadata: {name: podinfo}\nname: podinfo\nrepo: " + srv.URL + "\n",
		}, "k/helm.yaml: kind HelmChartInflationGenerator: Helm charts are not rendered by Driftless"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(t.Context(), tree(t, tc.files), "k")
			if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "enable-helm") {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("%d request(s) reached the chart repository", n)
			}
		})
	}
}

// A tab in YAML is named as such, with its file and line, whether a plain
// folder's file or Kustomize's reads it.
func TestTabCharacter(t *testing.T) {
	withTab := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: tabbed\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"plain folder", map[string]string{"k/cm.yaml": withTab}, "k/cm.yaml: line 4: tab character: YAML indents with spaces"},
		{"a kustomization's resource", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\n", "k/cm.yaml": withTab}, "k/cm.yaml: line 4: tab character: YAML indents with spaces"},
		{"the kustomization itself", map[string]string{"k/kustomization.yaml": "resources:\n\t- cm.yaml\n", "k/cm.yaml": cm}, "k/kustomization.yaml: line 2: tab character: YAML indents with spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(t.Context(), tree(t, tc.files), "k")
			if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

// Kustomize's errors carry repository paths, never the machine's.
func TestKustomizeErrorsShowRepositoryPaths(t *testing.T) {
	root := tree(t, map[string]string{
		"clusters/dev/kustomization.yaml": "resources: [../../base]\n",
		"base/kustomization.yaml":         "resources: [missing.yaml]\n",
	})
	_, err := Build(t.Context(), root, "clusters/dev")
	if !errors.Is(err, ErrBuild) || strings.Contains(err.Error(), root) || strings.Contains(err.Error(), "driftless-checkout") ||
		!strings.Contains(err.Error(), "base/missing.yaml") {
		t.Fatalf("got %v", err)
	}
}

// `kustomize build`'s order on request; declaration order by default.
func TestOrder(t *testing.T) {
	root := tree(t, map[string]string{
		"k/kustomization.yaml": "resources: [all.yaml]\n",
		"k/all.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n" +
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n" +
			"apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n",
	})
	for _, tc := range []struct {
		opts []Option
		want string
	}{
		{nil, "Deployment web, ConfigMap b, ConfigMap a, Namespace team"},
		{[]Option{WithOrder(LegacyOrder)}, "Namespace team, ConfigMap a, ConfigMap b, Deployment web"},
		{[]Option{WithOrder(LegacyOrder), krustyOnly}, "Namespace team, ConfigMap a, ConfigMap b, Deployment web"},
	} {
		objs, err := Build(t.Context(), root, "k", tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ids(objs), ", "); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}
