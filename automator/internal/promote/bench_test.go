package promote_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
)

// BenchmarkGatePass is one evaluation of a gate and the revert rule when
// the notes hold the records of 2,000 commits (six lines each, two
// clusters): "cold" reads and parses every note (a new automator),
// "warm" finds the notes unchanged (every pass after).
//
//	cd automator && GOWORK=off go test -run '^$' -bench GatePass ./internal/promote/
func BenchmarkGatePass(b *testing.B) {
	f := newFleet(b, fmt.Sprintf(gate, ""))
	x := f.commit("dev", map[string]string{"apps/web/deploy.yaml": "image: web:1.1.0\n"}, "bump", "automator")
	lines := map[plumbing.Hash][]string{}
	for i := range 2000 {
		c := plumbing.NewHash(fmt.Sprintf("%040x", i+1))
		for _, cl := range []string{"dev", "prod"} {
			at := t0.Add(time.Duration(i) * time.Minute)
			lines[c] = append(lines[c],
				records.Record{Time: at, Event: records.Applied, Cluster: cl, Ref: cl, Digest: "sha256:" + fmt.Sprintf("%064x", i), Images: []string{"registry.local/team/web:1.0.0"}}.Format(),
				records.Record{Time: at.Add(time.Second), Event: records.Healthy, Cluster: cl, Ref: cl}.Format(),
				records.Record{Time: at.Add(2 * time.Second), Event: records.Degraded, Cluster: cl, Ref: cl, Message: "x"}.Format())
		}
	}
	lines[plumbing.NewHash(x)] = []string{records.Record{Time: t0.Add(3000 * time.Minute), Event: records.Healthy, Cluster: "dev"}.Format()}
	if _, err := f.notes.Append(b.Context(), lines, gitrepo.AppendOptions{}); err != nil {
		b.Fatal(err)
	}
	now := func() time.Time { return t0.Add(3100 * time.Minute) }
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			r := f.runner(promote.Config{Now: now})
			b.StartTimer()
			if g := only(b, pass(b, r, true)); g.State != promote.Ready {
				b.Fatalf("%+v", g)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		r := f.runner(promote.Config{Now: now})
		pass(b, r, true)
		for b.Loop() {
			if g := only(b, pass(b, r, true)); g.State != promote.Ready {
				b.Fatalf("%+v", g)
			}
		}
	})
}
