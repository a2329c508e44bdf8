package policy

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
)

// Choice is the outcome of Select: the winning tag and why every other tag
// was passed over, so a person can see why a tag was or wasn't chosen.
type Choice struct {
	// Tag is the chosen tag; empty when no tag qualifies.
	Tag string
	// Current is the tag Git holds now, as given to Select.
	Current string
	// Considered is how many tags were looked at.
	Considered int
	// Candidates is how many passed every filter.
	Candidates int
	// Rejected says, per tag passed over, why.
	Rejected []Rejection
	// Reason says in words why Tag won, or why nothing did.
	Reason string
	// Kept is true when Tag is Current, kept because every listed tag
	// ranks below it (no downgrade); it may no longer be in the registry.
	Kept bool
}

// Rejection is one tag passed over and why.
type Rejection struct {
	Tag    string
	Reason string
}

// candidate is a tag that passed the filters, with what it ranks by.
type candidate struct {
	tag string
	key string          // the extracted value (the tag without a filter)
	ver *semver.Version // semver ordering
	num float64         // numerical ordering
	// pushed is the push time, for newestPushed ordering.
	pushed time.Time
}

// Select returns the tag p allows that ranks highest, never one ranking
// below current (the tag Git holds now) unless p allows downgrades.
// current may be empty or a tag the policy cannot rank (then it is not a
// floor). Select does no I/O.
func Select(p *ImagePolicy, current string, tags []string, opts ...Option) Choice {
	return choose(p, current, tags, true, opts)
}

// Choose is Select without the list of rejections: the same choice and
// reason at a fraction of the memory, for passes nobody reads tag by tag.
func Choose(p *ImagePolicy, current string, tags []string, opts ...Option) Choice {
	return choose(p, current, tags, false, opts)
}

// Option adds data a policy's ordering needs.
type Option func(*selection)

type selection struct {
	pushed  map[string]time.Time
	skipped map[string]string
}

// WithPushTimes gives the push time of each tag, for newestPushed. A tag
// without one is passed over.
func WithPushTimes(m map[string]time.Time) Option {
	return func(s *selection) { s.pushed = m }
}

// WithSkipped passes over the tags of m (tag -> why): tags whose bump was
// reverted after a failed rollout. The tag Git holds stays the floor even
// when skipped: skipping never moves a cluster back.
func WithSkipped(m map[string]string) Option {
	return func(s *selection) { s.skipped = m }
}

func choose(p *ImagePolicy, current string, tags []string, explain bool, opts []Option) Choice {
	var sel selection
	for _, o := range opts {
		o(&sel)
	}
	ch := Choice{Current: current, Considered: len(tags)}
	var best *candidate
	var allowed []string
	for _, tag := range tags {
		c, why := p.admit(tag, &sel)
		if skip, ok := sel.skipped[tag]; ok && why == "" {
			c, why = nil, skip
		}
		if why != "" {
			if explain {
				ch.Rejected = append(ch.Rejected, Rejection{tag, why})
			}
			continue
		}
		ch.Candidates++
		if explain {
			allowed = append(allowed, tag)
		}
		if best == nil || p.less(best, c) {
			best = c
		}
	}
	if best == nil {
		ch.Reason = fmt.Sprintf("none of %d tags is allowed", len(tags))
		return ch
	}
	lost := "allowed, but ranks below " + best.tag // one string for all
	for _, tag := range allowed {
		if tag != best.tag {
			ch.Rejected = append(ch.Rejected, Rejection{tag, lost})
		}
	}
	ch.Tag = best.tag
	ch.Reason = fmt.Sprintf("%s ranks highest of %d allowed tags", best.tag, ch.Candidates)
	if current == "" || current == best.tag || p.Spec.AllowDowngrade {
		return ch
	}
	cur, why := p.admit(current, &sel)
	if why != "" {
		// The current tag is outside the policy (say "latest", or an
		// older range): it is no floor, and moving to a policy tag is the point.
		ch.Reason += fmt.Sprintf("; the current tag %s is not ranked by this policy (%s)", current, why)
		return ch
	}
	if p.less(best, cur) {
		if explain {
			ch.Rejected = append(ch.Rejected, Rejection{best.tag, fmt.Sprintf("ranks below the current tag %s (no downgrade)", current)})
		}
		ch.Tag, ch.Kept = current, true
		ch.Reason = fmt.Sprintf("the current tag %s ranks highest; %s would be a downgrade", current, best.tag)
	}
	return ch
}

