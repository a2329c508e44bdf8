package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// vendorInstall writes, under dir/vendor, what a vendor's HA install
// looks like to Kustomize: crds CustomResourceDefinitions with large
// openAPIV3Schemas (nested objects, every field described, as generated
// CRDs are), and the controllers' manifests (Deployments with 3 replicas,
// Services, RBAC, PodDisruptionBudgets, webhooks, configuration), under a
// kustomization that sets a namespace, labels and an image tag, so it is
// Kustomize (its own process), not the in-process fast path, that renders
// it. It returns the size of the YAML written.
func vendorInstall(t testing.TB, dir string, crds int) int {
	t.Helper()
	total := 0
	write := func(rel, body string) {
		p := filepath.Join(dir, "vendor", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		total += len(body)
	}
	desc := func(what string, i, j int) string {
		return fmt.Sprintf("%s configures how the controller handles the %d-th aspect of group %d. When unset the controller applies its default, which is documented in the operator guide; changing it restarts the affected workers and may take up to one reconcile interval to be observed.", what, j, i)
	}
	var resources []string
	for c := range crds {
		kind := fmt.Sprintf("Widget%02d", c)
		var s strings.Builder
		fmt.Fprintf(&s, `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widget%02ds.vendor.example.com
  annotations: {controller-gen.kubebuilder.io/version: v0.16.5}
spec:
  group: vendor.example.com
  names: {kind: %s, listKind: %sList, plural: widget%02ds, singular: widget%02d}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        description: %q
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
          spec:
            type: object
            properties:
`, c, kind, kind, c, c, desc(kind, c, 0))
		for g := range 13 {
			fmt.Fprintf(&s, "              group%02d:\n                type: object\n                description: %q\n                properties:\n", g, desc("group", c, g))
			for f := range 8 {
				typ := []string{"string", "integer", "boolean", "string"}[f%4]
				fmt.Fprintf(&s, "                  field%02d:\n                    type: %s\n                    description: %q\n", f, typ, desc(fmt.Sprintf("field%02d", f), g, f))
				if f == 7 {
					fmt.Fprintf(&s, "                    enum: [Always, Never, IfNotPresent, OnFailure]\n")
				}
			}
			fmt.Fprintf(&s, "                  items:\n                    type: array\n                    items:\n                      type: object\n                      required: [name]\n                      properties:\n                        name: {type: string, description: %q}\n                        value: {type: string, description: %q}\n", desc("name", c, g), desc("value", c, g))
		}
		rel := fmt.Sprintf("crds/widget%02d.yaml", c)
		write(rel, s.String())
		resources = append(resources, rel)
	}
	var m strings.Builder
	for i := range 12 {
		name := fmt.Sprintf("controller-%02d", i)
		fmt.Fprintf(&m, `apiVersion: v1
kind: ServiceAccount
metadata: {name: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: vendor-%[1]s}
rules:
- apiGroups: [vendor.example.com]
  resources: ["*"]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [configmaps, secrets, events, services]
  verbs: [get, list, watch, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vendor-%[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: vendor-%[1]s}
subjects: [{kind: ServiceAccount, name: %[1]s, namespace: vendor-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: %[1]s-config}
data:
  config.yaml: |
    leaderElection: {enabled: true, leaseDuration: 15s}
    metrics: {bindAddress: ":8080"}
    workers: 8
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 3
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      serviceAccountName: %[1]s
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: %[1]s}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: manager
        image: vendor/controller:v2.0.0
        args: [--leader-elect, --config=/etc/config/config.yaml]
        ports: [{name: metrics, containerPort: 8080}, {name: webhook, containerPort: 9443}]
        resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 512Mi}}
        readinessProbe: {httpGet: {path: /readyz, port: 8081}}
        livenessProbe: {httpGet: {path: /healthz, port: 8081}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
        volumeMounts: [{name: config, mountPath: /etc/config}]
      volumes: [{name: config, configMap: {name: %[1]s-config}}]
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: metrics, port: 8080}, {name: webhook, port: 443, targetPort: 9443}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: %[1]s}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: %[1]s}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: vendor-%[1]s}
webhooks:
- name: validate.%[1]s.vendor.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {service: {name: %[1]s, namespace: vendor-system, path: /validate}}
  rules: [{apiGroups: [vendor.example.com], apiVersions: [v1], operations: [CREATE, UPDATE], resources: ["*"]}]
---
`, name)
	}
	write("install.yaml", m.String())
	resources = append(resources, "install.yaml")
	write("kustomization.yaml", "namespace: vendor-system\nlabels:\n- pairs: {app.kubernetes.io/part-of: vendor}\nimages:\n- name: vendor/controller\n  newTag: v2.3.4\nresources:\n- "+strings.Join(resources, "\n- ")+"\n")
	return total
}

// kustomizeCLI builds the kustomize CLI pinned in tools/kustomize (once
// per run) and returns its path.
var kustomizeCLI = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "driftless-kustomize-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "kustomize")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "sigs.k8s.io/kustomize/kustomize/v5")
	cmd.Dir = filepath.Join("..", "tools", "kustomize")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the kustomize CLI in tools/kustomize: %v\n%s", err, b)
	}
	return out, nil
})

