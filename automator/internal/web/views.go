package web

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/update"
	"driftless.dev/shared/webauth"
	"driftless.dev/shared/webui"
)

// Policies is GET /api/v1/policies and the page /ui/.
type Policies struct {
	Repository string `json:"repository"`
	Branch     string `json:"branch"`
	PushBranch string `json:"pushBranch"`
	// Leader: this replica runs passes (a standby only plans).
	Leader bool `json:"leader"`
	// Passes is how many loop passes this process ran.
	Passes int `json:"passes"`
	// LastPass is the loop's newest pass, LastPlan the newest plan.
	LastPass *Pass `json:"lastPass,omitempty"`
	LastPlan *Pass `json:"lastPlan,omitempty"`
	// Skipped are the policy documents that could not be used (file,
	// line, field, why); Warnings the Flux fields without effect.
	Skipped  []string `json:"skipped,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Registries groups the policies by registry host, with the errors
	// of their last scans.
	Registries []Registry `json:"registries"`
	// The filter: q matches key, image, chosen tag, reason and error
	// (case-insensitive); failing only the policies whose last scan failed.
	Query   string `json:"q,omitempty"`
	Failing bool   `json:"failing,omitempty"`
	Total   int    `json:"total"`
	Shown   int    `json:"shown"`
	// Policies are sorted by key; each lists at most listRejected tags
	// passed over (the CLI's plan without -v), /api/v1/policies/{key}
	// every one.
	Policies []Policy `json:"policies"`
	// LogNote says why last commits may be missing.
	LogNote string `json:"logNote,omitempty"`
}

// Policy is one ImagePolicy (Driftless's or Flux's) as the automator last
// saw it.
type Policy struct {
	Key      string        `json:"key"`
	Image    string        `json:"image"`
	Registry string        `json:"registry,omitempty"`
	Source   string        `json:"source,omitempty"`
	Interval time.Duration `json:"interval"`
	// Scan is the loop's last scan of it; Plan the last plan's. Last is
	// the newer of the two.
	Scan *Scan `json:"scan,omitempty"`
	Plan *Scan `json:"plan,omitempty"`
	Last *Scan `json:"-"`
	// LastCommit is the newest commit on the push branch whose trailers
	// name the policy.
	LastCommit *Commit `json:"lastCommit,omitempty"`
}

// Registry is one registry host and how its policies fare.
type Registry struct {
	Host     string        `json:"host"`
	Policies int           `json:"policies"`
	Failing  int           `json:"failing"`
	Errors   []PolicyError `json:"errors,omitempty"`
}

// PolicyError is one policy's failed scan.
type PolicyError struct {
	Policy string    `json:"policy"`
	Kind   string    `json:"kind"`
	Error  string    `json:"error"`
	At     time.Time `json:"at"`
}

// listRejected is how many tags passed over the list shows per policy, as
// `automator plan` without -v.
const listRejected = 10

func (h *Handler) policies(r *http.Request) (any, error) {
	q := r.URL.Query()
	out := Policies{Query: strings.TrimSpace(q.Get("q")), Failing: q.Get("failing") != ""}
	all := h.policyList(&out)
	needle := strings.ToLower(out.Query)
	out.Policies = make([]Policy, 0, len(all))
	for _, p := range all {
		failing := p.Last != nil && p.Last.Error != ""
		if out.Failing && !failing {
			continue
		}
		if needle != "" && !p.matches(needle) {
			continue
		}
		if p.Plan != nil && len(p.Plan.Rejected) > listRejected {
			wasLast := p.Last == p.Plan
			short := *p.Plan
			short.Rejected = short.Rejected[:listRejected]
			p.Plan = &short
			if wasLast {
				p.Last = &short
			}
		}
		out.Policies = append(out.Policies, p)
	}
	out.Shown = len(out.Policies)
	return out, nil
}

func (p *Policy) matches(needle string) bool {
	text := []string{p.Key, p.Image}
	if s := p.Last; s != nil {
		text = append(text, s.Chosen, s.Current, s.Reason, s.Error)
	}
	for _, t := range text {
		if strings.Contains(strings.ToLower(t), needle) {
			return true
		}
	}
	return false
}

// policyList fills the head of out and returns every policy, unfiltered.
func (h *Handler) policyList(out *Policies) []Policy {
	snap := h.rec.snapshot(false)
	out.Repository, out.Branch, out.PushBranch = h.cfg.Repository, h.cfg.Branch, h.cfg.PushBranch
	out.Leader, out.Passes, out.LastPass, out.LastPlan = h.cfg.Leading(), snap.count, snap.last, snap.lastPlan
	out.Skipped, out.Warnings = snap.skipped, snap.warnings
	if out.LastPlan != nil {
		// The list carries the plan's outcome; its diff is on /ui/history.
		lp := *out.LastPlan
		lp.Diff = ""
		out.LastPlan = &lp
	}
	bumps, err := h.clone.lastBumps(h.cfg.PushBranch)
	if err != nil {
		out.LogNote = "The last commits are not shown: " + err.Error()
	}
	regs := map[string]*Registry{}
	var hosts []string
	list := make([]Policy, 0, len(snap.policies))
	for _, ps := range snap.policies {
		p := Policy{Key: ps.key, Image: ps.image, Source: ps.source, Interval: ps.interval, Scan: ps.scan, Plan: ps.plan}
		p.Registry, _, _ = strings.Cut(ps.repository, "/")
		switch {
		case ps.plan == nil:
			p.Last = ps.scan
		case ps.scan == nil || ps.plan.At.After(ps.scan.At):
			p.Last = ps.plan
		default:
			p.Last = ps.scan
		}
		if c, ok := bumps[ps.key]; ok {
			p.LastCommit = &c
		}
		reg := regs[p.Registry]
		if reg == nil {
			reg = &Registry{Host: p.Registry}
			regs[p.Registry] = reg
			hosts = append(hosts, p.Registry)
		}
		reg.Policies++
		if p.Last != nil && p.Last.Error != "" {
			reg.Failing++
			reg.Errors = append(reg.Errors, PolicyError{Policy: p.Key, Kind: p.Last.ErrorKind, Error: p.Last.Error, At: p.Last.At})
		}
		list = append(list, p)
	}
	slices.Sort(hosts)
	out.Registries = make([]Registry, 0, len(hosts))
	for _, host := range hosts {
		out.Registries = append(out.Registries, *regs[host])
	}
	out.Total = len(list)
	return list
}

// PolicyDetail is GET /api/v1/policies/{key} and the page
// /ui/policies/{key}: one policy with every tag passed over.
type PolicyDetail struct {
	Policy
	Branch     string `json:"branch"`
	PushBranch string `json:"pushBranch"`
}

func (h *Handler) policy(r *http.Request) (any, error) {
	key := r.PathValue("key")
	var head Policies
	all := h.policyList(&head)
	for _, p := range all {
		if p.Key == key {
			return PolicyDetail{Policy: p, Branch: head.Branch, PushBranch: head.PushBranch}, nil
		}
	}
	if !h.rec.snapshot(false).known {
		return nil, webui.Errorf(http.StatusServiceUnavailable, "no pass has read the policies yet: policy %q is not known yet", key)
	}
	return nil, webui.Errorf(http.StatusNotFound, "no policy %q: the last pass read no ImagePolicy of that key (namespace:name) from Git", key)
}

// History is GET /api/v1/history and the page /ui/history.
type History struct {
	// Passes are the last passes and plans of this process, newest first.
	Passes []Pass `json:"passes"`
}

func (h *Handler) history(*http.Request) (any, error) {
	return History{Passes: h.rec.snapshot(true).passes}, nil
}

// PlanAnswer is what POST /api/v1/plan answers.
type PlanAnswer struct {
	Action  string `json:"action"`
	Message string `json:"message"`
	Plan    Pass   `json:"plan"`
}

// planNow runs automate's Plan (what `automator plan` runs) over the
// policies named by the form's or query's "policy" values, every one when
// none is named, and keeps its result for the pages. It waits for a pass
// in progress: they share the clone.
func (h *Handler) planNow(r *http.Request, u webauth.User) (any, error) {
	only := r.Form["policy"]
	for _, k := range only {
		if known, any := h.rec.knows(k); any && !known {
			return nil, webui.Errorf(http.StatusNotFound, "no policy %q: the last pass read no ImagePolicy of that key from Git", k)
		}
	}
	start := time.Now()
	res, err := h.plan.Plan(r.Context(), only)
	if r.Context().Err() != nil {
		return nil, r.Context().Err() // the caller left: nothing to keep
	}
	if err == nil {
		for _, k := range only {
			if !slices.ContainsFunc(res.Policies, func(pr automate.PolicyResult) bool { return pr.Policy.Key() == k }) {
				return nil, webui.Errorf(http.StatusNotFound, "no policy %q: the plan read no ImagePolicy of that key from Git", k)
			}
		}
	}
	p := h.rec.addPlan(res, err, start, only, u.Name)
	a := PlanAnswer{Action: "plan", Plan: p}
	switch {
	case err != nil:
		a.Message = "the plan failed: " + err.Error()
	case len(p.Changes) == 0:
		a.Message = fmt.Sprintf("planned %d policies: no change, nothing would be committed", p.Scanned)
	default:
		a.Message = fmt.Sprintf("planned %d policies: %d marked values would change", p.Scanned, len(p.Changes))
	}
	return a, nil
}

// Fleet is GET /api/v1/fleet and the page /ui/fleet: each branch the
// automator knows, and the image versions each declares, from Git alone.
type Fleet struct {
	Repository string   `json:"repository"`
	Branches   []Branch `json:"branches"`
	// Images has one row per policy that any branch's markers name; each
	// row's Branches are index-aligned with Branches.
	Images []ImageRow `json:"images"`
	// Records says whether deployment records and promotion gates are
	// shown (Records configured); RecordsError why they could not be read.
	Records      bool   `json:"records"`
	RecordsError string `json:"recordsError,omitempty"`
}

// Branch is one branch as the automator's clone holds it.
type Branch struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Tip is the branch's last fetched commit; Error why it could not be read.
	Tip   *Commit `json:"tip,omitempty"`
	Error string  `json:"error,omitempty"`
	// Markers is how many marked values the branch's tree holds;
	// Problems are markers and files that could not be read.
	Markers  int       `json:"markers"`
	Problems []string  `json:"problems,omitempty"`
	Evidence *Evidence `json:"evidence,omitempty"`
}

// ImageRow is what each branch declares for one policy.
type ImageRow struct {
	Policy   string     `json:"policy"`
	Branches []Declared `json:"branches"`
	// Differs: not every branch declares the same versions.
	Differs bool `json:"differs"`
}

// Declared is what one branch's markers hold for one policy.
type Declared struct {
	// Versions are the distinct tags (or, for :name and :digest markers,
	// values) its markers hold.
	Versions []string `json:"versions,omitempty"`
	// Files are where, as file:line.
	Files []string `json:"files,omitempty"`
}

func (h *Handler) fleet(r *http.Request) (any, error) {
	out := Fleet{Repository: h.cfg.Repository, Records: h.cfg.Records != nil}
	roles := []BranchRole{{Name: h.cfg.Branch, Role: "followed: policies and markers are read here"}}
	if h.cfg.PushBranch != h.cfg.Branch {
		roles = append(roles, BranchRole{Name: h.cfg.PushBranch, Role: "push: bumps are pushed here, for review"})
	}
	if h.cfg.Records != nil {
		// What Git holds stands without the records: their failure is
		// said on the page, not made the page's.
		more, err := h.cfg.Records.Branches(r.Context())
		if err != nil {
			out.RecordsError = "the promotion gates could not be evaluated: " + err.Error()
		}
		roles = append(roles, more...)
	}
	index := map[string]int{}
	for _, br := range roles {
		if i, ok := index[br.Name]; ok {
			out.Branches[i].Roles = append(out.Branches[i].Roles, br.Role)
			continue
		}
		index[br.Name] = len(out.Branches)
		out.Branches = append(out.Branches, Branch{Name: br.Name, Roles: []string{br.Role}})
	}
	rows := map[string]*ImageRow{}
	var keys []string
	for i := range out.Branches {
		b := &out.Branches[i]
		tip, d, err := h.clone.branch(b.Name)
		if err != nil {
			b.Error = err.Error()
			continue
		}
		b.Tip, b.Markers, b.Problems = &tip, len(d.markers), d.problems
		for _, m := range d.markers {
			row := rows[m.Policy]
			if row == nil {
				row = &ImageRow{Policy: m.Policy, Branches: make([]Declared, len(out.Branches))}
				rows[m.Policy] = row
				keys = append(keys, m.Policy)
			}
			cell := &row.Branches[i]
			v := update.TagOf(m.Field, m.Value)
			if v == "" {
				v = m.Value
			}
			if !slices.Contains(cell.Versions, v) {
				cell.Versions = append(cell.Versions, v)
			}
			cell.Files = append(cell.Files, fmt.Sprintf("%s:%d", m.File, m.Line))
		}
		if h.cfg.Records != nil && out.RecordsError == "" {
			ev, err := h.cfg.Records.Evidence(r.Context(), b.Name, tip.Hash)
			if err != nil {
				ev.Error = fmt.Sprintf("the records of %s at %s: %v", b.Name, shortHash(tip.Hash), err)
			}
			b.Evidence = &ev
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		row := rows[k]
		for i := range row.Branches {
			slices.Sort(row.Branches[i].Versions)
			if i > 0 && !slices.Equal(row.Branches[i].Versions, row.Branches[0].Versions) {
				row.Differs = true
			}
		}
		out.Images = append(out.Images, *row)
	}
	return out, nil
}
