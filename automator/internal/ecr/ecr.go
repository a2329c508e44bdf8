// Package ecr gets registry credentials for Amazon ECR through the AWS SDK
// and keeps them fresh: a token is cached per region and role and replaced
// before it expires (ECR tokens last 12 hours), so a long-running
// automator never fails at hour twelve and never needs a restart.
//
// The credentials belong to the installation, not to the repository the
// policies come from: a token is handed out only for an Amazon ECR
// registry host (ParseHost) of an account the administrator allowed, and a
// role is assumed only if the administrator listed it. A policy cannot
// send the token anywhere else.
package ecr

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/singleflight"
)

// Reasons a token is refused before any AWS call.
var (
	// ErrNotECRHost: the registry is not named like an Amazon ECR registry.
	ErrNotECRHost = errors.New("not an Amazon ECR registry host: ECR credentials are sent only to <account>.dkr.ecr.<region>.amazonaws.com and its partition, FIPS and dual-stack variants")
	// ErrAccountNotAllowed: the registry's account is not one the
	// administrator allowed (--aws-allowed-accounts).
	ErrAccountNotAllowed = errors.New("the registry's account is not allowed (--aws-allowed-accounts)")
	// ErrRoleNotAllowed: the role is not one the administrator allowed
	// (--aws-allowed-roles).
	ErrRoleNotAllowed = errors.New("the role is not allowed (--aws-allowed-roles)")
)

// Registry is an ECR registry host, parsed.
type Registry struct {
	Host    string
	Account string
	Region  string
}

// partitions maps each DNS suffix an ECR registry can have to the regions
// of its partitions, as aws-sdk-go-v2 (internal/endpoints/awsrulesfn/
// partitions.json, v1.48.0) lists them. The region must fit the suffix:
// a name like 123456789012.dkr.ecr.s3-us-west-2.amazonaws.com (an S3
// bucket named "123456789012.dkr.ecr") is not ECR.
var partitions = map[string]*regexp.Regexp{
	"amazonaws.com":    regexp.MustCompile(`^((us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+|us-gov-\w+-\d+)$`),
	"amazonaws.com.cn": regexp.MustCompile(`^cn-\w+-\d+$`),
	"amazonaws.eu":     regexp.MustCompile(`^eusc-(de)-\w+-\d+$`),
	"c2s.ic.gov":       regexp.MustCompile(`^us-iso-\w+-\d+$`),
	"sc2s.sgov.gov":    regexp.MustCompile(`^us-isob-\w+-\d+$`),
	"cloud.adc-e.uk":   regexp.MustCompile(`^eu-isoe-\w+-\d+$`),
	"csp.hci.ic.gov":   regexp.MustCompile(`^us-isof-\w+-\d+$`),
	// Dual-stack (IPv4 and IPv6) registry endpoints: dkr-ecr[-fips].
	"on.aws":                      regexp.MustCompile(`^((us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+|us-gov-\w+-\d+)$`),
	"on.amazonwebservices.com.cn": regexp.MustCompile(`^cn-\w+-\d+$`),
}

// hostRE splits <account>.<dkr.ecr|dkr.ecr-fips|dkr-ecr|dkr-ecr-fips>.<region>.<suffix>.
var hostRE = regexp.MustCompile(`^(\d{12})\.(dkr\.ecr|dkr\.ecr-fips|dkr-ecr|dkr-ecr-fips)\.([a-z0-9-]+)\.([a-z0-9.-]+)$`)

// ParseHost returns the account and region an ECR registry host names:
// <account>.dkr.ecr.<region>.amazonaws.com, .amazonaws.com.cn and the
// other partitions' suffixes, dkr.ecr-fips, and the dual-stack
// <account>.dkr-ecr[-fips].<region>.on.aws. Anything else is not ECR.
func ParseHost(host string) (Registry, bool) {
	m := hostRE.FindStringSubmatch(strings.ToLower(host))
	if m == nil {
		return Registry{}, false
	}
	dual := strings.HasPrefix(m[2], "dkr-ecr")
	suffix := m[4]
	if dual != strings.HasPrefix(suffix, "on.") {
		return Registry{}, false
	}
	re, ok := partitions[suffix]
	if !ok || !re.MatchString(m[3]) {
		return Registry{}, false
	}
	return Registry{Host: host, Account: m[1], Region: m[3]}, true
}