// BenchmarkRenderVendor renders about 2 MB of CRDs and manifests (36
// large CRDs and a 12-controller HA install) three ways, each a process
// of its own, and reports their peak RSS: the kustomize CLI (the floor:
// `kustomize build`, built from its module at the version the
// synchronizer links); the synchronizer's Kustomize process alone (the
// process a pass starts for a render: the same executable, started with
// the build protocol's request, so what Kustomize costs inside it); and
// `synchronizer build` as a whole (the larger of its own peak and its
// Kustomize process's). Both outputs must hold the same objects.
func BenchmarkRenderVendor(b *testing.B) {
	kz, err := kustomizeCLI()
	if err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	size := vendorInstall(b, root, 36)
	b.Logf("input: %.2f MB of YAML", float64(size)/1e6)
	req, _ := json.Marshal(map[string]any{"root": root, "path": "vendor", "legacy": true})
	fig := figures{}
	for b.Loop() {
		el, rss, out := runMeasured(b, exec.Command(kz, "build", filepath.Join(root, "vendor")))
		want := strings.Count(string(out), "\nkind: ")
		fig.add("kustomize-s", el.Seconds())
		fig.add("kustomize-RSS-MiB", rss)

		child := exec.Command(programs["synchronizer"])
		child.Args = []string{"driftless-kustomize-build"}
		child.Env = []string{"PATH=", "HOME=/dev/null", "TMPDIR=/dev/null/none"}
		child.Stdin = bytes.NewReader(req)
		el, rss, out = runMeasured(b, child)
		var resp struct {
			Objects []json.RawMessage
			Error   string
		}
		if err := json.Unmarshal(out, &resp); err != nil || resp.Error != "" || len(resp.Objects) == 0 {
			b.Fatalf("the Kustomize process answered %d objects, %q, %v:\n%.500s", len(resp.Objects), resp.Error, err, out)
		}
		fig.add("render-s", el.Seconds())
		fig.add("render-RSS-MiB", rss)
		fig.add("render/kustomize", rss/fig["kustomize-RSS-MiB"][len(fig["kustomize-RSS-MiB"])-1])

		el, rss, out = runMeasured(b, exec.Command(programs["synchronizer"], "build", "--dir", root, "--path", "vendor"))
		if got := strings.Count(string(out), "\nkind: "); got != want || len(resp.Objects) != want {
			b.Fatalf("synchronizer build printed %d objects and its Kustomize process %d; kustomize build %d", got, len(resp.Objects), want)
		}
		fig.add("sync-build-s", el.Seconds())
		fig.add("sync-build-RSS-MiB", rss)
	}
	fig.add("input-MB", float64(size)/1e6)
	fig.report(b)
}
