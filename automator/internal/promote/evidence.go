package promote

import (
	"fmt"
	"time"

	"driftless.dev/shared/records"
)

// Health is what a cluster's records say of a commit.
type Health string

// Healths, from no evidence to a verdict.
const (
	// Unrecorded: the cluster wrote nothing about the commit.
	Unrecorded Health = "Unrecorded"
	// AppliedOnly: applied, not yet healthy.
	AppliedOnly Health = "Applied"
	// Soaking: healthy, for less than the soak time so far.
	Soaking Health = "Soaking"
	// Soaked: healthy for the soak time.
	Soaked Health = "Soaked"
	// Superseded: healthy, but the cluster moved on to another commit
	// before the soak time was over; it can no longer soak.
	Superseded Health = "Superseded"
	// Degraded: the cluster's last word on the commit is degraded.
	Degraded Health = "Degraded"
)

// Evidence is one cluster's records about one commit.
type Evidence struct {
	Cluster string `json:"cluster"`
	Health  Health `json:"health"`
	// Applied is when the cluster first applied the commit.
	Applied time.Time `json:"applied,omitzero"`
	// HealthySince starts the healthy stretch that counts: the first
	// healthy record after the last degraded one.
	HealthySince time.Time `json:"healthySince,omitzero"`
	// Until is when the soak ends (Soaking).
	Until time.Time `json:"until,omitzero"`
	// Moved is when the cluster applied another commit (Superseded).
	Moved time.Time `json:"moved,omitzero"`
	// DegradedAt and Message: the degraded record (Degraded).
	DegradedAt time.Time `json:"degradedAt,omitzero"`
	Message    string    `json:"message,omitempty"`
}

// Assess reads what cluster recorded about commit, against a soak time,
// at now. A commit passes for a cluster (Soaked) when the cluster's last
// health record of it is healthy and it stayed healthy, as what the
// cluster ran, for soak: from its first healthy record after any degraded
// one until now, or until the cluster applied another commit.
func Assess(l *records.Log, commit, cluster string, soak time.Duration, now time.Time) Evidence {
	e := Evidence{Cluster: cluster, Health: Unrecorded}
	var last records.Event
	for _, r := range l.Of(commit) {
		if r.Cluster != cluster {
			continue
		}
		switch r.Event {
		case records.Applied:
			if e.Applied.IsZero() {
				e.Applied = r.Time
			}
		case records.Healthy:
			if last != records.Healthy {
				e.HealthySince = r.Time
			}
			last = records.Healthy
		case records.Degraded:
			last = records.Degraded
			e.DegradedAt, e.Message = r.Time, r.Message
			e.HealthySince = time.Time{}
		}
	}
	switch {
	case last == records.Degraded:
		e.Health = Degraded
		return e
	case last == "" && !e.Applied.IsZero():
		e.Health = AppliedOnly
		return e
	case last == "":
		return e
	}
	e.DegradedAt, e.Message = time.Time{}, ""
	end := now
	for _, x := range l.Cluster(cluster) {
		if x.Event == records.Applied && x.Commit != commit && x.Time.After(e.HealthySince) {
			e.Moved, end = x.Time, x.Time
			break
		}
	}
	switch {
	case end.Sub(e.HealthySince) >= soak:
		e.Health = Soaked
	case !e.Moved.IsZero():
		e.Health = Superseded
	default:
		e.Health, e.Until = Soaking, e.HealthySince.Add(soak)
	}
	return e
}

// String says it for a person, as plan shows it.
func (e Evidence) String() string {
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
	switch e.Health {
	case Unrecorded:
		return fmt.Sprintf("%s: no record yet (not applied there)", e.Cluster)
	case AppliedOnly:
		return fmt.Sprintf("%s: applied %s, not healthy yet", e.Cluster, ts(e.Applied))
	case Soaking:
		return fmt.Sprintf("%s: healthy since %s, soaking until %s", e.Cluster, ts(e.HealthySince), ts(e.Until))
	case Soaked:
		if !e.Moved.IsZero() {
			return fmt.Sprintf("%s: healthy from %s until it moved on at %s", e.Cluster, ts(e.HealthySince), ts(e.Moved))
		}
		return fmt.Sprintf("%s: healthy since %s", e.Cluster, ts(e.HealthySince))
	case Superseded:
		return fmt.Sprintf("%s: healthy from %s, but moved on at %s before the soak time was over", e.Cluster, ts(e.HealthySince), ts(e.Moved))
	case Degraded:
		return fmt.Sprintf("%s: degraded at %s: %s", e.Cluster, ts(e.DegradedAt), e.Message)
	}
	return e.Cluster + ": " + string(e.Health)
}
