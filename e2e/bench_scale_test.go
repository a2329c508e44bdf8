package e2e

// The scale benchmarks of issue 17: each case measured against its floor
// in the same run, at the sizes the issue names with BENCH_SCALE=full and
// at smaller ones by default (so `make bench` stays a few minutes long).
// `make bench` feeds their output to cmd/benchreport, which prints the one
// table (case, figure, floor, ratio, target, met?) and the growth curves
// and draws docs/scale.svg.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// scaleFull says whether the scale benchmarks run at the sizes.
// Not configuration of a program: the benchmark's own switch, read here
// because a benchmark has no main.
func scaleFull() bool { return os.Getenv("BENCH_SCALE") == "full" }

// pick returns full at BENCH_SCALE=full and short otherwise.
func pick[T any](short, full T) T {
	if scaleFull() {
		return full
	}
	return short
}

// deployedMemLimit is GOMEMLIMIT as the manifests set it: the container's
// memory limit (256Mi) through resourceFieldRef, which gives bytes.
const deployedMemLimit = "268435456"

// objectsN renders n objects in ns the way the 10,000 are mixed:
// 80 % ConfigMaps, 10 % Services, 10 % Deployments (scaled to zero, so
// the measurement is the apply, not the scheduler).
func objectsN(ns string, n int) string {
	var b strings.Builder
	for i := range n * 8 / 10 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%05d, namespace: %s}\ndata: {key: value-%d, other: \"some text\"}\n---\n", i, ns, i)
	}
	for i := range n / 10 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: svc-%05d, namespace: %s}\nspec: {selector: {app: app-%05d}, ports: [{port: 80, targetPort: 8080}]}\n---\n", i, ns, i)
		fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%05d, namespace: %s}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: app-%05d}}\n  template:\n    metadata: {labels: {app: app-%05d}}\n    spec: {containers: [{name: app, image: \"registry.example.com/app:1.0.%d\"}]}\n---\n", i, ns, i, i, i)
	}
	return b.String()
}

// runMeasured runs cmd to its end and returns its wall time, its peak
// resident size in MiB and its output. The peak is the largest VmHWM that
// the process or any of its descendants (a synchronizer's Kustomize
// process, git's index-pack) reached, sampled from /proc every 2 ms. Not
// wait4's ru_maxrss: a process started by Go (vfork, then exec) inherits
// as its ru_maxrss the resident size of the process that started it, here
// the benchmark's own 40-odd MiB, which would hide anything smaller.
func runMeasured(t testing.TB, cmd *exec.Cmd) (time.Duration, float64, []byte) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	peak := followPeak(cmd.Process.Pid)
	err := cmd.Wait()
	el := time.Since(start)
	rss := peak()
	if err != nil {
		t.Fatalf("%s: %v\n%.3000s", strings.Join(cmd.Args, " "), err, out.Bytes())
	}
	return el, rss, out.Bytes()
}

// followPeak samples the VmHWM of pid and of every descendant of it
// every 2 ms until the returned function is called, which returns the
// largest, in MiB. VmHWM only grows while a process lives, so a sample
// misses at most the last 2 ms of one.
func followPeak(pid int) func() float64 {
	var mu sync.Mutex
	peak := 0.0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, p := range descendants(pid) {
				if v := procStatus(p, "VmHWM"); v > 0 {
					mu.Lock()
					peak = max(peak, v)
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() float64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// descendants returns pid and every process below it, from the children
// files of each of their threads (a Go program starts a child from any
// thread).
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", out[i]))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, c := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(c); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// smapsRollup reads one field of /proc/<pid>/smaps_rollup, in MiB: Pss
// divides each shared page (the binary's, mostly) among the processes
// mapping it, so it is what one more process really costs.
func smapsRollup(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, field+":") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// apiRequests sums the API server's apiserver_request_total over the
// resources named (every verb, every code): what clients asked of them,
// counted by the server.
func apiRequests(t testing.TB, cs kubernetes.Interface, resources ...string) int {
	return requestsCounted(t, cs, func(l string) bool {
		return slices.ContainsFunc(resources, func(r string) bool { return strings.Contains(l, `resource="`+r+`"`) })
	})
}

// requestsCounted sums the API server's apiserver_request_total over the
// series keep accepts (given the whole line of a series).
func requestsCounted(t testing.TB, cs kubernetes.Interface, keep func(series string) bool) int {
	n := 0
	for series, v := range requestSeries(t, cs) {
		if keep(series) {
			n += v
		}
	}
	return n
}

// requestSeries reads the API server's apiserver_request_total: each
// series (its labels) and its count.
func requestSeries(t testing.TB, cs kubernetes.Interface) map[string]int {
	t.Helper()
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "apiserver_request_total{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			out[strings.Join(f[:len(f)-1], " ")] = int(v)
		}
	}
	return out
}

// httpGetJSON decodes the JSON url answers into v and returns the status.
func httpGetJSON(url string, v any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}
