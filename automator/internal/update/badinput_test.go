package update

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInputMarkers: a manifest the editor cannot edit safely is an
// error naming the file and line and what to do; it is never in the
// planned edits and stays byte for byte as it was (the automator writes
// nothing at all when Plan fails, see automate), while a good file beside
// it is planned.
func TestBadInputMarkers(t *testing.T) {
	const good = "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:app\"}\n"
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"malformed YAML", "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:app\"}\n  bad: [indent\n", []string{"bad.yaml: malformed YAML"}},
		{"a marker with too many parts", "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"a:b:c:d\"}\n", []string{"bad.yaml:1:", `want "name" or "namespace:name"`}},
		{"a marker naming no policy", "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"\"}\n", []string{"bad.yaml:1:", `want "name" or "namespace:name"`}},
		{"a marker with an empty part", "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps::tag\"}\n", []string{"bad.yaml:1:", `want "name" or "namespace:name"`}},
		{"$imagepolicy that is not a marker", "image: ghcr.io/org/app:1.0.0 # $imagepolicy: apps:app\n", []string{"bad.yaml:1:", "mentions $imagepolicy but is not a marker"}},
		{"a marker on a block scalar", "image: |- # {\"$imagepolicy\": \"apps:app\"}\n  ghcr.io/org/app:1.0.0\n", []string{"bad.yaml:1: block or folded scalar"}},
		{"a marker on a folded scalar", "image: >- # {\"$imagepolicy\": \"apps:app\"}\n  ghcr.io/org/app:1.0.0\n", []string{"bad.yaml:1: block or folded scalar"}},
		{"a marker on a mapping", "containers:\n- {name: a, image: ghcr.io/org/app:1.0.0} # {\"$imagepolicy\": \"apps:app\"}\n", []string{"bad.yaml:2: marker on a mapping"}},
		{"a marker on a sequence", "images: [ghcr.io/org/app:1.0.0] # {\"$imagepolicy\": \"apps:app\"}\n", []string{"bad.yaml:1: marker on a mapping or sequence"}},
		{"a marker on a key", "image: # {\"$imagepolicy\": \"apps:app\"}\n  ghcr.io/org/app:1.0.0\n", []string{"bad.yaml:1:", `marker on the key "image"`}},
		{"a double-quoted value with escapes", "image: \"ghcr.io/org/app:1.0.0\\t\" # {\"$imagepolicy\": \"apps:app\"}\n", []string{"bad.yaml:1:", "double-quoted value with escapes"}},
		{"a digest marker without pinning", "digest: sha256:00 # {\"$imagepolicy\": \"apps:app:digest\"}\n", []string{"bad.yaml:1: marker for apps:app:digest", "digestPinning: true"}},
		{"a link out of the checkout", "", []string{"bad.yaml", "outside"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			os.WriteFile(filepath.Join(work, "good.yaml"), []byte(good), 0o644)
			bad := filepath.Join(work, "bad.yaml")
			if tc.body == "" {
				outside := filepath.Join(t.TempDir(), "elsewhere.yaml")
				os.WriteFile(outside, []byte(good), 0o644)
				if err := os.Symlink(outside, bad); err != nil {
					t.Fatal(err)
				}
				tc.body = good
			} else {
				os.WriteFile(bad, []byte(tc.body), 0o644)
			}
			edits, _, err := Plan(open(t, work), "", map[string]Image{"apps:app": {Repository: "ghcr.io/org/app", Tag: "2.0.0"}})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if len(edits) != 1 || edits[0].File != "good.yaml" {
				t.Fatalf("planned %v, want the good file only", edits)
			}
			if got, _ := os.ReadFile(bad); string(got) != tc.body {
				t.Fatalf("bad.yaml changed:\n%s", got)
			}
		})
	}
}
