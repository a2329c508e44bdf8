package promote

import (
	"strings"
	"testing"
	"time"

	"driftless.dev/automator/internal/policy"
)

// TestBadPromotionDocuments: each problem is an error naming the file, the
// line and the field, and the document is skipped; good ones load.
func TestBadPromotionDocuments(t *testing.T) {
	good := "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: ok}\nspec: {from: dev, to: prod, healthyIn: [dev]}\n"
	cases := []struct {
		name, doc, want string
	}{
		{"unknown field", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: prod\n  healthyIn: [dev]\n  soakTime: 10m\n",
			`p.yaml:1: Promotion: unknown field "soakTime"`},
		{"bad soak", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: prod\n  healthyIn: [dev]\n  soak: ten minutes\n",
			`p.yaml:8: spec.soak: "ten minutes" is not a duration such as 10m or 1h`},
		{"no clusters", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: prod\n",
			"p.yaml:5: spec.healthyIn: required"},
		{"bad cluster", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: prod\n  healthyIn:\n    - dev\n    - Prod EU\n",
			`p.yaml:9: spec.healthyIn[1]: "Prod EU": want a cluster name`},
		{"same branch", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: dev\n  healthyIn: [dev]\n",
			`p.yaml:6: spec.to: "dev" is also spec.from`},
		{"bad branch", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: refs/heads/prod\n  healthyIn: [dev]\n",
			`p.yaml:6: spec.to: "refs/heads/prod" is not a branch name Git accepts`},
		{"bad mode", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: prod\n  healthyIn: [dev]\n  mode: squash\n",
			`p.yaml:8: spec.mode: "squash": want merge or pull-request`},
		{"branch without pull-request", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: prod\n  healthyIn: [dev]\n  branch: review\n",
			"p.yaml:8: spec.branch: only for mode pull-request"},
		{"bad window", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: a}\nspec:\n  from: dev\n  to: prod\n  healthyIn: [dev]\n  window:\n    days: [Monday]\n    start: \"9am\"\n    end: \"17:00\"\n    timeZone: Mars/Olympus\n",
			`p.yaml:9: spec.window.days[0]: "Monday": want one of Sun, Mon`},
		{"bad name", "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: Dev_To_Prod}\nspec: {from: dev, to: prod, healthyIn: [dev]}\n",
			`p.yaml:3: metadata.name: "Dev_To_Prod"`},
		{"malformed YAML", "kind: Promotion\nspec: [\n", "p.yaml: malformed YAML"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps, err := Load([]policy.File{{Name: "p.yaml", Data: []byte(c.doc)}, {Name: "ok.yaml", Data: []byte(good)}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant %q", err, c.want)
			}
			if len(ps) != 1 || ps[0].Name() != "ok" {
				t.Fatalf("the good document was not loaded: %v", ps)
			}
		})
	}
	// Every problem of a document at once.
	_, err := Load([]policy.File{{Name: "p.yaml", Data: []byte(cases[8].doc)}})
	for _, want := range []string{`days[0]`, `spec.window.start: "9am": want a 24-hour time`, `spec.window.timeZone: "Mars/Olympus"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %q", err, want)
		}
	}
	// Two documents with one name: both skipped.
	ps, err := Load([]policy.File{{Name: "a.yaml", Data: []byte(good)}, {Name: "b.yaml", Data: []byte(good)}})
	if len(ps) != 0 || err == nil || !strings.Contains(err.Error(), "b.yaml:1: metadata.name: promotion ok is also defined in a.yaml; both skipped") {
		t.Fatalf("duplicates: %v %v", ps, err)
	}
}

func TestWindowOpen(t *testing.T) {
	w, errs := parseWindow(&Window{Days: []string{"Fri"}, Start: "22:00", End: "02:00", TimeZone: "UTC"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	fri := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC) // a Friday
	for _, c := range []struct {
		at   time.Time
		open bool
		next time.Time
	}{
		{fri.Add(21 * time.Hour), false, fri.Add(22 * time.Hour)},
		{fri.Add(22 * time.Hour), true, time.Time{}},
		{fri.Add(25 * time.Hour), true, time.Time{}}, // Saturday 01:00: the Friday window runs past midnight
		{fri.Add(26 * time.Hour), false, fri.Add(7*24*time.Hour + 22*time.Hour)},
	} {
		open, next := w.open(c.at)
		if open != c.open || !next.Equal(c.next) {
			t.Errorf("at %s: open %v next %s, want %v %s", c.at, open, next, c.open, c.next)
		}
	}
}
