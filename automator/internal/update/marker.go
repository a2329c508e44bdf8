// Package update finds image-policy markers in manifests and rewrites the
// values they mark, keeping everything else in the files byte for byte.
//
// A marker is a line comment on a YAML scalar, as Flux writes them:
//
//	image: ghcr.io/org/app:1.2.3 # {"$imagepolicy": "apps:app"}
//	newTag: 1.2.3                # {"$imagepolicy": "apps:app:tag"}
//	newName: ghcr.io/org/app     # {"$imagepolicy": "apps:app:name"}
//	digest: sha256:...           # {"$imagepolicy": "apps:app:digest"}
//
// The policy may be named without a namespace ("app", "app:tag").
package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Field is the part of an image reference a marker stands for.
type Field string

// The marker forms.
const (
	FieldImage  Field = ""       // repository:tag (or repository:tag@digest)
	FieldTag    Field = "tag"    // tag (or tag@digest)
	FieldName   Field = "name"   // repository
	FieldDigest Field = "digest" // sha256:...
)

// markerRE finds the JSON object of a marker in a comment.
var markerRE = regexp.MustCompile(`\{\s*"\$imagepolicy"\s*:\s*"[^"]*"\s*\}`)

// ParseMarker reads a marker out of a line comment. ok is false when the
// comment holds none.
func ParseMarker(comment string) (policy string, field Field, ok bool, err error) {
	m := markerRE.FindString(comment)
	if m == "" {
		if strings.Contains(comment, "$imagepolicy") {
			return "", "", false, fmt.Errorf("comment %q mentions $imagepolicy but is not a marker like {\"$imagepolicy\": \"namespace:name\"}", comment)
		}
		return "", "", false, nil
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(m), &v); err != nil {
		return "", "", false, fmt.Errorf("marker %s: %w", m, err)
	}
	ref := v["$imagepolicy"]
	parts := strings.Split(ref, ":")
	if n := len(parts); n > 1 {
		switch f := Field(parts[n-1]); f {
		case FieldTag, FieldName, FieldDigest:
			field, parts = f, parts[:n-1]
		}
	}
	if len(parts) == 0 || len(parts) > 2 || slicesHasEmpty(parts) {
		return "", "", false, fmt.Errorf("marker %s: want \"name\" or \"namespace:name\", optionally followed by :tag, :name or :digest", m)
	}
	return strings.Join(parts, ":"), field, true, nil
}

func slicesHasEmpty(ss []string) bool {
	for _, s := range ss {
		if s == "" {
			return true
		}
	}
	return false
}

// Image is what a policy's markers should show.
type Image struct {
	Repository string // ghcr.io/org/app
	Tag        string // 1.2.3
	Digest     string // sha256:..., when the policy pins digests
}

// value renders the part of img that field stands for.
func (img Image) value(field Field) string {
	switch field {
	case FieldTag:
		if img.Digest != "" {
			return img.Tag + "@" + img.Digest
		}
		return img.Tag
	case FieldName:
		return img.Repository
	case FieldDigest:
		return img.Digest
	default:
		s := img.Repository + ":" + img.Tag
		if img.Digest != "" {
			s += "@" + img.Digest
		}
		return s
	}
}

// TagOf returns the tag a marked value holds: the tag of an image
// reference, or the value of a :tag marker, without any @digest. It is
// empty for :name and :digest markers, which hold no tag.
func TagOf(field Field, value string) string {
	switch field {
	case FieldImage:
		ref := value
		if i := strings.IndexByte(ref, '@'); i >= 0 {
			ref = ref[:i]
		}
		slash := strings.LastIndexByte(ref, '/')
		if colon := strings.LastIndexByte(ref, ':'); colon > slash {
			return ref[colon+1:]
		}
		return ""
	case FieldTag:
		if i := strings.IndexByte(value, '@'); i >= 0 {
			return value[:i]
		}
		return value
	}
	return ""
}

// Marker is one marked value found in a file.
type Marker struct {
	File   string // relative to the checkout
	Line   int
	Column int
	Policy string
	Field  Field
	Value  string
}

// walk calls fn for every scalar under n that carries a marker, and
// reports malformed markers through bad.
func walk(n *yaml.Node, fn func(n *yaml.Node, policy string, field Field), bad func(n *yaml.Node, err error)) {
	if n == nil {
		return
	}
	if n.Kind != yaml.ScalarNode && strings.Contains(n.LineComment, "$imagepolicy") {
		bad(n, errors.New("marker on a mapping or sequence: put it on the line of the image value itself"))
	}
	if n.Kind == yaml.ScalarNode && n.LineComment != "" {
		policy, field, ok, err := ParseMarker(n.LineComment)
		switch {
		case err != nil:
			bad(n, err)
		case ok:
			fn(n, policy, field)
		}
	}
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 && c.Kind == yaml.ScalarNode && strings.Contains(c.LineComment, "$imagepolicy") {
			// A comment after "key:" with the value on another line, or
			// none, lands on the key: editing it would rename the key.
			bad(c, fmt.Errorf("marker on the key %q, not on a value: put the image value on the marker's line", c.Value))
			continue
		}
		walk(c, fn, bad)
	}
}
