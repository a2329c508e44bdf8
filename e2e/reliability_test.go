package e2e

import (
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
