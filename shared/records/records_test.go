package records_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"driftless.dev/shared/records"
)

func TestFormatParseRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 26, 5, 49, 1, 123456000, time.UTC)
	cases := []struct {
		r    records.Record
		line string
	}{
		{records.Record{Time: at, Event: records.Applied, Cluster: "dev", Ref: "dev", Digest: "sha256:ab", Images: []string{"ghcr.io/org/api:2.0.0", "ghcr.io/org/web:1.1.0"}},
			"time=2026-11-26T05:49:01.123456Z event=applied cluster=dev ref=dev digest=sha256:ab images=ghcr.io/org/api:2.0.0,ghcr.io/org/web:1.1.0"},
		{records.Record{Time: at, Event: records.Degraded, Cluster: "dev", Ref: "dev", Revert: true, Message: `Deployment web/web Failed (Progress deadline "exceeded")`},
			`time=2026-11-26T05:49:01.123456Z event=degraded cluster=dev ref=dev revert=requested message="Deployment web/web Failed (Progress deadline \"exceeded\")"`},
		{records.Record{Time: at, Event: records.Promoted, Commit: "4e1f", To: "prod", Gate: "dev-to-prod", By: "Driftless Automator", Message: "a=b\nc"},
			`time=2026-11-26T05:49:01.123456Z event=promoted commit=4e1f to=prod gate=dev-to-prod by="Driftless Automator" message="a=b\nc"`},
	}
	for _, tc := range cases {
		line := tc.r.Format()
		if line != tc.line {
			t.Errorf("Format:\n%s\nwant\n%s", line, tc.line)
		}
		if strings.Contains(line, "\n") {
			t.Errorf("a record is one line: %q", line)
		}
		got, err := records.Parse(line)
		if err != nil || !reflect.DeepEqual(got, tc.r) {
			t.Errorf("Parse(%s) = %+v, %v; want %+v", line, got, err, tc.r)
		}
	}
}

func TestParseRefusesWhatIsNotARecord(t *testing.T) {
	for line, want := range map[string]string{
		"checked by hand":                            `"checked": want key=value`,
		"event=applied cluster=dev":                  "no time= field",
		"time=yesterday event=applied":               `time "yesterday": want RFC 3339`,
		"time=2026-01-01T00:00:00Z event=exploded":   `event "exploded": want one of`,
		`time=2026-01-01T00:00:00Z message="open`:    "message: unterminated quoted value",
		`time=2026-01-01T00:00:00Z message="a"event`: "message: want a space after the value",
	} {
		_, err := records.Parse(line)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s): %v, want %q", line, err, want)
		}
	}
	recs, errs := records.ParseNote("time=2026-01-01T00:00:00Z event=applied cluster=dev future=field\n\nchecked by hand\n")
	if len(recs) != 1 || recs[0].Cluster != "dev" || len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "line 3:") {
		t.Fatalf("ParseNote: %+v %v", recs, errs)
	}
}

func TestMessageIsBounded(t *testing.T) {
	r := records.Record{Time: time.Now(), Event: records.Degraded, Message: strings.Repeat("x", 1000)}
	got, err := records.Parse(r.Format())
	if err != nil || len(got.Message) != records.MaxMessage {
		t.Fatalf("message of %d bytes, %v", len(got.Message), err)
	}
}
