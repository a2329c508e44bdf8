// Package build renders the objects of one path of a checkout: with
// Kustomize in-process (bases, overlays, components) when the path has a
// kustomization, or as a plain directory of YAML and JSON documents.
// Nothing is read outside the checkout.
package build

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// ErrBuild marks a render that cannot succeed until the repository is
// fixed: retrying the same commit is pointless.
var ErrBuild = errors.New("render failed")

// Build renders root/path, where root is the checkout.
func Build(root, path string) ([]*unstructured.Unstructured, error) {
	rootAbs, err := filepath.Abs(root)
	if err == nil {
		rootAbs, err = filepath.EvalSymlinks(rootAbs)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: checkout %s: %v", ErrBuild, root, err)
	}
	dir, err := inside(rootAbs, filepath.Join(rootAbs, filepath.FromSlash(path)))
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", ErrBuild, path, err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: path %q is not a folder of the checkout", ErrBuild, path)
	}
	if kustomization(dir) != "" {
		if objs, ok, err := simple(rootAbs, dir); ok || err != nil {
			return objs, err
		}
		return kustomize(rootAbs, dir)
	}
	return plain(rootAbs, dir)
}

// kustomization returns the name of dir's kustomization file, or "".
func kustomization(dir string) string {
	for _, n := range konfig.RecognizedKustomizationFileNames() {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return n
		}
	}
	return ""
}

func kustomize(root, dir string) ([]*unstructured.Unstructured, error) {
	if err := refuseRemote(root, dir, map[string]bool{}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBuild, err)
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	// Helm charts would be downloaded and run: not from a synchronizer.
	opts.PluginConfig.HelmConfig.Enabled = false
	k := krusty.MakeKustomizer(opts)
	rm, err := k.Run(&confined{FileSystem: filesys.MakeFsOnDisk(), root: root}, dir)
	if err != nil {
		return nil, fmt.Errorf("%w: kustomize build %s: %v", ErrBuild, rel(root, dir), err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, so numbers are int64/float64 as client-go expects
		// (kyaml's Map gives int, which DeepCopy refuses).
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%w: kustomize build %s: %s: %v", ErrBuild, rel(root, dir), r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%w: kustomize build %s: %s: %v", ErrBuild, rel(root, dir), r.CurId(), err)
		}
		out = append(out, u)
	}
	return out, nil
}

// refuseRemote walks the kustomizations dir reaches and refuses any
// resource, base or component that is not a path: Kustomize would fetch
// it over the network, which a synchronizer must never do.
func refuseRemote(root, dir string, seen map[string]bool) error {
	if seen[dir] {
		return nil
	}
	seen[dir] = true
	name := kustomization(dir)
	if name == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	var k struct {
		Resources  []string `json:"resources"`
		Bases      []string `json:"bases"`
		Components []string `json:"components"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("%s: %v", rel(root, filepath.Join(dir, name)), err)
	}
	for _, entry := range append(append(k.Resources, k.Bases...), k.Components...) {
		if remote(entry) {
			return fmt.Errorf("%s: remote resource %q: only files inside the checkout are read", rel(root, filepath.Join(dir, name)), entry)
		}
		target, err := inside(root, filepath.Join(dir, filepath.FromSlash(entry)))
		if err != nil {
			return fmt.Errorf("%s: resource %q: %v", rel(root, filepath.Join(dir, name)), entry, err)
		}
		if st, err := os.Stat(target); err == nil && st.IsDir() {
			if err := refuseRemote(root, target, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func remote(entry string) bool {
	return strings.Contains(entry, "://") || strings.HasPrefix(entry, "git@") || strings.Contains(entry, "?ref=") ||
		strings.HasPrefix(entry, "github.com/") || strings.HasPrefix(entry, "gitlab.com/") || strings.HasPrefix(entry, "bitbucket.org/")
}

// plain reads every .yaml, .yml and .json file under dir, in path order.
func plain(root, dir string) ([]*unstructured.Unstructured, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != dir {
			return filepath.SkipDir
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if _, err := inside(root, p); err != nil {
				return fmt.Errorf("%s: %v", rel(root, p), err)
			}
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrBuild, rel(root, dir), err)
	}
	sort.Strings(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		objs, err := decodeFile(root, f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// decodeFile reads the objects of one YAML or JSON file (several
// documents, or a List).
func decodeFile(root, f string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBuild, err)
	}
	var out []*unstructured.Unstructured
	// YAML 1.2, as Kustomize reads it: `n`, `on` and `yes` stay strings.
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: document %d: %v", ErrBuild, rel(root, f), i, err)
		}
		if doc == nil {
			continue
		}
		// Through JSON, so values have the types client-go expects.
		j, err := json.Marshal(doc)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: document %d: %v", ErrBuild, rel(root, f), i, err)
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil {
			return nil, fmt.Errorf("%w: %s: document %d: not a mapping", ErrBuild, rel(root, f), i)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("%w: %s: document %d: %v", ErrBuild, rel(root, f), i, err)
			}
			for j := range l.Items {
				out = append(out, &l.Items[j])
			}
			continue
		}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%w: %s: document %d: want apiVersion, kind and metadata.name", ErrBuild, rel(root, f), i)
		}
		out = append(out, u)
	}
	return out, nil
}

// inside resolves p's symbolic links and makes sure it stays under root.
func inside(root, p string) (string, error) {
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Not there (yet): judge the path as written.
			resolved = filepath.Clean(p)
		} else {
			return "", err
		}
	}
	r, err := filepath.Rel(root, resolved)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", errors.New("escapes the checkout")
	}
	return resolved, nil
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

// confined is the on-disk file system, read-only and limited to root.
type confined struct {
	filesys.FileSystem
	root string
}

func (c *confined) check(p string) error {
	if _, err := inside(c.root, p); err != nil {
		return fmt.Errorf("%s: %v", p, err)
	}
	return nil
}

func (c *confined) Open(p string) (filesys.File, error) {
	if err := c.check(p); err != nil {
		return nil, err
	}
	return c.FileSystem.Open(p)
}

func (c *confined) ReadFile(p string) ([]byte, error) {
	if err := c.check(p); err != nil {
		return nil, err
	}
	return c.FileSystem.ReadFile(p)
}

func (c *confined) ReadDir(p string) ([]string, error) {
	if err := c.check(p); err != nil {
		return nil, err
	}
	return c.FileSystem.ReadDir(p)
}

func (c *confined) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	d, f, err := c.FileSystem.CleanedAbs(p)
	if err != nil {
		return d, f, err
	}
	if err := c.check(string(d)); err != nil {
		return "", "", err
	}
	return d, f, nil
}

func (c *confined) Exists(p string) bool { return c.check(p) == nil && c.FileSystem.Exists(p) }
func (c *confined) IsDir(p string) bool  { return c.check(p) == nil && c.FileSystem.IsDir(p) }

func (c *confined) Create(p string) (filesys.File, error) { return nil, errReadOnly }
func (c *confined) Mkdir(string) error                    { return errReadOnly }
func (c *confined) MkdirAll(string) error                 { return errReadOnly }
func (c *confined) RemoveAll(string) error                { return errReadOnly }
func (c *confined) WriteFile(string, []byte) error        { return errReadOnly }

var errReadOnly = errors.New("the checkout is read-only to the build")
