// Package recorder writes the synchronizer's deployment records: that it
// applied a commit (with the digest of the objects and the images they
// run), that the commit became healthy, or degraded, as lines of the
// commit's Git note (see driftless.dev/shared/records). It works off the
// reconcile loop: Observe only queues, and a goroutine of its own writes
// the queue in batches, retrying until Git takes them, so a slow or
// unreachable Git server never slows an apply. Failures show in Status
// and the metrics.
package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
	"driftless.dev/synchronizer/internal/metrics"
	"driftless.dev/synchronizer/internal/reconcile"
)

// Notes is the notes ref the records are appended to.
type Notes interface {
	Fetch(ctx context.Context) (plumbing.Hash, error)
	Read(commit plumbing.Hash) (string, error)
	Append(ctx context.Context, lines map[plumbing.Hash][]string, opts gitrepo.AppendOptions) (gitrepo.AppendResult, error)
}

var _ Notes = (*gitrepo.Notes)(nil)

var _ reconcile.Observer = (*Recorder)(nil)

// Config of a Recorder.
type Config struct {
	// Cluster names the cluster in every record (--cluster-name).
	Cluster string
	// RevertOnFailure asks, in each degraded record, for a revert of the
	// commit (--revert-on-failure): the automator acts on it.
	RevertOnFailure bool
	// Author of the notes commits; SignKey signs them when set.
	Author  gitrepo.Signature
	SignKey *openpgp.Entity
	// Queue bounds the records waiting to be written; past it the oldest
	// is dropped and counted. Default 1000.
	Queue int
	// Retry is the wait after a failed write, doubled up to MaxRetry.
	// Default 1s and 1m.
	Retry, MaxRetry time.Duration
	// Batch bounds the records written in one notes commit. Default 100.
	Batch int
}

// Recorder queues transitions and writes them as records.
type Recorder struct {
	cfg     Config
	notes   Notes
	metrics *metrics.Metrics
	log     *zap.Logger
	wake    chan struct{}

	mu      sync.Mutex
	queue   []*item
	started map[records.Event]bool // a kind seen since the process started
	status  Status
}

// item is a record waiting to be written.
type item struct {
	commit plumbing.Hash
	rec    records.Record
	// objs are hashed into rec.Digest and rec.Images when written, off
	// the loop.
	objs []*unstructured.Unstructured
	// ifNew: the first record of its kind since the process started,
	// perhaps a repeat of what the previous process wrote; it is dropped
	// when the note already says as much.
	ifNew bool
}

// Status is the recorder's state, for /status.
type Status struct {
	// Pending records wait to be written.
	Pending int `json:"pending"`
	// Written and Failed count records written and failed write
	// attempts; Dropped counts records lost to a full queue.
	Written int `json:"written"`
	Failed  int `json:"failed"`
	Dropped int `json:"dropped"`
	// LastWritten is when a record last reached Git.
	LastWritten time.Time `json:"lastWritten,omitzero"`
	// LastError is the last write's error while writes fail ("" once one
	// succeeds). URLs in it are redacted.
	LastError string `json:"lastError,omitempty"`
}

// New returns a recorder; Run writes what Observe queues.
func New(cfg Config, notes Notes, m *metrics.Metrics, log *zap.Logger) (*Recorder, error) {
	if !records.ValidName(cfg.Cluster) {
		return nil, fmt.Errorf("cluster name %q: want lower-case letters, digits, '-' and '.', at most 63", cfg.Cluster)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1000
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.MaxRetry < cfg.Retry {
		cfg.MaxRetry = max(time.Minute, cfg.Retry)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	return &Recorder{cfg: cfg, notes: notes, metrics: m, log: log, wake: make(chan struct{}, 1), started: map[records.Event]bool{}}, nil
}

// Observe queues t as a record. It never blocks: the loop calls it.
func (r *Recorder) Observe(t reconcile.Transition) {
	ref, commit, ok := strings.Cut(t.Revision, "@sha1:")
	if !ok || !plumbing.IsHash(commit) {
		r.log.Error("not recorded: a revision without a commit", zap.String("revision", t.Revision))
		return
	}
	it := &item{commit: plumbing.NewHash(commit), objs: t.Objects,
		rec: records.Record{Time: t.Time.UTC(), Event: t.Event, Cluster: r.cfg.Cluster, Ref: ref, Message: t.Message}}
	if t.Event == records.Degraded {
		it.rec.Revert = r.cfg.RevertOnFailure
	}
	r.mu.Lock()
	it.ifNew = !r.started[t.Event]
	r.started[t.Event] = true
	if len(r.queue) >= r.cfg.Queue {
		r.queue = r.queue[1:]
		r.status.Dropped++
		r.metrics.Records.WithLabelValues("dropped").Inc()
	}
	r.queue = append(r.queue, it)
	r.status.Pending = len(r.queue)
	r.metrics.RecordsPending.Set(float64(len(r.queue)))
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Status returns the recorder's state.
func (r *Recorder) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run writes queued records until ctx ends, then tries once more, briefly,
// to write what is left.
func (r *Recorder) Run(ctx context.Context) {
	wait := r.cfg.Retry
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for r.flush(fctx) == nil && r.pending() > 0 {
			}
			cancel()
			return
		case <-r.wake:
			if retry != nil {
				continue // a failed write waits for its retry
			}
		case <-retry:
			retry = nil
		}
		for r.pending() > 0 {
			if err := r.flush(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				retry = time.After(wait)
				wait = min(2*wait, r.cfg.MaxRetry)
				break
			}
			wait = r.cfg.Retry
		}
	}
}

func (r *Recorder) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// flush writes the oldest batch. On failure the batch stays queued, in
// order, ahead of what came meanwhile.
func (r *Recorder) flush(ctx context.Context) error {
	r.mu.Lock()
	batch := slices.Clone(r.queue[:min(len(r.queue), r.cfg.Batch)])
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	for _, it := range batch {
		if it.objs != nil {
			it.rec.Digest, it.rec.Images = Digest(it.objs), Images(it.objs)
			it.objs = nil
		}
	}
	err := r.write(ctx, batch)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		msg := gitrepo.Redact(err.Error())
		if msg != r.status.LastError {
			// Once per kind of failure, not once per retry.
			r.log.Error("deployment records not written; retrying", zap.Int("records", len(batch)), zap.Error(err))
		}
		r.status.Failed += len(batch)
		r.status.LastError = msg
		r.metrics.Records.WithLabelValues("failed").Add(float64(len(batch)))
		return err
	}
	// The queue only grew at its end (or lost its oldest to a full
	// queue): drop what was written.
	n := 0
	for n < len(r.queue) && n < len(batch) && r.queue[n] == batch[n] {
		n++
	}
	if n < len(batch) {
		// Some of the batch was dropped meanwhile: remove the rest by identity.
		r.queue = slices.DeleteFunc(r.queue, func(it *item) bool { return slices.Contains(batch, it) })
	} else {
		r.queue = r.queue[n:]
	}
	now := time.Now()
	for _, it := range batch {
		r.metrics.RecordLatency.Observe(now.Sub(it.rec.Time).Seconds())
	}
	r.status.Written += len(batch)
	r.status.Pending = len(r.queue)
	r.status.LastWritten = now
	r.status.LastError = ""
	r.metrics.Records.WithLabelValues("written").Add(float64(len(batch)))
	r.metrics.RecordsPending.Set(float64(len(r.queue)))
	return nil
}

