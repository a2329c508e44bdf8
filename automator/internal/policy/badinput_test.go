package policy

import (
	"strings"
	"testing"
)

// The bad-input census (make reliability) counts the subtests of every
// TestBadInput* test in the tree: each is one kind of bad input, and
// asserts a clear error (where, and what was expected) and that nothing
// of the bad input is used.

// TestBadInputPolicies: each bad policy file is an error naming the file,
// line and field and what was expected; no policy comes of it, and a good
// policy in another file of the same set is still used.
func TestBadInputPolicies(t *testing.T) {
	const head = "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n"
	good := File{Name: "good.yaml", Data: []byte("apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: good}\nspec:\n  image: ghcr.io/org/good\n  policy:\n    numerical: {}\n")}
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"malformed YAML", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nspec: [\n", []string{"bad.yaml: malformed YAML"}},
		{"wrong apiVersion", strings.Replace(head, "driftless.dev/v1alpha1", "v1", 1) + "  policy:\n    numerical: {}\n", []string{"bad.yaml:1: apiVersion", `want "driftless.dev/v1alpha1"`}},
		{"unknown field", head + "  polcy: {}\n", []string{"bad.yaml:1", `unknown field "polcy"`}},
		{"no name", strings.Replace(head, "  name: app\n", "  namespace: x\n", 1) + "  policy:\n    numerical: {}\n", []string{"bad.yaml", "metadata.name: required"}},
		{"name with a colon", strings.Replace(head, "name: app", "name: 'a:b'", 1) + "  policy:\n    numerical: {}\n", []string{"bad.yaml:4: metadata.name", "must not contain ':'"}},
		{"no image", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app}\nspec:\n  policy:\n    numerical: {}\n", []string{"bad.yaml", "spec.image: required"}},
		{"tagged image", strings.Replace(head, "ghcr.io/org/app", "ghcr.io/org/app:1.0", 1) + "  policy:\n    numerical: {}\n", []string{"bad.yaml:6: spec.image", "without a tag or digest"}},
		{"image with a digest", strings.Replace(head, "ghcr.io/org/app", "ghcr.io/org/app@sha256:"+strings.Repeat("a", 64), 1) + "  policy:\n    numerical: {}\n", []string{"bad.yaml:6: spec.image", "without a tag or digest"}},
		{"interval not a duration", head + "  interval: soon\n  policy:\n    numerical: {}\n", []string{"bad.yaml:7: spec.interval", "not a duration such as 1m"}},
		{"interval too short", head + "  interval: 10ms\n  policy:\n    numerical: {}\n", []string{"bad.yaml:7: spec.interval", "at least 1s"}},
		{"no ordering", head, []string{"bad.yaml", "spec.policy: set exactly one of semver, alphabetical, numerical, newestPushed (got 0)"}},
		{"two orderings", head + "  policy:\n    semver: {range: '*'}\n    numerical: {}\n", []string{"spec.policy: set exactly one", "(got 2)"}},
		{"semver without a range", head + "  policy:\n    semver: {}\n", []string{"bad.yaml:8: spec.policy.semver.range", "required"}},
		{"bad semver range", head + "  policy:\n    semver:\n      range: '>=1.0 <<2'\n", []string{"bad.yaml:9: spec.policy.semver.range", "is not a semver range"}},
		{"bad order", head + "  policy:\n    numerical:\n      order: up\n", []string{"bad.yaml:9: spec.policy.numerical.order", "want asc or desc"}},
		{"newestPushed without ECR", head + "  policy:\n    newestPushed: {}\n", []string{"bad.yaml:8: spec.policy.newestPushed", "set spec.auth.provider: aws"}},
		{"bad filter pattern", head + "  policy:\n    numerical: {}\n  filterTags:\n    pattern: '^(?P<ts>\\d+$'\n", []string{"bad.yaml:10: spec.filterTags.pattern", "not a regular expression"}},
		{"extract names a missing group", head + "  policy:\n    numerical: {}\n  filterTags:\n    pattern: '^(?P<ts>\\d+)$'\n    extract: '$stamp'\n", []string{"spec.filterTags.extract", `group "stamp"`}},
		{"a glob in exclude", head + "  policy:\n    numerical: {}\n  exclude: ['^latest$', '*-debug']\n", []string{"bad.yaml:9: spec.exclude[1]", `did you mean ".*-debug"?`}},
		{"aws credentials for a non-ECR registry", head + "  policy:\n    numerical: {}\n  auth:\n    provider: aws\n", []string{"bad.yaml:10: spec.auth.provider", "ghcr.io is not one"}},
		{"aws region differing from the host's", strings.Replace(head, "ghcr.io/org/app", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app", 1) + "  policy:\n    numerical: {}\n  auth:\n    provider: aws\n    region: eu-west-1\n", []string{"bad.yaml:11: spec.auth.region", `"eu-west-1" differs`}},
		{"pull secret outside the mounted folder", head + "  policy:\n    numerical: {}\n  auth:\n    provider: dockerconfig\n    dockerConfig: ../root/.docker/config.json\n", []string{"bad.yaml:11: spec.auth.dockerConfig", "without '..'"}},
		{"unknown auth provider", head + "  policy:\n    numerical: {}\n  auth:\n    provider: gcp\n", []string{"bad.yaml:10: spec.auth.provider", "want none, aws or dockerconfig"}},
		{"a policy defined twice", head + "  policy:\n    numerical: {}\n---\n" + head + "  policy:\n    numerical: {}\n", []string{"policy app is also defined in bad.yaml; both skipped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Load([]File{{Name: "bad.yaml", Data: []byte(tc.doc)}, good})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if len(set.Policies) != 1 || set.Policies[0].Key() != "good" {
				var keys []string
				for _, p := range set.Policies {
					keys = append(keys, p.Key())
				}
				t.Fatalf("policies used: %v, want only the good one", keys)
			}
		})
	}
}
