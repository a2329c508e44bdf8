// Package automate runs the automator's pass: read the policies, list the
// registries, choose tags, edit the manifests, commit and push once.
package automate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"go.uber.org/zap"

	"driftless.dev/automator/internal/checkout"
	"driftless.dev/automator/internal/policy"
	"driftless.dev/automator/internal/update"
	"driftless.dev/shared/gitrepo"
)

// Registry lists tags and resolves digests.
type Registry interface {
	Tags(ctx context.Context, repo name.Repository, auth authn.Authenticator) ([]string, error)
	Digest(ctx context.Context, repo name.Repository, tag string, auth authn.Authenticator) (string, error)
}

// Credentials gives the authenticator a policy asks for, and push times
// for newestPushed policies.
type Credentials interface {
	For(ctx context.Context, p *policy.ImagePolicy) (authn.Authenticator, error)
	PushTimes(ctx context.Context, p *policy.ImagePolicy) (map[string]time.Time, error)
}

// Repo is the Git working clone the automator writes through.
type Repo interface {
	Dir() string
	Branch() string
	Fetch(ctx context.Context, extra ...string) (plumbing.Hash, error)
	RemoteTip(branch string) (plumbing.Hash, error)
	Commit(msg string, author gitrepo.Signature, signKey *openpgp.Entity) (plumbing.Hash, error)
	Push(ctx context.Context, target string) error
	Reset(at plumbing.Hash) error
	Diff(from, to plumbing.Hash) (string, error)
	Verify(k *gitrepo.Keyring, tip, anchor plumbing.Hash) error
	MarkVerified(h plumbing.Hash) error
}

var _ Repo = (*gitrepo.Repo)(nil)

// Skipper names the image references ("repository:tag") a pass must not
// choose, with why: bumps reverted after a failed rollout. It is asked
// after the branch is fetched, so a revert already on the branch comes
// with its reason.
type Skipper interface {
	Skipped(ctx context.Context) (map[string]string, error)
}

// Config is what a pass needs besides its collaborators.
type Config struct {
	// PolicyPath is the folder (or file) in the repository that holds
	// ImagePolicy documents; empty to read none from Git.
	PolicyPath string
	// PolicyFiles are policy files outside the repository (flags).
	PolicyFiles []string
	// ManifestPath is the folder in the repository whose markers are edited.
	// Default: the whole repository.
	ManifestPath string
	// PushBranch is where commits go; default the followed branch. A
	// different branch gives a pull-request flow.
	PushBranch string
	Author     gitrepo.Signature
	SignKey    *openpgp.Entity
	// Message is a text/template for the commit message over Update.
	// Default: DefaultMessage.
	Message string
	// PushAttempts bounds fetch-redo-push rounds on rejection. Default 5.
	PushAttempts int
	// Concurrency bounds registry scans in flight. Default 8.
	Concurrency int
	// Keyring, when set, makes the automator build only on a head whose
	// history it verified: every commit since the last one it verified
	// (or made) is signed by one of its keys, or is an unsigned merge
	// with nothing of its own. An untrusted head gets no edit and no
	// commit. See gitrepo.VerifyHistory.
	Keyring *gitrepo.Keyring
	// VerifyAnchor is a commit trusted without a signature: every commit
	// after it is verified, on a first start too (otherwise a new clone
	// checks only the head).
	VerifyAnchor plumbing.Hash
	// Skip, when set, names tags never to choose (see Skipper).
	Skip Skipper
}

// Automator runs passes.
type Automator struct {
	cfg   Config
	repo  Repo
	reg   Registry
	creds Credentials
	log   *zap.Logger
	tmpl  *template.Template

	mu    sync.Mutex
	stuck stuck
	// clone is held by a pass or a plan for as long as it uses the
	// working clone: the loop's passes and a plan asked for from the UI
	// take turns, so neither sees the other's half-reset tree.
	clone sync.Mutex
}

