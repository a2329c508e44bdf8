package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"driftless.dev/automator/internal/checkout"
	"driftless.dev/automator/internal/update"
)

// File is one file of policy documents.
type File struct {
	// Name is how messages name the file: its path in the repository, or
	// as given by flag.
	Name string
	Data []byte
}

// Set is what a set of files defines.
type Set struct {
	// Policies are the valid, active policies, sorted by key.
	Policies []*ImagePolicy
	// Defined is the key of every policy a document declares, valid or
	// not: a marker naming one is not an unknown policy (its document's
	// own error says what is wrong).
	Defined map[string]bool
	// Warnings name Flux fields that have no effect here; the policy is
	// used without them.
	Warnings []error
}

// Load reads every ImagePolicy of files: Driftless's own, and Flux's
// ImagePolicy with the ImageRepository it refers to (image.toolkit.fluxcd.io
// v1beta2 and v1), which may sit in another file. Documents of other kinds
// are ignored. A bad document is one error, naming file, line and field;
// the good policies are returned. Two policies with one key are both
// dropped: which one wins would be a guess.
func Load(files []File) (Set, error) {
	set := Set{Defined: map[string]bool{}}
	var errs []error
	var own []*ImagePolicy
	flux := &fluxDocs{repos: map[string]*fluxDoc{}}
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader(f.Data))
		for {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				// The rest of the file cannot be read past a syntax error.
				errs = append(errs, &FieldError{File: f.Name, Msg: "malformed YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
				break
			}
			if len(doc.Content) == 0 {
				continue
			}
			root := doc.Content[0]
			kind, apiVersion := kindOf(root), valueOf(root, "apiVersion")
			switch {
			case kind == Kind && isFlux(apiVersion):
				set.Defined[keyOf(root)] = true
				flux.policies = append(flux.policies, &fluxDoc{file: f.Name, root: root})
			case kind == FluxRepositoryKind && isFlux(apiVersion):
				if err := flux.addRepository(f.Name, root); err != nil {
					errs = append(errs, err)
				}
			case kind == Kind:
				set.Defined[keyOf(root)] = true
				p, err := decode(f.Name, root)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				own = append(own, p)
			}
		}
	}
	fluxPolicies, warnings, err := flux.resolve()
	if err != nil {
		errs = append(errs, err)
	}
	set.Warnings = warnings
	byKey := map[string]*ImagePolicy{}
	var dup []string
	for _, p := range append(own, fluxPolicies...) {
		if prev, ok := byKey[p.Key()]; ok {
			errs = append(errs, &FieldError{File: p.Source, Msg: fmt.Sprintf("policy %s is also defined in %s; both skipped", p.Key(), prev.Source), Policy: p.Key()})
			dup = append(dup, p.Key())
			continue
		}
		byKey[p.Key()] = p
	}
	for _, k := range dup {
		delete(byKey, k)
	}
	for _, p := range byKey {
		if !p.suspended {
			set.Policies = append(set.Policies, p)
		}
	}
	sort.Slice(set.Policies, func(i, j int) bool { return set.Policies[i].Key() < set.Policies[j].Key() })
	return set, errors.Join(errs...)
}

// declares reports whether data may hold a policy document: cheap to
// test, so unrelated YAML (templates, values) is never parsed, nor an
// error, here.
func declares(data []byte) bool {
	return bytes.Contains(data, []byte(Kind)) || bytes.Contains(data, []byte(FluxRepositoryKind))
}

// LoadTree reads the policies in the YAML files under policyPath of a
// checkout ("" for none) and in files, given by the administrator outside
// it. A file reached through a link that leaves the checkout is refused,
// naming the link.
func LoadTree(tree *checkout.Tree, policyPath string, files []string) (Set, error) {
	var found []File
	var errs []error
	if policyPath != "" && tree != nil {
		isYAML := func(name string) bool { return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") }
		err := tree.Walk(policyPath, isYAML, func(rel string, data []byte) error {
			if declares(data) {
				found = append(found, File{Name: rel, Data: data})
			}
			return nil
		}, func(err error) { errs = append(errs, fmt.Errorf("read policies: %w", err)) })
		if err != nil {
			errs = append(errs, fmt.Errorf("read policies in %s: %w", policyPath, err))
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("read policy file: %w", err))
			continue
		}
		found = append(found, File{Name: f, Data: data})
	}
	set, err := Load(found)
	return set, errors.Join(append(errs, err)...)
}

// Validate checks a checkout without any network: every policy parses,
// every marker is well formed and names a defined policy. It returns every
// finding, one per problem, each naming file and line; warnings (Flux
// fields without effect here) come separately.
func Validate(tree *checkout.Tree, policyPath, manifestPath string, files []string) (findings, warnings []error) {
	set, err := LoadTree(tree, policyPath, files)
	if err != nil {
		findings = append(findings, Flatten(err)...)
	}
	markers, err := update.Scan(tree, manifestPath)
	if err != nil {
		findings = append(findings, Flatten(err)...)
	}
	for _, m := range markers {
		if !set.Defined[m.Policy] {
			findings = append(findings, fmt.Errorf("%s:%d: marker refers to policy %q, which no ImagePolicy defines", m.File, m.Line, m.Policy))
		}
	}
	return findings, set.Warnings
}

// Flatten splits a joined error into its parts, for one finding a line.
func Flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func valueOf(n *yaml.Node, key string) string {
	if v := lookup(n, key); v != nil {
		return v.Value
	}
	return ""
}
