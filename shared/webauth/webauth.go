// Package webauth authenticates and authorizes HTTP requests with the
// cluster's own machinery: the bearer token kubectl uses (with EKS's OIDC
// identity providers, that is SSO) is checked with a TokenReview, and the
// user it names with a SubjectAccessReview against the cluster's RBAC.
// Driftless keeps no users or passwords of its own.
package webauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Attributes name what a request asks to do, as RBAC sees it: "get" on
// the status ConfigMap to view, "update" on it to act.
type Attributes struct {
	Verb, Group, Resource, Namespace, Name string
}

// User is who a token belongs to.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// Errors a check returns; the handler maps them to 401 and 403.
var (
	ErrNoToken      = errors.New("no bearer token")
	ErrUnauthorized = errors.New("token not accepted by the cluster")
	ErrForbidden    = errors.New("not allowed by the cluster's RBAC")
)

// Authorizer asks the API server who a token is and what they may do.
// Answers are cached for a few seconds per token and request kind, so a
// page that makes several API calls costs two reviews, not a dozen.
type Authorizer struct {
	dyn dynamic.Interface
	ttl time.Duration

	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	user    User
	err     error
	allowed map[Attributes]bool
	until   time.Time
}

// New returns an authorizer that reviews through dyn (the program's own
// identity, which needs create on tokenreviews and subjectaccessreviews:
// the ClusterRole system:auth-delegator).
func New(dyn dynamic.Interface) *Authorizer {
	return &Authorizer{dyn: dyn, ttl: 10 * time.Second, cache: map[[32]byte]cached{}}
}

var (
	tokenReviews = schema.GroupVersionResource{Group: "authentication.k8s.io", Version: "v1", Resource: "tokenreviews"}
	accessReview = schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "subjectaccessreviews"}
)

// Token returns the request's bearer token: the Authorization header,
// or the session cookie the pages set.
func Token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return c.Value
	}
	return ""
}

// CookieName is the session cookie holding the token (HttpOnly, Secure,
// SameSite=Strict).
const CookieName = "driftless_token"

// Check authenticates token and authorizes attrs for its user.
func (a *Authorizer) Check(ctx context.Context, token string, attrs Attributes) (User, error) {
	if token == "" {
		return User{}, ErrNoToken
	}
	key := sha256.Sum256([]byte(token))
	a.mu.Lock()
	c, ok := a.cache[key]
	if ok && time.Now().After(c.until) {
		ok = false
	}
	a.mu.Unlock()
	if !ok {
		c = cached{allowed: map[Attributes]bool{}, until: time.Now().Add(a.ttl)}
		c.user, c.err = a.authenticate(ctx, token)
		a.store(key, c)
	}
	if c.err != nil {
		return User{}, c.err
	}
	allowed, known := c.allowed[attrs]
	if !known {
		var err error
		if allowed, err = a.authorize(ctx, c.user, attrs); err != nil {
			return c.user, err
		}
		a.mu.Lock()
		if cc, ok := a.cache[key]; ok {
			cc.allowed[attrs] = allowed
		}
		a.mu.Unlock()
	}
	if !allowed {
		return c.user, fmt.Errorf("%w: %s may not %s %s %s/%s", ErrForbidden, c.user.Name, attrs.Verb, attrs.Resource, attrs.Namespace, attrs.Name)
	}
	return c.user, nil
}

func (a *Authorizer) store(key [32]byte, c cached) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) > 1000 {
		for k, v := range a.cache {
			if time.Now().After(v.until) {
				delete(a.cache, k)
			}
		}
	}
	a.cache[key] = c
}

func (a *Authorizer) authenticate(ctx context.Context, token string) (User, error) {
	tr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
		"spec": map[string]any{"token": token},
	}}
	out, err := a.dyn.Resource(tokenReviews).Create(ctx, tr, metav1.CreateOptions{})
	if err != nil {
		// The error is the API server's about the review, never the token.
		return User{}, fmt.Errorf("token review: %w", err)
	}
	if ok, _, _ := unstructured.NestedBool(out.Object, "status", "authenticated"); !ok {
		return User{}, ErrUnauthorized
	}
	var u User
	u.Name, _, _ = unstructured.NestedString(out.Object, "status", "user", "username")
	u.UID, _, _ = unstructured.NestedString(out.Object, "status", "user", "uid")
	u.Groups, _, _ = unstructured.NestedStringSlice(out.Object, "status", "user", "groups")
	if extra, ok, _ := unstructured.NestedMap(out.Object, "status", "user", "extra"); ok {
		u.Extra = map[string][]string{}
		for k, v := range extra {
			vs, _ := v.([]any)
			for _, s := range vs {
				if str, ok := s.(string); ok {
					u.Extra[k] = append(u.Extra[k], str)
				}
			}
		}
	}
	return u, nil
}

func (a *Authorizer) authorize(ctx context.Context, u User, at Attributes) (bool, error) {
	groups := make([]any, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = g
	}
	extra := map[string]any{}
	for k, vs := range u.Extra {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		extra[k] = l
	}
	sar := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
		"spec": map[string]any{
			"user": u.Name, "uid": u.UID, "groups": groups, "extra": extra,
			"resourceAttributes": map[string]any{
				"verb": at.Verb, "group": at.Group, "resource": at.Resource, "namespace": at.Namespace, "name": at.Name,
			},
		},
	}}
	out, err := a.dyn.Resource(accessReview).Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("access review: %w", err)
	}
	ok, _, _ := unstructured.NestedBool(out.Object, "status", "allowed")
	return ok, nil
}

// Status is the HTTP status for a Check error: 401 without an accepted
// token, 403 when RBAC says no, 503 when the cluster could not be asked.
func Status(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrNoToken), errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	}
	return http.StatusServiceUnavailable
}
