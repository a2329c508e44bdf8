// Package leader elects one leader among replicas with a Lease
// (coordination.k8s.io/v1), the way client-go's leaderelection does:
// the holder renews the Lease every RetryPeriod; the others take it over
// once it has not changed for LeaseDuration, measured on their own clock
// so skew between nodes does not matter.
//
// It talks to the Lease through the dynamic client. client-go's
// leaderelection package links the whole typed clientset (every API
// group's client, lister and informer), megabytes of resident memory for
// each program that only needs this one object.
package leader

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Timing of the election. Defaults are client-go's usual 15s/10s/2s.
type Timing struct {
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Elector campaigns for one Lease.
type Elector struct {
	leases    dynamic.ResourceInterface
	namespace string
	name      string
	identity  string
	timing    Timing
	log       *zap.Logger
	leading   atomic.Bool

	// What this replica last saw of the Lease, and when (its own clock).
	observedRV   string
	observedTime time.Time
}

// New returns an Elector for the Lease namespace/name, campaigning as
// identity (the Pod name, unique per replica).
func New(cfg *rest.Config, namespace, name, identity string, timing Timing, log *zap.Logger) (*Elector, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("leader election client: %w", err)
	}
	if timing.LeaseDuration == 0 {
		timing = Timing{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	}
	if identity == "" {
		return nil, fmt.Errorf("leader election: an identity is required")
	}
	leases := dyn.Resource(schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}).Namespace(namespace)
	return &Elector{leases: leases, namespace: namespace, name: name, identity: identity, timing: timing, log: log}, nil
}

// Leading reports whether this replica holds the Lease now.
func (e *Elector) Leading() bool { return e.leading.Load() }

// Run campaigns until ctx ends, calling lead with a context that ends when
// leadership is lost. A replica that loses the Lease stops its work and
// campaigns again; the Lease is released on shutdown so a successor need
// not wait for it to expire.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) {
	lease := e.namespace + "/" + e.name
	for ctx.Err() == nil {
		if !e.acquire(ctx) {
			return
		}
		e.leading.Store(true)
		e.log.Info("became leader", zap.String("lease", lease))
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); lead(lctx) }()
		e.renew(lctx)
		cancel()
		<-done
		e.leading.Store(false)
		if ctx.Err() != nil {
			e.release()
			e.log.Info("stopped leading: shutting down, Lease released", zap.String("lease", lease))
			return
		}
		e.log.Info("stopped leading: could not renew the Lease", zap.String("lease", lease))
	}
}

// acquire tries every RetryPeriod until it holds the Lease or ctx ends.
func (e *Elector) acquire(ctx context.Context) bool {
	for {
		if e.tryAcquireOrRenew(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(e.timing.RetryPeriod):
		}
	}
}

// renew keeps the Lease until ctx ends or it could not be renewed for
// RenewDeadline.
func (e *Elector) renew(ctx context.Context) {
	last := time.Now()
	t := time.NewTicker(e.timing.RetryPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if e.tryAcquireOrRenew(ctx) {
			last = time.Now()
			continue
		}
		if time.Since(last) > e.timing.RenewDeadline {
			return
		}
	}
}

const microTime = "2006-01-02T15:04:05.000000Z07:00"

// tryAcquireOrRenew takes the Lease when it is free, expired or already
// ours, with optimistic concurrency (the update carries the
// resourceVersion read), so two replicas never both succeed.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) bool {
	rctx, cancel := context.WithTimeout(ctx, e.timing.RenewDeadline)
	defer cancel()
	now := time.Now()
	stamp := now.UTC().Format(microTime)
	seconds := int64(e.timing.LeaseDuration / time.Second)
	l, err := e.leases.Get(rctx, e.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
			"metadata": map[string]any{"name": e.name, "namespace": e.namespace},
			"spec": map[string]any{
				"holderIdentity": e.identity, "leaseDurationSeconds": seconds,
				"acquireTime": stamp, "renewTime": stamp, "leaseTransitions": int64(0),
			},
		}}
		created, err := e.leases.Create(rctx, l, metav1.CreateOptions{})
		if err != nil {
			return false
		}
		e.observedRV, e.observedTime = created.GetResourceVersion(), now
		return true
	}
	if err != nil {
		e.log.Debug("read the Lease", zap.Error(err))
		return false
	}
	if l.GetResourceVersion() != e.observedRV {
		e.observedRV, e.observedTime = l.GetResourceVersion(), now
	}
	holder, _, _ := unstructured.NestedString(l.Object, "spec", "holderIdentity")
	held, _, _ := unstructured.NestedInt64(l.Object, "spec", "leaseDurationSeconds")
	if held == 0 {
		held = seconds
	}
	if holder != "" && holder != e.identity && now.Before(e.observedTime.Add(time.Duration(held)*time.Second)) {
		return false // someone else holds it, and renewed it recently
	}
	if holder != e.identity {
		transitions, _, _ := unstructured.NestedInt64(l.Object, "spec", "leaseTransitions")
		_ = unstructured.SetNestedField(l.Object, stamp, "spec", "acquireTime")
		_ = unstructured.SetNestedField(l.Object, transitions+1, "spec", "leaseTransitions")
	}
	_ = unstructured.SetNestedField(l.Object, e.identity, "spec", "holderIdentity")
	_ = unstructured.SetNestedField(l.Object, seconds, "spec", "leaseDurationSeconds")
	_ = unstructured.SetNestedField(l.Object, stamp, "spec", "renewTime")
	updated, err := e.leases.Update(rctx, l, metav1.UpdateOptions{})
	if err != nil {
		return false // a conflict: someone else wrote first
	}
	e.observedRV, e.observedTime = updated.GetResourceVersion(), now
	return true
}

// release gives the Lease up so a successor takes over at once.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := e.leases.Get(ctx, e.name, metav1.GetOptions{})
	if err != nil {
		return
	}
	if holder, _, _ := unstructured.NestedString(l.Object, "spec", "holderIdentity"); holder != e.identity {
		return
	}
	_ = unstructured.SetNestedField(l.Object, "", "spec", "holderIdentity")
	_ = unstructured.SetNestedField(l.Object, int64(1), "spec", "leaseDurationSeconds")
	_ = unstructured.SetNestedField(l.Object, time.Now().UTC().Format(microTime), "spec", "renewTime")
	if _, err := e.leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		e.log.Debug("release the Lease", zap.Error(err))
	}
}
