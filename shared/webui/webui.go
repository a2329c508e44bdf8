// Package webui is the web plumbing both programs share: a login form that
// keeps the cluster token in an HttpOnly, Secure, SameSite=Strict cookie,
// logout, CSRF protection for actions, security headers, a base
// html/template layout and embedded static assets (no CDN). Who may see
// and do what is the cluster's answer (webauth: TokenReview and
// SubjectAccessReview); Driftless keeps no users of its own.
//
// A program declares each view once, as a function returning data, and
// mounts it twice: as JSON under /api/v1 (API) and as a page under /ui
// (Page), so a page shows exactly what the API answers and nothing else.
package webui

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"driftless.dev/shared/webauth"
)

// Checker authenticates a token and authorizes it for attrs
// (*webauth.Authorizer).
type Checker interface {
	Check(ctx context.Context, token string, attrs webauth.Attributes) (webauth.User, error)
}

var _ Checker = (*webauth.Authorizer)(nil)

// Link is one entry of the navigation bar.
type Link struct{ Label, Href string }

// Options shape a UI.
type Options struct {
	// Title names the program in every page's title and header.
	Title string
	// View is what RBAC must allow to see pages and the API (get on the
	// status ConfigMap); Act what it must allow for actions (update on it).
	View, Act webauth.Attributes
	// Nav lists the pages in the header.
	Nav []Link
	// Funcs are extra template functions for the program's pages.
	Funcs template.FuncMap
}

// UI serves the login, logout and static routes and renders a program's
// pages inside the shared layout.
type UI struct {
	auth  Checker
	opts  Options
	log   *zap.Logger
	pages map[string]*template.Template
	cop   *http.CrossOriginProtection
}

//go:embed templates/*.html
var templatesFS embed.FS

//go:embed static
var staticFS embed.FS

// Paths the UI owns.
const (
	LoginPath  = "/ui/login"
	LogoutPath = "/ui/logout"
	StaticPath = "/ui/static/"
	Home       = "/ui/"
)

// New returns a UI whose pages are the templates matched by patterns in
// pages; each page file defines "content" and is named by its base name
// without extension ("objects.html" is the page "objects").
func New(auth Checker, opts Options, log *zap.Logger, pages fs.FS, patterns ...string) (*UI, error) {
	funcs := template.FuncMap{
		"since": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return time.Since(t).Round(time.Second).String() + " ago"
		},
		"until": func(t time.Time) string {
			if t.IsZero() {
				return "unknown"
			}
			d := time.Until(t).Round(time.Second)
			if d <= 0 {
				return "due now"
			}
			return "in " + d.String()
		},
		"ms": func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) },
		"short": func(s string) string {
			if len(s) > 12 {
				return s[:12]
			}
			return s
		},
		"rfc3339": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339)
		},
	}
	for k, v := range opts.Funcs {
		funcs[k] = v
	}
	base, err := template.New("webui").Funcs(funcs).ParseFS(templatesFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("parse the shared layout: %w", err)
	}
	u := &UI{auth: auth, opts: opts, log: log, pages: map[string]*template.Template{}, cop: http.NewCrossOriginProtection()}
	add := func(fsys fs.FS, f string) error {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(fsys, f)
		}
		if err != nil {
			return fmt.Errorf("parse page %s: %w", f, err)
		}
		u.pages[strings.TrimSuffix(path.Base(f), path.Ext(f))] = t
		return nil
	}
	for _, f := range []string{"templates/login.html", "templates/error.html"} {
		if err := add(templatesFS, f); err != nil {
			return nil, err
		}
	}
	for _, pat := range patterns {
		files, err := fs.Glob(pages, pat)
		if err != nil {
			return nil, fmt.Errorf("pages %q: %w", pat, err)
		}
		for _, f := range files {
			if err := add(pages, f); err != nil {
				return nil, err
			}
		}
	}
	return u, nil
}

// Mount adds the login, logout and static routes to mux.
func (u *UI) Mount(mux *http.ServeMux) {
	mux.Handle("GET "+LoginPath, u.secure(http.HandlerFunc(u.loginForm)))
	mux.Handle("POST "+LoginPath, u.secure(http.HandlerFunc(u.login)))
	mux.Handle("POST "+LogoutPath, u.secure(http.HandlerFunc(u.logout)))
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(StaticPath, http.FileServerFS(static))
	mux.Handle("GET "+StaticPath, u.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Assets change only with the binary; revalidate, never guess.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})))
	mux.Handle("GET /ui", http.RedirectHandler(Home, http.StatusMovedPermanently))
}

