package apply_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/synchronizer/internal/apply"
)

// inventory applies set and returns the plan: its members are what a
// pass records, its keys what it keeps.
func inventory(t testing.TB, e *apply.Engine, set string) *apply.Plan {
	t.Helper()
	plan, err := e.Plan(t.Context(), objs(t, set), apply.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Execute(t.Context(), plan, apply.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	return plan
}

func prune(t testing.TB, e *apply.Engine, members []apply.Member, keep *apply.Plan) (apply.PruneReport, error) {
	t.Helper()
	return e.Prune(t.Context(), e.PlanPrune(t.Context(), members, keep.Keys()))
}

func cms(ns string, names ...string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + n + ", namespace: " + ns + "}\n---\n")
	}
	return b.String()
}

func TestPruneWhatLeftGit(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{MaxPrune: 2})
	ctx := t.Context()
	all := inventory(t, e, cms(ns, "a", "b", "c", "d")+`apiVersion: v1
kind: ConfigMap
metadata: {name: keep-me, namespace: `+ns+`, annotations: {driftless.dev/prune: disabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: `+ns+`-extra}
`)
	// Someone else's ConfigMap without the label is never touched.
	dyn.Resource(cmGVR).Namespace(ns).Create(ctx, objs(t, cms(ns, "foreign"))[0], metav1.CreateOptions{})

	// Three to delete with a limit of two: refused, nothing deleted.
	keep := inventory(t, e, cms(ns, "a"))
	_, err := prune(t, e, all.Members(), keep)
	var limit *apply.ErrPruneLimit
	if !errors.As(err, &limit) || limit.Count != 3 {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := get(t, dyn, cmGVR, ns, "b"); err != nil {
		t.Fatalf("deleted despite the limit: %v", err)
	}
	keep = inventory(t, e, cms(ns, "a", "b"))
	rep, err := prune(t, e, all.Members(), keep)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]apply.Action{}
	for _, r := range rep.Results {
		got[r.Object.Name] = r.Action
	}
	want := map[string]apply.Action{"c": apply.Pruned, "d": apply.Pruned, "keep-me": apply.Orphaned, ns + "-extra": apply.Orphaned}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("prune results %v, want %v", got, want)
		}
	}
	for _, name := range []string{"c", "d"} {
		if _, err := get(t, dyn, cmGVR, ns, name); !apierrors.IsNotFound(err) {
			t.Fatalf("%s not pruned: %v", name, err)
		}
	}
	for _, name := range []string{"a", "b", "keep-me", "foreign"} {
		if _, err := get(t, dyn, cmGVR, ns, name); err != nil {
			t.Fatalf("%s was deleted: %v", name, err)
		}
	}
	kept, _ := get(t, dyn, cmGVR, ns, "keep-me")
	if _, ok := kept.GetLabels()[apply.PartOfLabel]; ok {
		t.Fatal("an opted-out object is still a member")
	}
	if _, err := get(t, dyn, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", ns+"-extra"); err != nil {
		t.Fatalf("a Namespace was pruned without opt-in: %v", err)
	}
	if len(rep.Remaining) != 0 {
		t.Fatalf("remaining kinds: %v", rep.Remaining)
	}
}

// A delete the API server refuses keeps the object a member, so the next
// pass retries it: nothing is orphaned.
func TestRejectedDeleteIsRetried(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
	ctx := t.Context()
	all := inventory(t, e, cms(ns, "stay", "go"))
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	policy := objs(t, `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: `+ns+`-no-delete}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: ["v1"], operations: ["DELETE"], resources: ["configmaps"]}]
  validations: [{expression: "oldObject.metadata.namespace != '`+ns+`'", message: "deletes are frozen"}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: `+ns+`-no-delete}
spec: {policyName: `+ns+`-no-delete, validationActions: [Deny]}
`)
	vap := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"}
	vapb := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"}
	if _, err := dyn.Resource(vap).Create(ctx, policy[0], metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(vapb).Create(ctx, policy[1], metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The policy takes effect once the API server has loaded it.
	var rep apply.PruneReport
	var err error
	keep := inventory(t, e, cms(ns, "stay"))
	for i := 0; i < 50; i++ {
		probe := objs(t, cms(ns, "probe"))[0]
		dyn.Resource(cmGVR).Namespace(ns).Create(ctx, probe, metav1.CreateOptions{})
		if derr := dyn.Resource(cmGVR).Namespace(ns).Delete(ctx, "probe", metav1.DeleteOptions{}); derr != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep, err = prune(t, e, all.Members(), keep)
	if err == nil || !strings.Contains(err.Error(), "deletes are frozen") || len(rep.Remaining) != 1 || rep.Results[0].Action != apply.Failed {
		t.Fatalf("rejected delete: %+v %v", rep, err)
	}
	if _, err := get(t, dyn, cmGVR, ns, "go"); err != nil {
		t.Fatal(err)
	}
	cs.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, ns+"-no-delete", metav1.DeleteOptions{})
	for i := 0; i < 50; i++ {
		if rep, err = prune(t, e, append(keep.Members(), rep.Remaining...), keep); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || len(rep.Remaining) != 0 {
		t.Fatalf("retry after the policy went: %+v %v", rep, err)
	}
	if _, err := get(t, dyn, cmGVR, ns, "go"); !apierrors.IsNotFound(err) {
		t.Fatalf("not deleted on retry: %v", err)
	}
	cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, ns+"-no-delete", metav1.DeleteOptions{})
}
