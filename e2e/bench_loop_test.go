package e2e

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkLoop measures the whole loop: a tag pushed to the registry →
// the automator's commit → applied and rolled out in dev, then (after an
// immediate merge of dev into prod) rolled out in prod. With webhooks (the
// registry notifies the automator, the Git server the synchronizers) and
// with polling only, both programs every 5 s.
func BenchmarkLoop(b *testing.B) {
	for _, c := range []struct {
		name     string
		webhooks bool
		interval time.Duration
	}{{"webhooks", true, time.Hour}, {"polling-5s", false, 5 * time.Second}} {
		b.Run(c.name, func(b *testing.B) {
			f := startFleet(b, c.webhooks, c.interval)
			b.ResetTimer()
			for i := range b.N {
				tm, err := f.Walk(b.Context(), "1.1."+strconv.Itoa(i+1), 2*time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(tm.Commit.Seconds(), "commit-s")
				b.ReportMetric(tm.DevRolledOut.Seconds(), "dev-rolled-out-s")
				b.ReportMetric((tm.ProdRolledOut - tm.DevRolledOut).Seconds(), "merge-and-prod-rolled-out-s")
			}
		})
	}
}
