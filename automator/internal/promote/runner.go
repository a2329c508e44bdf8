package promote

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/zap"

	"driftless.dev/automator/internal/policy"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
)

// Scope says which commits the revert rule may revert.
type Scope string

// Scopes of the revert rule (--revert).
const (
	// RevertOff: degraded records are only records.
	RevertOff Scope = "off"
	// RevertBumps: only bump commits this automator made (its author
	// email and a Driftless-Image trailer).
	RevertBumps Scope = "bumps"
	// RevertAll: any commit at the head (a merge is reverted to its first
	// parent).
	RevertAll Scope = "all"
)

// Config of a Runner.
type Config struct {
	// Branch is the branch the automator follows: Promotion documents are
	// read from its head, and reverts go to it.
	Branch string
	// PolicyPath is the folder of the repository (beside the
	// ImagePolicies) searched for Promotion documents; "" for none.
	PolicyPath string
	// Notes names the notes ref of the records. Default "driftless".
	Notes string
	// Targets are the branches a Promotion may push to
	// (--promotion-targets): a document naming another is refused, so a
	// commit to the followed branch cannot open a way to any branch.
	Targets []string
	// MinSoak is the least soak time of every Promotion, whatever its
	// document says (--promotion-min-soak).
	MinSoak time.Duration
	// Revert is the revert rule's scope. Default RevertBumps.
	Revert Scope
	// Author of merges, reverts and records; SignKey signs them.
	Author  gitrepo.Signature
	SignKey *openpgp.Entity
	// Keyring, when set, must vouch for the followed branch's head
	// before its documents are read, and for every commit a merge brings
	// to a target (see gitrepo.VerifyHistory).
	Keyring      *gitrepo.Keyring
	VerifyAnchor plumbing.Hash
	// RecordKeyring, when set, makes only the records that a notes
	// commit signed by one of its keys added count (the synchronizers'
	// --record-signing-key): whoever else can push to the notes ref
	// cannot forge a healthy record (see gitrepo.Notes.Signed).
	RecordKeyring *gitrepo.Keyring
	// Attempts bounds the fetch-decide-push rounds of a gate whose push
	// is rejected because the branch moved. Default 5.
	Attempts int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// PassTimeout bounds each pass of Run, as the automator's passes are
	// bounded: a Git server that accepts a connection and never answers
	// would otherwise hold the Runner for good, and with it every
	// automator pass that reads the reverted bumps. Default 10m.
	PassTimeout time.Duration
}

// Runner evaluates the gates and the revert rule against a mirror of the
// repository. Its methods are safe for concurrent use: they take turns,
// and one waiting for its turn gives up when its context ends.
type Runner struct {
	cfg     Config
	mirror  *gitrepo.Mirror
	notes   *gitrepo.Notes
	log     *zap.Logger
	trigger chan struct{}

	turn     chan struct{}            // held by the method running: a mutex a context can give up on
	branches []plumbing.ReferenceName // fetched with the followed branch
	records  *records.Log
	logTip   plumbing.Hash // the notes commit records was read at
	last     map[string]string
	// hist caches revertedInHistory by the head it read.
	histHead plumbing.Hash
	hist     map[string]string
}

