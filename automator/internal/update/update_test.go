package update

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/konfig"

	"driftless.dev/automator/internal/checkout"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*/want from the current output")

const pinnedDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// goldenImages is what every golden case's markers should end up showing.
var goldenImages = map[string]Image{
	"apps:app":     {Repository: "ghcr.io/org/app", Tag: "1.3.0"},
	"apps:sidecar": {Repository: "ghcr.io/org/sidecar", Tag: "0.2.0"},
	"plain":        {Repository: "ghcr.io/org/plain", Tag: "2.0.0"},
	"apps:pinned":  {Repository: "ghcr.io/org/pinned", Tag: "1.0.0", Digest: pinnedDigest},
}

func TestGolden(t *testing.T) {
	cases, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if c.Name() == "fuzz" {
			continue // the fuzz targets' seed corpora
		}
		t.Run(c.Name(), func(t *testing.T) {
			in := filepath.Join("testdata", c.Name(), "in")
			want := filepath.Join("testdata", c.Name(), "want")
			work := t.TempDir()
			if err := os.CopyFS(work, os.DirFS(in)); err != nil {
				t.Fatal(err)
			}
			// Back-date every file, to see which ones get written.
			old := time.Now().Add(-time.Hour)
			before := map[string]time.Time{}
			walkAll(t, work, func(rel, path string) {
				os.Chtimes(path, old, old)
				before[rel] = old
			})
			edits, changes, err := Plan(open(t, work), "", goldenImages)
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if err := Write(open(t, work), edits); err != nil {
				t.Fatal(err)
			}
			if *updateGolden {
				os.RemoveAll(want)
				if err := os.CopyFS(want, os.DirFS(work)); err != nil {
					t.Fatal(err)
				}
			}
			edited := map[string]bool{}
			for _, e := range edits {
				edited[e.File] = true
			}
			walkAll(t, work, func(rel, path string) {
				got, _ := os.ReadFile(path)
				exp, err := os.ReadFile(filepath.Join(want, rel))
				if err != nil {
					t.Fatalf("%s: no golden file: %v", rel, err)
				}
				if string(got) != string(exp) {
					t.Errorf("%s differs from golden:\n--- got\n%s\n--- want\n%s", rel, got, exp)
				}
				st, _ := os.Stat(path)
				wrote := !st.ModTime().Equal(before[rel])
				if wrote != edited[rel] {
					t.Errorf("%s: written=%v, but in the edit plan=%v (only changed files are written)", rel, wrote, edited[rel])
				}
				orig, _ := os.ReadFile(filepath.Join(in, rel))
				if edited[rel] == (string(orig) == string(got)) {
					t.Errorf("%s: edited=%v but content changed=%v", rel, edited[rel], string(orig) != string(got))
				}
			})
			for _, ch := range changes {
				if ch.Old == ch.New || ch.File == "" || ch.Line == 0 {
					t.Errorf("bad change record %+v", ch)
				}
			}
		})
	}
}

