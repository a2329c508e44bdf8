package webui

import "net/http"

// ContentSecurityPolicy allows only this origin's own scripts, styles and
// forms, and no framing: no inline script runs, nothing loads from a CDN.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// headers sets the security headers every answer of the UI and the API
// carries. Pages and API answers hold the cluster's state for one user:
// nothing may keep them.
func (u *UI) headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", ContentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// secure is headers, and refuses a state-changing request a browser sent
// from another origin (Sec-Fetch-Site / Origin), before any check of
// tokens: login CSRF and actions from other sites stop here, and the
// session-bound CSRF token is a second, independent guard on actions.
func (u *UI) secure(h http.Handler) http.Handler {
	return u.headers(u.cop.Handler(h))
}