// New returns a Runner over mirror.
func New(cfg Config, mirror *gitrepo.Mirror, log *zap.Logger) (*Runner, error) {
	if cfg.Branch == "" {
		return nil, errors.New("promote: the followed branch is required")
	}
	if cfg.Notes == "" {
		cfg.Notes = records.DefaultNotes
	}
	switch cfg.Revert {
	case "":
		cfg.Revert = RevertBumps
	case RevertOff, RevertBumps, RevertAll:
	default:
		return nil, fmt.Errorf("revert scope %q: want off, bumps or all", cfg.Revert)
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PassTimeout <= 0 {
		cfg.PassTimeout = 10 * time.Minute
	}
	return &Runner{cfg: cfg, mirror: mirror, notes: mirror.Notes(cfg.Notes), log: log,
		trigger: make(chan struct{}, 1), turn: make(chan struct{}, 1), last: map[string]string{}}, nil
}

// take waits for the Runner's turn until ctx ends; release gives it back.
func (r *Runner) take(ctx context.Context) error {
	select {
	case r.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the promotion gates' pass in flight: %w", ctx.Err())
	}
}

func (r *Runner) release() { <-r.turn }

// State of a gate after a pass.
type State string

// States.
const (
	// UpToDate: the target holds the source's head already.
	UpToDate State = "UpToDate"
	// Waiting: a commit waits for its records, its soak time or the
	// window.
	Waiting State = "Waiting"
	// Promoted: a merge was pushed to the target in this pass.
	Promoted State = "Promoted"
	// Proposed: the commit was pushed to the review branch in this pass.
	Proposed State = "Proposed"
	// InReview: the review branch holds the commit; a person merges it.
	InReview State = "InReview"
	// Refused: the newest commit cannot be promoted (degraded, untrusted,
	// a conflict, a target not allowed) and none older waits.
	Refused State = "Refused"
	// Failed: Git could not be read or written.
	Failed State = "Failed"
)

// Gate is one Promotion after a pass, as data for logs, metrics and plan.
type Gate struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	From   string `json:"from"`
	To     string `json:"to"`
	Mode   string `json:"mode"`
	State  State  `json:"state"`
	// Candidate is the commit of From the gate is about: promoted,
	// waited for, or refused.
	Candidate string `json:"candidate,omitempty"`
	// Reason says it for a person.
	Reason string `json:"reason"`
	// Since is when the candidate's wait began (its first record), or
	// when it was refused.
	Since time.Time `json:"since,omitzero"`
	// Until is the earliest the candidate can pass (its soak ends, the
	// window opens); zero when it waits for a record.
	Until time.Time `json:"until,omitzero"`
	// Commit is what was pushed: the merge, or the review branch's head.
	Commit string `json:"commit,omitempty"`
	// Evidence is each required cluster's records about the candidate.
	Evidence []Evidence `json:"evidence,omitempty"`
	// Passed over lists newer commits refused, and why.
	PassedOver []string `json:"passedOver,omitempty"`
	// Changed: the state, candidate or reason differ from the last pass
	// (logged once, counted once).
	Changed bool `json:"-"`
	// RefusedFor names the kind of refusal, for the metric: degraded,
	// untrusted, conflict, target, branch.
	RefusedFor string `json:"-"`
	Err        error  `json:"-"`
}

// RevertResult is what the revert rule did in a pass.
type RevertResult struct {
	// Commit is the head whose rollout was recorded degraded.
	Commit string `json:"commit"`
	// Cluster and Record are the degraded record that asked for it.
	Cluster string `json:"cluster"`
	Record  string `json:"record"`
	// Revert is the revert pushed; empty when not (see Reason).
	Revert string `json:"revert,omitempty"`
	// Images are the bumped images the revert takes back.
	Images []string `json:"images,omitempty"`
	// Reason says why nothing was pushed (scope, a plan).
	Reason string `json:"reason,omitempty"`
	// Changed: not said in the last pass (logged once, counted once).
	Changed bool  `json:"-"`
	Err     error `json:"-"`
}

// Result is one pass.
type Result struct {
	// Head is the followed branch's head the documents were read from.
	Head string `json:"head"`
	// Gates has one entry per valid Promotion, by name.
	Gates []Gate `json:"gates"`
	// Revert is set when the head was recorded degraded with a revert
	// asked for.
	Revert *RevertResult `json:"revert,omitempty"`
	// DocErrs are Promotion documents skipped (file:line: why).
	DocErrs error `json:"-"`
	// Untrusted: the head failed verification; nothing was read.
	Untrusted *gitrepo.UntrustedError `json:"-"`
	// Next is when a gate can next change without a new record (a soak
	// ends, a window opens); zero for none.
	Next time.Time `json:"next,omitzero"`
	// Skipped are note lines that are not records.
	Skipped []error `json:"-"`
	// Log is every record as this pass read it (signed ones only with a
	// RecordKeyring): what the gates judged, for views of the fleet.
	Log *records.Log `json:"-"`
}

