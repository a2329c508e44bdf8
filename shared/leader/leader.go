// Package leader runs work only while this replica holds a Lease, so two
// replicas never both commit or both apply.
package leader

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Timing of the election. Defaults are client-go's usual 15s/10s/2s.
type Timing struct {
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Elector campaigns for one Lease.
type Elector struct {
	lock    *resourcelock.LeaseLock
	timing  Timing
	log     *zap.Logger
	leading atomic.Bool
}

// New returns an Elector for the Lease namespace/name, campaigning as
// identity (the Pod name, unique per replica).
func New(cfg *rest.Config, namespace, name, identity string, timing Timing, log *zap.Logger) (*Elector, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("leader election client: %w", err)
	}
	if timing.LeaseDuration == 0 {
		timing = Timing{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	}
	return &Elector{
		lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		timing: timing,
		log:    log,
	}, nil
}

// Leading reports whether this replica holds the Lease now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Run campaigns until ctx ends, calling lead with a context that ends when
// leadership is lost. A replica that loses the Lease stops its work and
// campaigns again; the Lease is released on shutdown so a successor need
// not wait for it to expire.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) {
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            e.lock,
			LeaseDuration:   e.timing.LeaseDuration,
			RenewDeadline:   e.timing.RenewDeadline,
			RetryPeriod:     e.timing.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            e.lock.LeaseMeta.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					e.leading.Store(true)
					e.log.Info("became leader", zap.String("lease", e.lock.LeaseMeta.Namespace+"/"+e.lock.LeaseMeta.Name))
					lead(ctx)
				},
				OnStoppedLeading: func() {
					e.leading.Store(false)
					e.log.Info("stopped leading")
				},
			},
		})
		if err != nil {
			e.log.Error("leader election", zap.Error(err))
			return
		}
		le.Run(ctx)
	}
}
