package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
		return c.ECR.Authenticator(ctx, req)
	case policy.AuthDockerConfig:
		path := p.Spec.Auth.DockerConfig
		if !filepath.IsAbs(path) {
			path = filepath.Join(c.DockerConfigDir, path)
		}
		return fromDockerConfig(path, host)
	default:
		return authn.Anonymous, nil
	}
}

func (c *Credentials) ecrRequest(p *policy.ImagePolicy) (ecr.Request, error) {
	if c.ECR == nil {
		return ecr.Request{}, fmt.Errorf("policy %s asks for aws credentials, but the automator runs without AWS (--aws)", p.Key())
	}
	host := p.Repository().RegistryStr()
	account, region, _ := policy.ECRAccountRegion(host)
	if p.Spec.Auth.Region != "" {
		region = p.Spec.Auth.Region
	}
	if p.Spec.Auth.Account != "" {
		account = p.Spec.Auth.Account
	}
	return ecr.Request{Host: host, Account: account, Region: region, RoleARN: p.Spec.Auth.RoleARN}, nil
}

// PushTimes returns when each tag of p's repository was pushed (ECR only).
func (c *Credentials) PushTimes(ctx context.Context, p *policy.ImagePolicy) (map[string]time.Time, error) {
	req, err := c.ecrRequest(p)
	if err != nil {
		return nil, err
	}
	return c.ECR.PushTimes(ctx, req, p.Repository().RepositoryStr())
}

// dockerConfig is the part of ~/.docker/config.json (and of a Kubernetes
// .dockerconfigjson pull secret) that holds credentials.
type dockerConfig struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
}

// fromDockerConfig reads the credentials for host from a docker config.
// Errors name the file and host, never a credential.
func fromDockerConfig(path, host string) (authn.Authenticator, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read docker config: %w", err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("docker config %s: not valid JSON", path)
	}
	want := normalizeHost(host)
	for key, a := range cfg.Auths {
		if normalizeHost(key) != want {
			continue
		}
		ac := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("docker config %s: auths[%s].auth is not base64", path, key)
			}
			u, p, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("docker config %s: auths[%s].auth is not user:password", path, key)
			}
			ac.Username, ac.Password = u, p
		}
		return authn.FromConfig(ac), nil
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
