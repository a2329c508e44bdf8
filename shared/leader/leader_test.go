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
	time.Sleep(3 * timing.LeaseDuration) // let the other campaign for a while: it must not get in
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
		if after < 2*time.Second || after > 4*time.Second {
			t.Fatalf("took the ghost's Lease after %s, want after its 2s duration and soon after", after)
		}
		l, _ := cs.CoordinationV1().Leases(ns).Get(t.Context(), "sync", metav1.GetOptions{})
		if *l.Spec.HolderIdentity != "next" || *l.Spec.LeaseTransitions != 1 {
			t.Fatalf("lease %+v", l.Spec)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the successor never led")
	}
}

func ptr[T any](v T) *T { return &v }
