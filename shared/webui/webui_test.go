package webui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"driftless.dev/shared/testenv"
	"driftless.dev/shared/webauth"
	"driftless.dev/shared/webui"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) { os.Exit(testenv.MainCluster(m, &cluster)) }

// site is a UI with one page, its API and one action, authorized against
// the real cluster, and tokens of ServiceAccounts RBAC treats differently.
type site struct {
	srv                     *httptest.Server
	viewer, actor, stranger string
	acted                   atomic.Int32
}

func newSite(t *testing.T) *site {
	t.Helper()
	ctx := t.Context()
	ns := cluster.Namespace(t)
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	for _, sa := range []string{"viewer", "actor", "stranger"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	roles := map[string][]string{"viewer": {"get"}, "actor": {"get", "update"}}
	for sa, verbs := range roles {
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: sa}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"driftless"}, Verbs: verbs}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: sa},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	token := func(sa string) string {
		cfg, err := cluster.ServiceAccountConfig(ctx, ns, sa, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.BearerToken
	}
	s := &site{viewer: token("viewer"), actor: token("actor"), stranger: token("stranger")}
	pages := fstest.MapFS{"pages/hello.html": {Data: []byte(`{{define "content"}}<p id="greeting">{{.Data.Greeting}}</p>{{end}}`)}}
	attrs := webauth.Attributes{Resource: "configmaps", Namespace: ns, Name: "driftless"}
	view, act := attrs, attrs
	view.Verb, act.Verb = "get", "update"
	ui, err := webui.New(webauth.New(dynamic.NewForConfigOrDie(cluster.Config)), webui.Options{Title: "Test", View: view, Act: act,
		Nav: []webui.Link{{Label: "Hello", Href: "/ui/hello"}}}, zap.NewNop(), pages, "pages/*.html")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ui.Mount(mux)
	hello := func(*http.Request) (any, error) { return map[string]string{"Greeting": "hello <world>"}, nil }
	mux.Handle("GET /ui/hello", ui.Page("hello", hello))
	mux.Handle("GET /api/v1/hello", ui.API(hello))
	mux.Handle("POST /api/v1/act", ui.Action(func(*http.Request, webauth.User) (any, error) {
		s.acted.Add(1)
		return map[string]bool{"ok": true}, nil
	}))
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

type answer struct {
	code   int
	header http.Header
	body   string
}

// do sends one request without following redirects.
func (s *site) do(t *testing.T, method, path string, form url.Values, hdr map[string]string) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, s.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func cookie(token string) map[string]string {
	return map[string]string{"Cookie": webauth.CookieName + "=" + token}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestLoginKeepsTheTokenInAStrictCookie(t *testing.T) {
	s := newSite(t)
	// Anonymous: the page sends to the login form, the API says 401.
	a := s.do(t, "GET", "/ui/hello", nil, nil)
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/ui/login?next=%2Fui%2Fhello" {
		t.Fatalf("anonymous page: %d %q", a.code, a.header.Get("Location"))
	}
	a = s.do(t, "GET", "/api/v1/hello", nil, nil)
	if a.code != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") == "" || !strings.Contains(a.body, `"error"`) {
		t.Fatalf("anonymous API: %d %v %s", a.code, a.header, a.body)
	}
	// A token the cluster does not know: 401, no cookie, not echoed.
	bogus := "eyJhbGciOiJSUzI1NiJ9.bm90LWEtdG9rZW4.c2lnbmF0dXJl"
	a = s.do(t, "POST", "/ui/login", url.Values{"token": {bogus}}, nil)
	if a.code != http.StatusUnauthorized || a.header.Get("Set-Cookie") != "" || strings.Contains(a.body, bogus) || !strings.Contains(a.body, "did not accept") {
		t.Fatalf("bogus login: %d %q %s", a.code, a.header.Get("Set-Cookie"), a.body)
	}
	// The viewer's token: kept in an HttpOnly, Secure, SameSite=Strict cookie.
	a = s.do(t, "POST", "/ui/login", url.Values{"token": {s.viewer}, "next": {"/ui/hello"}}, nil)
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/ui/hello" {
		t.Fatalf("login: %d %q %s", a.code, a.header.Get("Location"), a.body)
	}
	resp := http.Response{Header: a.header}
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != webauth.CookieName || cs[0].Value != s.viewer || !cs[0].HttpOnly || !cs[0].Secure || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" {
		t.Fatalf("session cookie: %+v", cs)
	}
	// A return address elsewhere is dropped: no open redirect.
	for _, next := range []string{"//evil.example/ui/", "https://evil.example/ui/", "/ui/\\evil"} {
		a = s.do(t, "POST", "/ui/login", url.Values{"token": {s.viewer}, "next": {next}}, nil)
		if a.header.Get("Location") != "/ui/" {
			t.Fatalf("login with next %q redirects to %q", next, a.header.Get("Location"))
		}
	}
	a = s.do(t, "GET", "/ui/hello", nil, cookie(s.viewer))
	if a.code != http.StatusOK || !strings.Contains(a.body, `<p id="greeting">hello &lt;world&gt;</p>`) || strings.Contains(a.body, s.viewer) {
		t.Fatalf("page with the cookie: %d %s", a.code, a.body)
	}
	// A cookie whose token the cluster no longer accepts ends the session.
	a = s.do(t, "GET", "/ui/hello", nil, cookie(bogus))
	if a.code != http.StatusSeeOther || !strings.Contains(a.header.Get("Location"), "ended=1") || !strings.Contains(a.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("stale cookie: %d %v", a.code, a.header)
	}
}