// New returns an Automator, or an error naming the bad setting.
func New(cfg Config, repo Repo, reg Registry, creds Credentials, log *zap.Logger) (*Automator, error) {
	if cfg.Message == "" {
		cfg.Message = DefaultMessage
	}
	tmpl, err := template.New("message").Parse(cfg.Message)
	if err != nil {
		return nil, fmt.Errorf("commit message template: %w", err)
	}
	if cfg.PushAttempts <= 0 {
		cfg.PushAttempts = 5
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Author.Name == "" {
		cfg.Author = gitrepo.Signature{Name: "Driftless Automator", Email: "automator@driftless.dev"}
	}
	return &Automator{cfg: cfg, repo: repo, reg: reg, creds: creds, log: log, tmpl: tmpl}, nil
}

// PolicyResult is what happened to one policy in a pass.
type PolicyResult struct {
	Policy *policy.ImagePolicy
	Tags   int
	Choice policy.Choice
	Digest string
	Err    error
}

// Result is one pass, returned as data for logs, metrics and the CLI.
type Result struct {
	// Base is the commit the pass started from.
	Base string
	// Commit is the commit pushed; empty when nothing changed.
	Commit string
	// Message is the commit message (also for a plan).
	Message string
	// Policies has one entry per policy scanned.
	Policies []PolicyResult
	// PolicyErrs are policy files that could not be used.
	PolicyErrs error
	// Warnings name Flux fields the policies use that have no effect here.
	Warnings []error
	// Changes are the edits made (or planned).
	Changes []update.Change
	// Edits are the planned file contents.
	Edits []update.Edit
	// Diff is the exact diff of the commit (Plan only).
	Diff string
	// Attempts is how many pushes it took.
	Attempts int
	// Known is every policy loaded this pass, scanned or not, so the loop
	// learns of new and removed policies from any pass.
	Known map[string]Known
	// Untrusted is set when the head failed verification against the
	// keyring: nothing was read, edited or committed.
	Untrusted *gitrepo.UntrustedError
	// Stuck: the pass failed for good on this commit before, and only
	// fetched to see that the branch has not moved (see ErrPermanent).
	Stuck bool
}

// Known is what the loop needs of a policy: when to scan it and which
// registry pushes concern it.
type Known struct {
	Interval   time.Duration
	Repository name.Repository
}

// ErrPermanent marks errors a retry cannot fix until someone changes Git
// (a manifest that does not parse, a broken marker, a link out of the
// checkout). A pass that fails so is not redone on the same commit: the
// next passes only fetch, until the branch moves.
var ErrPermanent = errors.New("needs a fix in the repository")

// stuck is the commit a pass last failed on for good, and why.
type stuck struct {
	at  plumbing.Hash
	err error
}

// pass is what the attempts of one pass share.
type pass struct {
	only    []string
	explain bool
	// scans holds each policy's registry answer: tags are listed once a
	// pass, and a redo after a rejected push reuses the lists.
	scans map[string]*scanned
	// skipped are the image references not to choose, and why.
	skipped map[string]string
}

// Run does one pass and pushes its commit, redoing the attempt on the new
// tip when the push is rejected because the branch moved. only, when not
// empty, limits the pass to the policies with those keys (a webhook's
// trigger).
func (a *Automator) Run(ctx context.Context, only []string) (Result, error) {
	a.clone.Lock()
	defer a.clone.Unlock()
	p := &pass{only: only, scans: map[string]*scanned{}}
	var res Result
	for n := 1; n <= a.cfg.PushAttempts; n++ {
		res.Attempts = n
		h, err := a.attempt(ctx, p, &res)
		if err != nil || h.IsZero() {
			return res, err
		}
		err = a.repo.Push(ctx, a.pushBranch())
		if errors.Is(err, gitrepo.ErrRejected) {
			a.log.Info("push rejected, redoing the edit on the new tip", zap.Int("attempt", n))
			continue
		}
		if err != nil {
			return res, err
		}
		if a.cfg.Keyring != nil {
			// Made on verified history: the next pass starts from it.
			if err := a.repo.MarkVerified(h); err != nil {
				return res, err
			}
		}
		res.Commit = h.String()
		return res, nil
	}
	return res, fmt.Errorf("push to %s: still rejected after %d attempts: %w", a.pushBranch(), a.cfg.PushAttempts, gitrepo.ErrRejected)
}

// Plan does an attempt, returns the exact diff of its commit and every
// tag passed over and why, and drops the commit: nothing is pushed. It
// waits for a pass in progress (they share the clone).
func (a *Automator) Plan(ctx context.Context, only []string) (Result, error) {
	a.clone.Lock()
	defer a.clone.Unlock()
	var res Result
	h, err := a.attempt(ctx, &pass{only: only, explain: true, scans: map[string]*scanned{}}, &res)
	if err != nil || h.IsZero() {
		return res, err
	}
	base := plumbing.NewHash(res.Base)
	res.Diff, err = a.repo.Diff(base, h)
	if rerr := a.repo.Reset(base); rerr != nil {
		return res, rerr
	}
	return res, err
}

// attempt is one try of a pass on the branch's tip as it is now: sync
// (and verify), read the policies and the markers, choose, write, commit
// locally. It returns the commit, or zero when nothing changed.
func (a *Automator) attempt(ctx context.Context, p *pass, res *Result) (plumbing.Hash, error) {
	res.Changes, res.Edits, res.Message, res.Diff = nil, nil, "", ""
	base, err := a.sync(ctx)
	if !base.IsZero() {
		res.Base = base.String()
	}
	if err != nil {
		errors.As(err, &res.Untrusted)
		res.Stuck = errors.Is(err, errStuck)
		return plumbing.ZeroHash, err
	}
	h, err := a.build(ctx, p, res)
	if errors.Is(err, ErrPermanent) {
		a.setStuck(base, err)
	}
	return h, err
}

// build is an attempt past sync, on the checked-out base.
func (a *Automator) build(ctx context.Context, p *pass, res *Result) (plumbing.Hash, error) {
	tree, err := checkout.Open(a.repo.Dir())
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer tree.Close()
	set, perr := policy.LoadTree(tree, a.cfg.PolicyPath, a.cfg.PolicyFiles)
	policies := set.Policies
	res.PolicyErrs, res.Warnings = perr, set.Warnings
	res.Known = make(map[string]Known, len(policies))
	for _, pol := range policies {
		res.Known[pol.Key()] = Known{Interval: pol.ScanInterval(), Repository: pol.Repository()}
	}
	if len(p.only) > 0 {
		policies = slices.DeleteFunc(policies, func(pol *policy.ImagePolicy) bool { return !slices.Contains(p.only, pol.Key()) })
	}
	if len(policies) == 0 {
		return plumbing.ZeroHash, nil
	}
	if a.cfg.Skip != nil {
		skipped, err := a.cfg.Skip.Skipped(ctx)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read the reverted bumps: %w", err)
		}
		if !maps.Equal(skipped, p.skipped) {
			clear(p.scans) // choices made without these skips are chosen again
		}
		p.skipped = skipped
	}
	current, err := a.currentTags(tree, policies)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	// Each policy is listed at most once a pass, and chosen for as soon
	// as its list arrives, while other lists are still in flight.
	var todo []*policy.ImagePolicy
	for _, pol := range policies {
		if _, ok := p.scans[pol.Key()]; !ok {
			todo = append(todo, pol)
		}
	}
	maps.Copy(p.scans, a.scan(ctx, todo, current, p.explain, p.skipped))
	if err := a.decide(ctx, tree, res, policies, p.scans, current, p.skipped); err != nil {
		return plumbing.ZeroHash, err
	}
	if len(res.Changes) == 0 {
		return plumbing.ZeroHash, nil
	}
	if err := update.Write(tree, res.Edits); err != nil {
		return plumbing.ZeroHash, err
	}
	h, err := a.repo.Commit(res.Message, a.cfg.Author, a.cfg.SignKey)
	if errors.Is(err, gitrepo.ErrNoChange) {
		res.Changes = nil
		return plumbing.ZeroHash, nil
	}
	return h, err
}

