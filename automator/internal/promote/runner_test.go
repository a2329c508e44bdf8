package promote_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/util/wait"

	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// TestSilentGitServerHoldsNothing: a Git server that accepts a connection
// and never answers ends each of Run's passes at its timeout, and a
// caller waiting for the Runner (the automator's pass reading the
// reverted bumps) gives up when its own context ends. Before, a gates
// pass stuck on such a connection held the Runner for good, and every
// automator pass after it waited behind it: the loop stopped.
func TestSilentGitServerHoldsNothing(t *testing.T) {
	f := newFleet(t, fmt.Sprintf(gate, ""))
	p, err := testenv.StartFaultProxy(strings.TrimSuffix(f.srv.URL, "/"), testenv.FaultProxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	m, err := gitrepo.OpenMirror(filepath.Join(t.TempDir(), "mirror"), p.URL+"/fleet", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := promote.New(promote.Config{Branch: "dev", PolicyPath: "policies", Targets: []string{"prod"}, Author: automator,
		PassTimeout: 500 * time.Millisecond}, m, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p.Set(testenv.Fault{Latency: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	passes := make(chan error, 16)
	go r.Run(ctx, time.Hour, func(_ promote.Result, err error) { passes <- err })

	// The Runner's pass is stuck on the silent server (its request has
	// reached the proxy): a caller with a deadline gets its turn's error,
	// not a wait without end.
	if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return p.Faulted() > 0, nil
	}); err != nil {
		t.Fatal("the gates' pass never reached the Git server")
	}
	sctx, scancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer scancel()
	done := make(chan error, 1)
	go func() { _, err := r.Skipped(sctx); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Skipped while the gates' pass hangs: %v, want its deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Skipped waited past its deadline for the gates' pass")
	}
	// Run's pass ends at its own timeout and says so.
	select {
	case err := <-passes:
		if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("a gates pass against a silent server: %v, want its deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a gates pass against a silent server did not end at its timeout")
	}
	// Healthy again: the next caller is served.
	p.Set(testenv.Fault{})
	if _, err := r.Skipped(t.Context()); err != nil {
		t.Fatalf("Skipped once the server answers: %v", err)
	}
}