func TestRBACDecidesPagesAPIAndActions(t *testing.T) {
	s := newSite(t)
	// Authenticated but not allowed to view: 403 on the page (saying what
	// is needed) and on the API. The login keeps the token so the page
	// can say who the user is.
	a := s.do(t, "POST", "/ui/login", url.Values{"token": {s.stranger}}, nil)
	if a.code != http.StatusSeeOther {
		t.Fatalf("stranger login: %d", a.code)
	}
	a = s.do(t, "GET", "/ui/hello", nil, cookie(s.stranger))
	if a.code != http.StatusForbidden || !strings.Contains(a.body, ":stranger") || !strings.Contains(a.body, "<code>get</code> on configmaps") || strings.Contains(a.body, "greeting") {
		t.Fatalf("stranger page: %d %s", a.code, a.body)
	}
	a = s.do(t, "GET", "/api/v1/hello", nil, map[string]string{"Authorization": "Bearer " + s.stranger})
	if a.code != http.StatusForbidden || strings.Contains(a.body, "hello") {
		t.Fatalf("stranger API: %d %s", a.code, a.body)
	}
	a = s.do(t, "GET", "/api/v1/hello", nil, map[string]string{"Authorization": "Bearer " + s.viewer})
	if a.code != http.StatusOK || a.body != `{"Greeting":"hello \u003cworld\u003e"}`+"\n" {
		t.Fatalf("viewer API: %d %s", a.code, a.body)
	}
	// Viewing does not grant acting.
	page := s.do(t, "GET", "/ui/hello", nil, cookie(s.viewer))
	m := csrfField.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no CSRF token on the page: %s", page.body)
	}
	a = s.do(t, "POST", "/api/v1/act", url.Values{"csrf": {m[1]}}, cookie(s.viewer))
	if a.code != http.StatusForbidden || s.acted.Load() != 0 {
		t.Fatalf("viewer acting: %d %s", a.code, a.body)
	}
	page = s.do(t, "GET", "/ui/hello", nil, cookie(s.actor))
	actorCSRF := csrfField.FindStringSubmatch(page.body)[1]
	if actorCSRF == m[1] {
		t.Fatal("two sessions share a CSRF token")
	}
	// The actor with the session cookie: only with the session's own CSRF token.
	for name, form := range map[string]url.Values{"no token": {}, "another session's token": {"csrf": {m[1]}}, "garbage": {"csrf": {"x"}}} {
		a = s.do(t, "POST", "/api/v1/act", form, cookie(s.actor))
		if a.code != http.StatusForbidden || !strings.Contains(a.body, "CSRF") || s.acted.Load() != 0 {
			t.Fatalf("actor with %s: %d %s", name, a.code, a.body)
		}
	}
	// A browser's cross-site POST is refused before anything else, even
	// with the right CSRF token.
	a = s.do(t, "POST", "/api/v1/act", url.Values{"csrf": {actorCSRF}}, map[string]string{"Cookie": webauth.CookieName + "=" + s.actor, "Sec-Fetch-Site": "cross-site"})
	if a.code != http.StatusForbidden || s.acted.Load() != 0 {
		t.Fatalf("cross-site action: %d %s", a.code, a.body)
	}
	a = s.do(t, "POST", "/ui/login", url.Values{"token": {s.actor}}, map[string]string{"Origin": "https://evil.example"})
	if a.code != http.StatusForbidden || a.header.Get("Set-Cookie") != "" {
		t.Fatalf("cross-origin login: %d %v", a.code, a.header)
	}
	a = s.do(t, "POST", "/api/v1/act", url.Values{"csrf": {actorCSRF}}, cookie(s.actor))
	if a.code != http.StatusOK || s.acted.Load() != 1 {
		t.Fatalf("actor acting: %d %s", a.code, a.body)
	}
	a = s.do(t, "POST", "/api/v1/act", url.Values{"csrf": {actorCSRF}, "next": {"/ui/hello"}}, cookie(s.actor))
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/ui/hello" || s.acted.Load() != 2 {
		t.Fatalf("actor acting from a form: %d %v", a.code, a.header)
	}
	// An API client with the Authorization header needs no CSRF token: a
	// browser never sends that header on its own.
	a = s.do(t, "POST", "/api/v1/act", nil, map[string]string{"Authorization": "Bearer " + s.actor})
	if a.code != http.StatusOK || s.acted.Load() != 3 {
		t.Fatalf("actor with a bearer header: %d %s", a.code, a.body)
	}
	// Logout needs the CSRF token too, and clears the cookie.
	a = s.do(t, "POST", "/ui/logout", url.Values{}, cookie(s.actor))
	if a.code != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", a.code)
	}
	a = s.do(t, "POST", "/ui/logout", url.Values{"csrf": {actorCSRF}}, cookie(s.actor))
	if a.code != http.StatusSeeOther || !strings.Contains(a.header.Get("Set-Cookie"), webauth.CookieName+"=;") || !strings.Contains(a.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %v", a.code, a.header)
	}
}

