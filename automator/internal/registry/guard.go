package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/net/publicsuffix"
)

// guard is the last transport before the network, one per call. It
// refuses what a policy from Git must never make the automator do:
//   - plain HTTP to a registry the administrator did not list as insecure.
//     go-containerregistry falls back to http:// on its own for loopback
//     and private addresses; that fallback is refused here, so no
//     reference parsing can bring it back;
//   - credentials (any Authorization header) to a host other than the
//     registry they were looked up for, or a token service on the same
//     site (registrable domain per the Public Suffix List, as Docker Hub's
//     auth.docker.io is for index.docker.io). A registry cannot point a
//     token realm elsewhere to collect them.
type guard struct {
	next     http.RoundTripper
	insecure map[string]bool
	// registry is the host[:port] the call's credentials belong to.
	registry string
}

// Refusals of the guard.
var (
	// ErrPlainHTTP: a registry not listed in --insecure-registries was to
	// be reached over plain HTTP.
	ErrPlainHTTP = errors.New("refused: list the registry in --insecure-registries to allow it")
	// ErrCredentialsElsewhere: credentials were to go to another site
	// than the registry they belong to.
	ErrCredentialsElsewhere = errors.New("another site than the registry they belong to")
)

// RefusedError is a request the guard did not send; it wraps
// ErrPlainHTTP or ErrCredentialsElsewhere.
type RefusedError struct {
	msg    string
	reason error
}

func (e *RefusedError) Error() string { return e.msg }
func (e *RefusedError) Unwrap() error { return e.reason }

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	if req.URL.Scheme != "https" && !g.insecure[host] {
		return nil, &RefusedError{fmt.Sprintf("plain HTTP to %s %v", host, ErrPlainHTTP), ErrPlainHTTP}
	}
	if req.Header.Get("Authorization") != "" && !sameSite(host, g.registry) {
		return nil, &RefusedError{fmt.Sprintf("credentials for %s not sent to %s: %v", g.registry, host, ErrCredentialsElsewhere), ErrCredentialsElsewhere}
	}
	return g.next.RoundTrip(req)
}

// sameSite reports whether host may receive the credentials of registry:
// the same host and port, or, for DNS names, the same registrable domain.
func sameSite(host, registry string) bool {
	if host == registry {
		return true
	}
	h, r := hostname(host), hostname(registry)
	if net.ParseIP(h) != nil || net.ParseIP(r) != nil || !strings.Contains(h, ".") || !strings.Contains(r, ".") {
		return false // addresses and single labels (localhost): exact only
	}
	hs, err1 := publicsuffix.EffectiveTLDPlusOne(h)
	rs, err2 := publicsuffix.EffectiveTLDPlusOne(r)
	return err1 == nil && err2 == nil && hs == rs
}

func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(strings.Trim(hostport, "[]"))
}

// normalizeRegistry spells a registry the way go-containerregistry does
// ("docker.io" is "index.docker.io"), so a listed host matches.
func normalizeRegistry(h string) string {
	r, err := name.NewRegistry(strings.TrimSuffix(h, "/"))
	if err != nil {
		return h
	}
	return r.RegistryStr()
}
