package apply_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"driftless.dev/synchronizer/internal/apply"
)

var nsGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// A commit with a new Namespace and an object in it that the API server
// rejects leaves nothing behind: the objects are validated in a stand-in
// namespace before the Namespace is written, and the stand-in is gone.
func TestNewNamespaceWithRejectedObjectWritesNothing(t *testing.T) {
	base := cluster.Namespace(t)
	cases := map[string]struct{ obj, want string }{
		"negative replicas": {`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: -1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}`, "spec.replicas: Invalid value: -1"},
		"ConfigMap over 1 MiB": {`apiVersion: v1
kind: ConfigMap
metadata: {name: big, namespace: NS}
data: {blob: "` + strings.Repeat("x", 2<<20) + `"}`, "ConfigMap NS/big"},
		"invalid port": {`apiVersion: v1
kind: Service
metadata: {name: svc, namespace: NS}
spec: {ports: [{port: 99999}]}`, "spec.ports[0].port: Invalid value: 99999"},
		"bad RoleBinding": {`apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb, namespace: NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Nope, name: x}
subjects: []`, "roleRef.kind"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e, dyn := engine(t, apply.Options{})
			ns := base + "-" + strings.ReplaceAll(strings.ToLower(strings.ReplaceAll(name, " ", "-")), "mib", "m")
			set := "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + ns + ", labels: {team: a}}\n---\n" +
				"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine, namespace: " + ns + "}\n---\n" + strings.ReplaceAll(c.obj, "NS", ns)
			_, err := applySet(t, e, set, false)
			var ve *apply.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), strings.ReplaceAll(c.want, "NS", ns)) || !strings.Contains(err.Error(), "nothing applied") {
				t.Fatalf("got %v\nwant a ValidationError naming %q", err, c.want)
			}
			if strings.Contains(err.Error(), "driftless-dry-run") {
				t.Fatalf("the message names the stand-in namespace: %v", err)
			}
			if _, err := dyn.Resource(nsGVR).Get(t.Context(), ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Fatalf("the Namespace of a refused commit exists: %v", err)
			}
			assertNoStandIn(t)
		})
	}
}

// assertNoStandIn waits for the stand-in namespaces to be gone (a
// namespace takes a moment to finish terminating).
func assertNoStandIn(t *testing.T) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := cs.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{LabelSelector: apply.StandInLabel + "=true"})
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, n := range l.Items {
			if n.DeletionTimestamp == nil {
				live++
			}
		}
		if live == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d stand-in namespaces left", live)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The good case of the same shape applies, Namespace first.
func TestNewNamespaceWithValidObjectsApplies(t *testing.T) {
	ns := cluster.Namespace(t) + "-new"
	e, dyn := engine(t, apply.Options{})
	rep, err := applySet(t, e, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n---\n"+cms(ns, "a"), false)
	if err != nil || actions(rep)["Namespace/"+ns] != apply.Created || actions(rep)["ConfigMap/a"] != apply.Created {
		t.Fatalf("%v %v", actions(rep), err)
	}
	if _, err := get(t, dyn, cmGVR, ns, "a"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dyn.Resource(nsGVR).Delete(t.Context(), ns, metav1.DeleteOptions{}) })
}

