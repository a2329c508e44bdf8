// Command reliability reads `go test -json` output of the reliability
// suite (every module's, concatenated on stdin) and prints one table:
// scenario, tried, lost. `make reliability` runs it.
//
// Where its rows come from:
//   - "RELIABILITY {json}" lines a test writes (kills, faults, secrets);
//   - the bad-input census: every passing subtest of a TestBadInput* test
//     is one distinct case, counted per area; a failing one is lost;
//   - recovery from damage: the subtests of every *RecoversFromAKill test;
//   - fuzzing: the seed inputs every Fuzz* target ran (its subtests).
//
// It exits 1 when anything was lost, a test failed, or a row is missing,
// so the table is also the verdict.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

// event is one line of `go test -json`.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// row is one line of the table.
type row struct {
	Scenario string `json:"scenario"`
	Tried    int    `json:"tried"`
	Lost     int    `json:"lost"`
	Seed     uint64 `json:"seed,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// counted tallies the subtests of one family of tests.
type counted struct {
	tried, lost map[string]int // by group
	seen        map[string]bool
}

func newCounted() *counted {
	return &counted{tried: map[string]int{}, lost: map[string]int{}, seen: map[string]bool{}}
}

func (c *counted) add(group, id string, passed bool) {
	if c.seen[id] {
		return
	}
	c.seen[id] = true
	c.tried[group]++
	if !passed {
		c.lost[group]++
	}
}

func (c *counted) total() (tried, lost int) {
	for g, n := range c.tried {
		tried += n
		lost += c.lost[g]
	}
	return tried, lost
}

func (c *counted) detail() string {
	var parts []string
	for _, g := range slices.Sorted(maps.Keys(c.tried)) {
		parts = append(parts, fmt.Sprintf("%s %d", g, c.tried[g]))
	}
	return strings.Join(parts, ", ")
}

var (
	badInput = regexp.MustCompile(`^TestBadInput([^/]*)/.+`)
	recovers = regexp.MustCompile(`^(Test\w*RecoversFromAKill)/.+`)
	fuzz     = regexp.MustCompile(`^(Fuzz\w+)/.+`)
	reported = regexp.MustCompile(`RELIABILITY (\{.*\})`)
)

func main() {
	seed := flag.String("seed", "", "the seed of the run, printed with the table")
	minBadInput := flag.Int("min-bad-input", 60, "fewer bad-input cases than this is a failure")
	flag.Parse()
	rows, failed, err := read(os.Stdin, *minBadInput)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(2)
	}
	print(os.Stdout, rows, *seed)
	lost := 0
	for _, r := range rows {
		lost += r.Lost
	}
	if len(failed) > 0 {
		fmt.Printf("\nfailed tests:\n  %s\n", strings.Join(failed, "\n  "))
	}
	if lost > 0 || len(failed) > 0 {
		os.Exit(1)
	}
}

// read turns the events into rows, and lists the failed tests.
func read(r io.Reader, minBadInput int) ([]row, []string, error) {
	var rows []row
	var failed []string
	bad, rec, fz := newCounted(), newCounted(), newCounted()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // go's own lines (build output) pass through silently
		}
		id := ev.Package + "." + ev.Test
		switch ev.Action {
		case "output":
			if m := reported.FindStringSubmatch(ev.Output); m != nil {
				var rw row
				if err := json.Unmarshal([]byte(m[1]), &rw); err != nil {
					return nil, nil, fmt.Errorf("%s: row %s: %w", ev.Test, m[1], err)
				}
				rows = append(rows, rw)
			}
		case "pass", "fail":
			passed := ev.Action == "pass"
			switch {
			case badInput.MatchString(ev.Test):
				bad.add(area(ev.Package, badInput.FindStringSubmatch(ev.Test)[1]), id, passed)
			case recovers.MatchString(ev.Test):
				rec.add(recovers.FindStringSubmatch(ev.Test)[1], id, passed)
			case fuzz.MatchString(ev.Test):
				fz.add(ev.Package[strings.LastIndex(ev.Package, "/")+1:]+"."+fuzz.FindStringSubmatch(ev.Test)[1], id, passed)
			}
			if !passed && ev.Test != "" && !strings.Contains(ev.Test, "/") {
				failed = append(failed, id)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	tried, lost := bad.total()
	if tried < minBadInput {
		lost += minBadInput - tried
	}
	rows = append(rows, row{Scenario: fmt.Sprintf("bad input: %d distinct cases, each a clear error and nothing written", tried), Tried: tried, Lost: lost, Detail: bad.detail()})
	tried, lost = rec.total()
	rows = append(rows, row{Scenario: "recovery from every state a kill leaves in a clone or checkout", Tried: tried, Lost: lost, Detail: rec.detail()})
	tried, lost = fz.total()
	rows = append(rows, row{Scenario: fmt.Sprintf("fuzzing: %d targets, their seed corpora", len(fz.tried)), Tried: tried, Lost: lost, Detail: fz.detail()})
	return rows, failed, nil
}

// area names where a bad-input case is tested: its package, or, for the
// end-to-end tests, what the test names (flags, objects, ...).
func area(pkg, test string) string {
	p := strings.ReplaceAll(strings.TrimPrefix(pkg, "driftless.dev/"), "/internal/", "/")
	if p == "e2e" {
		return "e2e " + strings.ToLower(test)
	}
	return p
}

// print writes the table, then each row's detail.
func print(w io.Writer, rows []row, seed string) {
	width := len("scenario")
	for _, r := range rows {
		width = max(width, len(r.Scenario))
	}
	if seed != "" {
		fmt.Fprintf(w, "seed %s (make reliability SEED=%s replays it)\n\n", seed, seed)
	}
	fmt.Fprintf(w, "%-*s  %6s  %5s\n", width, "scenario", "tried", "lost")
	fmt.Fprintf(w, "%s  %6s  %5s\n", strings.Repeat("-", width), "------", "-----")
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %6d  %5d\n", width, r.Scenario, r.Tried, r.Lost)
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		if r.Detail != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.Scenario, r.Detail)
		}
	}
}
