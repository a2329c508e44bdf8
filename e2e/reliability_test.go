package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"driftless.dev/e2e/fleet"
	"driftless.dev/shared/testenv"
)

// The reliability suite reports each scenario as a row: a line
// "RELIABILITY {json}" in the test's output, which `make reliability`
// collects (through go test -json) into one table. The scenario's size
// and its random choices come from the environment, so `make test` runs a
// short form and `make reliability` the full one, and any run replays:
//
//	DRIFTLESS_SEED   the seed of every random choice (default: the clock); printed
//	DRIFTLESS_KILLS  kills per program (default 3, the short form)
//	DRIFTLESS_FAULT  only the faults whose name holds this (default: all)

// row is one line of the reliability table.
type row struct {
	Scenario string `json:"scenario"`
	Tried    int    `json:"tried"`
	Lost     int    `json:"lost"`
	Seed     uint64 `json:"seed,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

func report(t testing.TB, r row) {
	t.Helper()
	b, _ := json.Marshal(r)
	t.Logf("RELIABILITY %s", b)
}

// seed returns the run's seed and says how to replay it.
func seed(t testing.TB) uint64 {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("DRIFTLESS_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("DRIFTLESS_SEED=%q: want a number", v)
		}
	}
	t.Logf("seed %d: DRIFTLESS_SEED=%d replays these choices", s, s)
	return s
}

func killsPerProgram(t testing.TB) int {
	t.Helper()
	if v := os.Getenv("DRIFTLESS_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DRIFTLESS_KILLS=%q: want a positive number", v)
		}
		return n
	}
	return 3
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// killPhase is a moment to SIGKILL a program at: when a request matching
// match passes the program's proxy, after a random delay in [from, to).
// The request is what the program does at the start of the phase; the
// delay moves the kill into it.
type killPhase struct {
	program  string
	name     string
	proxy    func(*stand) *testenv.FaultProxy
	match    func(*http.Request) bool
	from, to time.Duration
}

func gitService(service string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return strings.HasSuffix(r.URL.Path, "/"+service) || r.URL.Query().Get("service") == service
	}
}

func apiWrite(method, path string, dryRun bool) func(*http.Request) bool {
	return func(r *http.Request) bool {
		return r.Method == method && strings.Contains(r.URL.Path, path) && (r.URL.Query().Get("dryRun") != "") == dryRun
	}
}

var killPhases = []killPhase{
	{automatorProc, "fetch", func(s *stand) *testenv.FaultProxy { return s.gitA }, gitService("git-upload-pack"), 0, 10 * time.Millisecond},
	{automatorProc, "scan", func(s *stand) *testenv.FaultProxy { return s.regProxy }, func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/tags/list") }, 0, 5 * time.Millisecond},
	{automatorProc, "edit and commit", func(s *stand) *testenv.FaultProxy { return s.regProxy }, func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/tags/list") }, 5 * time.Millisecond, 60 * time.Millisecond},
	{automatorProc, "push", func(s *stand) *testenv.FaultProxy { return s.gitA }, gitService("git-receive-pack"), 0, 20 * time.Millisecond},
	{synchronizerProc, "fetch", func(s *stand) *testenv.FaultProxy { return s.gitS }, gitService("git-upload-pack"), 0, 10 * time.Millisecond},
	{synchronizerProc, "checkout and build", func(s *stand) *testenv.FaultProxy { return s.gitS }, func(r *http.Request) bool { return r.Method == http.MethodPost && gitService("git-upload-pack")(r) }, 5 * time.Millisecond, 80 * time.Millisecond},
	{synchronizerProc, "dry run", func(s *stand) *testenv.FaultProxy { return s.api }, apiWrite(http.MethodPatch, "/configmaps/cm-", true), 0, 5 * time.Millisecond},
	{synchronizerProc, "apply", func(s *stand) *testenv.FaultProxy { return s.api }, apiWrite(http.MethodPatch, "/configmaps/cm-", false), 0, 10 * time.Millisecond},
	{synchronizerProc, "prune", func(s *stand) *testenv.FaultProxy { return s.api }, apiWrite(http.MethodDelete, "/configmaps/cm-", false), 0, 5 * time.Millisecond},
	{synchronizerProc, "status write", func(s *stand) *testenv.FaultProxy { return s.api }, func(r *http.Request) bool {
		return r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/namespaces/"+statusNamespace+"/configmaps")
	}, 0, 3 * time.Millisecond},
}

// convergeLimit bounds convergence after a restart or a healed fault:
// one interval for the next poll, and time for a pass or two on a loaded
// machine.
const convergeLimit = 45 * time.Second

// TestReliabilityKills SIGKILLs each program at random moments of every
// phase of its work, leaves (half of the time) one of the states a kill
// can leave in its warm clone or checkout, restarts it, and checks after
// each kill that the loop converged to the branch's head within the
// bound, that every tag was committed exactly once, no commit of a person
// was lost, no object orphaned or pruned wrongly, and no temporary or
// lock file left behind.
func TestReliabilityKills(t *testing.T) {
	s := newStand(t, standOptions{})
	ctx := t.Context()
	sd := seed(t)
	rng := mrand.New(mrand.NewPCG(sd, sd^0x9e3779b97f4a7c15))
	perProgram := killsPerProgram(t)
	if _, err := s.waitConverged(ctx, convergeLimit); err != nil {
		t.Fatal(err)
	}
	damages := testenv.CloneDamages()
	type tally struct{ tried, lost int }
	byPhase := map[string]*tally{}
	byProgram := map[string]*tally{automatorProc: {}, synchronizerProc: {}}
	var slowest time.Duration
	var failures []string
	// A schedule that covers every phase of each program, in a seeded
	// order, until each program was killed perProgram times.
	var schedule []killPhase
	for i := 0; len(schedule) < 2*perProgram; i++ {
		cycle := slices.Clone(killPhases)
		rng.Shuffle(len(cycle), func(a, b int) { cycle[a], cycle[b] = cycle[b], cycle[a] })
		for _, p := range cycle {
			n := 0
			for _, q := range schedule {
				if q.program == p.program {
					n++
				}
			}
			if n < perProgram {
				schedule = append(schedule, p)
			}
		}
	}
	for i, p := range schedule {
		key := p.program + ": " + p.name
		if byPhase[key] == nil {
			byPhase[key] = &tally{}
		}
		delay := p.from + time.Duration(rng.Int64N(int64(p.to-p.from)+1))
		damage := -1
		if rng.IntN(2) == 0 {
			damage = rng.IntN(len(damages))
		}
		var armed atomic.Bool
		armed.Store(true)
		fired := make(chan struct{})
		proxy := p.proxy(s)
		proxy.Observe(func(r *http.Request) {
			if !p.match(r) || !armed.CompareAndSwap(true, false) {
				return
			}
			time.Sleep(delay)
			s.kill(p.program)
			close(fired)
		})
		// Work for both programs: a tag (scan, edit, commit, push), a
		// person's commit adding and removing a ConfigMap (fetch, build,
		// dry run, apply, prune, status).
		s.pushTag()
		s.change()
		select {
		case <-fired:
		case <-time.After(convergeLimit):
			armed.Store(false)
		}
		proxy.Observe(nil)
		if armed.Load() {
			t.Fatalf("kill %d (%s, %s) never came: the phase did not happen", i, key, delay)
		}
		what := ""
		if damage >= 0 {
			switch err := damages[damage].Apply(s.cloneDir(p.program)); {
			case errors.Is(err, testenv.ErrNotApplicable):
			case err != nil:
				t.Fatalf("damage %q: %v", damages[damage].Name, err)
			default:
				what = ", then " + damages[damage].Name
			}
		}
		s.start(p.program)
		took, err := s.waitConverged(ctx, convergeLimit)
		if err == nil {
			err = s.invariants(ctx)
		}
		byPhase[key].tried++
		byProgram[p.program].tried++
		slowest = max(slowest, took)
		t.Logf("kill %d: %s after %s%s: converged in %s", i+1, key, delay, what, took.Round(time.Millisecond))
		if err != nil {
			byPhase[key].lost++
			byProgram[p.program].lost++
			failures = append(failures, fmt.Sprintf("kill %d (%s after %s%s): %v", i+1, key, delay, what, err))
			t.Errorf("kill %d (%s after %s%s): %v\n%s", i+1, key, delay, what, err, s.diagnose())
			// Let the loop catch up before the next kill, so one loss is
			// not counted again.
			s.waitConverged(ctx, convergeLimit)
		}
	}
	for _, name := range []string{automatorProc, synchronizerProc} {
		var phases []string
		for k, v := range byPhase {
			if strings.HasPrefix(k, name+": ") {
				phases = append(phases, fmt.Sprintf("%s %d", strings.TrimPrefix(k, name+": "), v.tried))
			}
		}
		slices.Sort(phases)
		report(t, row{Scenario: "kill -9 " + name, Tried: byProgram[name].tried, Lost: byProgram[name].lost, Seed: sd,
			Detail: strings.Join(phases, ", ") + fmt.Sprintf("; slowest convergence %s", slowest.Round(100*time.Millisecond))})
	}
	if len(failures) > 0 {
		t.Logf("losses:\n%s", strings.Join(failures, "\n"))
	}
}

// mark is where a fault started: each log's size, the metrics a case
// watches, the time.
type mark struct {
	log     map[string]int64
	metrics map[string]float64
	at      time.Time
}

// evidence is one thing a user sees while a fault lasts.
type evidence struct {
	where string
	see   func(ctx context.Context, s *stand, m mark) (string, bool)
}

func inLog(program string, subs ...string) evidence {
	return evidence{program + " log", func(_ context.Context, s *stand, m mark) (string, bool) {
		return s.logLine(program, m.log[program], subs...)
	}}
}

func metricUp(program, series string) evidence {
	return evidence{program + " metric", func(_ context.Context, s *stand, m mark) (string, bool) {
		v := s.metric(program, series)
		return fmt.Sprintf("%s %g", series, v), v > m.metrics[series]
	}}
}

func metricNonZero(program, series string) evidence {
	return evidence{program + " metric", func(_ context.Context, s *stand, _ mark) (string, bool) {
		v := s.metric(program, series)
		return fmt.Sprintf("%s %g", series, v), v > 0
	}}
}

func statusIs(phase, reason string) evidence {
	return evidence{"synchronizer /status", func(_ context.Context, s *stand, _ mark) (string, bool) {
		p, r := s.statusSummary()
		return p + "/" + r, p == phase && (reason == "" || r == reason)
	}}
}

func eventOf(reason string) evidence {
	return evidence{"Event", func(ctx context.Context, s *stand, m mark) (string, bool) {
		msg, ok := s.event(ctx, reason, m.at)
		return reason + ": " + msg, ok
	}}
}

// faultCase is one fault: how to switch it on and off, the work done
// while it lasts, and what a user must see meanwhile.
type faultCase struct {
	name  string
	on    func(s *stand)
	off   func(s *stand)
	work  func(s *stand)
	seen  []evidence
	watch []string // metric series whose increase is evidence
	// despite: the loop must converge while the fault lasts (slow, not
	// broken).
	despite bool
}

func proxyFault(p func(*stand) []*testenv.FaultProxy, f testenv.Fault) (on, off func(*stand)) {
	return func(s *stand) {
			for _, x := range p(s) {
				if err := x.Set(f); err != nil {
					s.t.Fatal(err)
				}
			}
		}, func(s *stand) {
			for _, x := range p(s) {
				if err := x.Set(testenv.Fault{}); err != nil {
					s.t.Fatal(err)
				}
			}
		}
}

func registry(s *stand) []*testenv.FaultProxy { return []*testenv.FaultProxy{s.regProxy} }
func gitHost(s *stand) []*testenv.FaultProxy  { return []*testenv.FaultProxy{s.gitA, s.gitS} }
func apiHost(s *stand) []*testenv.FaultProxy  { return []*testenv.FaultProxy{s.api} }

const (
	scanErrors    = `driftless_automator_scans_total{policy="chaos:web",result="error"}`
	failedPasses  = `driftless_automator_passes_total{result="failed"}`
	fetchFailures = `driftless_synchronizer_errors_total{reason="FetchFailed"}`
	syncFailures  = `driftless_synchronizer_reconcile_duration_seconds_count{result="failed"}`
)

func faultCases() []faultCase {
	tag := func(s *stand) { s.pushTag() }
	both := func(s *stand) { s.pushTag(); s.change() }
	change := func(s *stand) { s.change() }
	var cases []faultCase
	for _, code := range []int{429, 500, 503} {
		on, off := proxyFault(registry, testenv.Fault{Status: code})
		cases = append(cases, faultCase{name: fmt.Sprintf("registry answers %d", code), on: on, off: off, work: tag,
			seen:  []evidence{inLog(automatorProc, "scan failed", policyKey, fmt.Sprintf("HTTP %d", code)), metricUp(automatorProc, scanErrors)},
			watch: []string{scanErrors}})
	}
	on, off := proxyFault(registry, testenv.Fault{Latency: 2 * time.Second})
	cases = append(cases, faultCase{name: "registry slow (2s a request)", on: on, off: off, work: tag, despite: true,
		seen: []evidence{inLog(automatorProc, "pushed image update")}})
	on, off = proxyFault(registry, testenv.Fault{Latency: 10 * time.Minute})
	cases = append(cases, faultCase{name: "registry never answers", on: on, off: off, work: tag,
		seen:  []evidence{inLog(automatorProc, "scan failed", policyKey, "registry unreachable: no answer before the deadline"), metricUp(automatorProc, scanErrors)},
		watch: []string{scanErrors}})
	on, off = proxyFault(registry, testenv.Fault{Drop: true})
	cases = append(cases, faultCase{name: "registry drops connections", on: on, off: off, work: tag,
		seen:  []evidence{inLog(automatorProc, "scan failed", policyKey, "registry unreachable"), metricUp(automatorProc, scanErrors)},
		watch: []string{scanErrors}})
	on, off = proxyFault(gitHost, testenv.Fault{Down: true})
	cases = append(cases, faultCase{name: "Git server down", on: on, off: off, work: both,
		seen: []evidence{inLog(automatorProc, "pass failed", "connection refused"), metricUp(automatorProc, failedPasses),
			statusIs("Stalled", "FetchFailed"), eventOf("FetchFailed"), metricUp(synchronizerProc, fetchFailures)},
		watch: []string{failedPasses, fetchFailures}})
	cases = append(cases, faultCase{name: "Git server down when the automator starts, without its clone", work: tag,
		on: func(s *stand) {
			s.kill(automatorProc)
			os.RemoveAll(s.cloneDir(automatorProc))
			s.gitA.Set(testenv.Fault{Down: true})
			s.start(automatorProc)
		},
		off: func(s *stand) { s.gitA.Set(testenv.Fault{}) },
		// A new process: its counters start from zero.
		seen: []evidence{inLog(automatorProc, "cannot clone yet"), inLog(automatorProc, "pass failed", "connection refused"), metricNonZero(automatorProc, failedPasses)}})
	on, off = proxyFault(gitHost, testenv.Fault{Latency: 2 * time.Second})
	cases = append(cases, faultCase{name: "Git server slow (2s a request)", on: on, off: off, work: both, despite: true,
		seen: []evidence{inLog(automatorProc, "pushed image update"), inLog(synchronizerProc, `"applied"`)}})
	on, off = proxyFault(gitHost, testenv.Fault{Latency: 10 * time.Minute})
	cases = append(cases, faultCase{name: "Git server never answers", on: on, off: off, work: both,
		seen: []evidence{inLog(automatorProc, "pass failed", "did not finish within its timeout"), metricUp(automatorProc, failedPasses),
			statusIs("Stalled", "FetchFailed"), metricUp(synchronizerProc, fetchFailures)},
		watch: []string{failedPasses, fetchFailures}})
	var undo func()
	cases = append(cases, faultCase{name: "Git server rejects the automator's pushes", work: tag,
		on: func(s *stand) { undo = s.rejectBotPushes() }, off: func(*stand) { undo() },
		seen:  []evidence{inLog(automatorProc, "pass failed", "pre-receive hook declined"), metricUp(automatorProc, failedPasses)},
		watch: []string{failedPasses}})
	restarted := make(chan error, 1)
	cases = append(cases, faultCase{name: "API server restarted mid-apply", work: change,
		on: func(s *stand) {
			var once atomic.Bool
			s.api.Observe(func(r *http.Request) {
				if apiWrite(http.MethodPatch, "/configmaps/cm-", false)(r) && once.CompareAndSwap(false, true) {
					go func() {
						s.cluster.StopAPIServer()
						restarted <- s.cluster.StartAPIServer(context.Background())
					}()
				}
			})
		},
		off: func(s *stand) {
			s.api.Observe(nil)
			if err := <-restarted; err != nil {
				s.t.Fatalf("restart the API server: %v", err)
			}
		},
		seen:  []evidence{inLog(synchronizerProc, "pass failed"), statusIs("Stalled", ""), metricUp(synchronizerProc, syncFailures)},
		watch: []string{syncFailures}})
	for _, code := range []int{429, 500} {
		on, off := proxyFault(apiHost, testenv.Fault{Status: code})
		cases = append(cases, faultCase{name: fmt.Sprintf("API server answers %d", code), on: on, off: off, work: change,
			seen:  []evidence{inLog(synchronizerProc, "pass failed"), statusIs("Stalled", ""), metricUp(synchronizerProc, syncFailures)},
			watch: []string{syncFailures}})
	}
	return cases
}

// TestReliabilityFaults switches each fault on while the loop has work
// to do, checks that a user sees it (logs, /status, Events, metrics),
// switches it off, and checks that the loop converges within the bound
// with its invariants intact. A slow server must not stop the loop at
// all.
func TestReliabilityFaults(t *testing.T) {
	s := newStand(t, standOptions{})
	ctx := t.Context()
	if _, err := s.waitConverged(ctx, convergeLimit); err != nil {
		t.Fatal(err)
	}
	for _, fc := range faultCases() {
		if only := os.Getenv("DRIFTLESS_FAULT"); only != "" && !strings.Contains(fc.name, only) {
			continue
		}
		m := mark{log: map[string]int64{automatorProc: s.logSize(automatorProc), synchronizerProc: s.logSize(synchronizerProc)},
			metrics: map[string]float64{}, at: time.Now()}
		for _, series := range fc.watch {
			for _, p := range []string{automatorProc, synchronizerProc} {
				if strings.HasPrefix(series, "driftless_"+p) {
					m.metrics[series] = s.metric(p, series)
				}
			}
		}
		fc.on(s)
		fc.work(s)
		lost := 0
		var seen []string
		for _, ev := range fc.seen {
			what := ""
			err := fleet.Until(ctx, 90*time.Second, fc.name+": "+ev.where, func() bool {
				var ok bool
				what, ok = ev.see(ctx, s, m)
				return ok
			})
			if err != nil {
				lost = 1
				t.Errorf("%s: never seen in the %s (last: %s)\n%s", fc.name, ev.where, what, s.diagnose())
				continue
			}
			seen = append(seen, ev.where+": "+shorten(what))
		}
		var took time.Duration
		var err error
		if fc.despite {
			took, err = s.waitConverged(ctx, convergeLimit)
			fc.off(s)
		} else {
			fc.off(s)
			took, err = s.waitConverged(ctx, convergeLimit)
		}
		if err == nil {
			err = s.invariants(ctx)
		}
		if err != nil {
			lost = 1
			t.Errorf("%s: %v\n%s", fc.name, err, s.diagnose())
		}
		t.Logf("%s: converged %s after the fault ended\n  %s", fc.name, took.Round(time.Millisecond), strings.Join(seen, "\n  "))
		report(t, row{Scenario: "fault: " + fc.name, Tried: 1, Lost: lost,
			Detail: fmt.Sprintf("seen in %s; converged in %s once healthy", whereSeen(fc.seen), took.Round(100*time.Millisecond))})
	}
}

func whereSeen(evs []evidence) string {
	var out []string
	for _, ev := range evs {
		if !slices.Contains(out, ev.where) {
			out = append(out, ev.where)
		}
	}
	return strings.Join(out, ", ")
}

// shorten keeps a log line readable: its message and error.
func shorten(line string) string {
	var l map[string]any
	if json.Unmarshal([]byte(line), &l) == nil {
		msg := fmt.Sprint(l["msg"])
		if e, ok := l["error"]; ok {
			msg += ": " + fmt.Sprint(e)
		}
		line = msg
	}
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	return line
}
