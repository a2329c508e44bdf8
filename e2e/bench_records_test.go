package e2e

import (
	"fmt"
	"testing"
	"time"

	"driftless.dev/shared/records"
)

// BenchmarkRecordsAndPromotion measures the deployment records and the
// gate on the real programs, two real clusters and a real Git server: per
// dev commit, the record write latency (a transition to its line in Git,
// the synchronizer's own histogram), how long after its soak time ended
// the gate promoted it, and the commit's way to healthy in prod.
//
//	cd e2e && GOWORK=off go test -run '^$' -bench RecordsAndPromotion -benchtime 5x .
func BenchmarkRecordsAndPromotion(b *testing.B) {
	const soak = time.Second
	s := newRecordsSetup(b, "dev", "prod")
	ctx := b.Context()
	src := writeTree(b, map[string]string{
		"apps/web/kustomization.yaml":      "resources: [deployment.yaml]\n",
		"apps/web/deployment.yaml":         fmt.Sprintf(webDeployment, "registry.local/team/web:1.0.0"),
		"clusters/dev/kustomization.yaml":  "resources: [../../apps/web]\n",
		"clusters/prod/kustomization.yaml": "resources: [../../apps/web]\n",
		"policies/promotion.yaml": fmt.Sprintf("apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: dev-to-prod}\n"+
			"spec: {from: dev, to: prod, healthyIn: [dev], soak: %s}\n", soak),
	})
	seed, err := s.git.Seed(ctx, "fleet", "dev", src, "seed")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.git.Git(ctx, "fleet", "branch", "prod", "dev"); err != nil {
		b.Fatal(err)
	}
	_, devListen := s.synchronizer(b, "dev", "dev")
	_, prodListen := s.synchronizer(b, "prod", "prod")
	s.automator(b, "dev", "--promotion-targets", "prod", "--promotion-interval", "1h")
	until(b, 60*time.Second, "the seed healthy in prod", func() bool {
		_, ok := s.find(b, seed, records.Healthy, "prod")
		return ok
	})
	var afterSoak, toProd time.Duration
	b.ResetTimer()
	for i := range b.N {
		tag := fmt.Sprintf("1.%d.0", i+1)
		pushed := time.Now()
		x := s.commit(b, "dev", "Update registry.local/team/web to "+tag+"\n\nDriftless-Image: registry.local/team/web:"+tag+"\n",
			map[string]string{"apps/web/deployment.yaml": fmt.Sprintf(webDeployment, "registry.local/team/web:"+tag)})
		var promoted, healthy records.Record
		until(b, 60*time.Second, "the promotion of "+tag, func() bool {
			var ok bool
			promoted, ok = s.find(b, x, records.Promoted, "")
			return ok
		})
		healthy, _ = s.find(b, x, records.Healthy, "dev")
		until(b, 60*time.Second, tag+" healthy in prod", func() bool {
			_, ok := s.find(b, promoted.Commit, records.Healthy, "prod")
			return ok
		})
		toProd += time.Since(pushed)
		afterSoak += promoted.Time.Sub(healthy.Time.Add(soak))
	}
	b.StopTimer()
	var written, sum float64
	for _, l := range []string{devListen, prodListen} {
		sum += metricValue(b, "http://"+l+"/metrics", "driftless_synchronizer_record_latency_seconds_sum")
		written += metricValue(b, "http://"+l+"/metrics", "driftless_synchronizer_record_latency_seconds_count")
	}
	b.ReportMetric(sum/written*1000, "record-ms")
	b.ReportMetric(float64(afterSoak.Milliseconds())/float64(b.N), "promoted-after-soak-ms")
	b.ReportMetric(toProd.Seconds()/float64(b.N), "commit-to-prod-healthy-s")
}
