package records

import (
	"fmt"
	"slices"
	"strings"
)

// Entry is a record and the commit whose note holds it.
type Entry struct {
	Commit string
	Record
}

// Log is every record of a notes ref, by commit and by cluster, each list
// in time order.
type Log struct {
	byCommit  map[string][]Record
	byCluster map[string][]Entry
	all       []Entry
	// Skipped are the lines that are not records (a person's note), each
	// naming its commit and line; they are left out.
	Skipped []error
}

// NewLog reads notes: the text of each note by full commit hash.
func NewLog(notes map[string]string) *Log {
	l := &Log{byCommit: map[string][]Record{}, byCluster: map[string][]Entry{}}
	commits := make([]string, 0, len(notes))
	for c := range notes {
		commits = append(commits, c)
	}
	slices.Sort(commits)
	for _, c := range commits {
		recs, errs := ParseNote(notes[c])
		for _, err := range errs {
			l.Skipped = append(l.Skipped, fmt.Errorf("note on %s: %w", c, err))
		}
		for _, r := range recs {
			l.all = append(l.all, Entry{Commit: c, Record: r})
		}
	}
	slices.SortStableFunc(l.all, func(a, b Entry) int { return a.Time.Compare(b.Time) })
	for _, e := range l.all {
		l.byCommit[e.Commit] = append(l.byCommit[e.Commit], e.Record)
		if e.Cluster != "" {
			l.byCluster[e.Cluster] = append(l.byCluster[e.Cluster], e)
		}
	}
	return l
}

// Of returns the records on commit, oldest first.
func (l *Log) Of(commit string) []Record { return l.byCommit[commit] }

// Cluster returns the records a cluster wrote, oldest first.
func (l *Log) Cluster(name string) []Entry { return l.byCluster[name] }

// Clusters names every cluster that wrote a record, sorted.
func (l *Log) Clusters() []string {
	out := make([]string, 0, len(l.byCluster))
	for c := range l.byCluster {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// All returns every record, oldest first.
func (l *Log) All() []Entry { return l.all }

// Reverted returns every image reference ("repo:tag") a reverted record
// names: bumps whose rollout failed, never to be chosen again.
func (l *Log) Reverted() map[string]bool {
	out := map[string]bool{}
	for _, e := range l.all {
		if e.Event == Reverted {
			for _, img := range e.Images {
				out[strings.TrimSpace(img)] = true
			}
		}
	}
	return out
}
