package web_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"driftless.dev/shared/webauth"
)

// BenchmarkPages1000 measures the server time of each page (and the
// policies API) for 1,000 policies of 20 tags each, after a real pass
// (which committed 1,000 bumps) and a real plan (which listed the 19
// tags each policy passed over), against the real registry, Git server
// and test cluster: authorization (cached by webauth for a few seconds,
// as between a user's clicks), the view (the record of the pass and the
// plan, the last commit per policy from the clone's log, the markers of
// the branch) and rendering.
//
//	cd automator && GOWORK=off go test -run '^$' -bench Pages1000 -benchtime 20x ./internal/web/
func BenchmarkPages1000(b *testing.B) {
	const n, tags = 1000, 20
	start := time.Now()
	var policies, manifest strings.Builder
	for i := range n {
		fmt.Fprintf(&policies, "---\napiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app%04d, namespace: apps}\nspec:\n  image: {{.}}/team/app%04d\n  policy: {semver: {range: \"<9.0.0\"}}\n", i, i)
		fmt.Fprintf(&manifest, "- image: {{.}}/team/app%04d:0.0.1 # {\"$imagepolicy\": \"apps:app%04d\"}\n", i, i)
	}
	f := newFixture(b, options{policies: policies.String(), manifests: manifest.String(), noLoop: true, seed: func(f *fixture) error {
		var g errgroup.Group
		g.SetLimit(8)
		for i := range n {
			g.Go(func() error { return f.reg.SeedSemverTags(b.Context(), fmt.Sprintf("team/app%04d", i), tags) })
		}
		return g.Wait()
	}})
	b.Logf("setup %s", time.Since(start))
	ctx := b.Context()
	t0 := time.Now()
	res, err := f.auto.Run(ctx, nil)
	f.rec.Observe(res, err, time.Since(t0).Seconds())
	if err != nil || len(res.Changes) != n {
		b.Fatalf("the pass: %v, %d changes", err, len(res.Changes))
	}
	if a := f.post("/api/v1/plan", f.actor); a.Code != http.StatusOK {
		b.Fatalf("plan: %d %s", a.Code, a.Body)
	}
	for _, p := range []string{"/ui/", "/api/v1/policies", "/ui/?q=app0042", "/ui/policies/apps:app0042", "/ui/fleet", "/api/v1/fleet", "/ui/history"} {
		b.Run(strings.NewReplacer("/", "_", "?", "_", "=", "_", ":", "_").Replace(strings.TrimPrefix(p, "/")), func(b *testing.B) {
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
