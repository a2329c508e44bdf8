// Package ecr gets registry credentials for Amazon ECR through the AWS SDK
// and keeps them fresh: a token is cached per registry and replaced before
// it expires (ECR tokens last 12 hours), so a long-running automator never
// fails at hour twelve and never needs a restart.
package ecr

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-containerregistry/pkg/authn"
)

// API is the part of the ECR client Driftless uses.
type API interface {
	GetAuthorizationToken(ctx context.Context, in *ecr.GetAuthorizationTokenInput, opts ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
	DescribeImages(ctx context.Context, in *ecr.DescribeImagesInput, opts ...func(*ecr.Options)) (*ecr.DescribeImagesOutput, error)
}

// Request names one registry's credentials.
type Request struct {
	Host    string // the registry host, for the cache key
	Account string // the registry's account id (may be empty)
	Region  string
	RoleARN string // a role to assume first, for cross-account registries
}

type entry struct {
	auth    authn.AuthConfig
	refresh time.Time
}

// Tokens caches ECR authorization tokens.
type Tokens struct {
	newAPI func(region, roleARN string) API
	now    func() time.Time

	mu      sync.Mutex
	entries map[Request]entry
	// fetches counts GetAuthorizationToken calls, for metrics and tests.
	fetches int
}

// NewTokens returns a cache that builds ECR clients from cfg, the AWS SDK
// configuration main loaded (environment, IRSA web identity, EKS Pod
// Identity: the SDK's default chain). endpoint, when not empty, replaces
// the ECR API endpoint (a VPC endpoint, or a local stand-in in tests).
func NewTokens(cfg aws.Config, endpoint string, opts ...Option) *Tokens {
	return NewTokensWith(func(region, roleARN string) API {
		c := cfg.Copy()
		c.Region = region
		if roleARN != "" {
			c.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), roleARN,
				func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "driftless-automator" }))
		}
		return ecr.NewFromConfig(c, func(o *ecr.Options) {
			if endpoint != "" {
				o.BaseEndpoint = aws.String(endpoint)
			}
		})
	}, opts...)
}

// Option configures Tokens.
type Option func(*Tokens)

// WithClock replaces time.Now, for tests that step past an expiry.
func WithClock(now func() time.Time) Option { return func(t *Tokens) { t.now = now } }

// NewTokensWith returns a cache over ECR clients that newAPI builds.
func NewTokensWith(newAPI func(region, roleARN string) API, opts ...Option) *Tokens {
	t := &Tokens{newAPI: newAPI, now: time.Now, entries: map[Request]entry{}}
	for _, o := range opts {
		o(t)
	}
	return t
}

// PushTimes returns when each tag of repository was pushed, from
// DescribeImages, 1,000 images a page: the data for newestPushed ordering,
// which the registry's tag list does not carry.
func (t *Tokens) PushTimes(ctx context.Context, req Request, repository string) (map[string]time.Time, error) {
	in := &ecr.DescribeImagesInput{
		RepositoryName: aws.String(repository),
		Filter:         &types.DescribeImagesFilter{TagStatus: types.TagStatusTagged},
		MaxResults:     aws.Int32(1000),
	}
	if req.Account != "" {
		in.RegistryId = aws.String(req.Account)
	}
	out := map[string]time.Time{}
	pages := ecr.NewDescribeImagesPaginator(t.newAPI(req.Region, req.RoleARN), in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ECR DescribeImages of %s/%s in %s: %w", req.Host, repository, req.Region, err)
		}
		for _, d := range page.ImageDetails {
			if d.ImagePushedAt == nil {
				continue
			}
			for _, tag := range d.ImageTags {
				out[tag] = *d.ImagePushedAt
			}
		}
	}
	return out, nil
}

// Fetches returns how many tokens were fetched so far.
func (t *Tokens) Fetches() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fetches
}

// Authenticator returns credentials for the registry req names, from the
// cache while they are fresh.
func (t *Tokens) Authenticator(ctx context.Context, req Request) (authn.Authenticator, error) {
	t.mu.Lock()
	e, ok := t.entries[req]
	t.mu.Unlock()
	if ok && t.now().Before(e.refresh) {
		return authn.FromConfig(e.auth), nil
	}
	in := &ecr.GetAuthorizationTokenInput{}
	if req.Account != "" {
		in.RegistryIds = []string{req.Account} //nolint:staticcheck // still the way to name a cross-account registry
	}
	out, err := t.newAPI(req.Region, req.RoleARN).GetAuthorizationToken(ctx, in)
	if err != nil {
		// The SDK's errors name the operation and the AWS error code,
		// never the credentials.
		return nil, fmt.Errorf("ECR GetAuthorizationToken for %s in %s: %w", req.Host, req.Region, err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return nil, fmt.Errorf("ECR GetAuthorizationToken for %s: no authorization data in the answer", req.Host)
	}
	d := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(d.AuthorizationToken))
	if err != nil {
		return nil, errors.New("ECR GetAuthorizationToken: the token is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil, errors.New("ECR GetAuthorizationToken: the token is not user:password")
	}
	now := t.now()
	expires := now.Add(12 * time.Hour)
	if d.ExpiresAt != nil {
		expires = *d.ExpiresAt
	}
	// Refresh well before expiry: a quarter of the lifetime, at most 30
	// minutes early, so a scan never starts with a token about to lapse.
	early := min(expires.Sub(now)/4, 30*time.Minute)
	auth := authn.AuthConfig{Username: user, Password: pass}
	t.mu.Lock()
	t.entries[req] = entry{auth: auth, refresh: expires.Add(-early)}
	t.fetches++
	t.mu.Unlock()
	return authn.FromConfig(auth), nil
}