func TestSecurityHeadersAndEmbeddedAssets(t *testing.T) {
	s := newSite(t)
	for _, c := range []struct {
		method, path string
		hdr          map[string]string
	}{
		{"GET", "/ui/login", nil},
		{"GET", "/ui/hello", cookie(s.viewer)},
		{"GET", "/ui/hello", cookie(s.stranger)},
		{"GET", "/api/v1/hello", map[string]string{"Authorization": "Bearer " + s.viewer}},
		{"GET", "/api/v1/hello", nil},
		{"GET", "/ui/static/ui.css", nil},
	} {
		a := s.do(t, c.method, c.path, nil, c.hdr)
		h := a.header
		if h.Get("Content-Security-Policy") != webui.ContentSecurityPolicy || h.Get("X-Frame-Options") != "DENY" ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s %s: security headers missing: %v", c.method, c.path, h)
		}
		if cc := h.Get("Cache-Control"); !strings.HasPrefix(c.path, "/ui/static/") && cc != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", c.method, c.path, cc)
		}
	}
	for _, f := range []string{"ui.css", "ui.js"} {
		a := s.do(t, "GET", "/ui/static/"+f, nil, nil)
		if a.code != http.StatusOK || len(a.body) < 100 {
			t.Fatalf("static %s: %d", f, a.code)
		}
	}
	// Nothing is loaded from elsewhere: the pages name no other origin.
	login := s.do(t, "GET", "/ui/login", nil, nil).body
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(login) || strings.Contains(login, "<script>") {
		t.Fatalf("the login page loads something from another origin or inline: %s", login)
	}
}

// When the cluster cannot be asked, the answer says so (503), and does
// not pretend the token was wrong (401) or the user forbidden (403).
func TestClusterUnreachableIs503(t *testing.T) {
	cfg := rest.CopyConfig(cluster.Config)
	cfg.Host = "https://127.0.0.1:1"
	cfg.Timeout = 2 * time.Second
	attrs := webauth.Attributes{Verb: "get", Resource: "configmaps", Namespace: "x", Name: "driftless"}
	ui, err := webui.New(webauth.New(dynamic.NewForConfigOrDie(cfg)), webui.Options{Title: "Test", View: attrs, Act: attrs}, zap.NewNop(), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ui.Mount(mux)
	mux.Handle("GET /api/v1/hello", ui.API(func(*http.Request) (any, error) { return "hello", nil }))
	s := &site{srv: httptest.NewServer(mux)}
	defer s.srv.Close()
	if a := s.do(t, "GET", "/api/v1/hello", nil, map[string]string{"Authorization": "Bearer some-token"}); a.code != http.StatusServiceUnavailable || strings.Contains(a.body, "hello") {
		t.Fatalf("API: %d %s", a.code, a.body)
	}
	if a := s.do(t, "POST", "/ui/login", url.Values{"token": {"some-token"}}, nil); a.code != http.StatusServiceUnavailable || a.header.Get("Set-Cookie") != "" {
		t.Fatalf("login: %d %v", a.code, a.header)
	}
}