func walkAll(t *testing.T, root string, fn func(rel, path string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		fn(filepath.ToSlash(rel), path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseMarker(t *testing.T) {
	for _, tc := range []struct {
		comment, policy string
		field           Field
		ok, bad         bool
	}{
		{`# {"$imagepolicy": "apps:app"}`, "apps:app", FieldImage, true, false},
		{`# {"$imagepolicy": "app"}`, "app", FieldImage, true, false},
		{`# {"$imagepolicy": "apps:app:tag"}`, "apps:app", FieldTag, true, false},
		{`# {"$imagepolicy": "app:name"}`, "app", FieldName, true, false},
		{`# {"$imagepolicy": "apps:app:digest"}`, "apps:app", FieldDigest, true, false},
		{`#{"$imagepolicy":"apps:app"} and words`, "apps:app", FieldImage, true, false},
		{`# just a comment`, "", "", false, false},
		{`# {"$imagepolicy": "a:b:c:d"}`, "", "", false, true},
		{`# {"$imagepolicy": ""}`, "", "", false, true},
		{`# $imagepolicy: apps:app`, "", "", false, true},
	} {
		policy, field, ok, err := ParseMarker(tc.comment)
		if policy != tc.policy || field != tc.field || ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("ParseMarker(%s) = %q %q %v %v", tc.comment, policy, field, ok, err)
		}
	}
}

func TestScanAndTagOf(t *testing.T) {
	markers, err := Scan(open(t, filepath.Join("testdata", "kustomization", "in")), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(markers) != 6 {
		t.Fatalf("found %d markers, want 6: %+v", len(markers), markers)
	}
	m := markers[1]
	if m.File != "kustomization.yaml" || m.Line != 8 || m.Policy != "apps:app" || m.Field != FieldTag || TagOf(m.Field, m.Value) != "1.2.0" {
		t.Fatalf("marker %+v", m)
	}
	for _, tc := range []struct {
		field      Field
		value, tag string
	}{
		{FieldImage, "ghcr.io/org/app:1.2.0", "1.2.0"},
		{FieldImage, "localhost:5000/app:1.2.0@sha256:abc", "1.2.0"},
		{FieldImage, "localhost:5000/app", ""},
		{FieldTag, "1.2.0@sha256:abc", "1.2.0"},
		{FieldName, "ghcr.io/org/app", ""},
	} {
		if got := TagOf(tc.field, tc.value); got != tc.tag {
			t.Errorf("TagOf(%q, %q) = %q, want %q", tc.field, tc.value, got, tc.tag)
		}
	}
}

func TestBadFilesAreErrorsAndNotWritten(t *testing.T) {
	work := t.TempDir()
	files := map[string]string{
		"broken.yaml":    "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:app\"}\n  bad: [indent\n",
		"badmarker.yaml": "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"a:b:c:d\"}\n",
		"block.yaml":     "image: |- # {\"$imagepolicy\": \"apps:app\"}\n  ghcr.io/org/app:1.0.0\n",
		"good.yaml":      "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:app\"}\n",
		"flow.yaml":      "containers:\n- {name: a, image: ghcr.io/org/app:1.0.0} # {\"$imagepolicy\": \"apps:app\"}\n",
	}
	for name, content := range files {
		os.WriteFile(filepath.Join(work, name), []byte(content), 0o644)
	}
	edits, _, err := Plan(open(t, work), "", goldenImages)
	if err == nil {
		t.Fatal("want errors for the bad files")
	}
	for _, want := range []string{"broken.yaml: malformed YAML", "badmarker.yaml:1:", "block.yaml:1: block or folded scalar", "flow.yaml:2: marker on a mapping"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(edits) != 1 || edits[0].File != "good.yaml" {
		t.Fatalf("planned %v, want only good.yaml", edits)
	}
	// Plan writes nothing.
	for name, content := range files {
		got, _ := os.ReadFile(filepath.Join(work, name))
		if string(got) != content {
			t.Errorf("%s changed by Plan", name)
		}
	}
}

func TestDigestMarkerWithoutPinningIsAnError(t *testing.T) {
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "k.yaml"), []byte("digest: sha256:00 # {\"$imagepolicy\": \"apps:app:digest\"}\n"), 0o644)
	_, _, err := Plan(open(t, work), "", goldenImages)
	if err == nil || !strings.Contains(err.Error(), "k.yaml:1: marker for apps:app:digest") {
		t.Fatalf("got %v", err)
	}
}

func open(t *testing.T, dir string) *checkout.Tree {
	t.Helper()
	tree, err := checkout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tree.Close() })
	return tree
}

// TestMarkersInEveryKustomizationFileName: kustomize reads a file named
// Kustomization (no extension); its markers are updated like any other.
func TestMarkersInEveryKustomizationFileName(t *testing.T) {
	if !slices.Equal(KustomizationFileNames, konfig.RecognizedKustomizationFileNames()) {
		t.Fatalf("KustomizationFileNames %v, kustomize reads %v", KustomizationFileNames, konfig.RecognizedKustomizationFileNames())
	}
	work := t.TempDir()
	for _, name := range KustomizationFileNames {
		dir := filepath.Join(work, strings.ReplaceAll(name, ".", "-"))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte("images:\n  - name: app\n    newTag: 1.0.0 # {\"$imagepolicy\": \"apps:app:tag\"}\n"), 0o644)
	}
	tree := open(t, work)
	markers, err := Scan(tree, "")
	if err != nil || len(markers) != 3 {
		t.Fatalf("%d markers (%v), want one in each of %v", len(markers), err, KustomizationFileNames)
	}
	edits, _, err := Plan(tree, "", goldenImages)
	if err != nil || len(edits) != 3 {
		t.Fatalf("%d edits (%v), want 3", len(edits), err)
	}
	if err := Write(tree, edits); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(work, "Kustomization", "Kustomization"))
	if !strings.Contains(string(got), "newTag: "+goldenImages["apps:app"].Tag+" #") {
		t.Fatalf("Kustomization after the edit:\n%s", got)
	}
}
