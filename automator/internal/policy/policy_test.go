package policy

import (
	"strings"
	"testing"
	"time"
)

func mustPolicy(t *testing.T, spec string) *ImagePolicy {
	t.Helper()
	return mustPolicyOf(t, "ghcr.io/org/app", spec)
}

func mustPolicyOf(t *testing.T, image, spec string) *ImagePolicy {
	t.Helper()
	ps, err := Parse("test.yaml", []byte("apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: "+image+"\n"+spec))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(ps) != 1 {
		t.Fatalf("got %d policies", len(ps))
	}
	return ps[0]
}

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    string
		current string
		tags    []string
		want    string
	}{
		{"semver range", "  policy:\n    semver:\n      range: '>=1.0.0 <2.0.0'\n", "", []string{"0.9.0", "1.0.0", "1.4.2", "1.10.0", "2.0.0", "latest"}, "1.10.0"},
		{"caret range", "  policy:\n    semver:\n      range: '^1.2'\n", "", []string{"1.1.9", "1.2.0", "1.9.3", "2.0.0"}, "1.9.3"},
		{"tilde range", "  policy:\n    semver:\n      range: '~1.2.3'\n", "", []string{"1.2.3", "1.2.10", "1.3.0"}, "1.2.10"},
		{"v prefixes", "  policy:\n    semver:\n      range: '>=1.0.0'\n", "", []string{"v1.0.0", "v1.2.0", "1.1.0"}, "v1.2.0"},
		{"build metadata ties ranked naturally", "  policy:\n    semver:\n      range: '>=1.0.0'\n", "", []string{"1.0.0+build.9", "1.0.0+build.10", "0.9.0"}, "1.0.0+build.10"},
		{"pre-releases excluded by default", "  policy:\n    semver:\n      range: '>=1.0.0'\n", "", []string{"1.0.0", "1.1.0-rc.1"}, "1.0.0"},
		{"pre-releases when asked", "  policy:\n    semver:\n      range: '>=1.0.0'\n      prereleases: true\n", "", []string{"1.0.0", "1.1.0-rc.1"}, "1.1.0-rc.1"},
		{"-0 range admits pre-releases", "  policy:\n    semver:\n      range: '>=1.1.0-0'\n", "", []string{"1.0.0", "1.1.0-rc.1", "1.1.0-beta.2"}, "1.1.0-rc.1"},
		{"rc10 ranks above rc9", "  policy:\n    semver:\n      range: '>=1.0.0-0'\n", "", []string{"1.0.0-rc9", "1.0.0-rc10", "1.0.0-rc2"}, "1.0.0-rc10"},
		{"rc.10 ranks above rc.9", "  policy:\n    semver:\n      range: '>=1.0.0-0'\n", "", []string{"1.0.0-rc.9", "1.0.0-rc.10"}, "1.0.0-rc.10"},
		{"release ranks above its rc", "  policy:\n    semver:\n      range: '>=1.0.0-0'\n", "", []string{"1.0.0-rc.10", "1.0.0"}, "1.0.0"},
		{"non-semver tags are skipped", "  policy:\n    semver:\n      range: '*'\n", "", []string{"latest", "main-abc", "3.1.4", "nightly"}, "3.1.4"},
		{"filter and extract timestamps", "  filterTags:\n    pattern: '^main-(?P<ts>\\d+)-[a-f0-9]+$'\n    extract: '$ts'\n  policy:\n    numerical:\n      order: asc\n", "",
			[]string{"main-1700000000-abc123", "main-1700000500-def456", "main-999-ffff", "feature-1800000000-aaa", "latest"}, "main-1700000500-def456"},
		{"filter with semver extract", "  filterTags:\n    pattern: '^app-(?P<v>.*)$'\n    extract: '${v}'\n  policy:\n    semver:\n      range: '^2'\n", "",
			[]string{"app-2.1.0", "app-2.3.0", "app-3.0.0", "2.9.0"}, "app-2.3.0"},
		{"alphabetical asc", "  policy:\n    alphabetical: {}\n", "", []string{"RELEASE.2024-01-02", "RELEASE.2024-03-01", "RELEASE.2023-12-31"}, "RELEASE.2024-03-01"},
		{"alphabetical desc", "  policy:\n    alphabetical:\n      order: desc\n", "", []string{"b", "a", "c"}, "a"},
		{"numerical asc", "  policy:\n    numerical: {}\n", "", []string{"9", "10", "2", "x"}, "10"},
		{"numerical desc", "  policy:\n    numerical:\n      order: desc\n", "", []string{"9", "10", "2"}, "2"},
		{"exclusions", "  exclude: ['-debug$', '^1\\.9\\.']\n  policy:\n    semver:\n      range: '>=1.0.0'\n", "", []string{"1.8.0", "1.9.0", "1.10.0-debug", "1.8.1"}, "1.8.1"},
		{"no downgrade after the newest tag was deleted", "  policy:\n    semver:\n      range: '>=1.0.0'\n", "1.5.0", []string{"1.0.0", "1.4.0"}, "1.5.0"},
		{"no downgrade when the range narrowed", "  policy:\n    semver:\n      range: '>=1.0.0'\n", "2.0.0", []string{"1.0.0", "1.9.0"}, "2.0.0"},
		{"downgrade when allowed", "  allowDowngrade: true\n  policy:\n    semver:\n      range: '>=1.0.0'\n", "1.5.0", []string{"1.0.0", "1.4.0"}, "1.4.0"},
		{"current outside policy is no floor", "  policy:\n    semver:\n      range: '>=1.0.0'\n", "latest", []string{"1.0.0", "1.4.0"}, "1.4.0"},
		{"upgrade from current", "  policy:\n    semver:\n      range: '>=1.0.0'\n", "1.0.0", []string{"1.0.0", "1.0.1"}, "1.0.1"},
		{"nothing allowed", "  policy:\n    semver:\n      range: '>=5.0.0'\n", "", []string{"1.0.0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, tc.spec)
			ch := Select(p, tc.current, tc.tags)
			if ch.Tag != tc.want {
				t.Fatalf("chose %q, want %q (%s; rejected %v)", ch.Tag, tc.want, ch.Reason, ch.Rejected)
			}
			if quiet := Choose(p, tc.current, tc.tags); quiet.Tag != ch.Tag || quiet.Kept != ch.Kept || len(quiet.Rejected) != 0 {
				t.Fatalf("Choose = %+v, Select = %+v: same choice, no rejections", quiet, ch)
			}
			if ch.Kept != (strings.Contains(tc.name, "no downgrade")) {
				t.Fatalf("Kept = %v", ch.Kept)
			}
			// Every tag is accounted for: the winner or a rejection.
			explained := map[string]bool{ch.Tag: true}
			for _, r := range ch.Rejected {
				explained[r.Tag] = true
			}
			for _, tag := range tc.tags {
				if !explained[tag] {
					t.Fatalf("tag %s not explained: %v", tag, ch.Rejected)
				}
			}
			// The choice never depends on the listing order.
			rev := append([]string(nil), tc.tags...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			if again := Select(p, tc.current, rev); again.Tag != ch.Tag {
				t.Fatalf("reversed listing chose %q, first %q", again.Tag, ch.Tag)
			}
		})
	}
}

