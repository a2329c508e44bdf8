package update

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"sigs.k8s.io/kustomize/kyaml/kio"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"driftless.dev/automator/internal/checkout"
)

// Change is one marked value rewritten.
type Change struct {
	File   string
	Line   int
	Policy string
	Field  Field
	Old    string
	New    string
}

// SetImages is a kyaml filter: it sets every marked scalar of the policies
// in Images to what its marker stands for, and records each change. Other
// nodes, and markers of other policies, are left alone.
type SetImages struct {
	Images map[string]Image
	// File names the documents' file in the recorded changes.
	File string

	Changes []Change
	Errs    []error
}

var _ kio.Filter = (*SetImages)(nil)

// Filter implements kio.Filter.
func (s *SetImages) Filter(nodes []*yaml.RNode) ([]*yaml.RNode, error) {
	for _, rn := range nodes {
		walk(rn.YNode(), func(n *yaml.Node, policy string, field Field) {
			img, ok := s.Images[policy]
			if !ok {
				return
			}
			want := img.value(field)
			if field == FieldDigest && img.Digest == "" {
				s.Errs = append(s.Errs, fmt.Errorf("%s:%d: marker for %s:digest, but policy %s does not pin digests (set spec.digestPinning: true)", s.File, n.Line, policy, policy))
				return
			}
			if n.Value == want {
				return
			}
			s.Changes = append(s.Changes, Change{File: s.File, Line: n.Line, Policy: policy, Field: field, Old: n.Value, New: want})
			n.Value = want
		}, func(n *yaml.Node, err error) {
			s.Errs = append(s.Errs, fmt.Errorf("%s:%d: %w", s.File, n.Line, err))
		})
	}
	return nodes, nil
}

// readNodes decodes every document of data, keeping line numbers relative
// to the whole file (kio.ByteReader restarts them at each document).
func readNodes(data []byte) ([]*yaml.RNode, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*yaml.RNode
	for {
		n := &yaml.Node{}
		err := dec.Decode(n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("malformed YAML: %w", err)
		}
		out = append(out, yaml.NewRNode(n))
	}
}

// KustomizationFileNames are the names kustomize reads a kustomization
// from (konfig.RecognizedKustomizationFileNames, checked by a test): the
// synchronizer builds a file named Kustomization, so its markers count.
var KustomizationFileNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// manifestFile reports whether a file of this name is YAML worth reading.
func manifestFile(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml" || slices.Contains(KustomizationFileNames, name)
}

// walkFiles calls fn with the content of every YAML file under dir of the
// checkout that mentions $imagepolicy (cheap to test, and it spares
// parsing the rest); rel is the file's real path in the checkout. A link
// that leaves the checkout is an error naming it, appended to errs.
func walkFiles(t *checkout.Tree, dir string, errs *[]error, fn func(rel string, data []byte) error) error {
	return t.Walk(dir, manifestFile, func(rel string, data []byte) error {
		if !bytes.Contains(data, []byte("$imagepolicy")) {
			return nil
		}
		return fn(rel, data)
	}, func(err error) { *errs = append(*errs, err) })
}

// Scan returns every marker under dir of the checkout, and every file or
// marker that could not be read, each naming file (relative to the
// checkout) and line.
func Scan(t *checkout.Tree, dir string) ([]Marker, error) {
	var markers []Marker
	var errs []error
	err := walkFiles(t, dir, &errs, func(rel string, data []byte) error {
		nodes, err := readNodes(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rel, err))
			return nil
		}
		for _, rn := range nodes {
			walk(rn.YNode(), func(n *yaml.Node, policy string, field Field) {
				markers = append(markers, Marker{File: rel, Line: n.Line, Column: n.Column, Policy: policy, Field: field, Value: n.Value})
			}, func(n *yaml.Node, err error) {
				errs = append(errs, fmt.Errorf("%s:%d: %w", rel, n.Line, err))
			})
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("scan %s: %w", orRoot(dir), err))
	}
	return markers, errors.Join(errs...)
}

// Edit is the new content of one file.
type Edit struct {
	File    string
	Content []byte
}

// Plan computes, without writing, the files under dir of the checkout
// that must change for every marker of the policies in images to show its
// image. A file that cannot be parsed or edited safely is an error and is
// not planned; the automator then writes nothing at all, since a policy
// whose markers sit in several files must never be half applied.
func Plan(t *checkout.Tree, dir string, images map[string]Image) ([]Edit, []Change, error) {
	var edits []Edit
	var changes []Change
	var errs []error
	err := walkFiles(t, dir, &errs, func(rel string, data []byte) error {
		nodes, err := readNodes(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rel, err))
			return nil
		}
		f := &SetImages{Images: images, File: rel}
		if _, err := f.Filter(nodes); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rel, err))
			return nil
		}
		if len(f.Errs) > 0 {
			// A file with a bad marker is not edited at all.
			errs = append(errs, f.Errs...)
			return nil
		}
		if len(f.Changes) == 0 {
			return nil
		}
		out, err := splice(rel, data, nodes, f.Changes)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		edits = append(edits, Edit{File: rel, Content: out})
		changes = append(changes, f.Changes...)
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("read %s: %w", orRoot(dir), err))
	}
	return edits, changes, errors.Join(errs...)
}