// API is the part of the ECR client Driftless uses.
type API interface {
	GetAuthorizationToken(ctx context.Context, in *ecr.GetAuthorizationTokenInput, opts ...func(*ecr.Options)) (*ecr.GetAuthorizationTokenOutput, error)
	DescribeImages(ctx context.Context, in *ecr.DescribeImagesInput, opts ...func(*ecr.Options)) (*ecr.DescribeImagesOutput, error)
}

// Request names one registry's credentials.
type Request struct {
	// Host is the registry host; it must be an ECR registry host.
	Host string
	// RoleARN is a role to assume first (cross-account registries); it
	// must be one the administrator allowed.
	RoleARN string
}

type entry struct {
	auth    authn.AuthConfig
	refresh time.Time
}

// clientKey names one ECR client: a region and the role it runs as.
type clientKey struct{ region, role string }

// Tokens hands out ECR registry credentials.
type Tokens struct {
	cfg      aws.Config
	endpoint string
	now      func() time.Time
	accounts []string // allowed registry accounts; none: the caller's own
	roles    []string // roles a policy may name

	mu      sync.Mutex
	clients map[clientKey]API
	entries map[clientKey]entry
	flight  singleflight.Group

	ownAccount string // the caller's account, once known
}

// Option configures Tokens.
type Option func(*Tokens)

// WithClock replaces time.Now, for tests that step past an expiry.
func WithClock(now func() time.Time) Option { return func(t *Tokens) { t.now = now } }

// WithAllowedAccounts sets the accounts whose registries may receive a
// token. Default: the account of the automator's own credentials (asked of
// STS GetCallerIdentity once). An empty list is that default, never "any".
func WithAllowedAccounts(ids ...string) Option {
	return func(t *Tokens) {
		t.accounts = slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == "" })
	}
}

// WithAllowedRoles sets the role ARNs a policy's roleARN may name.
// Default: none; a policy naming a role is refused.
func WithAllowedRoles(arns ...string) Option {
	return func(t *Tokens) { t.roles = slices.Clone(arns) }
}

// NewTokens returns a cache that builds ECR clients from cfg, the AWS SDK
// configuration main loaded (environment, IRSA web identity, EKS Pod
// Identity: the SDK's default chain). endpoint, when not empty, replaces
// the ECR API endpoint (a VPC endpoint, or a local stand-in in tests).
// One client, and for a role one credentials cache (one AssumeRole until
// those credentials expire), is kept per region and role.
func NewTokens(cfg aws.Config, endpoint string, opts ...Option) *Tokens {
	t := &Tokens{cfg: cfg, endpoint: endpoint, now: time.Now, clients: map[clientKey]API{}, entries: map[clientKey]entry{}}
	for _, o := range opts {
		o(t)
	}
	return t
}

// client returns the ECR client of a region and role, made once.
func (t *Tokens) client(k clientKey) API {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.clients[k]; ok {
		return c
	}
	c := t.cfg.Copy()
	c.Region = k.region
	if k.role != "" {
		c.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(t.cfg), k.role,
			func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = "driftless-automator" }))
	}
	api := ecr.NewFromConfig(c, func(o *ecr.Options) {
		if t.endpoint != "" {
			o.BaseEndpoint = aws.String(t.endpoint)
		}
	})
	t.clients[k] = api
	return api
}

// admit checks that req may receive credentials, before any AWS call.
func (t *Tokens) admit(ctx context.Context, req Request) (Registry, error) {
	reg, ok := ParseHost(req.Host)
	if !ok {
		return reg, fmt.Errorf("%s: %w", req.Host, ErrNotECRHost)
	}
	if req.RoleARN != "" && !slices.Contains(t.roles, req.RoleARN) {
		return reg, fmt.Errorf("%s: %w", req.RoleARN, ErrRoleNotAllowed)
	}
	allowed := t.accounts
	if len(allowed) == 0 {
		own, err := t.callerAccount(ctx)
		if err != nil {
			return reg, err
		}
		allowed = []string{own}
	}
	if !slices.Contains(allowed, reg.Account) {
		return reg, fmt.Errorf("account %s of %s: %w; allowed: %s", reg.Account, req.Host, ErrAccountNotAllowed, strings.Join(allowed, ", "))
	}
	return reg, nil
}

