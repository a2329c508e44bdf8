// Package serve holds the HTTP endpoints both programs expose: /metrics,
// /healthz and /readyz, on one mux the program adds its own routes to,
// and a server with timeouts that unauthenticated clients cannot stall.
package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a Prometheus registry with the Go and process
// collectors, the one every program's metrics go into.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MuxOption configures Mux.
type MuxOption func(*muxConfig)

type muxConfig struct{ live func() error }

// WithLiveness makes /healthz answer 503 when live says so (a loop that
// no longer makes progress), so the kubelet restarts the Pod. Default:
// /healthz answers ok while the process serves.
func WithLiveness(live func() error) MuxOption { return func(c *muxConfig) { c.live = live } }

// Mux returns a mux with /metrics, /healthz and /readyz (ready says nil).
func Mux(reg *prometheus.Registry, ready func() error, opts ...MuxOption) *http.ServeMux {
	cfg := muxConfig{live: func() error { return nil }}
	for _, o := range opts {
		o(&cfg)
	}
	check := func(f func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if err := f(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", check(cfg.live))
	mux.HandleFunc("GET /readyz", check(ready))
	return mux
}

// Timeouts of the server. A client must send its headers within
// ReadHeader and its whole request within Read: a sender that stalls
// mid-body holds a connection (and the memory of what it sent) only
// that long.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultTimeouts fit webhooks (a 25 MiB push over a slow link), metrics
// scrapes and pages.
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: 60 * time.Second, Write: 60 * time.Second, Idle: 120 * time.Second}

// Serve serves h on l until ctx ends, then shuts down gracefully. The
// timeouts are DefaultTimeouts unless t is given.
func Serve(ctx context.Context, l net.Listener, h http.Handler, t ...Timeouts) error {
	to := DefaultTimeouts
	if len(t) > 0 {
		to = t[0]
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: to.ReadHeader, ReadTimeout: to.Read, WriteTimeout: to.Write,
		IdleTimeout: to.Idle, MaxHeaderBytes: 64 << 10}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if e := <-done; !errors.Is(e, http.ErrServerClosed) {
			return e
		}
		return err
	}
}
