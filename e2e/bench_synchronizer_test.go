package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	t.Helper()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "apiserver_request_total{") || !strings.Contains(l, `subresource=""`) {
			continue
		}
		res := false
		for _, r := range []string{`resource="configmaps"`, `resource="services"`, `resource="deployments"`} {
			res = res || strings.Contains(l, r)
		}
		mut := false
		for _, v := range []string{`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="APPLY"`, `verb="DELETE"`} {
			mut = mut || strings.Contains(l, v)
		}
		if res && mut {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
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

// BenchmarkSynchronizer1000 measures, for 1,000 objects from Git in one
// run: the cold apply (synchronizer start to applied) against kubectl
// apply --server-side and the raw server-side-apply floor; a no-op pass
// (its duration and mutating requests); drift healed after a manual edit;
// a one-line commit applied through the Git webhook; and peak RSS.
// BENCH_KUBECTL=0 leaves out kubectl (it takes minutes).
func BenchmarkSynchronizer1000(b *testing.B) {
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Nodes: 1})
	s := newSyncSetup(b, cluster)
	ctx := b.Context()
	cfg := *cluster.Config
	cfg.QPS, cfg.Burst = 1000, 1000
	dyn := dynamic.NewForConfigOrDie(&cfg)
	cs := kubernetes.NewForConfigOrDie(&cfg)
	for _, ns := range []string{"warmup", "floor", "floor2", "kubectl", "sync", "driftless-system"} {
		cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	}
	s.seed(b, "fleet", map[string]string{
		"apps/kustomization.yaml": "namespace: sync\nresources: [objects.yaml]\n",
		"apps/objects.yaml":       objects1000("sync"),
	})
	// A freshly started API server is slower for its first thousand
	// writes; warm it up so the first measurement is not penalised.
	floorApply(b, dyn, parseObjects(b, objects1000("warmup")))
	b.ResetTimer()
	for range b.N {
		// Floor, before the synchronizer's cold apply; measured again
		// after it, and the ratio taken against the mean of the two
		// (on two cores a single floor run varies by ±30 %).
		floor1 := floorApply(b, dyn, parseObjects(b, objects1000("floor")))

		// kubectl, the push pipeline's tool.
		if os.Getenv("BENCH_KUBECTL") != "0" {
			file := filepath.Join(b.TempDir(), "objects.yaml")
			os.WriteFile(file, []byte(objects1000("kubectl")), 0o644)
			kubectl := kubectlPath(b)
			start := time.Now()
			if out, err := exec.Command(kubectl, "--kubeconfig", cluster.Kubeconfig, "apply", "--server-side", "-f", file).CombinedOutput(); err != nil {
				b.Fatalf("kubectl apply: %v\n%s", err, out)
			}
			b.ReportMetric(time.Since(start).Seconds(), "kubectl-s")
		}

		// The synchronizer, cold: process start to every object applied.
		listen := freeAddr(b)
		head, _ := s.git.Head(ctx, "fleet", "main")
		t0 := time.Now()
		p := start(b, "synchronizer", s.syncArgs("fleet", cluster.Kubeconfig, listen, "--path", "apps", "--max-prune", "0")...)
		stopSampling := make(chan struct{})
		anon := sampleAnon(p.cmd.Process.Pid, stopSampling)
		until(b, 5*time.Minute, "the cold apply", func() bool {
			return getStatus(b, listen).Status.LastAppliedRevision == "main@sha1:"+head
		})
		cold := time.Since(t0)
		floor2 := floorApply(b, dyn, parseObjects(b, objects1000("floor2")))
		floor := (floor1 + floor2) / 2
		b.ReportMetric(floor.Seconds(), "floor-s")
		b.ReportMetric(cold.Seconds(), "cold-s")
		b.ReportMetric(cold.Seconds()/floor.Seconds(), "cold/floor")
		if n := getStatus(b, listen).Status.Objects; n != 1000 {
			b.Fatalf("%d objects applied", n)
		}

		// A no-op pass.
		time.Sleep(time.Second) // let the watches settle
		n0, s0 := passCount(b, listen)
		m0 := mutating(b, cs)
		push(b, listen)
		until(b, 30*time.Second, "a no-op pass", func() bool { n, _ := passCount(b, listen); return n > n0 })
		_, s1 := passCount(b, listen)
		b.ReportMetric(s1-s0, "noop-s")
		b.ReportMetric(float64(mutating(b, cs)-m0), "noop-writes")

		// Drift: a manual edit, healed.
		c, _ := cs.CoreV1().ConfigMaps("sync").Get(ctx, "cm-042", metav1.GetOptions{})
		c.Data["key"] = "edited by hand"
		if _, err := cs.CoreV1().ConfigMaps("sync").Update(ctx, c, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		until(b, 30*time.Second, "drift healed", func() bool { return cmData(cs, "sync", "cm-042") == "value-42" })
		b.ReportMetric(time.Since(t0).Seconds(), "drift-s")

		// A one-line commit through the webhook.
		edited := strings.Replace(objects1000("sync"), "data: {key: value-7,", "data: {key: changed-7,", 1)
		commit := s.commit(b, "fleet", map[string]string{"apps/objects.yaml": edited})
		t0 = time.Now()
		push(b, listen)
		until(b, 30*time.Second, "the commit applied", func() bool { return cmData(cs, "sync", "cm-007") == "changed-7" })
		b.ReportMetric(time.Since(t0).Seconds(), "commit-s")
		until(b, 30*time.Second, "status at the commit", func() bool {
			return getStatus(b, listen).Status.LastAppliedRevision == "main@sha1:"+commit
		})
		b.ReportMetric(procStatus(p.cmd.Process.Pid, "VmHWM"), "peak-RSS-MiB")
		close(stopSampling)
		b.ReportMetric(anon(), "peak-anon-MiB")
		p.stop()
		// The phases of each pass that applied, from the synchronizer's
		// log; the first pass's apply phase (dry run and apply of all)
		// against the floor too.
		first := true
		for _, l := range strings.Split(p.Output(), "\n") {
			if !strings.Contains(l, `"msg":"applied"`) {
				continue
			}
			b.Log(l)
			var entry struct{ Apply float64 }
			if first && json.Unmarshal([]byte(l), &entry) == nil {
				b.ReportMetric(entry.Apply/floor.Seconds(), "apply-phase/floor")
				first = false
			}
		}
	}
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
