// Command benchreport reads the output of `go test -bench` (the scale
// benchmarks of e2e, issue 17) and prints one table, each case beside
// the floor it was measured against in the same run, its ratio, the
// target and whether it was met; then the growth curves of the
// synchronizer and the automator. With --svg it draws those curves.
//
//	benchreport [--svg docs/scale.svg] bench-output.txt...
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	svg := flag.String("svg", "", "write the growth curves as an SVG plot to this file")
	flag.Parse()
	if err := run(flag.Args(), *svg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(files []string, svg string, w io.Writer) error {
	res := results{}
	if len(files) == 0 {
		if err := res.read(os.Stdin); err != nil {
			return err
		}
	}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			return err
		}
		err = res.read(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	if len(res) == 0 {
		return errors.New("no benchmark results in the input")
	}
	rows := table(res)
	printTable(w, rows)
	sync, auto := curves(res)
	printCurves(w, sync, auto)
	if svg != "" {
		if len(sync) == 0 && len(auto) == 0 {
			fmt.Fprintf(w, "\nno growth curve ran (BenchmarkSynchronizerScale, BenchmarkAutomatorScale): %s left as it was\n", svg)
			return nil
		}
		if err := plotCurves(svg, sync, auto); err != nil {
			return fmt.Errorf("--svg %s: %w", svg, err)
		}
		fmt.Fprintf(w, "\nplot: %s\n", svg)
	}
	return nil
}

// results maps a benchmark's name (without the -GOMAXPROCS suffix) to its
// metrics by unit.
type results map[string]map[string]float64

// read takes the lines `go test -bench` prints for each benchmark:
// name, iterations, then value-unit pairs.
func (res results) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%s: value %q of %s is not a number", name, f[i], f[i+1])
			}
			m[f[i+1]] = v
		}
		res[name] = m
	}
	return sc.Err()
}

// sized returns the results of the sub-benchmarks prefix<size> (objects=,
// repos=), by size, smallest first.
func (res results) sized(prefix string) []sizedResult {
	var out []sizedResult
	for name, m := range res {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil {
			continue
		}
		out = append(out, sizedResult{n, m})
	}
	slices.SortFunc(out, func(a, b sizedResult) int { return a.n - b.n })
	return out
}

type sizedResult struct {
	n int
	m map[string]float64
}

