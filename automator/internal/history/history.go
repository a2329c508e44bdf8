// Package history answers, from a clone alone, where each image version
// went: when the automator committed its bump, when each cluster applied
// it and became healthy (the deployment records in the notes), when and by
// whom it was promoted (the target branch's history), whether it was
// reverted, and the lead time from the bump commit to healthy in
// production, a DORA measure. No cluster is asked anything.
package history

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"driftless.dev/shared/records"
)

// Source is what a history is read from.
type Source struct {
	// Objects holds the branches' history.
	Objects storer.EncodedObjectStorer
	// Branches are the branches to read, by name, at their tips: where
	// bumps are committed and where they are promoted to.
	Branches map[string]plumbing.Hash
	// Notes are the deployment records' notes, by full commit hash.
	Notes map[string]string
}

// Options narrow a history.
type Options struct {
	// Image keeps the versions whose reference contains it
	// ("team/web", "team/web:1.4.2").
	Image string
	// Since keeps the versions committed at or after it.
	Since time.Time
	// Production names the branches whose clusters count as production
	// for the lead time.
	Production []string
}

// Report is every image version found, newest bump first.
type Report struct {
	Versions []Version `json:"versions"`
	// Production are the branches the lead times are measured to.
	Production []string `json:"production,omitempty"`
	// Skipped are note lines that are not records.
	Skipped []string `json:"skipped,omitempty"`
}

// Version is one image reference's way through the branches and clusters.
type Version struct {
	// Image is "repository:tag".
	Image string `json:"image"`
	// Bump is the automator's commit that brought it (nil when it came
	// by hand: the records saw it, no bump commit names it).
	Bump *Commit `json:"bump,omitempty"`
	// Promotions are the first commits of other branches that hold the
	// bump: merges, by an automator's gate or a person.
	Promotions []Promotion `json:"promotions,omitempty"`
	// Clusters is what each cluster's records say, by cluster name.
	Clusters []Deployment `json:"clusters,omitempty"`
	// Reverted is set when the automator reverted the bump.
	Reverted *Revert `json:"reverted,omitempty"`
	// LeadTime is from the bump commit to the first healthy record of a
	// production cluster; zero when not (yet) there. LeadTimeSeconds is
	// the same for JSON.
	LeadTime        time.Duration `json:"-"`
	LeadTimeSeconds float64       `json:"leadTimeSeconds,omitempty"`
}

// Commit is a commit as history shows it.
type Commit struct {
	Hash   string    `json:"hash"`
	Branch string    `json:"branch"`
	Time   time.Time `json:"time"`
	Author string    `json:"author"`
}

// Promotion is the commit that brought a bump to another branch.
type Promotion struct {
	Commit
	// Gate names the Promotion document when the automator merged it.
	Gate string `json:"gate,omitempty"`
}

// Deployment is one cluster's stint with a version.
type Deployment struct {
	Cluster string `json:"cluster"`
	Ref     string `json:"ref"`
	// Commit is the commit applied when the version arrived.
	Commit string `json:"commit"`
	// Applied is when the version first arrived; Healthy when the
	// cluster first said healthy after that; Degraded when it said
	// degraded (and Message why) before any healthy.
	Applied  time.Time `json:"applied"`
	Healthy  time.Time `json:"healthy,omitzero"`
	Degraded time.Time `json:"degraded,omitzero"`
	Message  string    `json:"message,omitempty"`
	// Running: the cluster still runs it, since RunningSince (the start
	// of its current stint); else Left is when it went.
	Running      bool      `json:"running"`
	RunningSince time.Time `json:"runningSince,omitzero"`
	Left         time.Time `json:"left,omitzero"`
}

// Revert is the automator's revert of a bump.
type Revert struct {
	Commit string    `json:"commit"`
	Time   time.Time `json:"time"`
	By     string    `json:"by"`
	Why    string    `json:"why"`
}