// Trigger asks Run for a pass at once (a note or branch was pushed, an
// automator pass ended). Triggers during a pass are coalesced.
func (r *Runner) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run passes until ctx ends: at once, on Trigger, when a soak time ends or
// a window opens, and at least every interval (new records of other
// clusters arrive without a trigger).
func (r *Runner) Run(ctx context.Context, interval time.Duration, observe func(Result, error)) {
	for {
		pctx, cancel := context.WithTimeout(ctx, r.cfg.PassTimeout)
		res, err := r.Pass(pctx, false)
		cancel()
		if ctx.Err() != nil {
			return
		}
		observe(res, err)
		wait := interval
		if err != nil {
			wait = min(wait, 10*time.Second)
		}
		if !res.Next.IsZero() {
			// A moment past the soak's end, so the pass finds it over.
			wait = min(wait, max(res.Next.Sub(r.cfg.Now())+10*time.Millisecond, 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.trigger:
			t.Stop()
		case <-t.C:
		}
	}
}

// Skipped returns the image references ("repository:tag") of bumps
// reverted after a failed rollout, with why, for the automator's pass
// (automate.Skipper): those the reverted records name, and those the
// trailers of recent revert commits on the followed branch name (in case
// a record could not be written). It waits for a pass in progress, so a
// revert and its record are seen together.
func (r *Runner) Skipped(ctx context.Context) (map[string]string, error) {
	if err := r.take(ctx); err != nil {
		return nil, err
	}
	defer r.release()
	branch := gitrepo.BranchRef(r.cfg.Branch)
	tips, err := r.mirror.Fetch(ctx, branch, r.notes.Ref())
	if err != nil {
		return nil, err
	}
	l, err := r.readLog()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if head, ok := tips[branch]; ok {
		if head != r.histHead {
			hist := map[string]string{}
			if err := r.revertedInHistory(head, hist); err != nil {
				return nil, err
			}
			r.histHead, r.hist = head, hist
		}
		maps.Copy(out, r.hist)
	}
	for _, e := range l.All() {
		if e.Event != records.Reverted {
			continue
		}
		for _, img := range e.Images {
			out[img] = fmt.Sprintf("reverted after a failed rollout (bump %s, revert %s, %s)", short(e.Commit), short(e.Record.Commit), e.Time.UTC().Format(time.RFC3339))
		}
	}
	return out, nil
}

// historyDepth is how many first-parent commits of the followed branch
// Skipped reads for revert trailers.
const historyDepth = 200

func (r *Runner) revertedInHistory(head plumbing.Hash, out map[string]string) error {
	c, err := r.mirror.Commit(head)
	for n := 0; err == nil && n < historyDepth; n++ {
		if revs := trailers(c.Message, revertedTrailer); len(revs) > 0 {
			for _, img := range revs {
				out[img] = fmt.Sprintf("reverted after a failed rollout (revert %s)", short(c.Hash.String()))
			}
		}
		if len(c.ParentHashes) == 0 {
			return nil
		}
		c, err = r.mirror.Commit(c.ParentHashes[0])
	}
	return err
}

// readLog parses the notes at their fetched tip, once per tip.
func (r *Runner) readLog() (*records.Log, error) {
	tip := r.notes.Tip()
	if r.records != nil && tip == r.logTip {
		return r.records, nil
	}
	all, err := r.notes.All()
	if r.cfg.RecordKeyring != nil {
		all, err = r.notes.Signed(r.cfg.RecordKeyring)
	}
	if err != nil {
		return nil, err
	}
	byHex := make(map[string]string, len(all))
	for c, text := range all {
		byHex[c.String()] = text
	}
	r.records, r.logTip = records.NewLog(byHex), tip
	return r.records, nil
}

// Pass fetches the followed branch, the notes and every branch a
// Promotion names, applies the revert rule to the head and evaluates each
// gate, pushing what passes. A dry run (plan) pushes and records nothing.
func (r *Runner) Pass(ctx context.Context, dryRun bool) (Result, error) {
	var res Result
	if err := r.take(ctx); err != nil {
		return res, err
	}
	defer r.release()
	branch := gitrepo.BranchRef(r.cfg.Branch)
	refs := append([]plumbing.ReferenceName{branch, r.notes.Ref()}, r.branches...)
	tips, err := r.mirror.Fetch(ctx, refs...)
	if err != nil {
		return res, err
	}
	head, ok := tips[branch]
	if !ok {
		return res, fmt.Errorf("branch %s not found", r.cfg.Branch)
	}
	res.Head = head.String()
	if r.cfg.Keyring != nil {
		if err := r.mirror.Verify(r.cfg.Keyring, head, r.cfg.VerifyAnchor); err != nil {
			errors.As(err, &res.Untrusted)
			return res, fmt.Errorf("refusing to read Promotion documents of %s at %s: %w", r.cfg.Branch, head, err)
		}
	}
	promotions, docErrs, err := r.documents(head)
	if err != nil {
		return res, err
	}
	res.DocErrs = docErrs
	if want := r.branchesOf(promotions); !slices.Equal(want, r.branches) {
		r.branches = want
		if _, err := r.mirror.Fetch(ctx, want...); err != nil {
			return res, err
		}
	}
	l, err := r.readLog()
	if err != nil {
		return res, err
	}
	res.Skipped, res.Log = l.Skipped, l
	// A dry run (plan, a page) changes nothing the loop's passes log and
	// count once: only a real pass remembers what it said.
	remember := func(name, key string) bool {
		changed := r.last[name] != key
		if !dryRun {
			r.last[name] = key
		}
		return changed
	}
	if r.cfg.Revert != RevertOff {
		if res.Revert = r.revert(ctx, l, head, dryRun); res.Revert != nil {
			res.Revert.Changed = remember("\x00revert", res.Revert.Commit+" "+res.Revert.Revert+" "+res.Revert.Reason)
		}
	}
	for _, p := range promotions {
		g := r.gate(ctx, p, dryRun)
		g.Changed = remember(p.Name(), string(g.State)+" "+g.Candidate+" "+g.Reason)
		res.Gates = append(res.Gates, g)
		if g.State == Waiting && g.Until.After(r.cfg.Now()) && (res.Next.IsZero() || g.Until.Before(res.Next)) {
			res.Next = g.Until
		}
	}
	return res, nil
}

// documents reads the Promotion documents of commit under PolicyPath.
func (r *Runner) documents(commit plumbing.Hash) ([]*Promotion, error, error) {
	if r.cfg.PolicyPath == "" {
		return nil, nil, nil
	}
	c, err := r.mirror.Commit(commit)
	if err != nil {
		return nil, nil, err
	}
	return Documents(c, r.cfg.PolicyPath)
}

// Documents reads the Promotion documents in the YAML files under dir of
// commit's tree: the valid ones, and the documents skipped (file:line:
// why). The error is for a tree that cannot be read.
func Documents(commit *object.Commit, dir string) ([]*Promotion, error, error) {
	tree, err := commit.Tree()
	if err != nil {
		return nil, nil, fmt.Errorf("read the tree of %s: %w", commit.Hash, err)
	}
	dir = strings.Trim(strings.TrimPrefix(dir, "./"), "/")
	if dir != "" && dir != "." {
		if tree, err = tree.Tree(dir); err != nil {
			if errors.Is(err, object.ErrDirectoryNotFound) {
				return nil, nil, nil
			}
			return nil, nil, fmt.Errorf("read %s at %s: %w", dir, commit.Hash, err)
		}
	} else {
		dir = ""
	}
	var files []policy.File
	err = tree.Files().ForEach(func(f *object.File) error {
		// Regular files only: a link's text is no document, and is
		// never followed.
		if f.Mode != filemode.Regular && f.Mode != filemode.Executable {
			return nil
		}
		if !strings.HasSuffix(f.Name, ".yaml") && !strings.HasSuffix(f.Name, ".yml") {
			return nil
		}
		data, err := f.Contents()
		if err != nil {
			return err
		}
		if Declares([]byte(data)) {
			name := f.Name
			if dir != "" {
				name = dir + "/" + f.Name
			}
			files = append(files, policy.File{Name: name, Data: []byte(data)})
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read Promotion documents at %s: %w", commit.Hash, err)
	}
	ps, docErrs := Load(files)
	return ps, docErrs, nil
}

func (r *Runner) branchesOf(ps []*Promotion) []plumbing.ReferenceName {
	set := map[plumbing.ReferenceName]bool{}
	for _, p := range ps {
		set[gitrepo.BranchRef(p.Spec.From)] = true
		set[gitrepo.BranchRef(p.Spec.To)] = true
		if p.Spec.Mode == ModePullRequest {
			set[gitrepo.BranchRef(p.ReviewBranch())] = true
		}
	}
	delete(set, gitrepo.BranchRef(r.cfg.Branch))
	out := slices.Collect(maps.Keys(set))
	slices.Sort(out)
	return out
}

func short(h string) string {
	if len(h) > 10 {
		return h[:10]
	}
	return h
}
