package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"

	"driftless.dev/automator/internal/ecr"
	"driftless.dev/automator/internal/policy"
)

// ECRTokens gives credentials for an ECR registry, and push times.
type ECRTokens interface {
	Authenticator(ctx context.Context, req ecr.Request) (authn.Authenticator, error)
	PushTimes(ctx context.Context, req ecr.Request, repository string) (map[string]time.Time, error)
}

// Credentials resolves the authenticator each policy asks for.
type Credentials struct {
	// DockerConfigDir is where relative spec.auth.dockerConfig paths live
	// (mounted pull secrets).
	DockerConfigDir string
	// ECR gives tokens for provider aws; nil when AWS is not configured.
	ECR ECRTokens
}

// For returns the authenticator for p's registry.
func (c *Credentials) For(ctx context.Context, p *policy.ImagePolicy) (authn.Authenticator, error) {
	host := p.Repository().RegistryStr()
	switch p.Spec.Auth.Provider {
	case policy.AuthAWS:
		req, err := c.ecrRequest(p)
		if err != nil {
			return nil, err
		}
		a, err := c.ECR.Authenticator(ctx, req)
		return a, ecrRefusal(p, err)
	case policy.AuthDockerConfig:
		return c.fromDockerConfig(p.Spec.Auth.DockerConfig, host)
	default:
		return authn.Anonymous, nil
	}
}

func (c *Credentials) ecrRequest(p *policy.ImagePolicy) (ecr.Request, error) {
	if c.ECR == nil {
		return ecr.Request{}, fmt.Errorf("policy %s asks for aws credentials, but the automator runs without AWS (--aws)", p.Key())
	}
	return ecr.Request{Host: p.Repository().RegistryStr(), RoleARN: p.Spec.Auth.RoleARN}, nil
}

// ecrRefusal names the policy field behind a token the installation
// refuses to hand out.
func ecrRefusal(p *policy.ImagePolicy, err error) error {
	switch {
	case errors.Is(err, ecr.ErrNotECRHost):
		return fmt.Errorf("policy %s: spec.image: %w", p.Key(), err)
	case errors.Is(err, ecr.ErrRoleNotAllowed):
		return fmt.Errorf("policy %s: spec.auth.roleARN %q is not one of the roles the administrator allows policies to assume (--aws-allowed-roles): %w", p.Key(), p.Spec.Auth.RoleARN, ecr.ErrRoleNotAllowed)
	case errors.Is(err, ecr.ErrAccountNotAllowed):
		return fmt.Errorf("policy %s: spec.image: %w", p.Key(), err)
	}
	return err
}

// PushTimes returns when each tag of p's repository was pushed (ECR only).
func (c *Credentials) PushTimes(ctx context.Context, p *policy.ImagePolicy) (map[string]time.Time, error) {
	req, err := c.ecrRequest(p)
	if err != nil {
		return nil, err
	}
	times, err := c.ECR.PushTimes(ctx, req, p.Repository().RepositoryStr())
	return times, ecrRefusal(p, err)
}

// fromDockerConfig reads the credentials for host from a docker config
// under DockerConfigDir: the pull secrets the administrator mounted there,
// and no other file (the path comes from Git; os.Root keeps it, and any
// link in it, inside the folder). Errors name the file and host, never a
// credential.
func (c *Credentials) fromDockerConfig(path, host string) (authn.Authenticator, error) {
	root, err := os.OpenRoot(c.DockerConfigDir)
	if err != nil {
		return nil, fmt.Errorf("docker config folder (--docker-config-dir): %w", err)
	}
	defer root.Close()
	b, err := root.ReadFile(filepath.FromSlash(path))
	if err != nil {
		return nil, fmt.Errorf("read docker config %s in --docker-config-dir: %w", path, err)
	}
	// Parsed by docker/cli's own config file type (go-containerregistry
	// links it already). Only the auths entries are used: a credsStore or
	// credHelpers entry would run a helper program, and a pull secret is
	// no reason to run one.
	cf := configfile.New(path)
	if err := cf.LoadFromReader(bytes.NewReader(b)); err != nil {
		// Its errors are about the structure or the base64 of "auth",
		// never a credential's value.
		return nil, fmt.Errorf("docker config %s: %v", path, err)
	}
	want := normalizeHost(host)
	for key, a := range cf.AuthConfigs {
		if normalizeHost(key) != want {
			continue
		}
		return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password,
			IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}), nil
	}
	return nil, fmt.Errorf("docker config %s has no credentials for %s", path, host)
}

// normalizeHost maps the spellings docker configs use for one registry
// ("https://index.docker.io/v1/", "docker.io", "ghcr.io") to one.
func normalizeHost(h string) string {
	h = strings.TrimPrefix(strings.TrimPrefix(h, "https://"), "http://")
	if i := strings.IndexByte(h, '/'); i >= 0 {
		h = h[:i]
	}
	switch h {
	case "docker.io", "registry-1.docker.io", "index.docker.io":
		return "index.docker.io"
	}
	return h
}
