// Package registry lists image tags and resolves digests with
// go-containerregistry, politely: a request budget per registry, backoff
// on 429 and 5xx that honours Retry-After, and credentials per policy.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/time/rate"

	"driftless.dev/shared/redact"
)

// MaxPageSize is the largest tag-list page ECR accepts; other registries
// cap lower or ignore it.
const MaxPageSize = 1000

// Client reaches registries.
type Client struct {
	pageSize int
	tr       *politeTransport
	insecure map[string]bool

	mu         sync.Mutex
	handshakes map[handshakeKey]http.RoundTripper
}

// handshakeKey names a handshake: the registry, the scheme it was asked
// over and the credentials (their hash: the key is never printed, but
// need not hold them either).
type handshakeKey struct {
	registry string
	auth     [sha256.Size]byte
}

// maxHandshakes bounds the cache; it starts over beyond (credentials that
// rotate, such as ECR's 12-hour tokens, leave old entries behind).
const maxHandshakes = 256

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
	}, insecure: map[string]bool{}, handshakes: map[handshakeKey]http.RoundTripper{}}
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
		remote.WithTransport(c.base(reg)),
		remote.WithPageSize(c.pageSize),
		// Our transport retries, with Retry-After; go-containerregistry's
		// own retries would multiply the attempts.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryStatusCodes(),
		remote.WithUserAgent("driftless-automator"),
	}
}

// base is what every request to reg goes through: the guard, the budget
// and the retries.
func (c *Client) base(reg name.Registry) http.RoundTripper {
	return &guard{next: c.tr, insecure: c.insecure, registry: reg.RegistryStr()}
}

// call runs fn with the options for reg and auth. go-containerregistry
// starts every call with a handshake (GET /v2/, twice over plain HTTP:
// https is tried too), which took two or three of every three requests a
// pass made, and so most of its request budget: 1,000 repositories ran
// 5× the listing floor. Where the registry answers that handshake without
// a challenge or with a Basic one (ECR, distribution, Harbor), what it
// yields is the same for every repository, so it is made once per
// registry and credentials and reused (a transport.Wrapper, which
// go-containerregistry takes as done). A registry that asks for Bearer
// tokens scopes each to repositories, and keeps a handshake per call. A
// failed call forgets the handshake, so a registry that changed is asked
// again.
func (c *Client) call(ctx context.Context, reg name.Registry, auth authn.Authenticator, fn func([]remote.Option) error) error {
	if auth == nil {
		auth = authn.Anonymous
	}
	opts := c.options(ctx, reg, auth)
	key, t := c.handshake(ctx, reg, auth)
	if t == nil {
		return fn(opts)
	}
	err := fn(append(opts, remote.WithTransport(t)))
	if err != nil {
		c.mu.Lock()
		delete(c.handshakes, key)
		c.mu.Unlock()
	}
	return err
}