func TestSelectExplains(t *testing.T) {
	p := mustPolicy(t, "  exclude: ['^latest$']\n  policy:\n    semver:\n      range: '^1.0.0'\n")
	ch := Select(p, "", []string{"latest", "1.0.0", "1.2.0", "2.0.0", "1.3.0-rc.1", "nightly"})
	why := map[string]string{}
	for _, r := range ch.Rejected {
		why[r.Tag] = r.Reason
	}
	for tag, want := range map[string]string{
		"latest":     `matches exclude[0] "^latest$"`,
		"2.0.0":      `outside range "^1.0.0"`,
		"1.3.0-rc.1": "pre-release, excluded",
		"nightly":    "not a semantic version",
		"1.0.0":      "ranks below 1.2.0",
	} {
		if !strings.Contains(why[tag], want) {
			t.Errorf("%s: reason %q, want it to contain %q", tag, why[tag], want)
		}
	}
	if ch.Tag != "1.2.0" || ch.Candidates != 2 || ch.Considered != 6 {
		t.Fatalf("got %+v", ch)
	}
}

func TestParseErrorsNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"malformed yaml", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nspec: [\n", []string{"bad.yaml", "malformed YAML"}},
		{"bad range", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    semver:\n      range: '>=1.0 <<2'\n",
			[]string{"bad.yaml:9: spec.policy.semver.range", "is not a semver range"}},
		{"unknown field", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  polcy: {}\n",
			[]string{"bad.yaml:1", `unknown field "polcy"`}},
		{"no ordering and tagged image", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app:1.0\n",
			[]string{"bad.yaml:6: spec.image", "without a tag", "bad.yaml:6: spec.policy: set exactly one"}},
		{"two orderings", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    semver: {range: '*'}\n    numerical: {}\n",
			[]string{"spec.policy: set exactly one of semver, alphabetical, numerical, newestPushed (got 2)"}},
		{"newestPushed without ECR", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    newestPushed: {}\n",
			[]string{"bad.yaml:8: spec.policy.newestPushed", "set spec.auth.provider: aws"}},
		{"bad regexps", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    numerical: {}\n  filterTags:\n    pattern: '^(?P<ts>\\d+$'\n  exclude: ['ok', '(']\n",
			[]string{"bad.yaml:10: spec.filterTags.pattern", "bad.yaml:11: spec.exclude[1]"}},
		{"extract names a missing group", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    numerical: {}\n  filterTags:\n    pattern: '^(?P<ts>\\d+)$'\n    extract: '$stamp'\n",
			[]string{"spec.filterTags.extract", `group "stamp"`}},
		{"a glob in exclude", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    numerical: {}\n  exclude: ['^latest$', '*-debug']\n",
			[]string{"bad.yaml:9: spec.exclude[1]", `"*-debug" is a glob, but exclusions are regular expressions: did you mean ".*-debug"?`}},
		{"aws auth for a non-ECR registry", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    numerical: {}\n  auth:\n    provider: aws\n",
			[]string{"bad.yaml:10: spec.auth.provider", "ghcr.io is not one"}},
		{"docker config outside the mounted folder", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  policy:\n    numerical: {}\n  auth:\n    provider: dockerconfig\n    dockerConfig: /root/.docker/config.json\n",
			[]string{"bad.yaml:11: spec.auth.dockerConfig", "relative to the automator's --docker-config-dir"}},
		{"aws auth for an ECR host in another region", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/app\n  policy:\n    numerical: {}\n  auth:\n    provider: aws\n    region: eu-west-1\n",
			[]string{"bad.yaml:11: spec.auth.region", `"eu-west-1" differs`}},
		{"bad interval and apiVersion", "apiVersion: v1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  interval: soon\n  policy:\n    numerical: {}\n",
			[]string{"bad.yaml:1: apiVersion", "bad.yaml:7: spec.interval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := Parse("bad.yaml", []byte(tc.doc))
			if err == nil || len(ps) != 0 {
				t.Fatalf("got %d policies and error %v, want an error and none", len(ps), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestParseKeepsGoodPoliciesBesideBadOnes(t *testing.T) {
	doc := `apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: good, namespace: apps}
spec:
  image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app
  interval: 1m
  auth: {provider: aws}
  policy: {semver: {range: '^1'}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: bad}
spec:
  image: ghcr.io/org/app
  policy: {semver: {range: 'one'}}
`
	ps, err := Parse("mixed.yaml", []byte(doc))
	if len(ps) != 1 || ps[0].Key() != "apps:good" {
		t.Fatalf("got %v, want the good policy apps:good", ps)
	}
	if err == nil || !strings.Contains(err.Error(), "mixed.yaml:19: spec.policy.semver.range") {
		t.Fatalf("error %v should name the bad policy's range", err)
	}
	if ps[0].ScanInterval().String() != "1m0s" || ps[0].Repository().RegistryStr() != "123456789012.dkr.ecr.eu-west-1.amazonaws.com" {
		t.Fatalf("parsed %v %v", ps[0].ScanInterval(), ps[0].Repository())
	}
}

func TestSelectNewestPushed(t *testing.T) {
	p := mustPolicyOf(t, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", "  auth: {provider: aws, region: eu-west-1}\n  exclude: ['^latest$']\n  policy:\n    newestPushed: {}\n")
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	pushed := map[string]time.Time{
		"main-abc": t0.Add(3 * time.Hour), // newest, though it sorts first by name
		"main-xyz": t0.Add(time.Hour),
		"2.0.0":    t0,
		"latest":   t0.Add(4 * time.Hour),
	}
	tags := []string{"2.0.0", "main-xyz", "main-abc", "latest", "untimed"}
	ch := Select(p, "", tags, WithPushTimes(pushed))
	if ch.Tag != "main-abc" {
		t.Fatalf("chose %q (%s)", ch.Tag, ch.Reason)
	}
	why := map[string]string{}
	for _, r := range ch.Rejected {
		why[r.Tag] = r.Reason
	}
	if why["untimed"] != "no push time known" || !strings.Contains(why["latest"], "exclude") {
		t.Fatalf("reasons %v", why)
	}
	// The current tag's push time is the floor: a re-pushed older tag
	// list never moves back.
	pushed["main-new"] = t0.Add(5 * time.Hour)
	if ch := Select(p, "main-new", []string{"main-abc"}, WithPushTimes(pushed)); ch.Tag != "main-new" || !ch.Kept {
		t.Fatalf("downgrade: chose %q kept=%v", ch.Tag, ch.Kept)
	}
}
