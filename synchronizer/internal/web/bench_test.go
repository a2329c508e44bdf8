package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"driftless.dev/shared/webauth"
	"driftless.dev/synchronizer/internal/inventory"
)

// thousand is 800 ConfigMaps, 100 Services and 100 Deployments of one
// Pod each, in one namespace: the fleet the README's figures use.
func thousand(ns string) map[string]string {
	var b strings.Builder
	for i := range 800 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%03d, namespace: %s}\ndata: {v: \"%d\"}\n---\n", i, ns, i)
	}
	for i := range 100 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: svc-%03d, namespace: %s}\nspec: {selector: {app: app-%03d}, ports: [{port: 80}]}\n---\n", i, ns, i)
		fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%03d, namespace: %s}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: app-%03d}}\n  template:\n    metadata: {labels: {app: app-%03d}}\n    spec: {containers: [{name: app, image: \"registry.example.com/app:1.0.%d\"}]}\n---\n", i, ns, i, i, i)
	}
	return map[string]string{"app/all.yaml": b.String()}
}

// BenchmarkPages1000 measures the server time of each page (and the
// objects API) for 1,000 applied objects and their 100 live Pods and
// ReplicaSets, against the real test cluster: authorization (cached by
// webauth for a few seconds, as between a user's clicks), the views'
// reads (the parent ConfigMap, one LIST of ReplicaSets and one of Pods)
// and rendering.
//
//	cd synchronizer && GOWORK=off go test -run '^$' -bench 'Pages1000/(ui|api_v1_objects)' -benchtime 20x ./internal/web/
//
// The whole-set diff (api_v1_diff) is diff.Compute over every object: a
// server-side dry run of each and a read of each live copy, seconds for
// 1,000; measure it with -bench Pages1000/api_v1_diff$ -benchtime 3x.
func BenchmarkPages1000(b *testing.B) {
	f := newFixture(b, thousand, 10)
	ctx := context.Background()
	if res := f.rec.Pass(ctx); res.Err != nil {
		b.Fatal(res.Err)
	}
	if st := f.rec.Status(); st.Objects != 1000 || st.Phase == inventory.Stalled {
		b.Fatalf("status after the first pass: %+v", st)
	}
	f.until("100 Pods", func() bool {
		l, err := f.cs.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 100
	})
	for _, p := range []string{"/ui/", "/ui/objects", "/api/v1/objects", "/ui/objects?q=app-042", "/ui/history",
		"/ui/diff?kind=ConfigMap&namespace=" + f.ns + "&name=cm-001", "/api/v1/diff"} {
		b.Run(strings.NewReplacer("/", "_", "?", "_", "&", "_", "=", "_").Replace(strings.TrimPrefix(p, "/")), func(b *testing.B) {
			req := httptest.NewRequest("GET", p, nil)
			if strings.HasPrefix(p, "/ui/") {
				req.AddCookie(&http.Cookie{Name: webauth.CookieName, Value: f.viewer})
			} else {
				req.Header.Set("Authorization", "Bearer "+f.viewer)
			}
			var size int
			for b.Loop() {
				w := httptest.NewRecorder()
				f.h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: %d %s", p, w.Code, w.Body.String())
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size)/1024, "KiB/page")
		})
	}
}
