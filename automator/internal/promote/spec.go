// Package promote holds the automator's promotion gates and revert rule,
// decided from the deployment records synchronizers keep in Git notes
// (driftless.dev/shared/records): a Promotion document moves a commit from
// one branch to the next once it has been healthy in the clusters it
// names for a soak time (by a signed merge, or a branch for review), and a
// bump whose rollout a synchronizer recorded as degraded is reverted.
// Nothing needs a route to a cluster: Git holds the evidence and the
// outcome.
package promote

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"driftless.dev/automator/internal/policy"
	"driftless.dev/shared/records"
)

// Kind identifies a Promotion document; its apiVersion is policy.APIVersion.
const Kind = "Promotion"

// Modes of a promotion.
const (
	// ModeMerge: the automator merges the commit into the target branch
	// (a merge commit signed like its bumps) and pushes, fast-forward only.
	ModeMerge = "merge"
	// ModePullRequest: the automator pushes the commit to a branch of its
	// own (spec.branch) for a person to review and merge.
	ModePullRequest = "pull-request"
)

// Promotion is a gate from one branch to the next. The format is
// documented in docs/records.md.
type Promotion struct {
	APIVersion string          `yaml:"apiVersion"`
	Kind       string          `yaml:"kind"`
	Metadata   policy.Metadata `yaml:"metadata"`
	Spec       Spec            `yaml:"spec"`

	// Source is the file the document was read from, for messages.
	Source string `yaml:"-"`

	soak   time.Duration
	window *window
}

// Spec is what a gate asks for.
type Spec struct {
	// From is the branch commits are promoted from ("dev").
	From string `yaml:"from"`
	// To is the branch they are promoted to ("prod"); the automator must
	// be allowed to push there (--promotion-targets).
	To string `yaml:"to"`
	// HealthyIn names the clusters (their --cluster-name) whose records
	// must say the commit was healthy for Soak.
	HealthyIn []string `yaml:"healthyIn"`
	// Soak is how long the commit must have been healthy in each of
	// them, a Go duration ("10m"); default 0: healthy once is enough.
	Soak string `yaml:"soak,omitempty"`
	// Window, when set, limits promotions to some days and hours.
	Window *Window `yaml:"window,omitempty"`
	// Mode is merge (default) or pull-request.
	Mode string `yaml:"mode,omitempty"`
	// Branch is where pull-request mode pushes the commit for review.
	// Default promote/<name>.
	Branch string `yaml:"branch,omitempty"`
}

// Window is when promotions may happen: on Days, from Start to End
// (24-hour "HH:MM"; an End before Start runs past midnight), in TimeZone.
type Window struct {
	Days     []string `yaml:"days,omitempty"`
	Start    string   `yaml:"start"`
	End      string   `yaml:"end"`
	TimeZone string   `yaml:"timeZone,omitempty"`
}

// Name is the promotion's name, as metrics and records show it.
func (p *Promotion) Name() string { return p.Metadata.Name }

// SoakTime is the parsed soak.
func (p *Promotion) SoakTime() time.Duration { return p.soak }

// ReviewBranch is where pull-request mode pushes.
func (p *Promotion) ReviewBranch() string {
	if p.Spec.Branch != "" {
		return p.Spec.Branch
	}
	return "promote/" + p.Metadata.Name
}

// Load reads every Promotion of files (documents of other kinds are
// ignored). A bad document is one error per problem, naming file, line
// and field, and is skipped; the good ones are returned, sorted by name.
// Two documents with one name are both skipped.
func Load(files []policy.File) ([]*Promotion, error) {
	var errs []error
	byName := map[string]*Promotion{}
	dup := map[string]bool{}
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader(f.Data))
		for {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				errs = append(errs, &policy.FieldError{File: f.Name, Msg: "malformed YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
				break
			}
			if len(doc.Content) == 0 {
				continue
			}
			root := doc.Content[0]
			if valueOf(root, "kind") != Kind {
				continue
			}
			p, err := decode(f.Name, root)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if prev, ok := byName[p.Name()]; ok {
				errs = append(errs, &policy.FieldError{File: p.Source, Line: root.Line, Field: "metadata.name",
					Msg: fmt.Sprintf("promotion %s is also defined in %s; both skipped", p.Name(), prev.Source)})
				dup[p.Name()] = true
				continue
			}
			byName[p.Name()] = p
		}
	}
	var out []*Promotion
	for name, p := range byName {
		if !dup[name] {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *Promotion) int { return strings.Compare(a.Name(), b.Name()) })
	return out, errors.Join(errs...)
}

// Declares reports whether data may hold a Promotion: cheap, so unrelated
// YAML is never parsed here.
func Declares(data []byte) bool { return bytes.Contains(data, []byte(Kind)) }

func valueOf(n *yaml.Node, key string) string {
	if n == nil || n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1].Value
		}
	}
	return ""
}