// A CRD, a Namespace and a custom resource the new schema rejects: the CR
// can only be checked once its CRD exists, so the CRD and Namespace this
// pass created are deleted again, and the error says so.
func TestRejectedCustomResourceRollsBack(t *testing.T) {
	e, dyn := engine(t, apply.Options{})
	ns := cluster.Namespace(t)
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
          spec: {type: object, properties: {size: {type: integer, maximum: 5}}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ` + ns + `-cr}
---
apiVersion: ` + group + `/v1
kind: Widget
metadata: {name: w, namespace: ` + ns + `-cr}
spec: {size: 30}
`
	_, err := applySet(t, e, set, false)
	var ve *apply.ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "Widget."+group+" "+ns+"-cr/w") || len(ve.RolledBack) != 2 {
		t.Fatalf("got %v (rolled back %v)", err, ve)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{crds, "widgets." + group}, {nsGVR, ns + "-cr"}} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			o, err := dyn.Resource(c.gvr).Get(t.Context(), c.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && o.GetDeletionTimestamp() != nil) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s still there after the rollback: %v", c.gvr.Resource, c.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// Prune considers only what this synchronizer applied: a Namespace
// someone else labelled with the set's id is not deleted, and an opt-in
// added to a live object (not declared in Git) does not make a protected
// object prunable.
func TestPruneOnlyWhatWasApplied(t *testing.T) {
	ns := cluster.Namespace(t)
	e, dyn := engine(t, apply.Options{})
	ctx := t.Context()
	setID := "applyset-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-v1"
	all := inventory(t, e, cms(ns, "a", "b")+"apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"-kept}\n")
	t.Cleanup(func() { dyn.Resource(nsGVR).Delete(ctx, ns+"-kept", metav1.DeleteOptions{}) })
	// A victim someone who may only patch Namespaces labels into the set.
	victim := ns + "-victim"
	if _, err := dyn.Resource(nsGVR).Create(ctx, objs(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+victim+"}")[0], metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dyn.Resource(nsGVR).Delete(ctx, victim, metav1.DeleteOptions{}) })
	patch := `{"metadata":{"labels":{"` + apply.PartOfLabel + `":"` + setID + `"},"annotations":{"` + apply.PruneAnnotation + `":"enabled"}}}`
	for _, n := range []string{victim, ns + "-kept"} {
		if _, err := dyn.Resource(nsGVR).Patch(ctx, n, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Even listed in the inventory, an object without this
	// synchronizer's field manager is not its to delete.
	members := append(all.Members(), apply.Member{Key: apply.Key{Kind: "Namespace", Name: victim}, Prune: "enabled"})
	keep := inventory(t, e, cms(ns, "a"))
	rep, err := prune(t, e, members, keep)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]apply.Action{}
	for _, r := range rep.Results {
		got[r.Object.Name] = r.Action
	}
	if got["b"] != apply.Pruned || got[ns+"-kept"] != apply.Orphaned || len(got) != 2 {
		t.Fatalf("prune results %v", got)
	}
	for _, n := range []string{victim, ns + "-kept"} {
		if o, err := dyn.Resource(nsGVR).Get(ctx, n, metav1.GetOptions{}); err != nil || o.GetDeletionTimestamp() != nil {
			t.Fatalf("Namespace %s was deleted: %v", n, err)
		}
	}
}

// Two synchronizers never take each other's fields: the second is told
// who owns them, and the object keeps the first one's value. A person's
// kubectl edit is taken over, as drift.
func TestAnotherSynchronizersFieldsAreNotTaken(t *testing.T) {
	ns := cluster.Namespace(t)
	platform, dyn := engine(t, apply.Options{FieldManager: apply.FieldManagerFor("driftless-system", "platform"), SetID: "applyset-platform-v1"})
	tenant, _ := engine(t, apply.Options{FieldManager: apply.FieldManagerFor(ns, "driftless"), SetID: "applyset-tenant-v1"})
	policy := func(port string) string {
		return `apiVersion: v1
kind: ConfigMap
metadata: {name: netpol, namespace: ` + ns + `}
data: {allow: "` + port + `"}
`
	}
	if _, err := applySet(t, platform, policy("443"), false); err != nil {
		t.Fatal(err)
	}
	_, err := applySet(t, tenant, policy("0-65535"), false)
	var ce *apply.ConflictError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), apply.FieldManagerFor("driftless-system", "platform")) || !strings.Contains(err.Error(), ".data.allow") {
		t.Fatalf("got %v, want a ConflictError naming the platform synchronizer and the field", err)
	}
	cm, _ := get(t, dyn, cmGVR, ns, "netpol")
	if cm.Object["data"].(map[string]any)["allow"] != "443" {
		t.Fatalf("the tenant's commit changed the platform's object: %v", cm.Object["data"])
	}
	// A person's edit is not a synchronizer's: taken over.
	cm.Object["data"] = map[string]any{"allow": "80"}
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Update(t.Context(), cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := applySet(t, platform, policy("443"), true); err != nil {
		t.Fatalf("a kubectl edit blocked the owner: %v", err)
	}
}

// Applying as a named ServiceAccount: an object outside its rights is
// refused by the dry run, before anything is written.
func TestImpersonationConfinesToTheServiceAccountsRights(t *testing.T) {
	ns := cluster.Namespace(t)
	ctx := t.Context()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "configmaps"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "configmaps"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "configmaps"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":deployer"}
	e, dyn, _ := engineWithConfig(t, cfg, apply.Options{})
	set := cms(ns, "allowed") + "apiVersion: v1\nkind: Secret\nmetadata: {name: not-allowed, namespace: " + ns + "}\nstringData: {k: v}\n"
	_, err := applySet(t, e, set, false)
	// The API server's error stays reachable through the ValidationError.
	if err == nil || !strings.Contains(err.Error(), "Secret "+ns+"/not-allowed") || !apierrors.IsForbidden(err) {
		t.Fatalf("got %v, want the Secret refused as forbidden", err)
	}
	if _, err := get(t, dyn, cmGVR, ns, "allowed"); !apierrors.IsNotFound(err) {
		t.Fatalf("part of a refused set was written: %v", err)
	}
	if _, err := applySet(t, e, cms(ns, "allowed"), false); err != nil {
		t.Fatalf("within its rights: %v", err)
	}
}

// The synchronizer's own status ConfigMap is never part of a set: a
// commit cannot rewrite what the synchronizer reads about itself.
func TestReservedObjectsAreRefused(t *testing.T) {
	ns := cluster.Namespace(t)
	e, _ := engine(t, apply.Options{Reserved: []apply.Key{{Kind: "ConfigMap", Namespace: ns, Name: "driftless"}}})
	_, err := applySet(t, e, cms(ns, "driftless"), false)
	if err == nil || !strings.Contains(err.Error(), "never manages itself") {
		t.Fatalf("got %v", err)
	}
}
