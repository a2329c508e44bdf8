package promote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/zap"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
)

// Ready: the candidate passes; a run (not a plan) promotes it now.
const Ready State = "Ready"

// maxCandidates bounds how far back the source branch is searched for a
// commit that passes.
const maxCandidates = 50

// gate evaluates p and, unless dryRun, acts on it: fetch, decide, push,
// redone on the new tips when the push is rejected because a branch moved
// (another automator promoted first: the redo finds the target up to date).
func (r *Runner) gate(ctx context.Context, p *Promotion, dryRun bool) Gate {
	base := Gate{Name: p.Name(), Source: p.Source, From: p.Spec.From, To: p.Spec.To, Mode: p.Spec.Mode}
	if base.Mode == "" {
		base.Mode = ModeMerge
	}
	if !slices.Contains(r.cfg.Targets, p.Spec.To) {
		base.State, base.RefusedFor = Refused, "target"
		allowed := "none"
		if len(r.cfg.Targets) > 0 {
			allowed = strings.Join(r.cfg.Targets, ", ")
		}
		base.Reason = fmt.Sprintf("this automator may not push to %s: --promotion-targets allows %s", p.Spec.To, allowed)
		return base
	}
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			refs := []plumbing.ReferenceName{gitrepo.BranchRef(p.Spec.From), gitrepo.BranchRef(p.Spec.To), r.notes.Ref()}
			if p.Spec.Mode == ModePullRequest {
				refs = append(refs, gitrepo.BranchRef(p.ReviewBranch()))
			}
			if _, err := r.mirror.Fetch(ctx, refs...); err != nil {
				return failed(base, err)
			}
		}
		l, err := r.readLog()
		if err != nil {
			return failed(base, err)
		}
		g, cand := r.decide(base, p, l)
		if cand.IsZero() || dryRun {
			return g
		}
		if p.Spec.Mode == ModePullRequest {
			err = r.propose(ctx, p, &g, cand)
		} else {
			err = r.merge(ctx, p, &g, cand)
		}
		if errors.Is(err, gitrepo.ErrRejected) && attempt < r.cfg.Attempts {
			r.log.Info("promotion push rejected: a branch moved; deciding again on the new tips", zap.String("promotion", p.Name()), zap.Int("attempt", attempt))
			continue
		}
		if err != nil {
			return failed(g, err)
		}
		return g
	}
}

func failed(g Gate, err error) Gate {
	g.State, g.Err, g.Reason = Failed, err, err.Error()
	return g
}

// verdict is what the evidence says of a candidate.
type verdict int

const (
	passes verdict = iota
	waits
	degraded
	cannot // superseded, or never recorded and no longer the newest
)

func judge(evs []Evidence) verdict {
	v := passes
	for _, e := range evs {
		switch e.Health {
		case Degraded:
			return degraded
		case Superseded:
			v = max(v, cannot)
		case Soaking, AppliedOnly, Unrecorded:
			v = max(v, waits)
		}
	}
	return v
}