const (
	imageTrailer     = "Driftless-Image: "
	promotionTrailer = "Driftless-Promotion: "
)

// Build reads the history of every image version src holds.
func Build(src Source, opts Options) (Report, error) {
	var rep Report
	log := records.NewLog(src.Notes)
	for _, err := range log.Skipped {
		rep.Skipped = append(rep.Skipped, err.Error())
	}
	bumps, first, err := bumpsOf(src)
	if err != nil {
		return rep, err
	}
	versions := map[string]*Version{}
	get := func(img string) *Version {
		v := versions[img]
		if v == nil {
			v = &Version{Image: img}
			versions[img] = v
		}
		return v
	}
	for img, c := range bumps {
		get(img).Bump = c
	}
	for img, d := range deployments(log) {
		get(img).Clusters = d
	}
	for _, e := range log.All() {
		if e.Event != records.Reverted {
			continue
		}
		for _, img := range e.Images {
			v := get(img)
			if v.Reverted == nil {
				v.Reverted = &Revert{Commit: e.Record.Commit, Time: e.Time, By: e.By, Why: e.Message}
			}
		}
	}
	production := map[string]bool{}
	for _, b := range opts.Production {
		production[b] = true
	}
	rep.Production = opts.Production
	for _, v := range versions {
		if v.Bump != nil {
			v.Promotions = promotions(v.Bump, first)
		}
		if v.Bump != nil {
			for _, d := range v.Clusters {
				if production[d.Ref] && !d.Healthy.IsZero() && (v.LeadTime == 0 || d.Healthy.Sub(v.Bump.Time) < v.LeadTime) {
					v.LeadTime = d.Healthy.Sub(v.Bump.Time)
				}
			}
		}
		v.LeadTimeSeconds = v.LeadTime.Seconds()
		if opts.Image != "" && !strings.Contains(v.Image, opts.Image) {
			continue
		}
		if !opts.Since.IsZero() && v.start().Before(opts.Since) {
			continue
		}
		rep.Versions = append(rep.Versions, *v)
	}
	slices.SortFunc(rep.Versions, func(a, b Version) int {
		return cmp.Or(b.start().Compare(a.start()), strings.Compare(a.Image, b.Image))
	})
	return rep, nil
}

// start is when a version first shows: its bump, or its first record.
func (v Version) start() time.Time {
	if v.Bump != nil {
		return v.Bump.Time
	}
	var t time.Time
	for _, d := range v.Clusters {
		if t.IsZero() || d.Applied.Before(t) {
			t = d.Applied
		}
	}
	return t
}

// firstHold is, per branch, the first commit of its first-parent line
// whose history holds a commit: where that commit entered the branch.
type firstHold map[string]map[plumbing.Hash]*object.Commit

// bumpsOf walks each branch once, oldest first along its first-parent
// line, noting for every commit the first-parent commit that brought it
// in, and collects the bump commits (Driftless-Image trailers) with the
// branch they were committed to.
func bumpsOf(src Source) (map[string]*Commit, firstHold, error) {
	bumps := map[string]*Commit{}
	first := firstHold{}
	names := make([]string, 0, len(src.Branches))
	for b := range src.Branches {
		names = append(names, b)
	}
	slices.Sort(names)
	for _, b := range names {
		line, err := firstParents(src.Objects, src.Branches[b])
		if err != nil {
			return nil, nil, fmt.Errorf("read the history of %s: %w", b, err)
		}
		held := map[plumbing.Hash]*object.Commit{}
		for _, p := range line {
			// Everything p brings in that the branch did not hold.
			stack := []plumbing.Hash{p.Hash}
			for len(stack) > 0 {
				h := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				if _, ok := held[h]; ok {
					continue
				}
				c, err := object.GetCommit(src.Objects, h)
				if err != nil {
					if errors.Is(err, plumbing.ErrObjectNotFound) {
						continue // a shallow clone's edge
					}
					return nil, nil, err
				}
				held[h] = p
				stack = append(stack, c.ParentHashes...)
				for _, line := range strings.Split(c.Message, "\n") {
					img, ok := strings.CutPrefix(line, imageTrailer)
					if !ok || strings.TrimSpace(img) == "" {
						continue
					}
					img = strings.TrimSpace(img)
					prev := bumps[img]
					switch {
					case prev == nil || c.Committer.When.Before(prev.Time):
						bumps[img] = &Commit{Hash: c.Hash.String(), Branch: b, Time: c.Committer.When, Author: c.Author.Name}
					case prev.Hash == c.Hash.String() && p.Hash == c.Hash:
						// Seen first through a merge elsewhere: it was
						// committed to this branch.
						prev.Branch = b
					}
				}
			}
		}
		first[b] = held
	}
	return bumps, first, nil
}

