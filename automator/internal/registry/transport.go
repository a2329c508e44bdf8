package registry

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// politeTransport spends a per-registry request budget and retries
// throttled (429) and failed (5xx) requests with backoff, waiting at least
// as long as the registry's Retry-After asks. Only GET and HEAD are
// retried: listing and resolving never change anything.
type politeTransport struct {
	next     http.RoundTripper
	rps      float64
	burst    int
	attempts int
	backoff  time.Duration
	// maxWait caps one Retry-After, so a hostile header cannot stall a scan.
	maxWait time.Duration

	mu       sync.Mutex
	limiters map[string]*rate.Limiter

	// retries counts retried requests, for metrics.
	onRetry func(host string, status int)
}

func (t *politeTransport) limiter(host string) *rate.Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.limiters[host]
	if !ok {
		l = rate.NewLimiter(rate.Limit(t.rps), t.burst)
		t.limiters[host] = l
	}
	return l
}

func (t *politeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	retryable := req.Method == http.MethodGet || req.Method == http.MethodHead
	for attempt := 1; ; attempt++ {
		if t.rps > 0 {
			if err := t.limiter(req.URL.Host).Wait(ctx); err != nil {
				return nil, fmt.Errorf("request budget for %s: %w", req.URL.Host, err)
			}
		}
		resp, err := t.next.RoundTrip(req)
		if !retryable || attempt >= t.attempts {
			return resp, err
		}
		var wait time.Duration
		switch {
		case err != nil:
			// Transport errors are not retried here: go-containerregistry
			// probes https before http, and a refused connection means
			// the registry is down, which the next scan retries anyway.
			return resp, err
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			wait = max(t.backoffFor(attempt), retryAfter(resp.Header.Get("Retry-After")))
			wait = min(wait, t.maxWait)
			resp.Body.Close()
			if t.onRetry != nil {
				t.onRetry(req.URL.Host, resp.StatusCode)
			}
		default:
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// backoffFor doubles per attempt, with jitter so many policies that failed
// together do not retry together.
func (t *politeTransport) backoffFor(attempt int) time.Duration {
	d := t.backoff << (attempt - 1)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if at, err := http.ParseTime(h); err == nil {
		return max(time.Until(at), 0)
	}
	return 0
}
