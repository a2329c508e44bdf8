package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"driftless.dev/shared/testenv"
)

// objects1000 renders 800 ConfigMaps, 100 Services and 100 Deployments
// (scaled to zero, so the measurement is the apply, not the scheduler).
func objects1000(ns string) string {
	var b strings.Builder
	for i := range 800 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%03d, namespace: %s}\ndata: {key: value-%d, other: \"some text\"}\n---\n", i, ns, i)
	}
	for i := range 100 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: svc-%03d, namespace: %s}\nspec: {selector: {app: app-%03d}, ports: [{port: 80, targetPort: 8080}]}\n---\n", i, ns, i)
		fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%03d, namespace: %s}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: app-%03d}}\n  template:\n    metadata: {labels: {app: app-%03d}}\n    spec: {containers: [{name: app, image: \"registry.example.com/app:1.0.%d\"}]}\n---\n", i, ns, i, i, i)
	}
	return b.String()
}

func parseObjects(t testing.TB, docs string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(d) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

var gvrs = map[string]schema.GroupVersionResource{
	"ConfigMap":  {Version: "v1", Resource: "configmaps"},
	"Service":    {Version: "v1", Resource: "services"},
	"Deployment": {Group: "apps", Version: "v1", Resource: "deployments"},
}

// floorApply is the floor: the same objects as raw server-side-apply
// PATCHes from one Go client, 16 at a time.
func floorApply(t testing.TB, dyn dynamic.Interface, objs []*unstructured.Unstructured) time.Duration {
	start := time.Now()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, o := range objs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := dyn.Resource(gvrs[o.GetKind()]).Namespace(o.GetNamespace()).Apply(context.Background(), o.GetName(), o, metav1.ApplyOptions{FieldManager: "floor", Force: true})
			if err != nil {
				t.Errorf("floor apply %s: %v", o.GetName(), err)
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// mutating sums the API server's count of writes to the benchmark's
// resources (not their status, not Events or Leases).
func mutating(t testing.TB, cs kubernetes.Interface) int {
	return requestsCounted(t, cs, func(l string) bool {
		if !strings.Contains(l, `subresource=""`) {
			return false
		}
		has := func(subs ...string) bool {
			return slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(l, s) })
		}
		return has(`resource="configmaps"`, `resource="services"`, `resource="deployments"`) &&
			has(`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="APPLY"`, `verb="DELETE"`)
	})
}

func passCount(t testing.TB, listen string) (int, float64) {
	line := metric(t, "http://"+listen+"/metrics", `driftless_synchronizer_reconcile_duration_seconds_count{result="unchanged"}`)
	sum := metric(t, "http://"+listen+"/metrics", `driftless_synchronizer_reconcile_duration_seconds_sum{result="unchanged"}`)
	if line == "" {
		return 0, 0
	}
	c, _ := strconv.Atoi(strings.Fields(line)[1])
	s, _ := strconv.ParseFloat(strings.Fields(sum)[1], 64)
	return c, s
}

// procStatus reads one field of /proc/<pid>/status, in MiB.
func procStatus(pid int, field string) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// sampleAnon records the peak of a process's anonymous resident memory
// (its heap and stacks, without the binary's pages) until stop is closed.
func sampleAnon(pid int, stop <-chan struct{}) func() float64 {
	var mu sync.Mutex
	peak := 0.0
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if v := procStatus(pid, "RssAnon"); v > 0 {
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	}()
	return func() float64 { mu.Lock(); defer mu.Unlock(); return peak }
}

// figures collects each iteration's value of every metric and reports
// the median, so one slow iteration on a busy machine does not decide the
// figure, and every iteration counts, not only the last.
type figures map[string][]float64

func (f figures) add(name string, v float64) { f[name] = append(f[name], v) }

func (f figures) report(b *testing.B) {
	for name, vs := range f {
		slices.Sort(vs)
		m := vs[len(vs)/2]
		if len(vs)%2 == 0 {
			m = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
		}
		b.ReportMetric(m, name)
	}
}

// BenchmarkSynchronizer1000 measures, for 1,000 objects from Git: the
// cold apply (synchronizer start to applied) against kubectl apply
// --server-side and the raw server-side-apply floor; a no-op pass (its
// duration and mutating requests); drift healed after a manual edit; a
// one-line commit applied through the Git webhook; and peak RSS. Every
// iteration is cold: fresh namespaces, a fresh path in Git, a fresh
// process with its own status. Figures are medians over the iterations.
// BENCH_KUBECTL=0 leaves out kubectl.
func BenchmarkSynchronizer1000(b *testing.B) {
	a := newApplyBench(b)
	cluster, s, dyn, cs, mkns := a.cluster, a.s, a.dyn, a.cs, a.namespaces(b)
	ctx := b.Context()
	fig := figures{}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		n := strconv.Itoa(i)
		syncNS, path := "sync-"+n, "apps-"+n
		mkns("floor-"+n, "floor2-"+n, "kubectl-"+n, syncNS)
		head := s.commit(b, "fleet", map[string]string{
			path + "/kustomization.yaml": "namespace: " + syncNS + "\nresources: [objects.yaml]\n",
			path + "/objects.yaml":       objects1000(syncNS),
		})
		b.StartTimer()
		// Floor, before the synchronizer's cold apply; measured again
		// after it, and the ratio taken against the mean of the two
		// (on two cores a single floor run varies by ±30 %).
		floor1 := floorApply(b, dyn, parseObjects(b, objects1000("floor-"+n)))

		// kubectl, the push pipeline's tool.
		if os.Getenv("BENCH_KUBECTL") != "0" {
			file := filepath.Join(b.TempDir(), "objects.yaml")
			os.WriteFile(file, []byte(objects1000("kubectl-"+n)), 0o644)
			kubectl := kubectlPath(b)
			start := time.Now()
			if out, err := exec.Command(kubectl, "--kubeconfig", cluster.Kubeconfig, "apply", "--server-side", "-f", file).CombinedOutput(); err != nil {
				b.Fatalf("kubectl apply: %v\n%s", err, out)
			}
			fig.add("kubectl-s", time.Since(start).Seconds())
		}

		// The synchronizer, cold: process start to every object applied.
		listen := freeAddr(b)
		t0 := time.Now()
		p := start(b, "synchronizer", s.syncArgs("fleet", cluster.Kubeconfig, listen, "--path", path, "--max-prune", "0", "--name", "bench-"+n)...)
		stopSampling := make(chan struct{})
		anon := sampleAnon(p.cmd.Process.Pid, stopSampling)
		until(b, 5*time.Minute, "the cold apply", func() bool {
			return getStatus(b, listen).Status.LastAppliedRevision == "main@sha1:"+head
		})
		cold := time.Since(t0)
		floor2 := floorApply(b, dyn, parseObjects(b, objects1000("floor2-"+n)))
		floor := (floor1 + floor2) / 2
		fig.add("floor-s", floor.Seconds())
		fig.add("cold-s", cold.Seconds())
		fig.add("cold/floor", cold.Seconds()/floor.Seconds())
		if n := getStatus(b, listen).Status.Objects; n != 1000 {
			b.Fatalf("%d objects applied", n)
		}

		// A no-op pass, once the watches have listed what they follow.
		until(b, 30*time.Second, "the watches listed", func() bool { return watchesListed(b, listen) })
		n0, s0 := passCount(b, listen)
		m0 := mutating(b, cs)
		push(b, listen)
		until(b, 30*time.Second, "a no-op pass", func() bool { n, _ := passCount(b, listen); return n > n0 })
		_, s1 := passCount(b, listen)
		fig.add("noop-s", s1-s0)
		fig.add("noop-writes", float64(mutating(b, cs)-m0))

		// Drift: a manual edit, healed.
		c, _ := cs.CoreV1().ConfigMaps(syncNS).Get(ctx, "cm-042", metav1.GetOptions{})
		c.Data["key"] = "edited by hand"
		if _, err := cs.CoreV1().ConfigMaps(syncNS).Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		until(b, 30*time.Second, "drift healed", func() bool { return cmData(cs, syncNS, "cm-042") == "value-42" })
		fig.add("drift-s", time.Since(t0).Seconds())

		// A one-line commit through the webhook.
		edited := strings.Replace(objects1000(syncNS), "data: {key: value-7,", "data: {key: changed-7,", 1)
		commit := s.commit(b, "fleet", map[string]string{path + "/objects.yaml": edited})
		t0 = time.Now()
		push(b, listen)
		until(b, 30*time.Second, "the commit applied", func() bool { return cmData(cs, syncNS, "cm-007") == "changed-7" })
		fig.add("commit-s", time.Since(t0).Seconds())
		until(b, 30*time.Second, "status at the commit", func() bool {
			return getStatus(b, listen).Status.LastAppliedRevision == "main@sha1:"+commit
		})
		fig.add("peak-RSS-MiB", procStatus(p.cmd.Process.Pid, "VmHWM"))
		close(stopSampling)
		fig.add("peak-anon-MiB", anon())
		p.stop()
		// The first pass's validation and apply (dry run and apply of
		// all) against the floor, from the synchronizer's log.
		for _, l := range strings.Split(p.Output(), "\n") {
			if !strings.Contains(l, `"msg":"applied"`) {
				continue
			}
			b.Log(l)
			var entry struct{ Plan, Apply float64 }
			if json.Unmarshal([]byte(l), &entry) == nil {
				fig.add("apply-phase/floor", (entry.Plan+entry.Apply)/floor.Seconds())
				break
			}
		}
	}
	b.StopTimer()
	fig.report(b)
}

