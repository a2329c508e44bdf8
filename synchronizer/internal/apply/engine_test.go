package apply_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"driftless.dev/shared/testenv"
	"driftless.dev/synchronizer/internal/apply"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(testenv.MainCluster(m, &cluster)) }

// objs parses multi-document YAML.
func objs(t testing.TB, docs string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(d) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func engine(t testing.TB, opts apply.Options) (*apply.Engine, dynamic.Interface) {
	t.Helper()
	if opts.SetID == "" {
		opts.SetID = "applyset-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-v1"
	}
	e, err := apply.NewForConfig(clusterConfig(t), opts, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dyn, _ := dynamic.NewForConfig(clusterConfig(t))
	return e, dyn
}

var cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func get(t testing.TB, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	return dyn.Resource(gvr).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
}

func actions(rep apply.Report) map[string]apply.Action {
	m := map[string]apply.Action{}
	for _, r := range rep.Results {
		m[r.Object.Kind+"/"+r.Object.Name] = r.Action
	}
	return m
}

func app(ns, data, image string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: %[1]s}
data: {greeting: %[2]s}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "%[3]s"}]
`, ns, data, image)
}

func TestApplyChangeAndNoOp(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
	ctx := t.Context()
	rep, err := e.Apply(ctx, objs(t, app(ns, "hello", "web:1.0.0")), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := actions(rep); a["ConfigMap/settings"] != apply.Created || a["Deployment/web"] != apply.Created || a["Service/web"] != apply.Created {
		t.Fatalf("first apply: %v", a)
	}
	cm, err := get(t, dyn, cmGVR, ns, "settings")
	if err != nil || cm.GetLabels()[apply.PartOfLabel] == "" {
		t.Fatalf("applied ConfigMap: %v %v", cm, err)
	}
	if mf := cm.GetManagedFields(); len(mf) != 1 || mf[0].Manager != "driftless" || mf[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Fatalf("field managers: %+v", mf)
	}
	// Unchanged: no request at all.
	before := e.Requests()
	rep, err = e.Apply(ctx, objs(t, app(ns, "hello", "web:1.0.0")), false, nil)
	if err != nil || rep.Skipped != 3 || e.Requests() != before {
		t.Fatalf("no-op pass: %+v %v, %d requests", rep, err, e.Requests()-before)
	}
	// One change: one dry run and one apply.
	rep, err = e.Apply(ctx, objs(t, app(ns, "hello", "web:1.1.0")), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := actions(rep); a["Deployment/web"] != apply.Configured || a["ConfigMap/settings"] != apply.Unchanged || e.Requests()-before != 2 {
		t.Fatalf("one change: %v, %d requests", a, e.Requests()-before)
	}
	d, _ := get(t, dyn, schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, ns, "web")
	if img, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers"); img[0].(map[string]any)["image"] != "web:1.1.0" {
		t.Fatalf("image not updated: %v", img)
	}
	// Forced (the resync): everything applied, reported unchanged (the
	// Deployment's rollout may move its resourceVersion meanwhile).
	rep, err = e.Apply(ctx, objs(t, app(ns, "hello", "web:1.1.0")), true, nil)
	if a := actions(rep); err != nil || a["ConfigMap/settings"] != apply.Unchanged || a["Service/web"] != apply.Unchanged || rep.Skipped != 0 {
		t.Fatalf("forced pass: %v %v", actions(rep), err)
	}
}

func TestBadSetAppliesNothing(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
	ctx := t.Context()
	good := `apiVersion: v1
kind: ConfigMap
metadata: {name: fine, namespace: ` + ns + `}
data: {a: "1"}
`
	cases := map[string]struct{ doc, want string }{
		"dry-run rejection": {`apiVersion: v1
kind: Service
metadata: {name: bad, namespace: ` + ns + `}
spec: {ports: [{port: 99999}]}`, "Service " + ns + "/bad: Service \"bad\" is invalid: [spec.ports[0].port: Invalid value: 99999"},
		"unknown kind": {`apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: ` + ns + `}`, "Widget.example.com " + ns + "/w: unknown kind Widget in example.com/v1"},
		"no name": {`apiVersion: v1
kind: ConfigMap
metadata: {namespace: ` + ns + `}`, "ConfigMap " + ns + "/(no name): apiVersion, kind and metadata.name are required"},
		"duplicate": {good, "ConfigMap " + ns + "/fine: defined more than once"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := e.Apply(ctx, objs(t, good+"\n---\n"+c.doc), false, nil)
			var ve *apply.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant a ValidationError containing %q", err, c.want)
			}
			if _, err := get(t, dyn, cmGVR, ns, "fine"); !apierrors.IsNotFound(err) {
				t.Fatalf("the valid object was applied anyway: %v", err)
			}
		})
	}
}

func TestCRDAndItsResourceInOneSet(t *testing.T) {
	e, dyn := engine(t, apply.Options{})
	ns := cluster.Namespace(t)
	// CRDs are cluster-wide: a group of this test's own, so a rerun
	// (-count) starts from nothing too.
	group := ns + ".example.com"
	set := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.` + group + `}
spec:
  group: ` + group + `
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ` + ns + `-new}
---
apiVersion: ` + group + `/v1
kind: Widget
metadata: {name: w, namespace: ` + ns + `-new}
spec: {size: 3}
`
	rep, err := e.Apply(t.Context(), objs(t, set), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := actions(rep); a["Widget/w"] != apply.Created || a["CustomResourceDefinition/widgets."+group] != apply.Created || a["Namespace/"+ns+"-new"] != apply.Created {
		t.Fatalf("actions: %v", a)
	}
	w, err := get(t, dyn, schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}, ns+"-new", "w")
	if err != nil || w.Object["spec"].(map[string]any)["size"] != int64(3) {
		t.Fatalf("widget: %v %v", w, err)
	}
}

