package webauth_test

import (
	"errors"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/testenv"
	"driftless.dev/shared/webauth"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(testenv.MainCluster(m, &cluster)) }

// A ServiceAccount's token is checked by the real API server: allowed
// where RBAC allows, 403 where it does not, 401 for a token the cluster
// does not know.
func TestTokensAreReviewedByTheCluster(t *testing.T) {
	ctx := t.Context()
	ns := cluster.Namespace(t)
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	for _, sa := range []string{"viewer", "stranger"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "view-status"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"driftless"}, Verbs: []string{"get"}}}}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "view-status"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "view-status"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "viewer", Namespace: ns}}}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		cfg, err := cluster.ServiceAccountConfig(ctx, ns, sa, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.BearerToken
	}
	a := webauth.New(dynamic.NewForConfigOrDie(cluster.Config))
	view := webauth.Attributes{Verb: "get", Resource: "configmaps", Namespace: ns, Name: "driftless"}
	act := webauth.Attributes{Verb: "update", Resource: "configmaps", Namespace: ns, Name: "driftless"}
	viewer := token("viewer")
	u, err := a.Check(ctx, viewer, view)
	if err != nil || u.Name != "system:serviceaccount:"+ns+":viewer" {
		t.Fatalf("viewer viewing: %+v %v", u, err)
	}
	// RBAC is consulted per verb: viewing does not grant acting.
	if _, err := a.Check(ctx, viewer, act); !errors.Is(err, webauth.ErrForbidden) || webauth.Status(err) != 403 {
		t.Fatalf("viewer acting: %v", err)
	}
	if _, err := a.Check(ctx, token("stranger"), view); !errors.Is(err, webauth.ErrForbidden) {
		t.Fatalf("stranger viewing: %v", err)
	}
	if _, err := a.Check(ctx, "not-a-token", view); !errors.Is(err, webauth.ErrUnauthorized) || webauth.Status(err) != 401 {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := a.Check(ctx, "", view); webauth.Status(err) != 401 {
		t.Fatalf("no token: %v", err)
	}
}