// Write writes the planned edits into the checkout, each through a
// temporary file and a rename (see checkout.Tree.WriteFile), so no file is
// ever left half written and nothing is written outside the checkout.
func Write(t *checkout.Tree, edits []Edit) error {
	for _, e := range edits {
		if err := t.WriteFile(e.File, e.Content); err != nil {
			return fmt.Errorf("write %s: %w", e.File, err)
		}
	}
	return nil
}

func orRoot(dir string) string {
	if dir == "" {
		return "the checkout"
	}
	return dir
}

// splice rewrites the changed scalars in the original bytes at the
// positions the parser gave them. Re-encoding the kyaml tree instead would
// lose blank lines and reflow quotes and indentation; users review these
// diffs, so only the values may move. The result is parsed again and
// every changed value checked, so a bad splice is an error, never a commit.
func splice(file string, data []byte, nodes []*yaml.RNode, changes []Change) ([]byte, error) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	type pos struct{ line, col int }
	byPos := map[pos]*yaml.Node{}
	for _, rn := range nodes {
		walk(rn.YNode(), func(n *yaml.Node, _ string, _ Field) { byPos[pos{n.Line, n.Column}] = n }, func(*yaml.Node, error) {})
	}
	// Later positions first, so earlier offsets stay valid.
	type site struct {
		pos
		node *yaml.Node
		old  string
	}
	var sites []site
	for _, c := range changes {
		for p, n := range byPos {
			if p.line == c.Line && n.Value == c.New {
				sites = append(sites, site{p, n, c.Old})
			}
		}
	}
	sort.Slice(sites, func(i, j int) bool {
		if sites[i].line != sites[j].line {
			return sites[i].line > sites[j].line
		}
		return sites[i].col > sites[j].col
	})
	for _, s := range sites {
		if s.line < 1 || s.line > len(lines) {
			return nil, fmt.Errorf("%s:%d: out of range", file, s.line)
		}
		ln := lines[s.line-1]
		off := runeOffset(ln, s.col-1)
		oldTok, newTok, err := tokens(s.node.Style, s.old, s.node.Value)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, s.line, err)
		}
		if off < 0 || !bytes.HasPrefix(ln[off:], []byte(oldTok)) {
			return nil, fmt.Errorf("%s:%d: the value %q is not where the parser put it; not editing this file", file, s.line, s.old)
		}
		lines[s.line-1] = append(append(append([]byte{}, ln[:off]...), newTok...), ln[off+len(oldTok):]...)
	}
	out := bytes.Join(lines, nil)
	// Check: the edited file parses, and holds the new values.
	after, err := readNodes(out)
	if err != nil {
		return nil, fmt.Errorf("%s: edited file does not parse (not written): %w", file, err)
	}
	var got []string
	for _, rn := range after {
		walk(rn.YNode(), func(n *yaml.Node, _ string, _ Field) { got = append(got, fmt.Sprint(n.Line, ":", n.Value)) }, func(*yaml.Node, error) {})
	}
	for _, c := range changes {
		if !contains(got, fmt.Sprint(c.Line, ":", c.New)) {
			return nil, fmt.Errorf("%s:%d: edited file does not hold %q (not written)", file, c.Line, c.New)
		}
	}
	return out, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// tokens renders the old and new values as the scalar's style writes them.
func tokens(style yaml.Style, old, new string) (string, string, error) {
	switch style {
	case 0:
		return old, new, nil
	case yaml.SingleQuotedStyle:
		q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
		return q(old), q(new), nil
	case yaml.DoubleQuotedStyle:
		// A value that needs (or came from) an escape is not spelt in the
		// file the way it reads: say so, instead of failing to find it.
		if strings.ContainsFunc(old+new, func(r rune) bool { return r == '"' || r == '\\' || !unicode.IsPrint(r) }) {
			return "", "", errors.New("double-quoted value with escapes: edit it by hand or unquote it")
		}
		return `"` + old + `"`, `"` + new + `"`, nil
	default:
		return "", "", errors.New("block or folded scalar marked for an image: use a plain or quoted value")
	}
}

// runeOffset returns the byte offset of the col-th character of line.
func runeOffset(line []byte, col int) int {
	off := 0
	for i := 0; i < col; i++ {
		if off >= len(line) {
			return -1
		}
		_, size := utf8.DecodeRune(line[off:])
		off += size
	}
	return off
}