// callerAccount is the account of the automator's own credentials, the
// default allow list. It is asked once; a failure is not kept, so a
// transient STS error does not last.
func (t *Tokens) callerAccount(ctx context.Context) (string, error) {
	t.mu.Lock()
	own := t.ownAccount
	t.mu.Unlock()
	if own != "" {
		return own, nil
	}
	v, err, _ := t.flight.Do("\x00caller", func() (any, error) {
		out, err := sts.NewFromConfig(t.cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil || aws.ToString(out.Account) == "" {
			return "", fmt.Errorf("the allowed ECR accounts default to the automator's own, which STS GetCallerIdentity could not tell (set --aws-allowed-accounts): %w", err)
		}
		t.mu.Lock()
		t.ownAccount = aws.ToString(out.Account)
		t.mu.Unlock()
		return aws.ToString(out.Account), nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// PushTimes returns when each tag of repository was pushed, from
// DescribeImages, 1,000 images a page: the data for newestPushed ordering,
// which the registry's tag list does not carry.
func (t *Tokens) PushTimes(ctx context.Context, req Request, repository string) (map[string]time.Time, error) {
	reg, err := t.admit(ctx, req)
	if err != nil {
		return nil, err
	}
	in := &ecr.DescribeImagesInput{
		RegistryId:     aws.String(reg.Account),
		RepositoryName: aws.String(repository),
		Filter:         &types.DescribeImagesFilter{TagStatus: types.TagStatusTagged},
		MaxResults:     aws.Int32(1000),
	}
	out := map[string]time.Time{}
	pages := ecr.NewDescribeImagesPaginator(t.client(clientKey{reg.Region, req.RoleARN}), in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ECR DescribeImages of %s/%s in %s: %w", req.Host, repository, reg.Region, err)
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

// Authenticator returns credentials for the registry req names, from the
// cache while they are fresh. A token opens every registry of its region
// that the credentials may read, so one is kept per region and role;
// concurrent scans that find it stale fetch it once.
func (t *Tokens) Authenticator(ctx context.Context, req Request) (authn.Authenticator, error) {
	reg, err := t.admit(ctx, req)
	if err != nil {
		return nil, err
	}
	k := clientKey{reg.Region, req.RoleARN}
	t.mu.Lock()
	e, ok := t.entries[k]
	t.mu.Unlock()
	if ok && t.now().Before(e.refresh) {
		return authn.FromConfig(e.auth), nil
	}
	v, err, _ := t.flight.Do(k.region+"\x00"+k.role, func() (any, error) {
		return t.fetch(ctx, k, req.Host)
	})
	if err != nil {
		return nil, err
	}
	return authn.FromConfig(v.(authn.AuthConfig)), nil
}

func (t *Tokens) fetch(ctx context.Context, k clientKey, host string) (authn.AuthConfig, error) {
	// No registryIds: they are deprecated, and the token opens every
	// registry of the region the credentials may read.
	out, err := t.client(k).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		// The SDK's errors name the operation and the AWS error code,
		// never the credentials.
		return authn.AuthConfig{}, fmt.Errorf("ECR GetAuthorizationToken for %s in %s: %w", host, k.region, err)
	}
	if len(out.AuthorizationData) == 0 || out.AuthorizationData[0].AuthorizationToken == nil {
		return authn.AuthConfig{}, fmt.Errorf("ECR GetAuthorizationToken for %s: no authorization data in the answer", host)
	}
	d := out.AuthorizationData[0]
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(d.AuthorizationToken))
	if err != nil {
		return authn.AuthConfig{}, errors.New("ECR GetAuthorizationToken: the token is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return authn.AuthConfig{}, errors.New("ECR GetAuthorizationToken: the token is not user:password")
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
	t.entries[k] = entry{auth: auth, refresh: expires.Add(-early)}
	t.mu.Unlock()
	return auth, nil
}
