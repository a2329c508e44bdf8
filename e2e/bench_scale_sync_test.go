package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkSynchronizerScale is the synchronizer's growth curve: 1,000,
// 5,000 and 10,000 objects from Git (80 % ConfigMaps, 10 % Services, 10 %
// Deployments), 5,000 the largest unless BENCH_SCALE=full. Per size, a
// cluster of its own (so earlier sizes do not weigh on the API server);
// per iteration, everything cold: fresh namespaces, a fresh path in Git,
// a fresh process run as deployed (GOMEMLIMIT from the manifests' memory
// limit, 256Mi). Reported, as medians: the cold apply from process start
// against the raw server-side-apply floor (16 in flight, the mean of a
// run before and one after), a no-op pass and the writes it made (counted
// by the API server), a manual edit healed, peak RSS and peak anonymous
// RSS (heap and stacks, without the binary's pages).
func BenchmarkSynchronizerScale(b *testing.B) {
	for _, n := range pick([]int{1000, 5000}, []int{1000, 5000, 10000}) {
		b.Run("objects="+strconv.Itoa(n), func(b *testing.B) { benchSynchronizerObjects(b, n) })
	}
}

func benchSynchronizerObjects(b *testing.B, n int) {
	a := newApplyBench(b)
	cluster, s, dyn, cs, mkns := a.cluster, a.s, a.dyn, a.cs, a.namespaces(b)
	ctx := b.Context()
	timeout := 5*time.Minute + time.Duration(n)*30*time.Millisecond
	fig := figures{}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		it := strconv.Itoa(i)
		syncNS, path := "sync-"+it, "apps-"+it
		mkns("floor-"+it, "floor2-"+it, syncNS)
		head := s.commit(b, "fleet", map[string]string{
			path + "/kustomization.yaml": "namespace: " + syncNS + "\nresources: [objects.yaml]\n",
			path + "/objects.yaml":       objectsN(syncNS, n),
		})
		floorObjs, floorObjs2 := parseObjects(b, objectsN("floor-"+it, n)), parseObjects(b, objectsN("floor2-"+it, n))
		b.StartTimer()
		floor1 := floorApply(b, dyn, floorObjs)

		listen := freeAddr(b)
		t0 := time.Now()
		p := startEnv(b, []string{"GOMEMLIMIT=" + deployedMemLimit}, "synchronizer",
			s.syncArgs("fleet", cluster.Kubeconfig, listen, "--path", path, "--max-prune", "0", "--name", "bench-"+it)...)
		stopSampling := make(chan struct{})
		anon := sampleAnon(p.cmd.Process.Pid, stopSampling)
		until(b, timeout, "the cold apply", func() bool {
			return getStatus(b, listen).Status.LastAppliedRevision == "main@sha1:"+head
		})
		cold := time.Since(t0)
		floor2 := floorApply(b, dyn, floorObjs2)
		floor := (floor1 + floor2) / 2
		fig.add("floor-s", floor.Seconds())
		fig.add("cold-s", cold.Seconds())
		fig.add("cold/floor", cold.Seconds()/floor.Seconds())
		if got := getStatus(b, listen).Status.Objects; got != n {
			b.Fatalf("%d objects applied, want %d", got, n)
		}

		// A no-op pass, once the watches have listed what they follow.
		until(b, time.Minute, "the watches listed", func() bool { return watchesListed(b, listen) })
		n0, s0 := passCount(b, listen)
		m0 := mutating(b, cs)
		push(b, listen)
		until(b, time.Minute, "a no-op pass", func() bool { c, _ := passCount(b, listen); return c > n0 })
		_, s1 := passCount(b, listen)
		fig.add("noop-s", s1-s0)
		fig.add("noop-writes", float64(mutating(b, cs)-m0))

		// Drift: a manual edit, healed.
		c, err := cs.CoreV1().ConfigMaps(syncNS).Get(ctx, "cm-00042", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		c.Data["key"] = "edited by hand"
		if _, err := cs.CoreV1().ConfigMaps(syncNS).Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		until(b, 30*time.Second, "drift healed", func() bool { return cmData(cs, syncNS, "cm-00042") == "value-42" })
		fig.add("heal-s", time.Since(t0).Seconds())

		fig.add("peak-RSS-MiB", procStatus(p.cmd.Process.Pid, "VmHWM"))
		close(stopSampling)
		fig.add("peak-anon-MiB", anon())
		p.stop()
		for _, l := range strings.Split(p.Output(), "\n") {
			if !strings.Contains(l, `"msg":"applied"`) {
				continue
			}
			var entry struct{ Fetch, Build, Plan, Apply float64 }
			if json.Unmarshal([]byte(l), &entry) == nil {
				b.Logf("objects=%d first pass: fetch %.2fs build %.2fs plan %.2fs apply %.2fs", n, entry.Fetch, entry.Build, entry.Plan, entry.Apply)
				fig.add("apply-phase/floor", (entry.Plan+entry.Apply)/floor.Seconds())
				break
			}
		}
	}
	fig.report(b)
}
