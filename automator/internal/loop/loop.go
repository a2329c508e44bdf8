// Package loop owns the automator's timing: each policy is scanned at its
// own interval, with jitter, and a webhook trigger scans at once.
package loop

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"driftless.dev/automator/internal/automate"
)

// Passer runs one pass over the named policies (all when only is empty).
type Passer interface {
	Run(ctx context.Context, only []string) (automate.Result, error)
}

// Observer is told of every pass (metrics).
type Observer func(res automate.Result, err error, seconds float64)

// Loop schedules passes.
type Loop struct {
	passer  Passer
	log     *zap.Logger
	observe Observer
	// jitter spreads each interval by up to this fraction either way, so
	// many automators do not hit a registry in step.
	jitter float64
	// retry is the wait after a failed pass.
	retry time.Duration
	// passTimeout bounds one pass: a registry or Git server that accepts
	// a connection and never answers must not stall every later scan.
	passTimeout time.Duration

	// warned and skipped are the last warnings and policy errors logged,
	// so each is said once until it changes. Loop goroutine only.
	warned, skipped string

	mu       sync.Mutex
	known    map[string]automate.Known
	pending  map[string]bool
	triggerC chan struct{}
	passes   int
}

// Option configures a Loop.
type Option func(*Loop)

// WithPassTimeout bounds each pass (default DefaultPassTimeout). A pass
// that runs out of time fails and is retried like any other.
func WithPassTimeout(d time.Duration) Option {
	return func(l *Loop) {
		if d > 0 {
			l.passTimeout = d
		}
	}
}

// DefaultPassTimeout bounds a pass unless WithPassTimeout says otherwise.
const DefaultPassTimeout = 10 * time.Minute

