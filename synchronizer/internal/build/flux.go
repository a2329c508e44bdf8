package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/provider"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"driftless.dev/synchronizer/internal/checkoutfs"
)

// generate gives a plain folder (one without a kustomization) the
// kustomization Flux's kustomize-controller generates for it
// (fluxcd/pkg/kustomize, Generator.findOrGenerateKustomization):
//   - its resources are every .yaml and .yml file under it, in path
//     order, and every subfolder that holds a kustomization, built as
//     one unit (flux bootstrap's clusters/<name>/flux-system);
//   - every such file must hold Kubernetes objects;
//   - a folder with none gets `namespace: _placeholder`, so it renders
//     nothing instead of failing as an empty kustomization.
//
// Where Driftless differs from Flux, on purpose: names starting with a dot
// are skipped (Flux's source-controller drops .git, .github and CI files
// before the build; so are its other default ignores, appveyor.yml,
// cloudbuild.yaml and codeship-*.yml); a symbolic link to a folder inside
// the checkout is followed (Flux's walk skips it silently), built from a
// kustomization generated in the folder it points to; a link that leaves
// the checkout is an error naming it. The kustomization is not written
// to disk: the build's file system shows it where it would be.
func generate(ctx context.Context, fsys *checkoutfs.FS, dir string) error {
	g := &generator{fsys: fsys, ctx: ctx}
	return g.folder(dir, []string{dir})
}

type generator struct {
	fsys *checkoutfs.FS
	ctx  context.Context
}

func (g *generator) folder(dir string, chain []string) error {
	var resources []string
	if err := g.walk(dir, dir, chain, &resources); err != nil {
		return err
	}
	k := types.Kustomization{TypeMeta: types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind}}
	if len(resources) == 0 {
		k.Namespace = "_placeholder"
	} else {
		k.Resources = resources
	}
	data, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	g.fsys.AddVirtual(path.Join(dir, konfig.DefaultKustomizationFileName()), data)
	return nil
}

func (g *generator) walk(base, cur string, chain []string, out *[]string) error {
	if err := g.ctx.Err(); err != nil {
		return err
	}
	entries, err := g.fsys.List(cur)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if skipped(e.Name) {
			continue
		}
		p := path.Join(cur, e.Name)
		ref := "./" + strings.TrimPrefix(strings.TrimPrefix(p, base), "/")
		if base == "." {
			ref = "./" + p
		}
		switch {
		case e.Link:
			target, isDir, err := g.fsys.Lookup(p)
			if err != nil {
				return err
			}
			if !isDir {
				if !manifest(e.Name) {
					continue
				}
				if !within(target, base) {
					return fmt.Errorf("%s: symbolic link to a file outside %s: Kustomize reads a folder's files only from inside it (link the folder instead)", p, base)
				}
				if err := g.check(p); err != nil {
					return err
				}
				*out = append(*out, ref)
				continue
			}
			if kustomizationFile(g.fsys, target) == "" {
				for _, c := range chain {
					if within(c, target) {
						return fmt.Errorf("%s: symbolic link loops back to %s", p, target)
					}
				}
				if err := g.folder(target, append(slices.Clone(chain), target)); err != nil {
					return err
				}
			}
			*out = append(*out, ref)
		case e.Dir:
			if kustomizationFile(g.fsys, p) != "" {
				*out = append(*out, ref)
				continue
			}
			if err := g.walk(base, p, chain, out); err != nil {
				return err
			}
		default:
			if !manifest(e.Name) {
				continue
			}
			if err := g.check(p); err != nil {
				return err
			}
			*out = append(*out, ref)
		}
	}
	return nil
}

// skipped are names a plain folder's walk passes over.
func skipped(name string) bool {
	switch name {
	case "appveyor.yml", "cloudbuild.yaml", "codeship-services.yml", "codeship-steps.yml":
		return true
	}
	return strings.HasPrefix(name, ".")
}

// manifest says whether Flux reads a file of a plain folder.
func manifest(name string) bool {
	ext := path.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// within says whether the repository path p is dir or under it.
func within(p, dir string) bool {
	return dir == "." || p == dir || strings.HasPrefix(p, dir+"/")
}

// check makes sure a plain folder's file holds Kubernetes objects, with a
// message that names the file, the document and what is missing, then
// that Kustomize reads it (as Flux checks).
func (g *generator) check(p string) error {
	data, err := g.fsys.ReadRel(p)
	if err != nil {
		return err
	}
	if err := checkObjects(p, data); err != nil {
		return err
	}
	if _, err := provider.NewDefaultDepProvider().GetResourceFactory().SliceFromBytes(data); err != nil {
		return fmt.Errorf("%s: %v", p, err)
	}
	return nil
}

// checkObjects reads each YAML document of file p: each must be a
// Kubernetes object (or a List of them).
func checkObjects(p string, data []byte) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var doc yamlv3.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %s", p, yamlError(err, data))
		}
		if len(doc.Content) == 0 {
			continue
		}
		n := doc.Content[0]
		if n.Kind == yamlv3.ScalarNode && n.Tag == "!!null" {
			continue
		}
		if n.Kind != yamlv3.MappingNode {
			return fmt.Errorf("%s: document %d (line %d): not a Kubernetes object (a mapping with apiVersion, kind and metadata.name)", p, i, n.Line)
		}
		if len(n.Content) == 0 {
			continue
		}
		var missing []string
		kind := field(n, "kind")
		if field(n, "apiVersion") == "" {
			missing = append(missing, "apiVersion")
		}
		if kind == "" {
			missing = append(missing, "kind")
		}
		isList := strings.HasSuffix(kind, "List") && lookup(n, "items") != nil
		if md := lookup(n, "metadata"); !isList && (md == nil || field(md, "name") == "") {
			missing = append(missing, "metadata.name")
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: document %d (line %d): not a Kubernetes object: no %s", p, i, n.Line, strings.Join(missing, ", "))
		}
	}
}

func lookup(m *yamlv3.Node, key string) *yamlv3.Node {
	if m.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func field(m *yamlv3.Node, key string) string {
	if v := lookup(m, key); v != nil && v.Kind == yamlv3.ScalarNode {
		return v.Value
	}
	return ""
}

var yamlLine = regexp.MustCompile(`line (\d+):`)

// yamlError words a YAML parser's error for people: a tab is named as
// such, with its line.
func yamlError(err error, data []byte) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if n, ok := tabLine(msg, data); ok {
		return fmt.Sprintf("line %d: tab character: YAML indents with spaces", n)
	}
	return msg
}

// tabLine finds the line a "cannot start any token" error points at, if
// that line holds a tab.
func tabLine(msg string, data []byte) (int, bool) {
	if !strings.Contains(msg, "found character that cannot start any token") && !strings.Contains(msg, "tab") {
		return 0, false
	}
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(data), "\n")
	for _, c := range []int{n, n - 1, n + 1} {
		if c >= 1 && c <= len(lines) && strings.Contains(lines[c-1], "\t") {
			return c, true
		}
	}
	return 0, false
}
