package web

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"driftless.dev/automator/internal/policy"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
)

// GateRunner evaluates the promotion gates and the records they read
// (*promote.Runner). A dry run is what `automator plan` runs: it pushes,
// records and remembers nothing.
type GateRunner interface {
	Pass(ctx context.Context, dryRun bool) (promote.Result, error)
}

var _ GateRunner = (*promote.Runner)(nil)

// Gates is the fleet page's Records, read from the gates' own evaluation
// and nothing else: the gate loop's passes as Observe is told of them,
// or, when none is younger than maxAge (a standby replica runs no gate
// loop; a loop that stopped), a dry run of the same Pass, as plan runs it.
// Each branch's gates are the pass's Gates; each cluster's word on a
// commit is the gate's own Evidence when the gate is about that commit,
// and otherwise promote.Assess over the records the pass read, the
// function the gates judge by.
type Gates struct {
	run    GateRunner
	maxAge time.Duration
	now    func() time.Time

	mu   sync.Mutex
	last *evaluation
	// dry serializes the dry runs, so views that arrive together share one.
	dry sync.Mutex
}

var _ Records = (*Gates)(nil)

type evaluation struct {
	res promote.Result
	err error
	at  time.Time
	dry bool
}

// NewGates returns the Records of run's evaluations. maxAge is how old
// the last one may be before a view makes a dry run: the gate loop's
// interval (--promotion-interval) with some slack.
func NewGates(run GateRunner, maxAge time.Duration) *Gates {
	return &Gates{run: run, maxAge: maxAge, now: time.Now}
}

// Observe keeps an evaluation of the gate loop (promote.Runner.Run's
// observer).
func (g *Gates) Observe(res promote.Result, err error) {
	g.keep(&evaluation{res: res, err: err, at: g.now()})
}

func (g *Gates) keep(e *evaluation) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil || !e.at.Before(g.last.at) {
		g.last = e
	}
}

func (g *Gates) fresh() *evaluation {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last != nil && g.now().Sub(g.last.at) <= g.maxAge {
		return g.last
	}
	return nil
}

// current is the last evaluation, or a dry run made now when it is too old.
func (g *Gates) current(ctx context.Context) *evaluation {
	if e := g.fresh(); e != nil {
		return e
	}
	g.dry.Lock()
	defer g.dry.Unlock()
	if e := g.fresh(); e != nil {
		return e
	}
	res, err := g.run.Pass(ctx, true)
	e := &evaluation{res: res, err: err, at: g.now(), dry: true}
	if ctx.Err() == nil {
		g.keep(e)
	}
	return e
}

// failure says why an evaluation read nothing, without a URL's
// credentials.
func failure(e *evaluation) error {
	if e.err == nil {
		return nil
	}
	return errors.New(gitrepo.Redact(e.err.Error()))
}

// Branches are the branches the gates name, each with its role.
func (g *Gates) Branches(ctx context.Context) ([]BranchRole, error) {
	e := g.current(ctx)
	if err := failure(e); err != nil {
		return nil, err
	}
	var out []BranchRole
	for _, gt := range e.res.Gates {
		out = append(out,
			BranchRole{Name: gt.From, Role: "promotes to " + gt.To + ": gate " + gt.Name + " (" + gt.Mode + ", " + gt.Source + ")"},
			BranchRole{Name: gt.To, Role: "promoted from " + gt.From + ": gate " + gt.Name})
	}
	return out, nil
}

// Evidence is what the gates from branch and the clusters' records say
// of commit, branch's tip.
func (g *Gates) Evidence(ctx context.Context, branch, commit string) (Evidence, error) {
	e := g.current(ctx)
	out := Evidence{EvaluatedAt: e.at, DryRun: e.dry}
	if err := failure(e); err != nil {
		return out, err
	}
	// The gates' own word on the commit, where a gate is about it.
	judged := map[string]promote.Evidence{}
	for _, gt := range e.res.Gates {
		if gt.From != branch {
			continue
		}
		out.Gates = append(out.Gates, Gate{Name: gt.Name, To: gt.To, Mode: gt.Mode, State: string(gt.State), Reason: gt.Reason,
			Candidate: gt.Candidate, Since: gt.Since, Until: gt.Until, Commit: gt.Commit})
		if gt.Candidate == commit {
			for _, ev := range gt.Evidence {
				judged[ev.Cluster] = ev
			}
		}
	}
	if commit == e.res.Head && e.res.DocErrs != nil {
		// The Promotion documents are read from the followed branch's head.
		for _, d := range policy.Flatten(e.res.DocErrs) {
			out.Problems = append(out.Problems, d.Error())
		}
	}
	l := e.res.Log
	if l == nil {
		return out, nil
	}
	for _, cluster := range l.Clusters() {
		entries := l.Cluster(cluster)
		runs, follows := "", false
		for _, x := range slices.Backward(entries) {
			if x.Event == records.Applied {
				runs, follows = x.Commit, x.Ref == branch
				break
			}
		}
		ev, ok := judged[cluster]
		if !ok {
			if !follows && !slices.ContainsFunc(l.Of(commit), func(r records.Record) bool { return r.Cluster == cluster }) {
				continue
			}
			ev = promote.Assess(l, commit, cluster, 0, g.now())
		}
		cr := clusterRecord(ev)
		if runs != commit {
			cr.Runs = runs
		}
		out.Clusters = append(out.Clusters, cr)
	}
	return out, nil
}

// clusterRecord says a cluster's evidence for the fleet: its state, since
// when, and plan's words.
func clusterRecord(ev promote.Evidence) ClusterRecord {
	cr := ClusterRecord{Cluster: ev.Cluster, Message: strings.TrimPrefix(ev.String(), ev.Cluster+": ")}
	switch ev.Health {
	case promote.Unrecorded:
		cr.State = "pending"
	case promote.AppliedOnly:
		cr.State, cr.Since = "applied", ev.Applied
	case promote.Soaking, promote.Soaked:
		cr.State, cr.Since = "healthy", ev.HealthySince
	case promote.Superseded:
		cr.State, cr.Since = "superseded", ev.HealthySince
	case promote.Degraded:
		cr.State, cr.Since = "degraded", ev.DegradedAt
	default:
		cr.State = strings.ToLower(string(ev.Health))
	}
	return cr
}
