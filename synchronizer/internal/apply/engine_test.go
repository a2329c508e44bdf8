package apply_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
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

// counter counts the API requests a client makes, as the API server
// would see them (through rest.Config.WrapTransport).
type counter struct{ n atomic.Int64 }

func (c *counter) RoundTrip(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.n.Add(1)
		return next.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *counter) Requests() int { return int(c.n.Load()) }

func engine(t testing.TB, opts apply.Options) (*apply.Engine, dynamic.Interface) {
	e, dyn, _ := engineWithConfig(t, cluster.Config, opts)
	return e, dyn
}

func engineWithConfig(t testing.TB, cfg *rest.Config, opts apply.Options) (*apply.Engine, dynamic.Interface, *counter) {
	t.Helper()
	if opts.SetID == "" {
		opts.SetID = "applyset-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-v1"
	}
	if opts.FieldManager == "" {
		opts.FieldManager = apply.FieldManagerFor("test", t.Name())
	}
	c := &counter{}
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = c.RoundTrip
	e, err := apply.New(cfg, opts, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return e, dyn, c
}

// applySet plans and executes a set, as a pass does.
func applySet(t testing.TB, e *apply.Engine, docs string, force bool) (apply.ChangeSet, error) {
	t.Helper()
	plan, err := e.Plan(t.Context(), objs(t, docs), apply.PlanOptions{Force: force})
	if err != nil {
		return apply.ChangeSet{}, err
	}
	return e.Execute(t.Context(), plan, apply.ApplyOptions{})
}

var cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func get(t testing.TB, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	return dyn.Resource(gvr).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
}

func actions(rep apply.ChangeSet) map[string]apply.Action {
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
	e, dyn, reqs := engineWithConfig(t, cluster.Config, apply.Options{})
	rep, err := applySet(t, e, app(ns, "hello", "web:1.0.0"), false)
	if err != nil {
		t.Fatal(err)
	}
	if a := actions(rep); a["ConfigMap/settings"] != apply.Created || a["Deployment/web"] != apply.Created || a["Service/web"] != apply.Created {
		t.Fatalf("first apply: %v", a)
	}
	if rep.Changed() != 3 {
		t.Fatalf("changed %d, want 3", rep.Changed())
	}
	cm, err := get(t, dyn, cmGVR, ns, "settings")
	if err != nil || cm.GetLabels()[apply.PartOfLabel] == "" {
		t.Fatalf("applied ConfigMap: %v %v", cm, err)
	}
	if mf := cm.GetManagedFields(); len(mf) != 1 || mf[0].Manager != e.FieldManager() || mf[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Fatalf("field managers: %+v", mf)
	}
	// Unchanged: no request at all.
	before := reqs.Requests()
	rep, err = applySet(t, e, app(ns, "hello", "web:1.0.0"), false)
	if err != nil || rep.Count(apply.Unchanged) != 3 || reqs.Requests() != before || rep.Changed() != 0 {
		t.Fatalf("no-op pass: %+v %v, %d requests", rep, err, reqs.Requests()-before)
	}
	// One change: one dry run and one apply.
	rep, err = applySet(t, e, app(ns, "hello", "web:1.1.0"), false)
	if err != nil {
		t.Fatal(err)
	}
	if a := actions(rep); a["Deployment/web"] != apply.Configured || a["ConfigMap/settings"] != apply.Unchanged || reqs.Requests()-before != 2 {
		t.Fatalf("one change: %v, %d requests", a, reqs.Requests()-before)
	}
	d, _ := get(t, dyn, schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, ns, "web")
	if img, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers"); img[0].(map[string]any)["image"] != "web:1.1.0" {
		t.Fatalf("image not updated: %v", img)
	}
	// Forced (the resync): everything written, and reported as changing
	// nothing where nothing changed: a resync is not news.
	rep, err = applySet(t, e, app(ns, "hello", "web:1.1.0"), true)
	if a := actions(rep); err != nil || a["ConfigMap/settings"] != apply.Unchanged || a["Service/web"] != apply.Unchanged {
		t.Fatalf("forced pass: %v %v", actions(rep), err)
	}
	if rep.Count(apply.Configured) > 1 {
		t.Fatalf("a forced pass with no change reported %d configured", rep.Count(apply.Configured))
	}
}

