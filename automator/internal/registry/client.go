// Package registry lists image tags and resolves digests with
// go-containerregistry, politely: a request budget per registry, backoff
// on 429 and 5xx that honours Retry-After, and credentials per policy.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/time/rate"
)

// MaxPageSize is the largest tag-list page ECR accepts; other registries
// cap lower or ignore it.
const MaxPageSize = 1000

// Client reaches registries.
type Client struct {
	pageSize int
	tr       *politeTransport
	insecure map[string]bool
}

// Option configures a Client.
type Option func(*Client)

// WithPageSize sets the tag-list page size. Default (and maximum) 1000.
func WithPageSize(n int) Option {
	return func(c *Client) { c.pageSize = min(max(n, 1), MaxPageSize) }
}

// WithBudget limits requests to each registry host to rps per second with
// bursts of burst. Default 200/s, burst 400; rps <= 0 is unlimited.
func WithBudget(rps float64, burst int) Option {
	return func(c *Client) { c.tr.rps, c.tr.burst = rps, max(burst, 1) }
}

// WithRetries sets how many times a request is tried and the first
// backoff. Default 5 attempts from 500ms.
func WithRetries(attempts int, backoff time.Duration) Option {
	return func(c *Client) { c.tr.attempts, c.tr.backoff = max(attempts, 1), backoff }
}

// WithTransport sets the HTTP transport under the budget and retries
// (for a private CA). Default: http.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option {
	return func(c *Client) { c.tr.next = rt }
}

// WithInsecure lists registries (host[:port]) that may be reached over
// plain HTTP. Default: none; every registry is reached over HTTPS, even on
// a loopback or private address where go-containerregistry would fall
// back to HTTP.
func WithInsecure(hosts ...string) Option {
	return func(c *Client) {
		for _, h := range hosts {
			if h != "" {
				c.insecure[normalizeRegistry(h)] = true
			}
		}
	}
}

// WithRetryHook is called for each retried request, for metrics.
func WithRetryHook(fn func(host string, status int)) Option {
	return func(c *Client) { c.tr.onRetry = fn }
}

// New returns a Client.
func New(opts ...Option) *Client {
	c := &Client{pageSize: MaxPageSize, tr: &politeTransport{
		next: http.DefaultTransport, rps: 200, burst: 400, attempts: 5, backoff: 500 * time.Millisecond,
		maxWait: time.Minute, limiters: map[string]*rate.Limiter{},
	}, insecure: map[string]bool{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *Client) options(ctx context.Context, reg name.Registry, auth authn.Authenticator) []remote.Option {
	if auth == nil {
		auth = authn.Anonymous
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithTransport(&guard{next: c.tr, insecure: c.insecure, registry: reg.RegistryStr()}),
		remote.WithPageSize(c.pageSize),
		// Our transport retries, with Retry-After; go-containerregistry's
		// own retries would multiply the attempts.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryStatusCodes(),
		remote.WithUserAgent("driftless-automator"),
	}
}

// scheme parses repo again as insecure when the administrator listed its
// registry, so one reached under a DNS name is spoken to over HTTP too.
func (c *Client) scheme(repo name.Repository) name.Repository {
	if !c.insecure[repo.RegistryStr()] {
		return repo
	}
	r, err := name.NewRepository(repo.String(), name.Insecure)
	if err != nil {
		return repo
	}
	return r
}

// Tags lists every tag of repo, following pagination.
func (c *Client) Tags(ctx context.Context, repo name.Repository, auth authn.Authenticator) ([]string, error) {
	repo = c.scheme(repo)
	tags, err := remote.List(repo, c.options(ctx, repo.Registry, auth)...)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, Classify(err))
	}
	return tags, nil
}

// Digest resolves repo:tag to its manifest digest with a HEAD request.
func (c *Client) Digest(ctx context.Context, repo name.Repository, tag string, auth authn.Authenticator) (string, error) {
	repo = c.scheme(repo)
	desc, err := remote.Head(repo.Tag(tag), c.options(ctx, repo.Registry, auth)...)
	if err != nil {
		return "", fmt.Errorf("resolve digest of %s:%s: %w", repo, tag, Classify(err))
	}
	return desc.Digest.String(), nil
}

// Reasons a registry call failed, for metrics and for deciding what a
// person must fix.
var (
	ErrUnauthorized = errors.New("unauthorized: check the policy's registry credentials")
	ErrNotFound     = errors.New("repository not found")
	ErrUnreachable  = errors.New("registry unreachable")
	ErrThrottled    = errors.New("registry throttled or failed (retries exhausted)")
)

// Classify wraps err with the sentinel that says what went wrong, and
// strips anything secret from it: go-containerregistry errors carry URLs,
// which may carry credentials or tokens in their query.
func Classify(err error) error {
	var terr *transport.Error
	var uerr *url.Error
	// A refusal of ours first: go-containerregistry tries https and http
	// and reports both, and the https failure would hide it.
	var refused *RefusedError
	if errors.As(err, &refused) {
		return refused
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// Before the transport errors: an insecure registry is probed
		// over HTTPS and HTTP at once, and the HTTPS probe's quick
		// failure would hide that the registry never answered.
		return fmt.Errorf("%w: no answer before the deadline: %w", ErrUnreachable, context.DeadlineExceeded)
	case errors.As(err, &terr):
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w (HTTP %d)", ErrUnauthorized, terr.StatusCode)
		case terr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w (HTTP 404)", ErrNotFound)
		case terr.StatusCode == http.StatusTooManyRequests || terr.StatusCode >= 500:
			return fmt.Errorf("%w (HTTP %d)", ErrThrottled, terr.StatusCode)
		}
		return fmt.Errorf("HTTP %d: %s", terr.StatusCode, redact(terr.Error()))
	case errors.As(err, &uerr):
		return fmt.Errorf("%w: %s %s: %v", ErrUnreachable, uerr.Op, redactURL(uerr.URL), uerr.Err)
	case errors.Is(err, context.Canceled):
		return err
	}
	return errors.New(redact(err.Error()))
}

// redact drops the query of every URL in s and any user-info.
func redact(s string) string {
	fields := strings.Fields(s)
	for i, f := range fields {
		if strings.Contains(f, "://") {
			fields[i] = redactURL(strings.Trim(f, `"';,`))
		}
	}
	return strings.Join(fields, " ")
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<url>"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}
