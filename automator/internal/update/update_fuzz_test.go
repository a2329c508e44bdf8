package update

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// FuzzParseMarker reads arbitrary comments: no panic; a marker found
// names a policy ("name" or "namespace:name", no empty part) and a known
// field; a comment that mentions $imagepolicy without being a marker is
// an error, never silently ignored. Seeds: testdata/fuzz/FuzzParseMarker.
func FuzzParseMarker(f *testing.F) {
	f.Fuzz(func(t *testing.T, comment string) {
		policy, field, ok, err := ParseMarker(comment)
		switch {
		case err != nil:
			if ok || policy != "" {
				t.Fatalf("error %v with a marker %q", err, policy)
			}
		case ok:
			parts := strings.Split(policy, ":")
			if len(parts) > 2 || slicesHasEmpty(parts) {
				t.Fatalf("marker names policy %q", policy)
			}
			switch field {
			case FieldImage, FieldTag, FieldName, FieldDigest:
			default:
				t.Fatalf("field %q", field)
			}
		case strings.Contains(comment, "$imagepolicy") && markerRE.MatchString(comment):
			t.Fatalf("a marker in %q was not read", comment)
		}
	})
}

// FuzzEdit plans and writes the edits of an arbitrary manifest file: no
// panic; a file it cannot edit safely is an error naming it and is left
// as it was; an edit changes only the marked values, each where its old
// value was, byte for byte everywhere else; the edited file parses to the
// same document with only those values changed; markers of other
// policies keep their values; and a second plan finds nothing to do.
// Seeds: testdata/fuzz/FuzzEdit.
func FuzzEdit(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if !bytes.Contains(body, []byte("$imagepolicy")) {
			return // never read: nothing to edit
		}
		work := t.TempDir()
		file := filepath.Join(work, "k.yaml")
		if err := os.WriteFile(file, body, 0o644); err != nil {
			t.Fatal(err)
		}
		images := map[string]Image{
			"apps:app":    {Repository: "ghcr.io/org/app", Tag: "1.3.0"},
			"plain":       {Repository: "ghcr.io/org/plain", Tag: "2.0.0"},
			"apps:pinned": {Repository: "ghcr.io/org/pinned", Tag: "1.0.0", Digest: "sha256:" + strings.Repeat("1", 64)},
		}
		tree := open(t, work)
		edits, changes, err := Plan(tree, "", images)
		if err != nil {
			if !strings.Contains(err.Error(), "k.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			if len(edits) > 0 {
				t.Fatalf("planned %d edits of a file it refused", len(edits))
			}
			return
		}
		if len(edits) == 0 {
			if len(changes) > 0 {
				t.Fatalf("%d changes without an edit", len(changes))
			}
			return
		}
		if err := Write(tree, edits); err != nil {
			t.Fatal(err)
		}
		after, _ := os.ReadFile(file)
		if err := onlyValues(body, after, changes); err != nil {
			t.Fatalf("%v\nbefore:\n%s\nafter:\n%s", err, body, after)
		}
		if err := sameDocuments(body, after, changes); err != nil {
			t.Fatalf("%v\nbefore:\n%s\nafter:\n%s", err, body, after)
		}
		again, more, err := Plan(open(t, work), "", images)
		if err != nil || len(again) > 0 || len(more) > 0 {
			t.Fatalf("second plan: %d edits, %v, %v\nafter:\n%s", len(again), more, err, after)
		}
	})
}

// onlyValues checks that after is before with, on each changed line, the
// old value's token replaced by the new one's at the same place.
func onlyValues(before, after []byte, changes []Change) error {
	bl, al := bytes.SplitAfter(before, []byte("\n")), bytes.SplitAfter(after, []byte("\n"))
	if len(bl) != len(al) {
		return fmt.Errorf("%d lines became %d", len(bl), len(al))
	}
	byLine := map[int][]Change{}
	for _, c := range changes {
		byLine[c.Line] = append(byLine[c.Line], c)
	}
	for i := range bl {
		cs := byLine[i+1]
		if len(cs) == 0 {
			if !bytes.Equal(bl[i], al[i]) {
				return fmt.Errorf("line %d changed without a marked value: %q -> %q", i+1, bl[i], al[i])
			}
			continue
		}
		if !replacedOnce(string(bl[i]), string(al[i]), cs) {
			return fmt.Errorf("line %d: %q -> %q is not only %v", i+1, bl[i], al[i], cs)
		}
	}
	return nil
}

// replacedOnce reports whether after is before with each change's old
// token (plain, single- or double-quoted) swapped for its new token.
func replacedOnce(before, after string, cs []Change) bool {
	if len(cs) == 0 {
		return before == after
	}
	c, rest := cs[0], cs[1:]
	for _, style := range []yaml.Style{0, yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle} {
		oldTok, newTok, err := tokens(style, c.Old, c.New)
		if err != nil {
			continue
		}
		for i := 0; i+len(oldTok) <= len(before); i++ {
			if before[i:i+len(oldTok)] != oldTok || !strings.HasPrefix(after[i:], newTok) || before[:i] != after[:i] {
				continue
			}
			if replacedOnce(before[i+len(oldTok):], after[i+len(newTok):], rest) {
				return true
			}
		}
	}
	return false
}

// sameDocuments checks that after parses to before's documents with the
// changed values, and nothing else, different.
func sameDocuments(before, after []byte, changes []Change) error {
	bn, err := readNodes(before)
	if err != nil {
		return err
	}
	an, err := readNodes(after)
	if err != nil {
		return fmt.Errorf("the edited file does not parse: %w", err)
	}
	if len(bn) != len(an) {
		return fmt.Errorf("%d documents became %d", len(bn), len(an))
	}
	changed := map[[2]int]bool{}
	for i := range bn {
		if err := sameNode(bn[i].YNode(), an[i].YNode(), changes, changed); err != nil {
			return err
		}
	}
	if len(changed) != len(changes) {
		return fmt.Errorf("%d values changed, %d changes planned", len(changed), len(changes))
	}
	return nil
}

func sameNode(b, a *yaml.Node, changes []Change, changed map[[2]int]bool) error {
	if b.Kind != a.Kind || b.Line != a.Line || b.Column != a.Column || len(b.Content) != len(a.Content) ||
		b.HeadComment != a.HeadComment || b.LineComment != a.LineComment || b.FootComment != a.FootComment || b.Anchor != a.Anchor {
		return fmt.Errorf("node at %d:%d changed shape", b.Line, b.Column)
	}
	if b.Value != a.Value {
		ok := false
		for _, c := range changes {
			if c.Line == b.Line && c.Old == b.Value && c.New == a.Value {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("%d:%d: %q became %q, no change planned that", b.Line, b.Column, b.Value, a.Value)
		}
		changed[[2]int{b.Line, b.Column}] = true
	}
	for i := range b.Content {
		if err := sameNode(b.Content[i], a.Content[i], changes, changed); err != nil {
			return err
		}
	}
	return nil
}
