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
// with polling only, both programs every 5 s. Each iteration walks a new
// tag; the figures are medians over the iterations.
func BenchmarkLoop(b *testing.B) {
	for _, c := range []struct {
		name     string
		webhooks bool
		interval time.Duration
	}{{"webhooks", true, time.Hour}, {"polling-5s", false, 5 * time.Second}} {
		b.Run(c.name, func(b *testing.B) {
			f := startFleet(b, c.webhooks, c.interval)
			fig := figures{}
			b.ResetTimer()
			for i := range b.N {
				tm, err := f.Walk(b.Context(), "1.1."+strconv.Itoa(i+1), 2*time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				fig.add("commit-s", tm.Commit.Seconds())
				fig.add("dev-rolled-out-s", tm.DevRolledOut.Seconds())
				fig.add("merge-and-prod-rolled-out-s", (tm.ProdRolledOut - tm.DevRolledOut).Seconds())
			}
			b.StopTimer()
			fig.report(b)
		})
	}
}