// New returns a Loop.
func New(p Passer, log *zap.Logger, observe Observer, opts ...Option) *Loop {
	l := &Loop{passer: p, log: log, observe: observe, jitter: 0.1, retry: 10 * time.Second, passTimeout: DefaultPassTimeout,
		known: map[string]automate.Known{}, pending: map[string]bool{}, triggerC: make(chan struct{}, 1)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Trigger asks for an immediate scan of the policies with these keys.
// Triggers that arrive during a pass are coalesced into the next one.
func (l *Loop) Trigger(keys []string) {
	l.mu.Lock()
	for _, k := range keys {
		l.pending[k] = true
	}
	l.mu.Unlock()
	select {
	case l.triggerC <- struct{}{}:
	default:
	}
}

// Match returns the keys of the policies watching repository path repo,
// and, when host is not empty, on that registry host.
func (l *Loop) Match(host, repo string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	for k, kn := range l.known {
		if kn.Repository.RepositoryStr() != repo {
			continue
		}
		if host != "" && kn.Repository.RegistryStr() != host {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Passes returns how many passes ran.
func (l *Loop) Passes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.passes
}

// discover is a pass that scans nothing: it fetches and reads the
// policies, so new ones are found even when every interval is long.
const discover = "\x00discover"

// Run loops until ctx ends. The first pass covers every policy and learns
// their intervals; later passes cover the policies that are due, and a
// discovery pass every refresh finds policies added to Git.
func (l *Loop) Run(ctx context.Context, refresh time.Duration) error {
	next := map[string]time.Time{}
	pass := func(only []string) {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, l.passTimeout)
		res, err := l.passer.Run(pctx, only)
		cancel()
		secs := time.Since(start).Seconds()
		if ctx.Err() != nil {
			return
		}
		if err != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("the pass did not finish within its timeout of %s (a registry or Git server that does not answer?): %w", l.passTimeout, err)
		}
		l.observe(res, err, secs)
		l.report(res, err, secs)
		l.mu.Lock()
		l.passes++
		if res.Known != nil {
			l.known = res.Known
		}
		known := l.known
		l.mu.Unlock()
		l.schedule(next, known, only, err, time.Now(), refresh)
	}
	pass(nil)
	for {
		wait := time.Hour
		now := time.Now()
		for _, t := range next {
			wait = min(wait, t.Sub(now))
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-l.triggerC:
			timer.Stop()
			l.mu.Lock()
			keys := make([]string, 0, len(l.pending))
			for k := range l.pending {
				keys = append(keys, k)
			}
			clear(l.pending)
			l.mu.Unlock()
			slices.Sort(keys)
			if len(keys) > 0 {
				pass(keys)
			}
		case <-timer.C:
			now := time.Now()
			var due []string
			for k, t := range next {
				if k != discover && !t.After(now) {
					due = append(due, k)
				}
			}
			switch {
			case len(due) > 0:
				slices.Sort(due)
				pass(due)
			case !next[discover].After(now):
				pass([]string{discover})
			}
		}
	}
}

// schedule sets, after a pass over only (all when empty) that ended with
// err, when each known policy is scanned next and when Git is read for new
// policies. A failure a retry may fix (a registry or Git server down) is
// retried soon; a permanent one (the repository needs a fix) is not: the
// passes that follow only fetch until the branch moves, at their usual
// pace.
func (l *Loop) schedule(next map[string]time.Time, known map[string]automate.Known, only []string, err error, now time.Time, refresh time.Duration) {
	retry := err != nil && !errors.Is(err, automate.ErrPermanent)
	for k := range next {
		if _, ok := known[k]; !ok && k != discover {
			delete(next, k)
		}
	}
	for k, kn := range known {
		_, seen := next[k]
		switch {
		case len(only) == 0 || slices.Contains(only, k):
			d := l.spread(kn.Interval)
			if retry {
				d = min(d, l.retry)
			}
			next[k] = now.Add(d)
		case !seen:
			next[k] = now // found by this pass, never scanned: due now
		}
	}
	next[discover] = now.Add(refresh)
	if retry {
		next[discover] = now.Add(min(refresh, l.retry))
	}
}

func (l *Loop) spread(d time.Duration) time.Duration {
	f := 1 + l.jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// report logs a pass: Info for a change of state, Error once per failure.
func (l *Loop) report(res automate.Result, err error, secs float64) {
	if res.PolicyErrs != nil && res.PolicyErrs.Error() != l.skipped {
		l.log.Error("some policies were skipped", zap.Error(res.PolicyErrs))
	}
	if res.PolicyErrs != nil {
		l.skipped = res.PolicyErrs.Error()
	} else if res.Base != "" {
		l.skipped = ""
	}
	if w := errors.Join(res.Warnings...); w != nil && w.Error() != l.warned {
		l.warned = w.Error()
		l.log.Warn("policy fields without effect", zap.Error(w))
	}
	for _, pr := range res.Policies {
		if pr.Err != nil {
			l.log.Error("scan failed", zap.String("policy", pr.Policy.Key()), zap.Error(pr.Err))
			continue
		}
		l.log.Debug("scanned", zap.String("policy", pr.Policy.Key()), zap.Int("tags", pr.Tags),
			zap.String("chosen", pr.Choice.Tag), zap.String("reason", pr.Choice.Reason))
	}
	switch {
	case res.Stuck:
		l.log.Debug("the branch has not moved since the pass failed for good", zap.Error(err))
	case res.Untrusted != nil:
		l.log.Error("refusing to build on an untrusted head: no edit, no commit until a trusted commit is at the head",
			zap.String("commit", res.Untrusted.Commit), zap.String("reason", res.Untrusted.Reason))
	case errors.Is(err, automate.ErrPermanent):
		l.log.Error("pass failed: the repository needs a fix; not retried until the branch moves", zap.Error(err), zap.String("revision", res.Base))
	case err != nil:
		l.log.Error("pass failed", zap.Error(err), zap.Float64("seconds", secs))
	case res.Commit != "":
		l.log.Info("pushed image update", zap.String("revision", res.Commit), zap.Int("changes", len(res.Changes)),
			zap.Int("attempts", res.Attempts), zap.Float64("seconds", secs))
	}
}
