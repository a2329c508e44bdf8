package policy

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Flux's image reflector objects, read as policies with Flux's semantics,
// so a repository set up for Flux image automation works as it is.
const (
	FluxAPIVersionV1beta2 = "image.toolkit.fluxcd.io/v1beta2"
	FluxAPIVersionV1      = "image.toolkit.fluxcd.io/v1"
	FluxRepositoryKind    = "ImageRepository"
)

// fluxDefaultExclusion is what Flux excludes when an ImageRepository sets
// no exclusionList: cosign signature tags.
const fluxDefaultExclusion = `^.*\.sig$`

func isFlux(apiVersion string) bool {
	return apiVersion == FluxAPIVersionV1beta2 || apiVersion == FluxAPIVersionV1
}

type fluxRef struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace,omitempty"`
}

// fluxRepository is the part of an ImageRepository's schema Driftless
// reads; fields without an equivalent are decoded only to be named.
type fluxRepository struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       struct {
		Image              string    `yaml:"image"`
		Interval           string    `yaml:"interval,omitempty"`
		Timeout            string    `yaml:"timeout,omitempty"`
		SecretRef          *fluxRef  `yaml:"secretRef,omitempty"`
		ServiceAccountName string    `yaml:"serviceAccountName,omitempty"`
		CertSecretRef      *fluxRef  `yaml:"certSecretRef,omitempty"`
		ProxySecretRef     *fluxRef  `yaml:"proxySecretRef,omitempty"`
		AccessFrom         yaml.Node `yaml:"accessFrom,omitempty"`
		Suspend            bool      `yaml:"suspend,omitempty"`
		ExclusionList      []string  `yaml:"exclusionList,omitempty"`
		Provider           string    `yaml:"provider,omitempty"`
		Insecure           bool      `yaml:"insecure,omitempty"`
	} `yaml:"spec"`
	Status yaml.Node `yaml:"status,omitempty"`
}

// fluxPolicy is Flux's ImagePolicy.
type fluxPolicy struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       struct {
		ImageRepositoryRef     fluxRef     `yaml:"imageRepositoryRef"`
		Policy                 fluxOrder   `yaml:"policy"`
		FilterTags             *FilterTags `yaml:"filterTags,omitempty"`
		DigestReflectionPolicy string      `yaml:"digestReflectionPolicy,omitempty"`
		Interval               string      `yaml:"interval,omitempty"`
		Suspend                bool        `yaml:"suspend,omitempty"`
	} `yaml:"spec"`
	Status yaml.Node `yaml:"status,omitempty"`
}

type fluxOrder struct {
	SemVer *struct {
		Range string `yaml:"range"`
	} `yaml:"semver,omitempty"`
	Alphabetical *Order `yaml:"alphabetical,omitempty"`
	Numerical    *Order `yaml:"numerical,omitempty"`
}

type fluxDoc struct {
	file string
	root *yaml.Node
	repo *fluxRepository
}

// fluxDocs gathers Flux documents across files: an ImagePolicy and its
// ImageRepository are often apart.
type fluxDocs struct {
	policies []*fluxDoc
	repos    map[string]*fluxDoc // namespace/name
}

func (d *fluxDocs) addRepository(file string, root *yaml.Node) error {
	r := &fluxRepository{}
	if err := strictDecode(root, r); err != nil {
		return &FieldError{File: file, Line: root.Line, Msg: "ImageRepository: " + err.Error()}
	}
	id := r.Metadata.Namespace + "/" + r.Metadata.Name
	if prev, ok := d.repos[id]; ok {
		return &FieldError{File: file, Line: root.Line, Msg: fmt.Sprintf("ImageRepository %s is also defined in %s", strings.TrimPrefix(id, "/"), prev.file)}
	}
	d.repos[id] = &fluxDoc{file: file, root: root, repo: r}
	return nil
}

