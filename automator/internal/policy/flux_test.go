package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const fluxRepoDoc = `apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  image: ghcr.io/stefanprodan/podinfo
  interval: 2m
  secretRef:
    name: regcred
`

const fluxPolicyDoc = `apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: podinfo
  namespace: flux-system
spec:
  imageRepositoryRef:
    name: podinfo
  filterTags:
    pattern: '^(?P<v>[0-9.]+)$'
    extract: '$v'
  policy:
    semver:
      range: '>=5.0.0'
`

func TestFluxPoliciesMapToDriftless(t *testing.T) {
	set, err := Load([]File{{Name: "repo.yaml", Data: []byte(fluxRepoDoc)}, {Name: "policy.yaml", Data: []byte(fluxPolicyDoc)}})
	if err != nil || len(set.Policies) != 1 || len(set.Warnings) != 0 {
		t.Fatalf("load: %v, %d policies, warnings %v", err, len(set.Policies), set.Warnings)
	}
	p := set.Policies[0]
	if p.Key() != "flux-system:podinfo" || p.Repository().String() != "ghcr.io/stefanprodan/podinfo" || p.ScanInterval().String() != "2m0s" {
		t.Fatalf("policy %s on %s every %s", p.Key(), p.Repository(), p.ScanInterval())
	}
	if p.Spec.Auth.Provider != AuthDockerConfig || p.Spec.Auth.DockerConfig != "regcred/.dockerconfigjson" {
		t.Fatalf("auth %+v, want the pull secret regcred mounted under --docker-config-dir", p.Spec.Auth)
	}
	// Flux's default exclusion (cosign signatures), its semver and its
	// filter, with Flux's results.
	ch := Select(p, "5.0.0", []string{"5.0.0", "5.2.1", "6.0.0-rc.1", "sha256-abc.sig", "6.0.0.sig", "latest"})
	if ch.Tag != "5.2.1" {
		t.Fatalf("chose %q (%s)", ch.Tag, ch.Reason)
	}
	why := map[string]string{}
	for _, r := range ch.Rejected {
		why[r.Tag] = r.Reason
	}
	if !strings.Contains(why["6.0.0.sig"], "exclude") {
		t.Fatalf("6.0.0.sig: %q, want Flux's default exclusion", why["6.0.0.sig"])
	}
	// A v1beta2 ImagePolicy with numerical ordering and digest reflection,
	// ECR through provider aws.
	ecrRepo := strings.NewReplacer("ghcr.io/stefanprodan/podinfo", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/podinfo", "  secretRef:\n    name: regcred\n", "  provider: aws\n  exclusionList: ['^dev-']\n").Replace(fluxRepoDoc)
	numerical := `apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {name: podinfo, namespace: flux-system}
spec:
  imageRepositoryRef: {name: podinfo}
  digestReflectionPolicy: IfNotPresent
  policy:
    numerical: {order: asc}
`
	set, err = Load([]File{{Name: "all.yaml", Data: []byte(ecrRepo + "---\n" + numerical)}})
	if err != nil || len(set.Policies) != 1 {
		t.Fatalf("load: %v", err)
	}
	p = set.Policies[0]
	if p.Spec.Auth.Provider != AuthAWS || !p.Spec.DigestPinning || !slices.Equal(p.Spec.Exclude, []string{"^dev-"}) {
		t.Fatalf("spec %+v", p.Spec)
	}
	if ch := Select(p, "", []string{"9", "10", "dev-99"}); ch.Tag != "10" {
		t.Fatalf("numerical: chose %q", ch.Tag)
	}
}

func TestFluxFindings(t *testing.T) {
	for _, tc := range []struct {
		name, repo, policy string
		errs, warnings     []string
	}{
		{"fields the installation decides", strings.Replace(fluxRepoDoc, "  interval: 2m\n", "  interval: 2m\n  insecure: true\n  certSecretRef: {name: ca}\n  timeout: 30s\n", 1), fluxPolicyDoc,
			nil, []string{"repo.yaml:9: spec.insecure of ImageRepository flux-system/podinfo: no equivalent per policy: the administrator lists plain-HTTP registries with the automator's --insecure-registries",
				"repo.yaml:10: spec.certSecretRef of ImageRepository flux-system/podinfo", "repo.yaml:11: spec.timeout of ImageRepository flux-system/podinfo"}},
		{"another cloud's credentials", strings.Replace(fluxRepoDoc, "  interval: 2m\n", "  interval: 2m\n  provider: azure\n", 1), fluxPolicyDoc,
			[]string{`repo.yaml:9: spec.provider of ImageRepository flux-system/podinfo: "azure" has no equivalent here`}, nil},
		{"a bad exclusion, named where Flux has it", strings.Replace(fluxRepoDoc, "  interval: 2m\n", "  interval: 2m\n  exclusionList: ['(']\n", 1), fluxPolicyDoc,
			[]string{"repo.yaml:9: spec.exclusionList[0] of ImageRepository flux-system/podinfo: not a regular expression"}, nil},
		{"a misspelt field: one finding in words", fluxRepoDoc, strings.Replace(fluxPolicyDoc, "imageRepositoryRef", "imageRepositoryReference", 1),
			[]string{`policy.yaml:1: ImagePolicy: unknown field "imageRepositoryReference"`}, nil},
		{"a missing repository", strings.Replace(fluxRepoDoc, "name: podinfo", "name: other", 1), fluxPolicyDoc,
			[]string{"policy.yaml:8: spec.imageRepositoryRef: no ImageRepository flux-system/podinfo among the policy files"}, nil},
		{"a bad range", fluxRepoDoc, strings.Replace(fluxPolicyDoc, ">=5.0.0", "five", 1),
			[]string{`policy.yaml:14: spec.policy.semver.range: "five" is not a semver range`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Load([]File{{Name: "repo.yaml", Data: []byte(tc.repo)}, {Name: "policy.yaml", Data: []byte(tc.policy)}})
			errs := Flatten(err)
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %v, want %d: %v", errs, len(tc.errs), tc.errs)
			}
			for i, want := range tc.errs {
				var fe *FieldError
				if !strings.Contains(errs[i].Error(), want) || !errors.As(errs[i], &fe) || fe.Policy != "flux-system:podinfo" {
					t.Errorf("error %q, want %q about flux-system:podinfo", errs[i], want)
				}
			}
			if len(set.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings %v, want %v", set.Warnings, tc.warnings)
			}
			for i, want := range tc.warnings {
				if !strings.Contains(set.Warnings[i].Error(), want) {
					t.Errorf("warning %q, want %q", set.Warnings[i], want)
				}
			}
			if !set.Defined["flux-system:podinfo"] {
				t.Error("the policy is not known to markers")
			}
			if tc.errs == nil && len(set.Policies) != 1 {
				t.Error("a policy with warnings only must still be used")
			}
		})
	}
}
