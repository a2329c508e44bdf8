package loop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/util/wait"

	"driftless.dev/automator/internal/automate"
)

// recorder is a Passer that records which policies each pass covered and
// reports the policies "in Git" (known), as the automator would.
type recorder struct {
	mu    sync.Mutex
	calls [][]string
	known map[string]automate.Known
}

func (r *recorder) Run(_ context.Context, only []string) (automate.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, append([]string(nil), only...))
	k := make(map[string]automate.Known, len(r.known))
	for key, v := range r.known {
		k[key] = v
	}
	return automate.Result{Known: k}, nil
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if slices.Contains(c, key) {
			n++
		}
	}
	return n
}

func known(repo string, every time.Duration) automate.Known {
	r, _ := name.NewRepository(repo)
	return automate.Known{Interval: every, Repository: r}
}

func TestScheduleTriggersAndDiscovery(t *testing.T) {
	rec := &recorder{known: map[string]automate.Known{
		"fast": known("ghcr.io/org/fast", 100*time.Millisecond),
		"slow": known("ghcr.io/org/slow", time.Hour),
	}}
	l := New(rec, zaptest.NewLogger(t), func(automate.Result, error, float64) {})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { l.Run(ctx, 200*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	poll := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("timed out waiting for %s (calls %v)", what, rec.calls)
		}
	}
	// The fast policy is scanned again and again at its interval; the
	// slow one only by the first, full pass.
	poll("five scans of the fast policy", func() bool { return rec.count("fast") >= 5 })
	if n := rec.count("slow"); n != 0 {
		t.Fatalf("slow policy scanned %d times on its own within its hour", n)
	}
	// A webhook trigger scans the slow one at once.
	if keys := l.Match("ghcr.io", "org/slow"); !slices.Equal(keys, []string{"slow"}) {
		t.Fatalf("Match = %v", keys)
	}
	if keys := l.Match("", "org/slow"); !slices.Equal(keys, []string{"slow"}) {
		t.Fatalf("Match without host = %v", keys)
	}
	if keys := l.Match("docker.io", "org/slow"); len(keys) != 0 {
		t.Fatalf("Match on another host = %v", keys)
	}
	l.Trigger([]string{"slow"})
	poll("the triggered scan", func() bool { return rec.count("slow") == 1 })
	// A policy added to Git is found by a discovery pass and scanned.
	rec.mu.Lock()
	rec.known["new"] = known("ghcr.io/org/new", time.Hour)
	rec.mu.Unlock()
	poll("the new policy's first scan", func() bool { return rec.count("new") == 1 })
	// A removed one is no longer scheduled.
	rec.mu.Lock()
	delete(rec.known, "fast")
	rec.mu.Unlock()
	poll("a pass without the fast policy", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.calls) > 0 && strings.Contains(strings.Join(rec.calls[len(rec.calls)-1], ","), "discover")
	})
	// Three more discovery passes (200ms apart): the removed policy's
	// interval (100ms) came round several times meanwhile.
	before, discoveries := rec.count("fast"), rec.count(discover)
	poll("three more discovery passes", func() bool { return rec.count(discover) >= discoveries+3 })
	if rec.count("fast") != before {
		t.Fatal("a removed policy is still scanned")
	}
}

// TestScheduleAfterFailures: a failure a retry may fix is retried soon; a
// permanent one (the repository needs a fix) waits for its usual pace,
// the passes after it only fetching until the branch moves.
func TestScheduleAfterFailures(t *testing.T) {
	l := New(&recorder{}, zaptest.NewLogger(t), func(automate.Result, error, float64) {})
	l.jitter = 0
	known := map[string]automate.Known{"web": known("ghcr.io/org/web", time.Hour)}
	now := time.Now()
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"ok", nil, time.Hour},
		{"registry down", errors.New("registry unreachable"), l.retry},
		{"manifest broken", fmt.Errorf("scan: %w", automate.ErrPermanent), time.Hour},
	} {
		next := map[string]time.Time{}
		l.schedule(next, known, nil, tc.err, now, 30*time.Minute)
		if got := next["web"].Sub(now); got != tc.want {
			t.Errorf("%s: next scan in %s, want %s", tc.name, got, tc.want)
		}
		wantDiscover := min(30*time.Minute, tc.want)
		if got := next[discover].Sub(now); got != wantDiscover {
			t.Errorf("%s: next discovery in %s, want %s", tc.name, got, wantDiscover)
		}
	}
}

// stalling is a Passer whose first pass hangs until its context ends, as
// one reading from a server that accepted the connection and never
// answers would; later passes return at once.
type stalling struct {
	mu       sync.Mutex
	passes   int
	deadline bool
}

func (s *stalling) Run(ctx context.Context, _ []string) (automate.Result, error) {
	s.mu.Lock()
	s.passes++
	first := s.passes == 1
	_, s.deadline = ctx.Deadline()
	s.mu.Unlock()
	if first {
		<-ctx.Done()
		return automate.Result{}, fmt.Errorf("list tags: %w", ctx.Err())
	}
	return automate.Result{Known: map[string]automate.Known{"p": known("ghcr.io/org/p", time.Hour)}}, nil
}

// TestStalledPassTimesOutAndIsRetried: a pass that never returns on its
// own ends at the pass timeout, is reported as failed saying so, and the
// next pass comes after the retry wait: a server that hangs delays the
// loop by one timeout, never forever.
func TestStalledPassTimesOutAndIsRetried(t *testing.T) {
	st := &stalling{}
	var mu sync.Mutex
	var errs []error
	l := New(st, zaptest.NewLogger(t), func(_ automate.Result, err error, _ float64) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}, WithPassTimeout(100*time.Millisecond))
	l.retry = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { l.Run(ctx, time.Hour); close(done) }()
	defer func() { cancel(); <-done }()
	if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.passes >= 2, nil
	}); err != nil {
		t.Fatalf("no pass after the stalled one: %d passes", st.passes)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) == 0 || !errors.Is(errs[0], context.DeadlineExceeded) || !strings.Contains(errs[0].Error(), "did not finish within its timeout of 100ms") {
		t.Fatalf("the stalled pass was reported as %v", errs)
	}
	if !st.deadline {
		t.Fatal("passes run without a deadline")
	}
}