func decode(file string, root *yaml.Node) (*Promotion, error) {
	p := &Promotion{Source: file}
	if err := policy.StrictDecode(root, p); err != nil {
		return nil, &policy.FieldError{File: file, Line: root.Line, Msg: "Promotion: " + err.Error()}
	}
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &policy.FieldError{File: file, Line: policy.LineOf(root, path), Field: path, Msg: fmt.Sprintf(format, args...)})
	}
	if p.APIVersion != policy.APIVersion {
		bad("apiVersion", "got %q, want %q", p.APIVersion, policy.APIVersion)
	}
	if !records.ValidName(p.Metadata.Name) {
		bad("metadata.name", "%q: want lower-case letters, digits, '-' and '.' (it names the promotion in records and metrics)", p.Metadata.Name)
	}
	s := p.Spec
	for _, f := range []struct{ path, branch string }{{"spec.from", s.From}, {"spec.to", s.To}} {
		if err := checkBranch(f.branch); err != nil {
			bad(f.path, "%v", err)
		}
	}
	if s.From != "" && s.From == s.To {
		bad("spec.to", "%q is also spec.from: promote to another branch", s.To)
	}
	if len(s.HealthyIn) == 0 {
		bad("spec.healthyIn", "required: the clusters (their --cluster-name) whose records must say the commit is healthy, such as [dev]")
	}
	for i, c := range s.HealthyIn {
		if !records.ValidName(c) {
			bad(fmt.Sprintf("spec.healthyIn[%d]", i), "%q: want a cluster name (lower-case letters, digits, '-' and '.')", c)
		}
	}
	if s.Soak != "" {
		d, err := time.ParseDuration(s.Soak)
		switch {
		case err != nil:
			bad("spec.soak", "%q is not a duration such as 10m or 1h", s.Soak)
		case d < 0:
			bad("spec.soak", "%s: must not be negative", d)
		default:
			p.soak = d
		}
	}
	switch s.Mode {
	case "", ModeMerge:
		if s.Branch != "" {
			bad("spec.branch", "only for mode %s: a merge goes to spec.to", ModePullRequest)
		}
	case ModePullRequest:
		if s.Branch != "" {
			if err := checkBranch(s.Branch); err != nil {
				bad("spec.branch", "%v", err)
			} else if s.Branch == s.From || s.Branch == s.To {
				bad("spec.branch", "%q: the review branch must be a branch of its own, not spec.from or spec.to", s.Branch)
			}
		}
	default:
		bad("spec.mode", "%q: want %s or %s", s.Mode, ModeMerge, ModePullRequest)
	}
	if s.Window != nil {
		w, werrs := parseWindow(s.Window)
		for _, e := range werrs {
			bad("spec.window."+e.field, "%s", e.msg)
		}
		p.window = w
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// checkBranch refuses what Git refuses in a branch name (the rules of
// git check-ref-format that a name can break).
func checkBranch(b string) error {
	switch {
	case b == "":
		return errors.New("required: a branch name")
	case strings.HasPrefix(b, "-"), strings.HasPrefix(b, "/"), strings.HasSuffix(b, "/"), strings.HasSuffix(b, "."),
		strings.HasSuffix(b, ".lock"), strings.Contains(b, ".."), strings.Contains(b, "//"), strings.Contains(b, "@{"),
		strings.ContainsAny(b, " ~^:?*[\\\t\n"), strings.HasPrefix(b, "refs/"):
		return fmt.Errorf("%q is not a branch name Git accepts (give the short name, such as prod)", b)
	}
	return nil
}

var days = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// window is a parsed Window.
type window struct {
	days       [7]bool
	start, end time.Duration // since midnight
	loc        *time.Location
}

type windowErr struct{ field, msg string }

func parseWindow(w *Window) (*window, []windowErr) {
	var errs []windowErr
	out := &window{loc: time.UTC}
	if len(w.Days) == 0 {
		out.days = [7]bool{true, true, true, true, true, true, true}
	}
	for i, d := range w.Days {
		k := slices.Index(days, d)
		if k < 0 {
			errs = append(errs, windowErr{fmt.Sprintf("days[%d]", i), fmt.Sprintf("%q: want one of %s", d, strings.Join(days, ", "))})
			continue
		}
		out.days[k] = true
	}
	clock := func(field, s string) time.Duration {
		t, err := time.Parse("15:04", s)
		if err != nil {
			errs = append(errs, windowErr{field, fmt.Sprintf("%q: want a 24-hour time such as 09:00", s)})
			return 0
		}
		return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute
	}
	out.start, out.end = clock("start", w.Start), clock("end", w.End)
	if w.Start != "" && w.Start == w.End {
		errs = append(errs, windowErr{"end", "equals start: the window would be empty"})
	}
	if w.TimeZone != "" {
		loc, err := time.LoadLocation(w.TimeZone)
		if err != nil {
			errs = append(errs, windowErr{"timeZone", fmt.Sprintf("%q: want an IANA time zone such as Europe/Berlin", w.TimeZone)})
		} else {
			out.loc = loc
		}
	}
	return out, errs
}

// open reports whether t is inside the window, and if not, when it next
// opens.
func (w *window) open(t time.Time) (bool, time.Time) {
	if w == nil {
		return true, time.Time{}
	}
	lt := t.In(w.loc)
	// at is a clock time of a day, by the wall clock of the zone (so a
	// day with a daylight-saving change still opens at 09:00).
	at := func(dayOffset int, d time.Duration) time.Time {
		return time.Date(lt.Year(), lt.Month(), lt.Day()+dayOffset, 0, int(d/time.Minute), 0, 0, w.loc)
	}
	// A window that runs past midnight opened on the day before.
	for back := -1; back <= 0; back++ {
		from := at(back, w.start)
		if !w.days[from.Weekday()] {
			continue
		}
		to := at(back, w.end)
		if w.end <= w.start {
			to = at(back+1, w.end)
		}
		if !t.Before(from) && t.Before(to) {
			return true, time.Time{}
		}
	}
	for ahead := 0; ahead <= 7; ahead++ {
		if from := at(ahead, w.start); w.days[from.Weekday()] && from.After(t) {
			return false, from
		}
	}
	return false, time.Time{}
}