// decide finds the newest commit of p's source branch, not yet in its
// target, that passes the gate; it returns it, or the gate's state and
// why with a zero hash.
func (r *Runner) decide(g Gate, p *Promotion, l *records.Log) (Gate, plumbing.Hash) {
	from, to := r.mirror.Tip(gitrepo.BranchRef(p.Spec.From)), r.mirror.Tip(gitrepo.BranchRef(p.Spec.To))
	switch {
	case from.IsZero():
		g.State, g.RefusedFor, g.Reason = Refused, "branch", fmt.Sprintf("branch %s not found", p.Spec.From)
		return g, plumbing.ZeroHash
	case to.IsZero():
		g.State, g.RefusedFor, g.Reason = Refused, "branch", fmt.Sprintf("branch %s not found: create it once (from %s)", p.Spec.To, p.Spec.From)
		return g, plumbing.ZeroHash
	}
	cands, err := r.candidates(from, to)
	if err != nil {
		return failed(g, err), plumbing.ZeroHash
	}
	if len(cands) == 0 {
		g.State, g.Candidate = UpToDate, from.String()
		g.Reason = fmt.Sprintf("%s holds %s@%s", p.Spec.To, p.Spec.From, short(from.String()))
		return g, plumbing.ZeroHash
	}
	soak := max(p.soak, r.cfg.MinSoak)
	now := r.cfg.Now()
	var wait, refused *candidateView
	for i, c := range cands {
		view := &candidateView{commit: c}
		for _, cl := range p.Spec.HealthyIn {
			view.evs = append(view.evs, Assess(l, c.Hash.String(), cl, soak, now))
		}
		switch judge(view.evs) {
		case passes:
			g.Candidate, g.Evidence = c.Hash.String(), view.evs
			if open, next := p.window.open(now); !open {
				g.State, g.Until, g.Since = Waiting, next, since(view)
				g.Reason = fmt.Sprintf("%s@%s passed (%s); waiting for the window, which opens %s", p.Spec.From, short(g.Candidate), evidence(view.evs), next.Format(time.RFC3339))
				return g, plumbing.ZeroHash
			}
			g.State = Ready
			g.Reason = fmt.Sprintf("%s@%s passed: %s (soak %s)", p.Spec.From, short(g.Candidate), evidence(view.evs), soak)
			return g, c.Hash
		case degraded:
			g.PassedOver = append(g.PassedOver, fmt.Sprintf("%s: %s", short(c.Hash.String()), evidence(view.evs)))
			if refused == nil && wait == nil {
				refused = view
			}
		case waits:
			// Only the newest commit, or one already soaking, is worth
			// waiting for: an older one the cluster never recorded was
			// skipped over.
			if wait == nil && (i == 0 || slices.ContainsFunc(view.evs, func(e Evidence) bool { return e.Health == Soaking })) {
				wait = view
			}
		}
	}
	switch {
	case wait != nil:
		g.State, g.Candidate, g.Evidence, g.Since = Waiting, wait.commit.Hash.String(), wait.evs, since(wait)
		g.Until = until(wait.evs)
		g.Reason = fmt.Sprintf("%s@%s waits: %s", p.Spec.From, short(g.Candidate), evidence(wait.evs))
	case refused != nil:
		g.State, g.RefusedFor, g.Candidate, g.Evidence = Refused, "degraded", refused.commit.Hash.String(), refused.evs
		for _, e := range refused.evs {
			if e.Health == Degraded {
				g.Since = e.DegradedAt
			}
		}
		g.Reason = fmt.Sprintf("%s@%s is never promoted: %s", p.Spec.From, short(g.Candidate), evidence(refused.evs))
	default:
		c := cands[0]
		g.State, g.Candidate, g.Since = Waiting, c.Hash.String(), c.Committer.When
		g.Reason = fmt.Sprintf("%s@%s waits: no commit of %s not in %s has been healthy for %s in %s", p.Spec.From, short(g.Candidate), p.Spec.From, p.Spec.To, soak, strings.Join(p.Spec.HealthyIn, ", "))
	}
	return g, plumbing.ZeroHash
}

type candidateView struct {
	commit *object.Commit
	evs    []Evidence
}

// since is when a candidate's wait began: its first record, or its
// commit when it has none.
func since(v *candidateView) time.Time {
	var t time.Time
	for _, e := range v.evs {
		for _, x := range []time.Time{e.Applied, e.HealthySince} {
			if !x.IsZero() && (t.IsZero() || x.Before(t)) {
				t = x
			}
		}
	}
	if t.IsZero() {
		t = v.commit.Committer.When
	}
	return t
}