// View computes what a page shows and the API answers, for one request.
type View func(r *http.Request) (any, error)

// Do is an action; it returns what the API answers.
type Do func(r *http.Request, user webauth.User) (any, error)

// StatusError is an error with the HTTP status a view wants for it
// (400 for a bad query, 404 for an unknown object).
type StatusError struct {
	Code int
	Err  error
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// Errorf returns a *StatusError.
func Errorf(code int, format string, args ...any) error {
	return &StatusError{Code: code, Err: fmt.Errorf(format, args...)}
}

// API serves view as JSON to a user RBAC lets view: 401 without an
// accepted token, 403 when RBAC says no.
func (u *UI) API(view View) http.Handler {
	return u.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := u.check(r, u.opts.View); err != nil {
			u.apiError(w, err)
			return
		}
		data, err := view(r)
		if err != nil {
			u.apiError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, data)
	}))
}

// Page renders view with the page template name for a user RBAC lets
// view; an anonymous visitor (or one whose token the cluster no longer
// accepts) is sent to the login form, a forbidden one gets 403.
func (u *UI) Page(name string, view View) http.Handler {
	return u.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, cookie, err := u.check(r, u.opts.View)
		if err != nil {
			u.pageError(w, r, user, err, cookie)
			return
		}
		data, err := view(r)
		if err != nil {
			u.pageError(w, r, user, err, cookie)
			return
		}
		u.render(w, r, http.StatusOK, name, page{Data: data, User: user.Name, CSRF: csrfFor(webauth.Token(r))})
	}))
}

// Action serves a POST that changes something, for a user RBAC lets act.
// A request authenticated by the session cookie must carry the session's
// CSRF token (form field "csrf" or header X-CSRF-Token); one with an
// Authorization header needs none, as a browser never adds that header
// on its own. A form may name a page under /ui/ to return to ("next"):
// the answer is then a redirect there instead of JSON.
func (u *UI) Action(do Do) http.Handler {
	return u.secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		user, cookie, err := u.check(r, u.opts.Act)
		if err == nil && cookie && !validCSRF(r) {
			err = &StatusError{Code: http.StatusForbidden, Err: errors.New("missing or wrong CSRF token: reload the page and try again")}
		}
		next := safeNext(r.FormValue("next"))
		if err != nil {
			if next != "" {
				u.pageError(w, r, user, err, cookie)
				return
			}
			u.apiError(w, err)
			return
		}
		data, err := do(r, user)
		if err != nil {
			if next != "" {
				u.pageError(w, r, user, err, cookie)
				return
			}
			u.apiError(w, err)
			return
		}
		u.log.Info("action", zap.String("path", r.URL.Path), zap.String("user", user.Name))
		if next != "" {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		writeJSON(w, http.StatusOK, data)
	}))
}

// check authenticates and authorizes r; cookie says the token came from
// the session cookie.
func (u *UI) check(r *http.Request, attrs webauth.Attributes) (webauth.User, bool, error) {
	cookie := !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
	user, err := u.auth.Check(r.Context(), webauth.Token(r), attrs)
	if err != nil && webauth.Status(err) == http.StatusServiceUnavailable {
		// The cluster could not be asked: neither the user's fault nor ours.
		err = &StatusError{Code: http.StatusServiceUnavailable, Err: err}
	}
	return user, cookie, err
}