func TestBadSetAppliesNothing(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
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
			_, err := applySet(t, e, good+"\n---\n"+c.doc, false)
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
	rep, err := applySet(t, e, set, false)
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
	if _, err := applySet(t, e, dep("api", ""), false); err != nil {
		t.Fatal(err)
	}
	depGVR := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	before, _ := get(t, dyn, depGVR, ns, "api")
	_, err := applySet(t, e, dep("api2", ""), false)
	if err == nil || !strings.Contains(err.Error(), "spec.selector: field is immutable") || !strings.Contains(err.Error(), apply.RecreateAnnotation+": enabled") {
		t.Fatalf("immutable change without opt-in: %v", err)
	}
	rep, err := applySet(t, e, dep("api2", ", annotations: {"+apply.RecreateAnnotation+": enabled}"), false)
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
	_, err := applySet(t, e, set, false)
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
	rep, err := applySet(t, e, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine}\n", false)
	if err != nil || rep.Results[0].Object.Namespace != ns {
		t.Fatalf("object without a namespace goes to the tenant's: %+v %v", rep, err)
	}
}

// waitDrift waits for the tracker to see n drifted objects.
func waitDrift(t *testing.T, e *apply.Engine, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for e.Tracker().Drifted() < n {
		select {
		case <-e.Tracker().Notify():
		case <-deadline:
			t.Fatalf("%d drifted objects seen within 10s, want %d", e.Tracker().Drifted(), n)
		}
	}
}

// waitSeen edits the managed ConfigMap name, a canary: the watch
// delivers events of one resource in order, so once the canary's edit
// shows as drift, every edit made before it has been judged.
func waitSeen(t *testing.T, e *apply.Engine, dyn dynamic.Interface, ns, name, marker string) {
	t.Helper()
	c, err := get(t, dyn, cmGVR, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	c.Object["data"] = map[string]any{"canary": marker}
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Update(t.Context(), c, metav1.UpdateOptions{FieldManager: "canary"}); err != nil {
		t.Fatal(err)
	}
}

func TestDriftIsHealed(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
	ctx := t.Context()
	set := app(ns, "hello", "web:1") + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: canary, namespace: " + ns + "}\ndata: {canary: \"0\"}\n"
	if _, err := applySet(t, e, set, false); err != nil {
		t.Fatal(err)
	}
	e.Tracker().Watch(ctx)
	cm, _ := get(t, dyn, cmGVR, ns, "settings")
	cm.Object["data"] = map[string]any{"greeting": "hacked"}
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitDrift(t, e, 1)
	if _, err := e.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("edit healed in %v", time.Since(start))
	cm, _ = get(t, dyn, cmGVR, ns, "settings")
	if cm.Object["data"].(map[string]any)["greeting"] != "hello" {
		t.Fatalf("not healed: %v", cm.Object["data"])
	}
	// A foreign label on a managed object is not drift: after it, the
	// canary's edit is the only drift the watch reports.
	cm.SetLabels(map[string]string{"team": "x", apply.PartOfLabel: cm.GetLabels()[apply.PartOfLabel]})
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "other"}); err != nil {
		t.Fatal(err)
	}
	waitSeen(t, e, dyn, ns, "canary", "1")
	waitDrift(t, e, 1)
	res, err := e.Heal(ctx)
	if err != nil || len(res) != 1 || res[0].Object.Name != "canary" {
		t.Fatalf("an added label counted as drift: healed %+v %v", res, err)
	}
	// Deleted: re-created.
	if err := dyn.Resource(cmGVR).Namespace(ns).Delete(ctx, "settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDrift(t, e, 1)
	if res, err := e.Heal(ctx); err != nil || res[0].Action != apply.Created {
		t.Fatalf("heal a deletion: %v %v", res, err)
	}
	if _, err := get(t, dyn, cmGVR, ns, "settings"); err != nil {
		t.Fatal(err)
	}
}
