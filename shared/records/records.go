// Package records defines the deployment records Driftless keeps in Git:
// one line per event in a Git note on the commit it is about, under the
// notes ref refs/notes/driftless by default. Synchronizers write what they
// applied and whether it became healthy; the automator writes what it
// promoted and reverted, and reads them all to decide. `git log
// --notes=driftless` shows them to anyone with a clone.
//
// A line is a list of key=value fields in a fixed order, values quoted
// (Go syntax) when they hold spaces, quotes or '=':
//
//	time=2026-11-26T05:49:01.123456Z event=applied cluster=dev ref=dev digest=sha256:2f… images=ghcr.io/org/web:1.1.0
//	time=2026-11-26T05:49:02.5Z event=degraded cluster=dev ref=dev revert=requested message="Deployment web/web Failed"
//	time=2026-11-26T05:49:03Z event=reverted commit=4e1f… by="Driftless Automator" message="rollout failed in dev"
package records

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// DefaultNotes is the notes ref's short name: refs/notes/driftless.
const DefaultNotes = "driftless"

// Event is what a record says happened.
type Event string

// Events. Synchronizers write Applied, Healthy and Degraded; the automator
// writes Reverted, Promoted and Proposed.
const (
	// Applied: a cluster applied the commit (every object of its path).
	Applied Event = "applied"
	// Healthy: every object of the applied commit is Current (kstatus).
	Healthy Event = "healthy"
	// Degraded: the rollout of the commit ended Failed or Stalled.
	Degraded Event = "degraded"
	// Reverted: the automator pushed a revert of the commit (Commit).
	Reverted Event = "reverted"
	// Promoted: the automator merged the commit into To (Commit is the merge).
	Promoted Event = "promoted"
	// Proposed: the automator pushed the commit to a branch for review
	// (pull-request mode; Commit is the branch's head, To the target).
	Proposed Event = "proposed"
)

var events = []Event{Applied, Healthy, Degraded, Reverted, Promoted, Proposed}

// Record is one line of a deployment note.
type Record struct {
	// Time is when it happened, by the writer's clock.
	Time time.Time
	// Event is what happened.
	Event Event
	// Cluster names the synchronizer's cluster (--cluster-name); empty
	// for the automator's events.
	Cluster string
	// Ref is the branch (or tag) the cluster follows.
	Ref string
	// Digest is the sha256 of the objects applied (Applied).
	Digest string
	// Images are the container images the applied objects run (Applied),
	// sorted.
	Images []string
	// Revert: the cluster's synchronizer asks for a revert of a degraded
	// commit (it runs with --revert-on-failure).
	Revert bool
	// Commit is the commit the event made: the revert (Reverted), the
	// merge (Promoted), the review branch's head (Proposed).
	Commit string
	// To is the branch promoted to (Promoted, Proposed).
	To string
	// Gate names the Promotion document (Promoted, Proposed).
	Gate string
	// By names who wrote an automator event (its author name).
	By string
	// Message says why, for a person: what is not healthy (Degraded),
	// the evidence (Promoted), the record a revert answers (Reverted).
	Message string
}

// MaxMessage bounds a record's message, so a note stays a few lines.
const MaxMessage = 300

// Format returns r as one line, without the newline.
func (r Record) Format() string {
	var b strings.Builder
	field := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quote(v))
	}
	field("time", r.Time.UTC().Format(time.RFC3339Nano))
	field("event", string(r.Event))
	field("cluster", r.Cluster)
	field("ref", r.Ref)
	field("digest", r.Digest)
	field("images", strings.Join(r.Images, ","))
	if r.Revert {
		field("revert", "requested")
	}
	field("commit", r.Commit)
	field("to", r.To)
	field("gate", r.Gate)
	field("by", r.By)
	msg := r.Message
	if len(msg) > MaxMessage {
		msg = msg[:MaxMessage-3] + "..."
	}
	field("message", msg)
	return b.String()
}

func quote(v string) string {
	if strings.IndexFunc(v, func(c rune) bool {
		return c == '"' || c == '=' || c == '\\' || !unicode.IsPrint(c) || unicode.IsSpace(c)
	}) < 0 {
		return v
	}
	return strconv.Quote(v)
}

// Parse reads one line written by Format. Unknown keys are ignored (a
// newer writer's fields); a line without a time or a known event is an
// error.
func Parse(line string) (Record, error) {
	var r Record
	fields, err := split(strings.TrimSpace(line))
	if err != nil {
		return r, err
	}
	for _, kv := range fields {
		k, v := kv[0], kv[1]
		switch k {
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return r, fmt.Errorf("time %q: want RFC 3339", v)
			}
			r.Time = t
		case "event":
			r.Event = Event(v)
		case "cluster":
			r.Cluster = v
		case "ref":
			r.Ref = v
		case "digest":
			r.Digest = v
		case "images":
			if v != "" {
				r.Images = strings.Split(v, ",")
			}
		case "revert":
			r.Revert = v == "requested"
		case "commit":
			r.Commit = v
		case "to":
			r.To = v
		case "gate":
			r.Gate = v
		case "by":
			r.By = v
		case "message":
			r.Message = v
		}
	}
	switch {
	case r.Time.IsZero():
		return r, errors.New("no time= field")
	case !slices.Contains(events, r.Event):
		return r, fmt.Errorf("event %q: want one of applied, healthy, degraded, reverted, promoted, proposed", r.Event)
	}
	return r, nil
}

// split cuts a line into key=value pairs, values quoted or bare.
func split(s string) ([][2]string, error) {
	var out [][2]string
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \t\"") {
			return nil, fmt.Errorf("%q: want key=value", firstWord(s))
		}
		k := s[:eq]
		s = s[eq+1:]
		var v string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: unterminated quoted value", k)
			}
			if v, err = strconv.Unquote(q); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			v, s = s[:end], s[end:]
		}
		if len(s) > 0 && s[0] != ' ' {
			return nil, fmt.Errorf("%s: want a space after the value", k)
		}
		s = strings.TrimLeft(s, " ")
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func firstWord(s string) string {
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}

// ParseNote reads every record of a note, oldest first as written. Lines
// that are not records (someone's hand-written note) are returned as
// errors naming the line, and skipped.
func ParseNote(note string) ([]Record, []error) {
	var out []Record
	var errs []error
	for i, line := range strings.Split(note, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		r, err := Parse(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
			continue
		}
		out = append(out, r)
	}
	return out, errs
}

// ValidName reports whether s can name a cluster: lower-case letters,
// digits, '-' and '.', starting with a letter or digit, at most 63 bytes.
func ValidName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}