func TestImmutableFieldNeedsOptIn(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
	ctx := t.Context()
	dep := func(sel, ann string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: ` + ns + `` + ann + `}
spec:
  selector: {matchLabels: {app: ` + sel + `}}
  template:
    metadata: {labels: {app: ` + sel + `}}
    spec: {containers: [{name: c, image: "api:1"}]}`
	}
	if _, err := e.Apply(ctx, objs(t, dep("api", "")), false, nil); err != nil {
		t.Fatal(err)
	}
	depGVR := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	before, _ := get(t, dyn, depGVR, ns, "api")
	_, err := e.Apply(ctx, objs(t, dep("api2", "")), false, nil)
	if err == nil || !strings.Contains(err.Error(), "spec.selector: field is immutable") || !strings.Contains(err.Error(), apply.RecreateAnnotation+": enabled") {
		t.Fatalf("immutable change without opt-in: %v", err)
	}
	rep, err := e.Apply(ctx, objs(t, dep("api2", ", annotations: {"+apply.RecreateAnnotation+": enabled}")), false, nil)
	if err != nil || actions(rep)["Deployment/api"] != apply.Recreated {
		t.Fatalf("with opt-in: %v %v", actions(rep), err)
	}
	after, _ := get(t, dyn, depGVR, ns, "api")
	if after.GetUID() == before.GetUID() {
		t.Fatal("not re-created")
	}
}

func TestTenantRefusesOutsideItsNamespace(t *testing.T) {
	ns := cluster.Namespace(t)
	other := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{Tenant: ns})
	set := `apiVersion: v1
kind: ConfigMap
metadata: {name: mine}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: theirs, namespace: ` + other + `}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ` + ns + `-admin}
`
	_, err := e.Apply(t.Context(), objs(t, set), false, nil)
	for _, want := range []string{
		`ConfigMap ` + other + `/theirs: namespace "` + other + `" is outside this synchronizer's namespace "` + ns + `"`,
		`ClusterRole.rbac.authorization.k8s.io ` + ns + `-admin: cluster-scoped objects are not allowed in tenant mode`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v\nwant %q", err, want)
		}
	}
	if _, err := get(t, dyn, cmGVR, ns, "mine"); !apierrors.IsNotFound(err) {
		t.Fatalf("part of a refused set was applied: %v", err)
	}
	rep, err := e.Apply(t.Context(), objs(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine}\n"), false, nil)
	if err != nil || rep.Results[0].Object.Namespace != ns {
		t.Fatalf("object without a namespace goes to the tenant's: %+v %v", rep, err)
	}
}

func waitNotify(t *testing.T, e *apply.Engine) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for e.Drifted() == 0 {
		select {
		case <-e.Notify():
		case <-deadline:
			t.Fatal("no drift seen within 10s")
		}
	}
}

func TestDriftIsHealed(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
	ctx := t.Context()
	if _, err := e.Apply(ctx, objs(t, app(ns, "hello", "web:1")), false, nil); err != nil {
		t.Fatal(err)
	}
	e.Watch(ctx)
	time.Sleep(300 * time.Millisecond) // let the watches list
	// A status update by the controller manager is not drift.
	if e.Drifted() != 0 {
		t.Fatalf("drift after apply: %d", e.Drifted())
	}
	cm, _ := get(t, dyn, cmGVR, ns, "settings")
	cm.Object["data"] = map[string]any{"greeting": "hacked"}
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitNotify(t, e)
	if _, err := e.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("edit healed in %v", time.Since(start))
	cm, _ = get(t, dyn, cmGVR, ns, "settings")
	if cm.Object["data"].(map[string]any)["greeting"] != "hello" {
		t.Fatalf("not healed: %v", cm.Object["data"])
	}
	// A foreign label on a managed object is not drift.
	cm.SetLabels(map[string]string{"team": "x", apply.PartOfLabel: cm.GetLabels()[apply.PartOfLabel]})
	dyn.Resource(cmGVR).Namespace(ns).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "other"})
	time.Sleep(300 * time.Millisecond)
	if e.Drifted() != 0 {
		t.Fatal("an added label counted as drift")
	}
	// Deleted: re-created.
	dyn.Resource(cmGVR).Namespace(ns).Delete(ctx, "settings", metav1.DeleteOptions{})
	waitNotify(t, e)
	if res, err := e.Heal(ctx); err != nil || res[0].Action != apply.Created {
		t.Fatalf("heal a deletion: %v %v", res, err)
	}
	if _, err := get(t, dyn, cmGVR, ns, "settings"); err != nil {
		t.Fatal(err)
	}
}

func clusterConfig(t testing.TB) *rest.Config { return cluster.Config }

func sleepMS(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }
