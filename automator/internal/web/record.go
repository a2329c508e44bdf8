package web

import (
	"slices"
	"sort"
	"sync"
	"time"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/loop"
	"driftless.dev/automator/internal/metrics"
	"driftless.dev/automator/internal/policy"
)

// Record keeps, in memory, what the loop's passes and the plans asked for
// from the UI found: per policy its last scan and its last plan, and the
// last passes. It holds data copied out of automate.Result when the pass
// ends (never the planned file contents), so a page costs no registry
// request and no Git read of the clone the loop is using. Its Observe is
// a loop.Observer.
type Record struct {
	mu       sync.Mutex
	policies map[string]*policyRecord
	// known is every policy the last pass that read Git loaded, scanned
	// or not; nil before such a pass.
	known  map[string]automate.Known
	passes []Pass // oldest first, at most historyLen
	count  int    // loop passes recorded
	// last is the newest loop pass, lastPlan the newest plan.
	last, lastPlan *Pass
	// skipped and warnings are the policy files the newest pass or plan
	// that read Git could not use, and the Flux fields without effect.
	skipped, warnings []string
	// intern shares the text of reasons, which repeat across tags and
	// policies ("not a semantic version"), so a plan of 100,000 tags keeps
	// a few strings, not 100,000.
	intern map[string]string
}

var _ loop.Observer = (*Record)(nil).Observe

type policyRecord struct {
	key      string
	image    string
	source   string
	interval time.Duration
	scan     *Scan // the loop's last scan
	plan     *Scan // the last plan asked for from the UI
}

// historyLen is how many passes and plans History keeps.
const historyLen = 100

// NewRecord returns an empty Record.
func NewRecord() *Record {
	return &Record{policies: map[string]*policyRecord{}, intern: map[string]string{}}
}

// Scan is one policy's outcome in a pass or a plan: what `automator plan`
// prints for it, from the same automate.PolicyResult.
type Scan struct {
	At   time.Time `json:"at"`
	Plan bool      `json:"plan"`
	// Base is the commit the pass or plan read the markers of.
	Base string `json:"base,omitempty"`
	// Tags is how many tags the registry listed; Allowed how many passed
	// the policy's filters.
	Tags    int    `json:"tags"`
	Allowed int    `json:"allowed"`
	Current string `json:"current,omitempty"`
	Chosen  string `json:"chosen,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Kept: the current tag stays, every listed tag ranking below it.
	Kept   bool   `json:"kept,omitempty"`
	Digest string `json:"digest,omitempty"`
	// Update: the chosen tag differs from the current one, so the pass
	// commits it (or the plan would).
	Update bool `json:"update"`
	// Error is why the scan failed (registry, credentials, digest);
	// ErrorKind names its kind as the errors metric does.
	Error     string `json:"error,omitempty"`
	ErrorKind string `json:"errorKind,omitempty"`
	// Rejected is every tag passed over and why. Only a plan lists them
	// (a loop pass chooses without keeping the list, as `run` does);
	// RejectedTotal says how many there are when a view shows fewer.
	Rejected      []Rejection `json:"rejected,omitempty"`
	RejectedTotal int         `json:"rejectedTotal"`
}

// Rejection is one tag passed over and why.
type Rejection struct {
	Tag    string `json:"tag"`
	Reason string `json:"reason"`
}

// Pass is one loop pass or plan as history shows it.
type Pass struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	// Plan: a plan asked for from the UI, by User; nothing was pushed.
	Plan bool   `json:"plan"`
	User string `json:"user,omitempty"`
	// Only names the policies the pass covered, when not all of them
	// (a webhook's trigger, the policies due).
	Only []string `json:"only,omitempty"`
	// Result is committed, unchanged, failed, untrusted or stuck for a
	// pass; planned, unchanged or failed for a plan.
	Result   string   `json:"result"`
	Base     string   `json:"base,omitempty"`
	Commit   string   `json:"commit,omitempty"`
	Attempts int      `json:"attempts,omitempty"`
	Scanned  int      `json:"scanned"`
	Failed   int      `json:"failed"`
	Changes  []Change `json:"changes,omitempty"`
	Error    string   `json:"error,omitempty"`
	// Message and Diff are the commit a plan would make.
	Message string `json:"message,omitempty"`
	Diff    string `json:"diff,omitempty"`
}

// Change is one marked value rewritten (or to be).
type Change struct {
	Policy string `json:"policy"`
	File   string `json:"file"`
	Line   int    `json:"line"`
	Old    string `json:"old"`
	New    string `json:"new"`
}

// discover is the loop's pass that only reads Git for new policies.
const discover = "\x00discover"

// Observe records a loop pass; it is the loop's Observer.
func (r *Record) Observe(res automate.Result, err error, seconds float64) {
	end := time.Now()
	r.add(res, err, end.Add(-time.Duration(seconds*float64(time.Second))), end, nil, false, "")
}

// addPlan records a plan over only (all when empty) asked for by user.
func (r *Record) addPlan(res automate.Result, err error, start time.Time, only []string, user string) Pass {
	return r.add(res, err, start, time.Now(), only, true, user)
}

func (r *Record) add(res automate.Result, err error, start, end time.Time, only []string, plan bool, user string) Pass {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Pass{Start: start, Duration: end.Sub(start), Plan: plan, User: user, Base: res.Base, Commit: res.Commit, Attempts: res.Attempts,
		Scanned: len(res.Policies), Message: res.Message, Diff: res.Diff}
	if !plan {
		// The loop does not say which policies a pass was for; its
		// result does: those it scanned, unless it covered every one.
		if len(res.Policies) < len(res.Known) {
			for _, pr := range res.Policies {
				p.Only = append(p.Only, pr.Policy.Key())
			}
			if len(p.Only) == 0 {
				p.Only = []string{discover}
			}
		}
	} else {
		p.Only = slices.Clone(only)
	}
	for _, c := range res.Changes {
		p.Changes = append(p.Changes, Change{Policy: c.Policy, File: c.File, Line: c.Line, Old: c.Old, New: c.New})
	}
	switch {
	case res.Untrusted != nil:
		p.Result = "untrusted"
	case res.Stuck:
		p.Result = "stuck"
	case err != nil:
		p.Result = "failed"
	case res.Commit != "":
		p.Result = "committed"
	case plan && len(res.Changes) > 0:
		p.Result = "planned"
	default:
		p.Result = "unchanged"
	}
	if err != nil {
		p.Error = err.Error()
	}
	if res.Known != nil {
		r.known = res.Known
		for k := range r.policies {
			if _, ok := res.Known[k]; !ok {
				delete(r.policies, k) // gone from Git
			}
		}
		r.skipped = r.skipped[:0]
		for _, e := range policy.Flatten(res.PolicyErrs) {
			r.skipped = append(r.skipped, e.Error())
		}
		r.warnings = r.warnings[:0]
		for _, w := range res.Warnings {
			r.warnings = append(r.warnings, w.Error())
		}
	}
	updates := map[string]bool{}
	for _, c := range res.Changes {
		updates[c.Policy] = true
	}
	for _, pr := range res.Policies {
		key := pr.Policy.Key()
		pol := r.policies[key]
		if pol == nil {
			pol = &policyRecord{key: key}
			r.policies[key] = pol
		}
		pol.image, pol.source, pol.interval = pr.Policy.Spec.Image, pr.Policy.Source, pr.Policy.ScanInterval()
		s := &Scan{At: end, Plan: plan, Base: res.Base, Update: updates[key]}
		if pr.Err != nil {
			s.Error, s.ErrorKind = pr.Err.Error(), metrics.Reason(pr.Err)
			p.Failed++
		} else {
			ch := pr.Choice
			s.Tags, s.Allowed, s.Current, s.Chosen, s.Reason, s.Kept, s.Digest = ch.Considered, ch.Candidates, ch.Current, ch.Tag, ch.Reason, ch.Kept, pr.Digest
			if len(ch.Rejected) > 0 {
				s.Rejected = make([]Rejection, len(ch.Rejected))
				for i, rj := range ch.Rejected {
					s.Rejected[i] = Rejection{Tag: rj.Tag, Reason: r.share(rj.Reason)}
				}
			}
			s.RejectedTotal = len(ch.Rejected)
		}
		if plan {
			pol.plan = s
		} else {
			pol.scan = s
		}
	}
	if !plan {
		r.count++
	}
	r.passes = append(r.passes, p)
	if len(r.passes) > historyLen {
		r.passes = slices.Delete(r.passes, 0, len(r.passes)-historyLen)
	}
	last := r.passes[len(r.passes)-1]
	if plan {
		r.lastPlan = &last
	} else {
		r.last = &last
	}
	return p
}

func (r *Record) share(s string) string {
	if v, ok := r.intern[s]; ok {
		return v
	}
	if len(r.intern) > 10000 {
		clear(r.intern) // reasons naming each tag do not repeat: keep the map small
	}
	r.intern[s] = s
	return s
}

// policyState is one policy as the views read it: a copy, safe to use
// after the lock is released (scans are never changed once recorded).
type policyState struct {
	key, image, source string
	interval           time.Duration
	repository         string
	scan, plan         *Scan
}

// snapshot is what the views read of a Record, copied under its lock.
type snapshot struct {
	policies          []policyState // sorted by key
	known             bool
	passes            []Pass // newest first
	count             int
	last, lastPlan    *Pass
	skipped, warnings []string
}

func (r *Record) snapshot(withPasses bool) snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{known: r.known != nil, count: r.count, last: r.last, lastPlan: r.lastPlan,
		skipped: slices.Clone(r.skipped), warnings: slices.Clone(r.warnings)}
	keys := make([]string, 0, max(len(r.known), len(r.policies)))
	for k := range r.known {
		keys = append(keys, k)
	}
	for k := range r.policies {
		if _, ok := r.known[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	s.policies = make([]policyState, 0, len(keys))
	for _, k := range keys {
		ps := policyState{key: k}
		if kn, ok := r.known[k]; ok {
			ps.interval, ps.repository = kn.Interval, kn.Repository.Name()
		}
		if pol := r.policies[k]; pol != nil {
			ps.image, ps.source, ps.interval, ps.scan, ps.plan = pol.image, pol.source, pol.interval, pol.scan, pol.plan
		}
		if ps.image == "" {
			ps.image = ps.repository
		}
		s.policies = append(s.policies, ps)
	}
	if withPasses {
		s.passes = slices.Clone(r.passes)
		slices.Reverse(s.passes)
	}
	return s
}

// knows says whether key is a policy the last pass or plan loaded, and
// whether any pass has loaded policies yet.
func (r *Record) knows(key string) (known, anyPass bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, known = r.known[key]
	return known, r.known != nil
}
