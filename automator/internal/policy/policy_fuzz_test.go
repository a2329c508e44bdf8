package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParse decodes arbitrary policy files: no panic; a bad document is
// an error naming the file (and a *FieldError for each policy-level
// problem), never a policy; a good policy has a key, a repository and a
// positive interval, and can select from any tags. Seeds:
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse("fuzz.yaml", data)
		if err != nil {
			for _, e := range Flatten(err) {
				var fe *FieldError
				if !errors.As(e, &fe) && !strings.Contains(e.Error(), "fuzz.yaml") {
					t.Fatalf("error does not name the file: %v", e)
				}
				if errors.As(e, &fe) && fe.File != "fuzz.yaml" {
					t.Fatalf("FieldError names %q", fe.File)
				}
			}
		}
		for _, p := range ps {
			if p.Key() == "" || p.Repository().RepositoryStr() == "" || p.ScanInterval() <= 0 {
				t.Fatalf("policy without key, repository or interval: %+v", p)
			}
			ch := Select(p, "1.0.0", []string{"1.0.0", "1.2.3", "v2", "latest", "main-1700000000-abc", "10", "2024-01-01"},
				WithPushTimes(map[string]time.Time{"1.2.3": time.Unix(1, 0)}))
			if ch.Tag != "" && !slices.Contains([]string{"1.0.0", "1.2.3", "v2", "latest", "main-1700000000-abc", "10", "2024-01-01"}, ch.Tag) {
				t.Fatalf("chose %q, not a listed tag", ch.Tag)
			}
		}
	})
}

// selectPolicies are the orderings tag selection is fuzzed under.
var selectPolicies = []string{
	"  policy:\n    semver:\n      range: '>=1.0.0'\n",
	"  policy:\n    semver:\n      range: '>=0.0.0-0'\n      prereleases: true\n",
	"  policy:\n    semver:\n      range: '^1.2'\n",
	"  allowDowngrade: true\n  policy:\n    semver:\n      range: '*'\n",
	"  policy:\n    numerical: {}\n",
	"  policy:\n    numerical:\n      order: desc\n",
	"  policy:\n    alphabetical: {}\n",
	"  policy:\n    alphabetical:\n      order: desc\n",
	"  filterTags:\n    pattern: '^main-(?P<ts>\\d+)-[a-f0-9]+$'\n    extract: '$ts'\n  policy:\n    numerical: {}\n",
	"  filterTags:\n    pattern: '^app-(?P<v>.*)$'\n    extract: '${v}'\n  policy:\n    semver:\n      range: '*'\n",
	"  exclude: ['-debug$', 'rc']\n  policy:\n    semver:\n      range: '>=1.0.0-0'\n",
}

// FuzzSelect chooses among arbitrary tags (one per line) under every
// ordering: no panic; the choice is a listed tag (or the current one,
// kept against a downgrade); Choose agrees with Select; every tag is
// accounted for; and the choice does not depend on the order the
// registry listed the tags in. Seeds: testdata/fuzz/FuzzSelect.
func FuzzSelect(f *testing.F) {
	var policies []*ImagePolicy
	for _, spec := range selectPolicies {
		ps, err := Parse("p.yaml", []byte("apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n"+spec))
		if err != nil || len(ps) != 1 {
			f.Fatalf("policy %q: %v", spec, err)
		}
		policies = append(policies, ps[0])
	}
	f.Fuzz(func(t *testing.T, list, current string) {
		tags := strings.Split(list, "\n")
		for _, p := range policies {
			ch := Select(p, current, tags)
			switch {
			case ch.Tag == "":
			case ch.Kept:
				if ch.Tag != current {
					t.Fatalf("kept %q, current is %q", ch.Tag, current)
				}
			case !slices.Contains(tags, ch.Tag):
				t.Fatalf("chose %q, not a listed tag", ch.Tag)
			}
			if quiet := Choose(p, current, tags); quiet.Tag != ch.Tag || quiet.Kept != ch.Kept {
				t.Fatalf("Choose %q (kept %v), Select %q (kept %v)", quiet.Tag, quiet.Kept, ch.Tag, ch.Kept)
			}
			explained := map[string]bool{ch.Tag: true}
			for _, r := range ch.Rejected {
				explained[r.Tag] = true
			}
			for _, tag := range tags {
				if !explained[tag] {
					t.Fatalf("tag %q neither chosen nor rejected", tag)
				}
			}
			reversed := slices.Clone(tags)
			slices.Reverse(reversed)
			sorted := slices.Clone(tags)
			slices.Sort(sorted)
			for _, other := range [][]string{reversed, sorted} {
				if again := Choose(p, current, other); again.Tag != ch.Tag {
					t.Fatalf("listed in another order, chose %q instead of %q", again.Tag, ch.Tag)
				}
			}
		}
	})
}