// resolve turns every Flux ImagePolicy into an ImagePolicy, from its
// ImageRepository. Fields without an equivalent are warnings when the
// policy still means what Flux would do without them, errors when it
// would not (another cloud's credentials).
func (d *fluxDocs) resolve() ([]*ImagePolicy, []error, error) {
	var out []*ImagePolicy
	var warnings, errs []error
	for _, doc := range d.policies {
		fp := &fluxPolicy{}
		if err := strictDecode(doc.root, fp); err != nil {
			errs = append(errs, &FieldError{File: doc.file, Line: doc.root.Line, Msg: "ImagePolicy: " + err.Error(), Policy: keyOf(doc.root)})
			continue
		}
		p, warn, err := d.convert(doc, fp)
		warnings = append(warnings, warn...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, warnings, errors.Join(errs...)
}

func (d *fluxDocs) convert(doc *fluxDoc, fp *fluxPolicy) (*ImagePolicy, []error, error) {
	key := keyOf(doc.root)
	policyField := func(path string) (string, int, string) { return doc.file, lineOf(doc.root, path), path }
	ref := fp.Spec.ImageRepositoryRef
	if ref.Name == "" {
		file, line, field := policyField("spec.imageRepositoryRef.name")
		return nil, nil, &FieldError{File: file, Line: line, Field: field, Msg: "required: the ImageRepository this policy chooses from", Policy: key}
	}
	ns := ref.Namespace
	if ns == "" {
		ns = fp.Metadata.Namespace
	}
	repoDoc, ok := d.repos[ns+"/"+ref.Name]
	if !ok {
		file, line, field := policyField("spec.imageRepositoryRef")
		return nil, nil, &FieldError{File: file, Line: line, Field: field, Msg: fmt.Sprintf("no ImageRepository %s among the policy files", strings.TrimPrefix(ns+"/"+ref.Name, "/")), Policy: key}
	}
	r := repoDoc.repo
	repoName := strings.TrimPrefix(r.Metadata.Namespace+"/"+r.Metadata.Name, "/")
	// Where each of the ImagePolicy's fields came from in Flux's objects.
	fromRepo := map[string]string{
		"spec.image": "spec.image", "spec.interval": "spec.interval", "spec.auth.provider": "spec.provider",
		"spec.auth.dockerConfig": "spec.secretRef.name",
	}
	loc := func(path string) (string, int, string) {
		if fp, ok := fromRepo[path]; ok {
			return repoDoc.file, lineOf(repoDoc.root, fp), fp + " of ImageRepository " + repoName
		}
		if i, ok := strings.CutPrefix(path, "spec.exclude"); ok {
			fp := "spec.exclusionList" + i
			return repoDoc.file, lineOf(repoDoc.root, fp), fp + " of ImageRepository " + repoName
		}
		return policyField(path)
	}
	var warnings []error
	warn := func(file string, root *yaml.Node, path, what, msg string) {
		warnings = append(warnings, &FieldError{File: file, Line: lineOf(root, path), Field: path + " of " + what, Msg: msg, Policy: key})
	}
	p := &ImagePolicy{APIVersion: APIVersion, Kind: Kind, Metadata: fp.Metadata, Source: doc.file}
	p.Spec.Image = r.Spec.Image
	p.Spec.Interval = r.Spec.Interval
	p.Spec.FilterTags = fp.Spec.FilterTags
	p.Spec.Exclude = r.Spec.ExclusionList
	if p.Spec.Exclude == nil {
		p.Spec.Exclude = []string{fluxDefaultExclusion}
	}
	if o := fp.Spec.Policy; o.SemVer != nil {
		// Flux admits pre-releases only when the range names one, as
		// Masterminds' Check does: Prereleases stays false.
		p.Spec.Policy.SemVer = &SemVer{Range: o.SemVer.Range}
	}
	p.Spec.Policy.Alphabetical, p.Spec.Policy.Numerical = fp.Spec.Policy.Alphabetical, fp.Spec.Policy.Numerical
	switch fp.Spec.DigestReflectionPolicy {
	case "", "Never":
	case "IfNotPresent", "Always":
		// Flux writes tag@digest through markers once it reflects the
		// digest; Driftless resolves the chosen tag's digest every pass.
		p.Spec.DigestPinning = true
	default:
		file, line, field := policyField("spec.digestReflectionPolicy")
		return nil, warnings, &FieldError{File: file, Line: line, Field: field, Msg: fmt.Sprintf("%q: want Never, IfNotPresent or Always", fp.Spec.DigestReflectionPolicy), Policy: key}
	}
	switch r.Spec.Provider {
	case "", "generic":
		if r.Spec.SecretRef != nil && r.Spec.SecretRef.Name != "" {
			// The pull secret, mounted by the administrator under
			// --docker-config-dir/<name>/ as Kubernetes mounts a Secret.
			p.Spec.Auth = Auth{Provider: AuthDockerConfig, DockerConfig: r.Spec.SecretRef.Name + "/.dockerconfigjson"}
		}
	case "aws":
		p.Spec.Auth = Auth{Provider: AuthAWS}
	default:
		file, line, field := loc("spec.auth.provider")
		return nil, warnings, &FieldError{File: file, Line: line, Field: field,
			Msg: fmt.Sprintf("%q has no equivalent here: Driftless reaches ECR with provider aws and other registries with a pull secret (secretRef)", r.Spec.Provider), Policy: key}
	}
	if err := p.validate(loc); err != nil {
		return nil, warnings, err
	}
	// Flux fields the installation decides instead, named once each.
	what := "ImageRepository " + repoName
	if r.Spec.Insecure {
		warn(repoDoc.file, repoDoc.root, "spec.insecure", what, "no equivalent per policy: the administrator lists plain-HTTP registries with the automator's --insecure-registries")
	}
	if r.Spec.CertSecretRef != nil {
		warn(repoDoc.file, repoDoc.root, "spec.certSecretRef", what, "no equivalent per policy: extra CAs come from the automator's --registry-ca-file")
	}
	if r.Spec.ProxySecretRef != nil {
		warn(repoDoc.file, repoDoc.root, "spec.proxySecretRef", what, "no equivalent: the automator uses its environment's proxy settings")
	}
	if r.Spec.ServiceAccountName != "" {
		warn(repoDoc.file, repoDoc.root, "spec.serviceAccountName", what, "no equivalent: credentials come from the automator's own identity and pull secrets")
	}
	if r.Spec.Timeout != "" {
		warn(repoDoc.file, repoDoc.root, "spec.timeout", what, "no equivalent: requests are bounded by the automator's retries and budget")
	}
	if !r.Spec.AccessFrom.IsZero() {
		warn(repoDoc.file, repoDoc.root, "spec.accessFrom", what, "no equivalent: policies are read from Git, not across namespaces")
	}
	if fp.Spec.Interval != "" {
		warn(doc.file, doc.root, "spec.interval", "ImagePolicy "+key, "no equivalent: the digest is resolved at every scan (the ImageRepository's interval)")
	}
	if r.Spec.Suspend || fp.Spec.Suspend {
		// Suspended in Flux: not scanned here either; its markers stay
		// valid.
		p.suspended = true
	}
	return p, warnings, nil
}