func (a *Automator) setStuck(at plumbing.Hash, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stuck = stuck{at: at, err: err}
}

// stillStuck returns the error a pass failed with for good on tip, if the
// branch has not moved since.
func (a *Automator) stillStuck(tip plumbing.Hash) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stuck.err == nil || a.stuck.at != tip {
		return nil
	}
	return fmt.Errorf("%w (%w at %s)", a.stuck.err, errStuck, tip)
}

// errStuck marks a pass not redone because the branch has not moved.
var errStuck = errors.New("not retried until the branch moves")

// sync resets the clone to where the next commit goes on top of: the
// followed branch, or, in a pull-request flow, the push branch if it
// exists already, so earlier bumps waiting for review are built on and
// never overwritten.
func (a *Automator) sync(ctx context.Context) (plumbing.Hash, error) {
	var extra []string
	if a.pushBranch() != a.repo.Branch() {
		extra = append(extra, a.pushBranch())
	}
	tip, err := a.repo.Fetch(ctx, extra...)
	if err != nil {
		return tip, err
	}
	if len(extra) > 0 {
		if pt, err := a.repo.RemoteTip(a.pushBranch()); err == nil {
			tip = pt
		}
	}
	if err := a.stillStuck(tip); err != nil {
		return tip, err
	}
	// Verified before the working tree is touched: nothing of an
	// untrusted head is read, not even its policies.
	if a.cfg.Keyring != nil {
		if err := a.repo.Verify(a.cfg.Keyring, tip, a.cfg.VerifyAnchor); err != nil {
			err = fmt.Errorf("refusing to build on %s at %s: %w: %w", a.pushBranch(), tip, ErrPermanent, err)
			a.setStuck(tip, err)
			return tip, err
		}
	}
	return tip, a.repo.Reset(tip)
}