// row is one line of the table.
type row struct {
	Case, Figure, Floor, Ratio, Target, Met string
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func s(v float64) string {
	switch {
	case v < 0.1:
		return fmt.Sprintf("%.3f s", v)
	case v < 10:
		return fmt.Sprintf("%.2f s", v)
	default:
		return fmt.Sprintf("%.1f s", v)
	}
}

func mib(v float64) string { return fmt.Sprintf("%.0f MiB", v) }

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func thousands(n int) string {
	str := strconv.Itoa(n)
	for i := len(str) - 3; i > 0; i -= 3 {
		str = str[:i] + "," + str[i:]
	}
	return str
}

// table turns the results into the rows, each from the largest
// size that ran.
func table(res results) []row {
	var rows []row
	if sy := res.sized("BenchmarkSynchronizerScale/objects="); len(sy) > 0 {
		top := sy[len(sy)-1]
		m, n := top.m, thousands(top.n)
		rows = append(rows,
			row{n + " objects: cold apply, from process start", s(m["cold-s"]), s(m["floor-s"]) + " raw SSA, 16 in flight", fmt.Sprintf("%.2f×", m["cold/floor"]), "≤ 2.2× floor", yes(m["cold/floor"] <= 2.2)},
			row{n + " objects: no-op pass", fmt.Sprintf("%s, %.0f writes", s(m["noop-s"]), m["noop-writes"]), "", "", "0 writes, ≤ 0.3 s", yes(m["noop-writes"] == 0 && m["noop-s"] <= 0.3)},
			row{n + " objects: a manual edit healed", s(m["heal-s"]), "", "", "≤ 50 ms", yes(m["heal-s"] <= 0.05)},
			row{n + " objects: peak RSS (GOMEMLIMIT 256Mi)", fmt.Sprintf("%s (heap and stacks %s)", mib(m["peak-RSS-MiB"]), mib(m["peak-anon-MiB"])), "", "", "≤ 128 MiB", yes(m["peak-RSS-MiB"] <= 128)},
		)
	}
	if m, ok := res["BenchmarkRenderVendor"]; ok {
		rows = append(rows, row{fmt.Sprintf("render of %.1f MB of CRDs and manifests: peak RSS of the Kustomize process (`synchronizer build` in all: %s)", m["input-MB"], mib(m["sync-build-RSS-MiB"])),
			mib(m["render-RSS-MiB"]), mib(m["kustomize-RSS-MiB"]) + " kustomize build", ratio(m["render-RSS-MiB"], m["kustomize-RSS-MiB"]),
			"≤ kustomize's, ≤ 100 MiB", yes(m["render-RSS-MiB"] <= m["kustomize-RSS-MiB"] && m["render-RSS-MiB"] <= 100)})
	}
	if m, ok := res["BenchmarkTenants"]; ok {
		rows = append(rows,
			row{fmt.Sprintf("50 tenants × 100 objects in one process: RSS per tenant (process RSS %s / 50)", mib(m["shared-process-RSS-MiB"])),
				fmt.Sprintf("%.1f MiB (PSS %.1f)", m["shared-RSS-per-tenant-MiB"], m["shared-PSS-per-tenant-MiB"]),
				fmt.Sprintf("50 processes: RSS %.1f, PSS %.1f MiB each", m["separate-RSS-each-MiB"], m["separate-PSS-each-MiB"]), "", "≤ 32 MiB each", yes(m["shared-RSS-per-tenant-MiB"] <= 32)},
			row{"50 tenants idle: API requests per second, all together", fmt.Sprintf("%.2f/s", m["shared-idle-req-per-s"]),
				fmt.Sprintf("50 processes: %.2f/s", m["separate-idle-req-per-s"]), "", "0", yes(m["shared-idle-req-per-s"] == 0)},
		)
	}
	if m, ok := res["BenchmarkBigRepository"]; ok {
		what := fmt.Sprintf("repository of %.0f MB", m["history-MB"])
		rows = append(rows,
			row{what + ": first fetch + checkout (`run --once`; its fetch alone " + s(m["sync-first-fetch-s"]) + ")", s(m["sync-first-s"]),
				s(m["git-clone-depth1-s"]) + " `git clone --depth 1`; " + s(m["git-clone-s"]) + " `git clone`", ratio(m["sync-first-s"], m["git-clone-s"]) + " of the full clone", "reported", "—"},
			row{what + ": first fetch, peak RSS", mib(m["sync-first-RSS-MiB"]), mib(m["git-clone-depth1-RSS-MiB"]) + " `--depth 1`; " + mib(m["git-clone-RSS-MiB"]) + " full", "", "≤ 128 MiB", yes(m["sync-first-RSS-MiB"] <= 128)},
			row{what + ": first fetch of the tip alone (`--allow-rewind`, no keyring: depth 1)", fmt.Sprintf("%s, %s", s(m["sync-shallow-s"]), mib(m["sync-shallow-RSS-MiB"])), s(m["git-clone-depth1-s"]) + ", " + mib(m["git-clone-depth1-RSS-MiB"]) + " `git clone --depth 1`", ratio(m["sync-shallow-s"], m["git-clone-depth1-s"]), "≤ 128 MiB", yes(m["sync-shallow-RSS-MiB"] <= 128)},
			row{what + ": one-commit update (its fetch alone " + s(m["sync-update-fetch-s"]) + ")", s(m["sync-update-s"]), s(m["git-fetch-s"]) + " `git fetch`", ratio(m["sync-update-s"], m["git-fetch-s"]), "reported", "—"},
			row{what + ": one-commit update, peak RSS", mib(m["sync-update-RSS-MiB"]), mib(m["git-fetch-RSS-MiB"]) + " `git fetch`", "", "≤ 128 MiB", yes(m["sync-update-RSS-MiB"] <= 128)},
		)
	}
	if au := res.sized("BenchmarkAutomatorScale/repos="); len(au) > 0 {
		top := au[len(au)-1]
		m, n := top.m, thousands(top.n)
		rows = append(rows,
			row{"automator: " + n + " repositories × 1,000 tags, one pass (default budget: 200 requests/s per registry)", s(m["automator-s"]), s(m["floor-s"]) + " remote.List, 8 at a time", fmt.Sprintf("%.2f×", m["automator/floor"]), "≤ 1.2× floor", yes(m["automator/floor"] <= 1.2)},
			row{"automator: the same pass without the request budget (`--registry-rps 0`; the floor has none)", s(m["unbudgeted-s"]), s(m["floor-s"]), fmt.Sprintf("%.2f×", m["unbudgeted/floor"]), "≤ 1.2× floor", yes(m["unbudgeted/floor"] <= 1.2)},
			row{"automator: " + n + " repositories, peak RSS", mib(m["peak-RSS-MiB"]), "", "", "≤ 64 MiB", yes(m["peak-RSS-MiB"] <= 64)},
		)
	}
	for name, m := range res {
		if rest, ok := strings.CutPrefix(name, "BenchmarkAutomatorScale/tag-to-commit/policies="); ok {
			n, _ := strconv.Atoi(rest)
			rows = append(rows, row{"automator: " + thousands(n) + " policies, a tag pushed → commit, through the webhook", s(m["tag-to-commit-s"]), "", "", "≤ 0.25 s", yes(m["tag-to-commit-s"] <= 0.25)})
		}
	}
	return rows
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| case | figure | floor, same run | ratio | target | met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.Case, r.Figure, r.Floor, r.Ratio, r.Target, r.Met)
	}
}

// point is one size of a growth curve.
type point struct {
	n                               int
	cold, floor, noop, rss, anon, r float64
	unbudgeted                      float64
}

func curves(res results) (sync, auto []point) {
	for _, x := range res.sized("BenchmarkSynchronizerScale/objects=") {
		sync = append(sync, point{n: x.n, cold: x.m["cold-s"], floor: x.m["floor-s"], noop: x.m["noop-s"], rss: x.m["peak-RSS-MiB"], anon: x.m["peak-anon-MiB"], r: x.m["cold/floor"]})
	}
	for _, x := range res.sized("BenchmarkAutomatorScale/repos=") {
		auto = append(auto, point{n: x.n, cold: x.m["automator-s"], floor: x.m["floor-s"], rss: x.m["peak-RSS-MiB"], r: x.m["automator/floor"], unbudgeted: x.m["unbudgeted-s"]})
	}
	return sync, auto
}

func printCurves(w io.Writer, sync, auto []point) {
	if len(sync) > 0 {
		fmt.Fprintln(w, "\n| synchronizer, objects | cold | floor | cold/floor | no-op pass | peak RSS (heap and stacks) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, p := range sync {
			fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %s | %s (%s) |\n", thousands(p.n), s(p.cold), s(p.floor), p.r, s(p.noop), mib(p.rss), mib(p.anon))
		}
	}
	if len(auto) > 0 {
		fmt.Fprintln(w, "\n| automator, repositories × 1,000 tags | pass | floor | pass/floor | without the budget | peak RSS |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, p := range auto {
			fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %s | %s |\n", thousands(p.n), s(p.cold), s(p.floor), p.r, s(p.unbudgeted), mib(p.rss))
		}
	}
}