// page is what every page template gets: the view's data and the chrome.
type page struct {
	Title string
	Nav   []Link
	Path  string
	User  string
	CSRF  string
	Data  any
	// Error pages.
	Code    int
	Message string
	Next    string
	// View and Act are what RBAC must allow, for a 403 page to say.
	View, Act webauth.Attributes
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	t := u.pages[name]
	if t == nil {
		http.Error(w, "no page "+name, http.StatusInternalServerError)
		return
	}
	p.Title, p.Nav, p.Path, p.View, p.Act = u.opts.Title, u.opts.Nav, r.URL.Path, u.opts.View, u.opts.Act
	var buf bytes.Buffer
	// Rendered whole before anything is sent: a template error is a 500,
	// not half a page.
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		u.log.Error("render page", zap.String("page", name), zap.Error(err))
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// pageError answers a page request that failed: to the login form when
// there is no accepted token, else an error page with the status.
func (u *UI) pageError(w http.ResponseWriter, r *http.Request, user webauth.User, err error, cookie bool) {
	code := statusOf(err)
	if code == http.StatusUnauthorized && cookie {
		msg := ""
		if webauth.Token(r) != "" {
			// The cookie's token expired or was revoked.
			msg = "Your session ended: the cluster no longer accepts its token. Log in again."
			clearCookie(w)
		}
		if r.Method == http.MethodGet {
			q := url.Values{"next": {r.URL.RequestURI()}}
			if msg != "" {
				q.Set("ended", "1")
			}
			http.Redirect(w, r, LoginPath+"?"+q.Encode(), http.StatusSeeOther)
			return
		}
		u.render(w, r, http.StatusUnauthorized, "login", page{Code: http.StatusUnauthorized, Message: msg})
		return
	}
	msg := err.Error()
	if code >= 500 && code != http.StatusServiceUnavailable {
		u.log.Error("page", zap.String("path", r.URL.Path), zap.Error(err))
	}
	u.render(w, r, code, "error", page{Code: code, Message: msg, User: user.Name, CSRF: csrfFor(webauth.Token(r))})
}

func (u *UI) apiError(w http.ResponseWriter, err error) {
	code := statusOf(err)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kubernetes"`)
	}
	if code >= 500 && code != http.StatusServiceUnavailable {
		u.log.Error("api", zap.Error(err))
	}
	writeJSON(w, code, map[string]any{"error": err.Error(), "code": code})
}

func statusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	if errors.Is(err, webauth.ErrNoToken) || errors.Is(err, webauth.ErrUnauthorized) || errors.Is(err, webauth.ErrForbidden) {
		return webauth.Status(err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode the answer","code":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func (u *UI) loginForm(w http.ResponseWriter, r *http.Request) {
	p := page{Next: safeNext(r.URL.Query().Get("next"))}
	if r.URL.Query().Get("ended") != "" {
		p.Message = "Your session ended: the cluster no longer accepts its token. Log in again."
	}
	u.render(w, r, http.StatusOK, "login", p)
}

// login checks the pasted token with the cluster and keeps it in the
// session cookie. A token the cluster authenticates is kept even when
// RBAC does not let its user view: the pages then say 403 and who they
// are, which is what that user needs to ask for a Role.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	_, err := u.auth.Check(r.Context(), token, u.opts.View)
	switch code := webauth.Status(err); {
	case err == nil, code == http.StatusForbidden:
	case code == http.StatusUnauthorized:
		msg := "The cluster did not accept this token."
		if token == "" {
			msg = "Paste a token."
		}
		u.render(w, r, http.StatusUnauthorized, "login", page{Code: code, Message: msg, Next: next})
		return
	default:
		u.render(w, r, code, "login", page{Code: code, Message: "The cluster could not be asked about this token: " + err.Error(), Next: next})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: webauth.CookieName, Value: token, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	if next == "" {
		next = Home
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	if webauth.Token(r) != "" && !validCSRF(r) {
		u.render(w, r, http.StatusForbidden, "error", page{Code: http.StatusForbidden, Message: "missing or wrong CSRF token: reload the page and try again"})
		return
	}
	clearCookie(w)
	http.Redirect(w, r, LoginPath, http.StatusSeeOther)
}

func clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: webauth.CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// safeNext keeps a return address only if it is a page of this UI, so the
// login form cannot be made to send anyone elsewhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Home) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return ""
	}
	return next
}

// csrfFor derives the session's CSRF token from its bearer token: a keyed
// hash that only a holder of the token can compute, that reveals nothing
// of it, and that every replica and restart agrees on without shared
// state. A page on another site can neither read the HttpOnly cookie nor
// this page, so it cannot forge the value.
func csrfFor(token string) string {
	if token == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte("driftless.dev/webui csrf v1"))
	m.Write([]byte(token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func validCSRF(r *http.Request) bool {
	want := csrfFor(webauth.Token(r))
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return want != "" && hmac.Equal([]byte(got), []byte(want))
}
