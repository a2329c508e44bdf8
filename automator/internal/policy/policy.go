// Package policy reads ImagePolicy documents and chooses the newest image
// tag each one allows.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"

	"driftless.dev/automator/internal/ecr"
)

// APIVersion and Kind identify an ImagePolicy document.
const (
	APIVersion = "driftless.dev/v1alpha1"
	Kind       = "ImagePolicy"
)

// DefaultInterval is how often a policy is scanned when it names no interval.
const DefaultInterval = 5 * time.Minute

// ImagePolicy says which tags of one image repository may be deployed and
// how they rank. The format is documented in docs/policy.md.
type ImagePolicy struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`

	// Source is the file the policy was read from, for messages.
	Source string `yaml:"-"`

	rangeC   *semver.Constraints
	filter   *regexp.Regexp
	excludes []*regexp.Regexp
	interval time.Duration
	repo     name.Repository
	// suspended: a Flux object marked suspend; known, never scanned.
	suspended bool
}

// Metadata names a policy. Markers refer to it as "namespace:name", or
// "name" when it has no namespace.
type Metadata struct {
	Name      string `yaml:"name"`
	Namespace string `yaml:"namespace,omitempty"`
}

// Spec is what a policy asks for.
type Spec struct {
	// Image is the repository, without tag: "ghcr.io/org/app",
	// "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app".
	Image string `yaml:"image"`
	// Interval between scans, a Go duration ("1m", "5m"). Default 5m.
	Interval string `yaml:"interval,omitempty"`
	// Policy is the ordering; exactly one of its fields is set.
	Policy Ordering `yaml:"policy"`
	// FilterTags keeps only tags matching Pattern and ranks them by Extract.
	FilterTags *FilterTags `yaml:"filterTags,omitempty"`
	// Exclude drops tags matching any of these regular expressions.
	Exclude []string `yaml:"exclude,omitempty"`
	// Auth says how to authenticate to the registry. Default: anonymous.
	Auth Auth `yaml:"auth,omitempty"`
	// DigestPinning writes "tag@sha256:..." so a moved tag cannot change
	// what runs.
	DigestPinning bool `yaml:"digestPinning,omitempty"`
	// AllowDowngrade lets the chosen tag rank below the one in Git. Off by
	// default: a deleted tag or a narrowed range never moves a cluster back.
	AllowDowngrade bool `yaml:"allowDowngrade,omitempty"`
}

// Ordering ranks the tags that pass the filters.
type Ordering struct {
	SemVer       *SemVer `yaml:"semver,omitempty"`
	Alphabetical *Order  `yaml:"alphabetical,omitempty"`
	Numerical    *Order  `yaml:"numerical,omitempty"`
	// NewestPushed ranks by the time each tag was pushed, as ECR's
	// DescribeImages reports it (auth provider aws only).
	NewestPushed *struct{} `yaml:"newestPushed,omitempty"`
}

// SemVer ranks by semantic version within a range.
type SemVer struct {
	// Range is a Masterminds range: ">=1.0.0 <2.0.0", "^1.2", "~1.2.3",
	// "1.x", ">=1.0.0-0" (the -0 admits pre-releases).
	Range string `yaml:"range"`
	// Prereleases admits pre-release versions (1.2.0-rc.1) that the range
	// would otherwise exclude. Default false.
	Prereleases bool `yaml:"prereleases,omitempty"`
}

// Order is asc (the highest wins) or desc (the lowest wins), as in Flux.
type Order struct {
	Order string `yaml:"order,omitempty"`
}

// FilterTags keeps tags matching Pattern and ranks each by Extract, a
// template over the pattern's groups ("$ts", "${version}").
type FilterTags struct {
	Pattern string `yaml:"pattern"`
	Extract string `yaml:"extract,omitempty"`
}

// Auth providers.
const (
	AuthNone         = "none"
	AuthAWS          = "aws"
	AuthDockerConfig = "dockerconfig"
)

// Auth says how the registry is reached.
type Auth struct {
	// Provider: "none" (default), "aws" (ECR through the AWS SDK's
	// credential chain) or "dockerconfig" (a docker config.json, such as a
	// mounted image pull secret).
	Provider string `yaml:"provider,omitempty"`
	// DockerConfig is the path of the config.json for "dockerconfig",
	// relative to the automator's --docker-config-dir (where the
	// administrator mounts pull secrets); nothing outside it is read.
	DockerConfig string `yaml:"dockerConfig,omitempty"`
	// RoleARN, for "aws", is a role to assume (cross-account ECR).
	RoleARN string `yaml:"roleARN,omitempty"`
	// Region and Account, for "aws", may repeat what the ECR host name
	// says; they cannot differ from it (a token is issued only for the
	// registry the host names).
	Region  string `yaml:"region,omitempty"`
	Account string `yaml:"account,omitempty"`
}

// Key is how markers refer to the policy: "namespace:name" or "name".
func (p *ImagePolicy) Key() string {
	if p.Metadata.Namespace == "" {
		return p.Metadata.Name
	}
	return p.Metadata.Namespace + ":" + p.Metadata.Name
}

// Repository is the parsed image repository.
func (p *ImagePolicy) Repository() name.Repository { return p.repo }

// ScanInterval is the parsed interval.
func (p *ImagePolicy) ScanInterval() time.Duration { return p.interval }

// FieldError is a problem with one field of one policy file.
type FieldError struct {
	File  string
	Line  int
	Field string
	Msg   string
	// Policy is the key of the policy the error is about, when the
	// document got that far; markers naming it are not reported again.
	Policy string
}

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// Parse reads every ImagePolicy in data, a file of one or more YAML
// documents; documents of other kinds are ignored. It returns the valid
// policies and one error per bad one (joined), so a bad policy never hides
// the good ones. Flux ImagePolicy documents need their ImageRepository:
// use Load for a set of files.
func Parse(file string, data []byte) ([]*ImagePolicy, error) {
	set, err := Load([]File{{Name: file, Data: data}})
	return set.Policies, err
}

func kindOf(n *yaml.Node) string {
	if v := lookup(n, "kind"); v != nil {
		return v.Value
	}
	return ""
}

func decode(file string, root *yaml.Node) (*ImagePolicy, error) {
	p := &ImagePolicy{Source: file}
	if err := strictDecode(root, p); err != nil {
		return nil, &FieldError{File: file, Line: root.Line, Msg: "ImagePolicy: " + err.Error(), Policy: keyOf(root)}
	}
	if err := p.validate(ownFields(file, root)); err != nil {
		return nil, err
	}
	return p, nil
}

// strictDecode decodes n into v refusing unknown fields, with the
// decoder's words made readable: "unknown field "x"" rather than "field x
// not found in type policy.Spec".
func strictDecode(n *yaml.Node, v any) error {
	// Through a re-encode: yaml.Node.Decode has no KnownFields, and a
	// misspelt field must not be silently ignored.
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		// Line numbers refer to the re-encoded document.
		msg = regexp.MustCompile(`line \d+: `).ReplaceAllString(msg, "")
		msg = regexp.MustCompile(`field (\S+) not found in type \S+`).ReplaceAllString(msg, `unknown field "$1"`)
		return errors.New(msg)
	}
	return nil
}

// keyOf is the key of the policy document n declares, as far as its
// metadata can be read.
func keyOf(n *yaml.Node) string {
	md := lookup(n, "metadata")
	name, ns := lookup(md, "name"), lookup(md, "namespace")
	switch {
	case name == nil:
		return ""
	case ns == nil || ns.Value == "":
		return name.Value
	}
	return ns.Value + ":" + name.Value
}

// locate says where a field of a policy came from, for its error: the
// file, the line, and the field's name there.
type locate func(path string) (file string, line int, field string)

// ownFields locates the fields of a Driftless ImagePolicy in its document.
func ownFields(file string, root *yaml.Node) locate {
	return func(path string) (string, int, string) { return file, lineOf(root, path), path }
}

// validate checks every field and compiles what Select needs. It reports
// all problems of the policy at once, each with its field and line.
func (p *ImagePolicy) validate(loc locate) error {
	var errs []error
	bad := func(path, format string, args ...any) {
		file, line, field := loc(path)
		errs = append(errs, &FieldError{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...), Policy: p.Key()})
	}
	if p.APIVersion != APIVersion {
		bad("apiVersion", "got %q, want %q (or a Flux ImagePolicy, %s or %s)", p.APIVersion, APIVersion, FluxAPIVersionV1beta2, FluxAPIVersionV1)
	}
	if p.Metadata.Name == "" {
		bad("metadata.name", "required")
	} else if strings.ContainsAny(p.Metadata.Name, ": ") {
		bad("metadata.name", "%q: must not contain ':' or spaces", p.Metadata.Name)
	}
	if strings.ContainsAny(p.Metadata.Namespace, ": ") {
		bad("metadata.namespace", "%q: must not contain ':' or spaces", p.Metadata.Namespace)
	}
	if p.Spec.Image == "" {
		bad("spec.image", "required: the image repository, such as ghcr.io/org/app")
	} else if strings.ContainsAny(p.Spec.Image, "@") || tagged(p.Spec.Image) {
		bad("spec.image", "%q: name the repository without a tag or digest", p.Spec.Image)
	} else if repo, err := name.NewRepository(p.Spec.Image); err != nil {
		bad("spec.image", "%q is not an image repository: %v", p.Spec.Image, err)
	} else {
		p.repo = repo
	}
	p.interval = DefaultInterval
	if p.Spec.Interval != "" {
		d, err := time.ParseDuration(p.Spec.Interval)
		switch {
		case err != nil:
			bad("spec.interval", "%q is not a duration such as 1m or 5m", p.Spec.Interval)
		case d < time.Second:
			bad("spec.interval", "%s is too short: at least 1s", d)
		default:
			p.interval = d
		}
	}
	o := p.Spec.Policy
	set := 0
	for _, isSet := range []bool{o.SemVer != nil, o.Alphabetical != nil, o.Numerical != nil, o.NewestPushed != nil} {
		if isSet {
			set++
		}
	}
	if set != 1 {
		bad("spec.policy", "set exactly one of semver, alphabetical, numerical, newestPushed (got %d)", set)
	}
	if o.NewestPushed != nil && p.Spec.Auth.Provider != AuthAWS {
		bad("spec.policy.newestPushed", "push times come from ECR's DescribeImages: set spec.auth.provider: aws")
	}
	if o.SemVer != nil {
		if o.SemVer.Range == "" {
			bad("spec.policy.semver.range", "required: a semver range such as \">=1.0.0 <2.0.0\" or \"^1.2\"")
		} else if c, err := semver.NewConstraint(o.SemVer.Range); err != nil {
			bad("spec.policy.semver.range", "%q is not a semver range: %v", o.SemVer.Range, err)
		} else {
			c.IncludePrerelease = o.SemVer.Prereleases
			p.rangeC = c
		}
	}
	for path, ord := range map[string]*Order{"spec.policy.alphabetical.order": o.Alphabetical, "spec.policy.numerical.order": o.Numerical} {
		if ord != nil && ord.Order != "" && ord.Order != "asc" && ord.Order != "desc" {
			bad(path, "%q: want asc or desc", ord.Order)
		}
	}
	if f := p.Spec.FilterTags; f != nil {
		re, err := regexp.Compile(f.Pattern)
		switch {
		case f.Pattern == "":
			bad("spec.filterTags.pattern", "required when filterTags is set")
		case err != nil:
			bad("spec.filterTags.pattern", "not a regular expression: %v", err)
		default:
			p.filter = re
			if err := checkTemplate(re, f.Extract); err != nil {
				bad("spec.filterTags.extract", "%v", err)
			}
		}
	}
	for i, x := range p.Spec.Exclude {
		re, err := regexp.Compile(x)
		if err != nil {
			if g := fromGlob(x); g != "" {
				bad(fmt.Sprintf("spec.exclude[%d]", i), "%q is a glob, but exclusions are regular expressions: did you mean %q?", x, g)
				continue
			}
			bad(fmt.Sprintf("spec.exclude[%d]", i), "not a regular expression: %v", err)
			continue
		}
		p.excludes = append(p.excludes, re)
	}
	switch p.Spec.Auth.Provider {
	case "", AuthNone:
	case AuthAWS:
		// ECR credentials are sent only to an ECR registry: a policy in
		// Git cannot point them at a host of its choosing.
		if host := p.repo.RegistryStr(); host != "" {
			reg, ok := ecr.ParseHost(host)
			switch {
			case !ok:
				bad("spec.auth.provider", "aws credentials go only to an Amazon ECR registry (<account>.dkr.ecr.<region>.amazonaws.com, or its .amazonaws.com.cn, dkr.ecr-fips, dkr-ecr...on.aws forms); %s is not one", host)
			case p.Spec.Auth.Region != "" && p.Spec.Auth.Region != reg.Region:
				bad("spec.auth.region", "%q differs from the region of the registry host %s (%s): a token is issued for the registry the host names", p.Spec.Auth.Region, host, reg.Region)
			case p.Spec.Auth.Account != "" && p.Spec.Auth.Account != reg.Account:
				bad("spec.auth.account", "%q differs from the account of the registry host %s (%s): a token is issued for the registry the host names", p.Spec.Auth.Account, host, reg.Account)
			}
		}
	case AuthDockerConfig:
		switch dc := p.Spec.Auth.DockerConfig; {
		case dc == "":
			bad("spec.auth.dockerConfig", "required for provider dockerconfig: the path of a docker config.json")
		case !filepath.IsLocal(filepath.FromSlash(dc)):
			bad("spec.auth.dockerConfig", "%q: want a path relative to the automator's --docker-config-dir, without '..': policies may use only the pull secrets mounted there", dc)
		}
	default:
		bad("spec.auth.provider", "%q: want none, aws or dockerconfig", p.Spec.Auth.Provider)
	}
	return errors.Join(errs...)
}

// fromGlob returns the regular expression a glob such as "*-debug" means
// (".*-debug"), or "" when x has no glob wildcard.
func fromGlob(x string) string {
	if !strings.ContainsAny(x, "*?") {
		return ""
	}
	var b strings.Builder
	for _, r := range x {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	if _, err := regexp.Compile(b.String()); err != nil {
		return ""
	}
	return b.String()
}

// tagged reports whether image ends in a :tag (a colon after the last slash).
func tagged(image string) bool {
	i := strings.LastIndex(image, "/")
	return strings.Contains(image[i+1:], ":")
}

// checkTemplate makes sure every $name in extract is a group of re.
func checkTemplate(re *regexp.Regexp, extract string) error {
	if extract == "" {
		return nil
	}
	groups := map[string]bool{}
	for i, n := range re.SubexpNames() {
		groups[fmt.Sprint(i)] = true
		if n != "" {
			groups[n] = true
		}
	}
	for _, m := range regexp.MustCompile(`\$\{?([A-Za-z0-9_]+)\}?`).FindAllStringSubmatch(extract, -1) {
		if !groups[m[1]] {
			return fmt.Errorf("%q names group %q, which the pattern does not have", extract, m[1])
		}
	}
	return nil
}

// lookup returns the value node of key in mapping n.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// lineOf returns the line of the deepest node of path ("spec.exclude[1]")
// that exists, so a missing field points at its parent.
func lineOf(root *yaml.Node, path string) int {
	line := root.Line
	n := root
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		if n = lookup(n, key); n == nil {
			return line
		}
		line = n.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// StrictDecode decodes n into v refusing unknown fields, with readable
// messages: for documents that live beside policies (Promotion).
func StrictDecode(n *yaml.Node, v any) error { return strictDecode(n, v) }

// LineOf is the line of the field at path ("spec.window.start") in the
// document root, or of its deepest parent present.
func LineOf(root *yaml.Node, path string) int { return lineOf(root, path) }
