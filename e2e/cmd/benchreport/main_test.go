package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkSynchronizerScale/objects=1000-2   3   4980537607 ns/op   2.194 cold-s   1.666 cold/floor   1.317 floor-s   0.01117 heal-s   0.02683 noop-s   0 noop-writes   54.79 peak-RSS-MiB   25.83 peak-anon-MiB
BenchmarkSynchronizerScale/objects=10000-2  3   4980537607 ns/op   31.0 cold-s   2.4 cold/floor   12.9 floor-s   0.02 heal-s   0.14 noop-s   0 noop-writes   126 peak-RSS-MiB   95 peak-anon-MiB
BenchmarkAutomatorScale/repos=1000-2 3 1 ns/op 8.3 automator-s 2.8 automator/floor 2.9 floor-s 43 peak-RSS-MiB 3.4 unbudgeted-s 1.1 unbudgeted/floor
BenchmarkAutomatorScale/tag-to-commit/policies=1000-2 3 1 ns/op 0.3 tag-to-commit-s
PASS
`

// The table takes the largest size that ran, judges each target from
// the figures, and the plot is written.
func TestReport(t *testing.T) {
	in := filepath.Join(t.TempDir(), "bench.txt")
	os.WriteFile(in, []byte(sample), 0o644)
	svg := filepath.Join(t.TempDir(), "scale.svg")
	var out bytes.Buffer
	if err := run([]string{in}, svg, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 10,000 objects: cold apply, from process start | 31.0 s | 12.9 s raw SSA, 16 in flight | 2.40× | ≤ 2.2× floor | **no** |",
		"| 10,000 objects: peak RSS (GOMEMLIMIT 256Mi) | 126 MiB (heap and stacks 95 MiB) |  |  | ≤ 128 MiB | yes |",
		"| automator: 1,000 policies, a tag pushed → commit, through the webhook | 0.30 s |  |  | ≤ 0.25 s | **no** |",
		"≤ 1.2× floor | yes |",
		"| 1,000 | 2.19 s | 1.32 s | 1.67× | 0.027 s | 55 MiB (26 MiB) |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("synchronizer: cold apply")) {
		t.Fatalf("the plot: %v, %.200s", err, b)
	}
	if err := run([]string{filepath.Join(t.TempDir(), "none.txt")}, "", &out); err == nil {
		t.Fatal("a missing input file: no error")
	}
}