// until is when every cluster's soak is over; zero while one has no
// healthy record.
func until(evs []Evidence) time.Time {
	var t time.Time
	for _, e := range evs {
		switch e.Health {
		case Soaking:
			t = maxTime(t, e.Until)
		case Soaked:
		default:
			return time.Time{}
		}
	}
	return t
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func evidence(evs []Evidence) string {
	parts := make([]string, len(evs))
	for i, e := range evs {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

// candidates are the commits of the source branch's first-parent line,
// newest first, that the target does not hold: from the source's head
// back to where the two histories meet.
func (r *Runner) candidates(from, to plumbing.Hash) ([]*object.Commit, error) {
	fc, err := r.mirror.Commit(from)
	if err != nil {
		return nil, err
	}
	tc, err := r.mirror.Commit(to)
	if err != nil {
		return nil, err
	}
	bases, err := fc.MergeBase(tc)
	if err != nil {
		return nil, fmt.Errorf("merge base of %s and %s: %w", from, to, err)
	}
	if len(bases) == 0 {
		return nil, fmt.Errorf("%s and %s share no history: promote by hand once", from, to)
	}
	held := map[plumbing.Hash]bool{}
	for _, b := range bases {
		held[b.Hash] = true
	}
	var out []*object.Commit
	for c := fc; len(out) < maxCandidates && !held[c.Hash]; {
		out = append(out, c)
		if len(c.ParentHashes) == 0 {
			break
		}
		if c, err = r.mirror.Commit(c.ParentHashes[0]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// merge pushes a merge of cand into the target: signed like the
// automator's bumps, path by path (a path changed on both sides is a
// conflict, never guessed), fast-forward only. With a keyring, every
// commit it brings to the target must be trusted.
func (r *Runner) merge(ctx context.Context, p *Promotion, g *Gate, cand plumbing.Hash) error {
	to := r.mirror.Tip(gitrepo.BranchRef(p.Spec.To))
	s := r.mirror.Repository().Storer
	if r.cfg.Keyring != nil {
		trusted := []plumbing.Hash{to}
		if !r.cfg.VerifyAnchor.IsZero() {
			trusted = append(trusted, r.cfg.VerifyAnchor)
		}
		if err := gitrepo.VerifyHistory(s, r.cfg.Keyring, cand, trusted...); err != nil {
			if errors.Is(err, gitrepo.ErrUntrusted) {
				g.State, g.RefusedFor, g.Reason = Refused, "untrusted", fmt.Sprintf("%s@%s would bring an untrusted commit to %s: %v", p.Spec.From, short(cand.String()), p.Spec.To, err)
				return nil
			}
			return err
		}
	}
	tc, err := r.mirror.Commit(to)
	if err != nil {
		return err
	}
	cc, err := r.mirror.Commit(cand)
	if err != nil {
		return err
	}
	bases, err := tc.MergeBase(cc)
	if err != nil {
		return fmt.Errorf("merge base of %s and %s: %w", to, cand, err)
	}
	if len(bases) != 1 {
		g.State, g.RefusedFor, g.Reason = Refused, "conflict", fmt.Sprintf("%s and %s@%s have %d merge bases: merge by hand once", p.Spec.To, p.Spec.From, short(cand.String()), len(bases))
		return nil
	}
	tree, err := gitrepo.MergeTrees(s, bases[0].TreeHash, tc.TreeHash, cc.TreeHash)
	var conflict *gitrepo.ConflictError
	if errors.As(err, &conflict) {
		g.State, g.RefusedFor = Refused, "conflict"
		g.Reason = fmt.Sprintf("%s@%s cannot be merged into %s: %v since %s; merge by hand, or use mode %s", p.Spec.From, short(cand.String()), p.Spec.To, err, short(bases[0].Hash.String()), ModePullRequest)
		return nil
	}
	if err != nil {
		return err
	}
	msg := mergeMessage(p, cc, g.Evidence, max(p.soak, r.cfg.MinSoak))
	m, err := r.mirror.NewCommit(tree, []plumbing.Hash{to, cand}, msg, r.cfg.Author, r.cfg.SignKey)
	if err != nil {
		return err
	}
	if err := r.mirror.Push(ctx, m, gitrepo.BranchRef(p.Spec.To)); err != nil {
		return err
	}
	g.State, g.Commit = Promoted, m.String()
	g.Reason = fmt.Sprintf("merged %s@%s into %s as %s: %s", p.Spec.From, short(cand.String()), p.Spec.To, short(m.String()), evidence(g.Evidence))
	r.record(ctx, g, cand, records.Record{Event: records.Promoted, Commit: m.String(), To: p.Spec.To, Gate: p.Name(), Message: evidence(g.Evidence)})
	return nil
}

// propose pushes cand to the review branch, fast-forward only.
func (r *Runner) propose(ctx context.Context, p *Promotion, g *Gate, cand plumbing.Hash) error {
	branch := p.ReviewBranch()
	at := r.mirror.Tip(gitrepo.BranchRef(branch))
	if at == cand {
		g.State, g.Commit = InReview, cand.String()
		g.Reason = fmt.Sprintf("%s holds %s@%s for review: merge it into %s (%s)", branch, p.Spec.From, short(cand.String()), p.Spec.To, evidence(g.Evidence))
		return nil
	}
	if !at.IsZero() {
		ok, err := r.mirror.IsAncestor(at, cand)
		if err != nil {
			return err
		}
		if !ok {
			g.State, g.RefusedFor = Refused, "branch"
			g.Reason = fmt.Sprintf("the review branch %s has commits %s@%s lacks: merge or delete it", branch, p.Spec.From, short(cand.String()))
			return nil
		}
	}
	if err := r.mirror.Push(ctx, cand, gitrepo.BranchRef(branch)); err != nil {
		return err
	}
	g.State, g.Commit = Proposed, cand.String()
	g.Reason = fmt.Sprintf("pushed %s@%s to %s for review into %s: %s", p.Spec.From, short(cand.String()), branch, p.Spec.To, evidence(g.Evidence))
	r.record(ctx, g, cand, records.Record{Event: records.Proposed, Commit: cand.String(), To: p.Spec.To, Gate: p.Name(), Message: "review branch " + branch})
	return nil
}

// record appends an automator record to commit's note. The promotion is
// in Git's history already: a record that cannot be written is said in
// the gate's reason and the log, not undone.
func (r *Runner) record(ctx context.Context, g *Gate, commit plumbing.Hash, rec records.Record) {
	rec.Time, rec.By = r.cfg.Now().UTC(), r.cfg.Author.Name
	_, err := r.notes.Append(ctx, map[plumbing.Hash][]string{commit: {rec.Format()}}, gitrepo.AppendOptions{
		Author: r.cfg.Author, SignKey: r.cfg.SignKey, Message: fmt.Sprintf("Deployment record: %s %s", rec.Event, short(commit.String()))})
	if err != nil {
		g.Reason += fmt.Sprintf(" (its record was not written: %v)", err)
		r.log.Error("record not written", zap.String("promotion", g.Name), zap.String("commit", commit.String()), zap.Error(err))
	}
}

// mergeMessage names the promoted commit, the gate and its evidence, in
// words and in trailers.
func mergeMessage(p *Promotion, c *object.Commit, evs []Evidence, soak time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Promote %s@%s to %s\n\n", p.Spec.From, short(c.Hash.String()), p.Spec.To)
	fmt.Fprintf(&b, "%s\n\n", firstLine(c.Message))
	fmt.Fprintf(&b, "Gate %s (%s): healthy in %s for %s.\n", p.Name(), p.Source, strings.Join(p.Spec.HealthyIn, ", "), soak)
	for _, e := range evs {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	fmt.Fprintf(&b, "\nDriftless-Promotion: %s\nDriftless-Promoted: %s\n", p.Name(), c.Hash)
	for _, e := range evs {
		fmt.Fprintf(&b, "Driftless-Evidence: %s healthy since %s\n", e.Cluster, e.HealthySince.UTC().Format(time.RFC3339Nano))
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
