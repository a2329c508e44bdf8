// Package webuitest is what the tests of both programs' pages share: a
// client that signs in as the pages and the API expect, and its answers.
package webuitest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"driftless.dev/shared/webauth"
)

// Answer is what a request got: status, headers and the whole body.
type Answer struct {
	Code   int
	Header http.Header
	Body   string
}

// Get fetches url+path with token as a bearer header (API) or as the
// session cookie (pages, whose path starts with /ui/); "" sends none.
// Redirects are answers, not followed.
func Get(t testing.TB, url, path, token string) Answer {
	t.Helper()
	req, _ := http.NewRequest("GET", url+path, nil)
	return Do(t, Authorize(req, path, token))
}

// Post sends an action to url+path, authorized as Get is.
func Post(t testing.TB, url, path, token string) Answer {
	t.Helper()
	req, _ := http.NewRequest("POST", url+path, nil)
	return Do(t, Authorize(req, path, token))
}

// Authorize adds token to req as Get does and returns req.
func Authorize(req *http.Request, path, token string) *http.Request {
	switch {
	case token == "":
	case strings.HasPrefix(path, "/ui/"):
		req.AddCookie(&http.Cookie{Name: webauth.CookieName, Value: token})
	default:
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// Do sends req without following redirects.
func Do(t testing.TB, req *http.Request) Answer {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Answer{resp.StatusCode, resp.Header, string(b)}
}