// handshake returns the reusable transport for reg and auth, made now if
// need be, or nil where there is none (a Bearer registry, or a handshake
// that failed: the call then makes its own and reports why).
func (c *Client) handshake(ctx context.Context, reg name.Registry, auth authn.Authenticator) (handshakeKey, http.RoundTripper) {
	cfg, err := auth.Authorization()
	if err != nil {
		return handshakeKey{}, nil
	}
	b, _ := json.Marshal(cfg)
	key := handshakeKey{registry: reg.Scheme() + "://" + reg.RegistryStr(), auth: sha256.Sum256(b)}
	c.mu.Lock()
	t, done := c.handshakes[key]
	c.mu.Unlock()
	if done {
		return key, t
	}
	base := transport.NewUserAgent(c.base(reg), "driftless-automator")
	ch, err := transport.Ping(ctx, reg, base)
	if err != nil {
		return key, nil
	}
	if !strings.EqualFold(ch.Scheme, "bearer") {
		if t, err = transport.NewWithContext(ctx, reg, auth, base, nil); err != nil {
			return key, nil
		}
	}
	c.mu.Lock()
	if len(c.handshakes) >= maxHandshakes {
		clear(c.handshakes)
	}
	c.handshakes[key] = t
	c.mu.Unlock()
	return key, t
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
	var tags []string
	err := c.call(ctx, repo.Registry, auth, func(opts []remote.Option) (err error) {
		tags, err = remote.List(repo, opts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, Classify(err))
	}
	return tags, nil
}

// Digest resolves repo:tag to its manifest digest with a HEAD request.
func (c *Client) Digest(ctx context.Context, repo name.Repository, tag string, auth authn.Authenticator) (string, error) {
	repo = c.scheme(repo)
	var digest string
	err := c.call(ctx, repo.Registry, auth, func(opts []remote.Option) error {
		desc, err := remote.Head(repo.Tag(tag), opts...)
		if err == nil {
			digest = desc.Digest.String()
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("resolve digest of %s:%s: %w", repo, tag, Classify(err))
	}
	return digest, nil
}

// Reasons a registry call failed, for metrics and for deciding what a
// person must fix.
var (
	ErrUnauthorized = errors.New("unauthorized: check the policy's registry credentials")
	ErrNotFound     = errors.New("repository not found")
	ErrUnreachable  = errors.New("registry unreachable")
	ErrThrottled    = errors.New("registry throttled or failed (retries exhausted)")
)

// RegistryError is a registry call that failed: the sentinel that says
// what a person must fix (errors.Is), and go-containerregistry's own error
// (errors.As finds its *transport.Error with the status and diagnostics).
// Its message is redacted: the registry's URLs may carry tokens.
type RegistryError struct {
	Kind error // ErrUnauthorized, ErrNotFound, ErrThrottled, ErrUnreachable or nil
	Err  error // what go-containerregistry returned
	msg  string
}

func (e *RegistryError) Error() string { return e.msg }
func (e *RegistryError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// Classify says what went wrong, keeping the error, and strips anything
// secret from its message: go-containerregistry errors carry URLs, which
// may carry credentials or tokens in their query.
func Classify(err error) error {
	var terr *transport.Error
	var uerr *url.Error
	// A refusal of ours first: go-containerregistry tries https and http
	// and reports both, and the https failure would hide it.
	var refused *RefusedError
	if errors.As(err, &refused) {
		return refused
	}
	re := func(kind error, msg string) error { return &RegistryError{Kind: kind, Err: err, msg: msg} }
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// Before the transport errors: an insecure registry is probed
		// over HTTPS and HTTP at once, and the HTTPS probe's quick
		// failure would hide that the registry never answered.
		return re(ErrUnreachable, fmt.Sprintf("%v: no answer before the deadline: %v", ErrUnreachable, context.DeadlineExceeded))
	case errors.As(err, &terr):
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return re(ErrUnauthorized, fmt.Sprintf("%v (HTTP %d)", ErrUnauthorized, terr.StatusCode))
		case terr.StatusCode == http.StatusNotFound:
			return re(ErrNotFound, fmt.Sprintf("%v (HTTP 404)", ErrNotFound))
		case terr.StatusCode == http.StatusTooManyRequests || terr.StatusCode >= 500:
			return re(ErrThrottled, fmt.Sprintf("%v (HTTP %d)", ErrThrottled, terr.StatusCode))
		}
		return re(nil, fmt.Sprintf("HTTP %d: %s", terr.StatusCode, redact.URLs(terr.Error())))
	case errors.As(err, &uerr):
		return re(ErrUnreachable, fmt.Sprintf("%v: %s %s: %v", ErrUnreachable, uerr.Op, redact.URL(uerr.URL), redact.URLs(fmt.Sprint(uerr.Err))))
	case errors.Is(err, context.Canceled):
		return err
	}
	return re(nil, redact.URLs(err.Error()))
}