func (a *Automator) pushBranch() string {
	if a.cfg.PushBranch != "" {
		return a.cfg.PushBranch
	}
	return a.repo.Branch()
}

// scanned is one policy's registry answer.
type scanned struct {
	tags    []string
	auth    authn.Authenticator
	err     error
	digests map[string]string // tag -> digest, resolved at most once a pass
	current string            // the floor the choice was made against
	choice  policy.Choice
	listed  int // how many tags were listed
	pushed  map[string]time.Time
}

// list returns the tags of p's repository: from the registry, or, for
// newestPushed, from ECR's DescribeImages with their push times.
func (a *Automator) list(ctx context.Context, p *policy.ImagePolicy, auth authn.Authenticator) ([]string, map[string]time.Time, error) {
	if p.Spec.Policy.NewestPushed == nil {
		tags, err := a.reg.Tags(ctx, p.Repository(), auth)
		return tags, nil, err
	}
	pushed, err := a.creds.PushTimes(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	tags := make([]string, 0, len(pushed))
	for t := range pushed {
		tags = append(tags, t)
	}
	return tags, pushed, nil
}

// scan lists the tags of every policy, a bounded number at a time, and
// chooses against current.
func (a *Automator) scan(ctx context.Context, policies []*policy.ImagePolicy, current map[string]string, explain bool, skipped map[string]string) map[string]*scanned {
	choose := policy.Choose
	if explain {
		choose = policy.Select
	}
	out := make(map[string]*scanned, len(policies))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, a.cfg.Concurrency)
	for _, p := range policies {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s := &scanned{digests: map[string]string{}}
			s.auth, s.err = a.creds.For(ctx, p)
			if s.err == nil {
				s.tags, s.pushed, s.err = a.list(ctx, p, s.auth)
			}
			if s.err == nil {
				s.current = current[p.Key()]
				s.choice = choose(p, s.current, s.tags, policy.WithPushTimes(s.pushed), policy.WithSkipped(skipsOf(p, skipped)))
				s.listed = len(s.tags)
				if !explain {
					// Keep a pass's memory to the lists in flight: a redo
					// whose markers moved lists again (rare).
					s.tags = nil
				}
			}
			mu.Lock()
			out[p.Key()] = s
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// decide chooses per policy against the tags the markers hold (current),
// and plans the edits and the message.
func (a *Automator) decide(ctx context.Context, tree *checkout.Tree, res *Result, policies []*policy.ImagePolicy, scans map[string]*scanned, current map[string]string, skipped map[string]string) error {
	res.Policies = res.Policies[:0]
	images := map[string]update.Image{}
	for _, p := range policies {
		s := scans[p.Key()]
		if s.err == nil && current[p.Key()] != s.current {
			// Another writer moved the markers: choose again.
			if s.tags == nil {
				s.tags, s.pushed, s.err = a.list(ctx, p, s.auth)
			}
			s.current, s.choice = current[p.Key()], policy.Select(p, current[p.Key()], s.tags, policy.WithPushTimes(s.pushed), policy.WithSkipped(skipsOf(p, skipped)))
		}
		pr := PolicyResult{Policy: p, Err: s.err, Tags: s.listed}
		if s.err == nil {
			pr.Choice = s.choice
			if pr.Choice.Tag != "" && !pr.Choice.Kept {
				img := update.Image{Repository: p.Spec.Image, Tag: pr.Choice.Tag}
				if p.Spec.DigestPinning {
					d, err := a.digest(ctx, p, s, pr.Choice.Tag)
					if err != nil {
						pr.Err = err
					}
					img.Digest, pr.Digest = d, d
				}
				if pr.Err == nil {
					images[p.Key()] = img
				}
			}
		}
		res.Policies = append(res.Policies, pr)
	}
	edits, changes, err := update.Plan(tree, a.cfg.ManifestPath, images)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	res.Edits, res.Changes = edits, changes
	res.Message = ""
	if len(changes) > 0 {
		res.Message, err = a.message(res)
		if err != nil {
			return err
		}
	}
	return nil
}

// skipsOf is the tags of p's image among skipped, with why.
func skipsOf(p *policy.ImagePolicy, skipped map[string]string) map[string]string {
	var out map[string]string
	prefix := p.Spec.Image + ":"
	for ref, why := range skipped {
		if tag, ok := strings.CutPrefix(ref, prefix); ok && !strings.Contains(tag, "/") {
			if out == nil {
				out = map[string]string{}
			}
			out[tag] = why
		}
	}
	return out
}

// currentTags reads the tag each policy's markers hold now: the floor
// against downgrades. With several markers the highest-ranked one counts.
func (a *Automator) currentTags(tree *checkout.Tree, policies []*policy.ImagePolicy) (map[string]string, error) {
	markers, err := update.Scan(tree, a.cfg.ManifestPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	seen := map[string][]string{}
	for _, m := range markers {
		if t := update.TagOf(m.Field, m.Value); t != "" && !slices.Contains(seen[m.Policy], t) {
			seen[m.Policy] = append(seen[m.Policy], t)
		}
	}
	out := make(map[string]string, len(policies))
	for _, p := range policies {
		cs := seen[p.Key()]
		if len(cs) == 0 {
			continue
		}
		if out[p.Key()] = policy.Select(p, "", cs).Tag; out[p.Key()] == "" {
			out[p.Key()] = cs[0]
		}
	}
	return out, nil
}

// digest resolves the chosen tag's digest, once a pass: a redo after a
// rejected push does not ask again.
func (a *Automator) digest(ctx context.Context, p *policy.ImagePolicy, s *scanned, tag string) (string, error) {
	if d, ok := s.digests[tag]; ok {
		return d, nil
	}
	d, err := a.reg.Digest(ctx, p.Repository(), tag, s.auth)
	if err != nil {
		return "", err
	}
	s.digests[tag] = d
	return d, nil
}

// Update is the data of the commit message template.
type Update struct {
	Images []ImageUpdate
}

// ImageUpdate is one policy's bump.
type ImageUpdate struct {
	Policy string
	Image  string // repository
	Old    string // old tag
	New    string // new tag
	Digest string
	Files  []string
}

// DefaultMessage lists each bump and ends in trailers that tools can parse
// (git interpret-trailers, git log --format=%(trailers)).
const DefaultMessage = `{{if eq (len .Images) 1}}{{with index .Images 0}}Update {{.Image}} to {{.New}}{{end}}{{else}}Update {{len .Images}} images{{end}}

{{range .Images}}- {{.Policy}}: {{.Image}}:{{.Old}} -> {{.Image}}:{{.New}}
{{end}}
{{range .Images}}Driftless-Policy: {{.Policy}}
Driftless-Image: {{.Image}}:{{.New}}
{{if .Digest}}Driftless-Digest: {{.Digest}}
{{end}}{{end}}`

func (a *Automator) message(res *Result) (string, error) {
	byPolicy := map[string]*ImageUpdate{}
	var order []string
	for _, pr := range res.Policies {
		byPolicy[pr.Policy.Key()] = &ImageUpdate{Policy: pr.Policy.Key(), Image: pr.Policy.Spec.Image, Old: pr.Choice.Current, New: pr.Choice.Tag, Digest: pr.Digest}
	}
	for _, c := range res.Changes {
		u := byPolicy[c.Policy]
		if u == nil {
			continue
		}
		if !slices.Contains(u.Files, c.File) {
			u.Files = append(u.Files, c.File)
		}
		if !slices.Contains(order, c.Policy) {
			order = append(order, c.Policy)
		}
	}
	sort.Strings(order)
	var data Update
	for _, k := range order {
		u := byPolicy[k]
		if u.Old == "" {
			u.Old = "?"
		}
		data.Images = append(data.Images, *u)
	}
	var b bytes.Buffer
	if err := a.tmpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("commit message template: %w", err)
	}
	return strings.TrimRight(b.String(), "\n") + "\n", nil
}
