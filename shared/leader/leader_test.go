package leader_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"driftless.dev/shared/leader"
	"driftless.dev/shared/testenv"
)

// Two replicas: only one leads at any moment; when it stops, the other
// takes over.
func TestOneLeaderAtATime(t *testing.T) {
	c := testenv.NewCluster(t, testenv.ClusterOptions{})
	ns := c.Namespace(t)
	timing := leader.Timing{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
	var inside, maxInside atomic.Int32
	var led [2]atomic.Bool
	ctxs := make([]context.CancelFunc, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		e, err := leader.New(c.Config, ns, "automator", []string{"a", "b"}[i], timing, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		ctxs[i] = cancel
		wg.Go(func() {
			e.Run(ctx, func(ctx context.Context) {
				led[i].Store(true)
				n := inside.Add(1)
				for {
					m := maxInside.Load()
					if n <= m || maxInside.CompareAndSwap(m, n) {
						break
					}
				}
				<-ctx.Done()
				inside.Add(-1)
			})
		})
	}
	defer func() {
		for _, c := range ctxs {
			c()
		}
		wg.Wait()
	}()
	first := -1
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		for i := range led {
			if led[i].Load() {
				first = i
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal("nobody became leader")
	}
	// Let the other campaign while the leader renews the Lease for three
	// lease durations: it must not get in.
	renewedFor(t, c, ns, "automator", 3*timing.LeaseDuration)
	if led[1-first].Load() || maxInside.Load() != 1 {
		t.Fatalf("both replicas led (max at once %d)", maxInside.Load())
	}
	ctxs[first]() // the leader shuts down and releases the Lease
	err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		return led[1-first].Load(), nil
	})
	if err != nil {
		t.Fatal("the standby never took over")
	}
	if maxInside.Load() != 1 {
		t.Fatalf("%d leaders at once", maxInside.Load())
	}
}

// A holder that vanished without releasing (a killed Pod) is replaced
// once the Lease has not changed for LeaseDuration, and not before.
func TestExpiredHolderIsReplaced(t *testing.T) {
	c := testenv.NewCluster(t, testenv.ClusterOptions{})
	ns := c.Namespace(t)
	cs := kubernetes.NewForConfigOrDie(c.Config)
	now := metav1.NewMicroTime(time.Now())
	_, err := cs.CoordinationV1().Leases(ns).Create(t.Context(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "sync"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("ghost"), LeaseDurationSeconds: ptr(int32(2)),
			AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	timing := leader.Timing{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}
	next, err := leader.New(c.Config, ns, "sync", "next", timing, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	led := make(chan time.Duration, 1)
	go next.Run(t.Context(), func(ctx context.Context) { led <- time.Since(start); <-ctx.Done() })
	select {
	case after := <-led:
		// Not before the ghost's Lease went unrenewed for its duration,
		// measured on this replica's clock. (How soon after is a figure,
		// not a correctness property.)
		if after < 2*time.Second {
			t.Fatalf("took the ghost's Lease after %s, before its 2s duration", after)
		}
		l, _ := cs.CoordinationV1().Leases(ns).Get(t.Context(), "sync", metav1.GetOptions{})
		if *l.Spec.HolderIdentity != "next" || *l.Spec.LeaseTransitions != 1 {
			t.Fatalf("lease %+v", l.Spec)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the successor never led")
	}
}

func ptr[T any](v T) *T { return &v }

// renewedFor waits until the Lease's holder has kept renewing it for d
// past the first renewal seen.
func renewedFor(t *testing.T, c *testenv.Cluster, ns, name string, d time.Duration) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	var first time.Time
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, d+30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil {
			return false, nil
		}
		if first.IsZero() {
			first = l.Spec.RenewTime.Time
		}
		return l.Spec.RenewTime.Sub(first) >= d, nil
	})
	if err != nil {
		t.Fatalf("the Lease was not renewed for %s: %v", d, err)
	}
}

// Driftless's elector and client-go's, on one Lease, take turns and never
// both lead: a mixed fleet during an upgrade (or another tool reading the
// Lease) stays safe.
func TestClientGoElectorAndOursShareALease(t *testing.T) {
	c := testenv.NewCluster(t, testenv.ClusterOptions{})
	ns := c.Namespace(t)
	const name = "mixed"
	timing := leader.Timing{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
	var inside, maxInside atomic.Int32
	enter := func() {
		n := inside.Add(1)
		for {
			m := maxInside.Load()
			if n <= m || maxInside.CompareAndSwap(m, n) {
				return
			}
		}
	}
	var oursLed, theirsLed atomic.Int32
	ours, err := leader.New(c.Config, ns, name, "ours", timing, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	startOurs := func() context.CancelFunc {
		ctx, cancel := context.WithCancel(t.Context())
		go ours.Run(ctx, func(ctx context.Context) { enter(); oursLed.Add(1); <-ctx.Done(); inside.Add(-1) })
		return cancel
	}
	startTheirs := func() context.CancelFunc {
		ctx, cancel := context.WithCancel(t.Context())
		lock := &resourcelock.LeaseLock{LeaseMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Client: kubernetes.NewForConfigOrDie(c.Config).CoordinationV1(), LockConfig: resourcelock.ResourceLockConfig{Identity: "client-go"}}
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: timing.LeaseDuration, RenewDeadline: timing.RenewDeadline, RetryPeriod: timing.RetryPeriod,
			ReleaseOnCancel: true, Name: name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) { enter(); theirsLed.Add(1); <-ctx.Done(); inside.Add(-1) },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { le.Run(ctx); close(done) }()
		return func() { cancel(); <-done }
	}
	stopOurs := startOurs()
	waitFor(t, "ours to lead", func() bool { return oursLed.Load() == 1 })
	stopTheirs := startTheirs()
	renewedFor(t, c, ns, name, 2*timing.LeaseDuration)
	if theirsLed.Load() != 0 {
		t.Fatal("client-go's elector took a Lease ours was renewing")
	}
	stopOurs()
	waitFor(t, "client-go's elector to take over", func() bool { return theirsLed.Load() == 1 })
	stopOurs = startOurs()
	renewedFor(t, c, ns, name, 2*timing.LeaseDuration)
	if oursLed.Load() != 1 {
		t.Fatal("ours took a Lease client-go's was renewing")
	}
	stopTheirs()
	waitFor(t, "ours to take over again", func() bool { return oursLed.Load() == 2 })
	stopOurs()
	if maxInside.Load() != 1 {
		t.Fatalf("%d leaders at once", maxInside.Load())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}