// write appends the batch's lines, leaving out the first-since-start
// records the note already holds.
func (r *Recorder) write(ctx context.Context, batch []*item) error {
	lines := map[plumbing.Hash][]string{}
	if slices.ContainsFunc(batch, func(it *item) bool { return it.ifNew }) {
		if _, err := r.notes.Fetch(ctx); err != nil {
			return err
		}
	}
	for _, it := range batch {
		if it.ifNew {
			note, err := r.notes.Read(it.commit)
			if err != nil {
				return err
			}
			if said(note, it.rec) {
				continue
			}
		}
		lines[it.commit] = append(lines[it.commit], it.rec.Format())
	}
	if len(lines) == 0 {
		return nil
	}
	res, err := r.notes.Append(ctx, lines, gitrepo.AppendOptions{Author: r.cfg.Author, SignKey: r.cfg.SignKey,
		Message: fmt.Sprintf("Deployment records of %s (%d)", r.cfg.Cluster, len(batch))})
	if err != nil {
		return fmt.Errorf("write %d deployment records: %w", len(batch), err)
	}
	r.log.Debug("deployment records written", zap.Int("records", res.Added), zap.Int("attempts", res.Attempts), zap.String("notes", res.Commit.String()))
	return nil
}

// said reports whether note already holds what rec says, from this
// cluster: an applied record of the same objects, or, for health, the
// same latest health.
func said(note string, rec records.Record) bool {
	recs, _ := records.ParseNote(note)
	var lastHealth records.Event
	for _, o := range recs {
		if o.Cluster != rec.Cluster {
			continue
		}
		switch o.Event {
		case records.Applied:
			if rec.Event == records.Applied && o.Digest == rec.Digest {
				return true
			}
		case records.Healthy, records.Degraded:
			lastHealth = o.Event
		}
	}
	return rec.Event != records.Applied && lastHealth == rec.Event
}

// Digest is the sha256 of objs, independent of their order: each object's
// JSON (keys sorted), sorted, each on a line.
func Digest(objs []*unstructured.Unstructured) string {
	lines := make([]string, 0, len(objs))
	for _, o := range objs {
		b, err := json.Marshal(o.Object)
		if err != nil {
			// Unstructured content always marshals; keep the object's
			// identity so the digest still changes with the set.
			b = []byte(o.GroupVersionKind().String() + "/" + o.GetNamespace() + "/" + o.GetName())
		}
		lines = append(lines, string(b))
	}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Images are the container images objs run: every image of a containers,
// initContainers or ephemeralContainers list anywhere in them (Pods,
// workloads' templates, CronJobs, custom resources with pod templates),
// sorted, once each.
func Images(objs []*unstructured.Unstructured) []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "containers" || k == "initContainers" || k == "ephemeralContainers" {
					if list, ok := c.([]any); ok {
						for _, e := range list {
							if m, ok := e.(map[string]any); ok {
								if img, ok := m["image"].(string); ok && img != "" && !strings.ContainsAny(img, ", \n") {
									seen[img] = true
								}
							}
						}
					}
				}
				walk(c)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, o := range objs {
		walk(o.Object)
	}
	out := make([]string, 0, len(seen))
	for img := range seen {
		out = append(out, img)
	}
	slices.Sort(out)
	return out
}