// watchesListed: the synchronizer's watches have listed their objects,
// so a pass now meets a warm cache (the metric counts watch lists done).
func watchesListed(t testing.TB, listen string) bool {
	line := metric(t, "http://"+listen+"/metrics", `driftless_synchronizer_watched_resources`)
	if line == "" {
		return false
	}
	v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
	return v >= 3
}

func cmData(cs kubernetes.Interface, ns, name string) string {
	c, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return c.Data["key"]
}

// kubectlPath is the kubectl `make tools` built, next to the control plane.
func kubectlPath(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", ".tools", "bin", "kubectl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kubectl not built (run make tools): %v", err)
	}
	return p
}

// applyBench is what the synchronizer's apply benchmarks stand on: a
// cluster, Git with a "fleet" repository, clients that are not throttled
// (the floor's), and an API server warmed up by a first thousand writes
// (a fresh one is slower for those, which would penalise the first
// measurement).
type applyBench struct {
	cluster *testenv.Cluster
	s       *syncSetup
	dyn     *dynamic.DynamicClient
	cs      *kubernetes.Clientset
}

func newApplyBench(b *testing.B) *applyBench {
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Nodes: 1})
	cfg := *cluster.Config
	cfg.QPS, cfg.Burst = 1000, 1000
	a := &applyBench{cluster: cluster, s: newSyncSetup(b, cluster), dyn: dynamic.NewForConfigOrDie(&cfg), cs: kubernetes.NewForConfigOrDie(&cfg)}
	a.namespaces(b)("warmup", "driftless-system")
	a.s.seed(b, "fleet", map[string]string{"README": "one path per benchmark iteration\n"})
	floorApply(b, a.dyn, parseObjects(b, objects1000("warmup")))
	return a
}

// namespaces returns a function that creates namespaces, failing b if
// one cannot be.
func (a *applyBench) namespaces(b *testing.B) func(names ...string) {
	return func(names ...string) {
		for _, ns := range names {
			if _, err := a.cs.CoreV1().Namespaces().Create(b.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}