// admit runs the filters on tag and returns it as a candidate, or why not.
func (p *ImagePolicy) admit(tag string, sel *selection) (*candidate, string) {
	for i, re := range p.excludes {
		if re.MatchString(tag) {
			return nil, fmt.Sprintf("matches exclude[%d] %q", i, re.String())
		}
	}
	c := &candidate{tag: tag, key: tag}
	if p.filter != nil {
		m := p.filter.FindStringSubmatchIndex(tag)
		if m == nil {
			return nil, fmt.Sprintf("does not match filterTags.pattern %q", p.filter.String())
		}
		if p.Spec.FilterTags.Extract != "" {
			c.key = string(p.filter.ExpandString(nil, p.Spec.FilterTags.Extract, tag, m))
		}
	}
	o := p.Spec.Policy
	switch {
	case o.SemVer != nil:
		v, err := parseVersion(c.key)
		if err != nil {
			return nil, notSemver
		}
		if !p.rangeC.Check(v) {
			if v.Prerelease() != "" && !o.SemVer.Prereleases && p.rangeC.Check(coreOf(v)) {
				return nil, "pre-release, excluded (set semver.prereleases: true, or a range like >=1.0.0-0)"
			}
			return nil, fmt.Sprintf("outside range %q", o.SemVer.Range)
		}
		c.ver = v
	case o.Numerical != nil:
		f, err := strconv.ParseFloat(c.key, 64)
		if err != nil {
			return nil, fmt.Sprintf("%q is not a number", c.key)
		}
		c.num = f
	case o.NewestPushed != nil:
		t, ok := sel.pushed[tag]
		if !ok {
			return nil, "no push time known"
		}
		c.pushed = t
	}
	return c, ""
}

// notSemver is one string for every tag that is not a version.
const notSemver = "not a semantic version"

// parseVersion tries the strict parser first: it is hand-written and many
// times faster than the lenient one's regular expression, and nearly
// every real tag is strict semver. "v1.2" and "1.2" still parse.
func parseVersion(s string) (*semver.Version, error) {
	if v, err := semver.StrictNewVersion(s); err == nil {
		return v, nil
	}
	return semver.NewVersion(s)
}

func coreOf(v *semver.Version) *semver.Version {
	core, _ := v.SetPrerelease("")
	core, _ = core.SetMetadata("")
	return &core
}

// less reports whether a ranks below b under the policy's ordering. Ties
// are broken by the tag itself, so the choice never depends on the order
// the registry listed tags in.
func (p *ImagePolicy) less(a, b *candidate) bool {
	o := p.Spec.Policy
	var c int
	switch {
	case o.SemVer != nil:
		c = compareSemver(a.ver, b.ver)
		if c == 0 {
			// Equal precedence (build metadata differs, or v-prefix):
			// rank by the metadata naturally, then the tag.
			c = naturalCompare(a.ver.Metadata(), b.ver.Metadata())
		}
	case o.Numerical != nil:
		c = cmp.Compare(a.num, b.num)
		if o.Numerical.Order == "desc" {
			c = -c
		}
	case o.NewestPushed != nil:
		c = a.pushed.Compare(b.pushed)
	default:
		c = strings.Compare(a.key, b.key)
		if o.Alphabetical.Order == "desc" {
			c = -c
		}
	}
	if c == 0 {
		c = strings.Compare(a.tag, b.tag)
	}
	return c < 0
}

// compareSemver is semver precedence, except that pre-release identifiers
// compare naturally: "rc10" ranks above "rc9", where strict semver compares
// them as strings and puts rc10 first, a classic wrong upgrade.
func compareSemver(a, b *semver.Version) int {
	if c := cmp.Compare(a.Major(), b.Major()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Minor(), b.Minor()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Patch(), b.Patch()); c != 0 {
		return c
	}
	pa, pb := a.Prerelease(), b.Prerelease()
	switch {
	case pa == pb:
		return 0
	case pa == "":
		return 1
	case pb == "":
		return -1
	}
	ia, ib := strings.Split(pa, "."), strings.Split(pb, ".")
	for i := 0; i < len(ia) && i < len(ib); i++ {
		if c := naturalCompare(ia[i], ib[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(ia), len(ib))
}

// naturalCompare compares strings with runs of digits taken as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitsPrefix(a), digitsPrefix(b)
		switch {
		case da != "" && db != "":
			na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[len(da):], b[len(db):]
		case da != "" || db != "":
			// Semver: numeric identifiers rank below alphanumeric ones.
			if da != "" {
				return -1
			}
			return 1
		default:
			if a[0] != b[0] {
				return cmp.Compare(a[0], b[0])
			}
			a, b = a[1:], b[1:]
		}
	}
	return cmp.Compare(len(a), len(b))
}

func digitsPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