// firstParents is the first-parent line from tip, oldest first.
func firstParents(s storer.EncodedObjectStorer, tip plumbing.Hash) ([]*object.Commit, error) {
	var line []*object.Commit
	for h := tip; !h.IsZero(); {
		c, err := object.GetCommit(s, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) && len(line) > 0 {
			break // shallow
		}
		if err != nil {
			return nil, err
		}
		line = append(line, c)
		h = plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			h = c.ParentHashes[0]
		}
	}
	slices.Reverse(line)
	return line, nil
}

// promotions are, for every branch other than the bump's, the commit that
// brought the bump in.
func promotions(bump *Commit, first firstHold) []Promotion {
	var out []Promotion
	h := plumbing.NewHash(bump.Hash)
	for b, held := range first {
		if b == bump.Branch {
			continue
		}
		p, ok := held[h]
		if !ok {
			continue
		}
		pr := Promotion{Commit: Commit{Hash: p.Hash.String(), Branch: b, Time: p.Committer.When, Author: p.Author.Name}}
		for _, line := range strings.Split(p.Message, "\n") {
			if g, ok := strings.CutPrefix(line, promotionTrailer); ok {
				pr.Gate = strings.TrimSpace(g)
			}
		}
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b Promotion) int { return a.Time.Compare(b.Time) })
	return out
}

// deployments reads each cluster's records in time order: an applied
// record lists every image the cluster runs, so a version arrives when it
// first appears in that list and leaves when it drops out.
func deployments(l *records.Log) map[string][]Deployment {
	out := map[string][]Deployment{}
	for _, cluster := range l.Clusters() {
		stints := map[string]*Deployment{} // by image: the first stint
		current := map[string]bool{}
		var currentCommit string
		for _, e := range l.Cluster(cluster) {
			switch e.Event {
			case records.Applied:
				now := map[string]bool{}
				for _, img := range e.Images {
					now[img] = true
					if current[img] {
						continue
					}
					d := stints[img]
					if d == nil {
						d = &Deployment{Cluster: cluster, Ref: e.Ref, Commit: e.Commit, Applied: e.Time}
						stints[img] = d
					}
					d.Running, d.RunningSince, d.Left = true, e.Time, time.Time{}
				}
				for img := range current {
					if !now[img] {
						stints[img].Running, stints[img].Left = false, e.Time
					}
				}
				current, currentCommit = now, e.Commit
			case records.Healthy:
				if e.Commit != currentCommit {
					continue
				}
				for img := range current {
					if d := stints[img]; d.Healthy.IsZero() {
						d.Healthy = e.Time
					}
				}
			case records.Degraded:
				if e.Commit != currentCommit {
					continue
				}
				for img := range current {
					if d := stints[img]; d.Healthy.IsZero() && d.Degraded.IsZero() && d.Commit == e.Commit {
						d.Degraded, d.Message = e.Time, e.Message
					}
				}
			}
		}
		for img, d := range stints {
			out[img] = append(out[img], *d)
		}
	}
	for img := range out {
		slices.SortFunc(out[img], func(a, b Deployment) int { return a.Applied.Compare(b.Applied) })
	}
	return out
}
