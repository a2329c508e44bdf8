package hook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"driftless.dev/shared/webhook"
	"driftless.dev/synchronizer/internal/hook"
)

// TestBadInputGitWebhook: each bad push webhook is refused with a status
// and a message saying what was expected, triggers no pass, and never
// echoes the secret.
func TestBadInputGitWebhook(t *testing.T) {
	secret := []byte("hook-s3cret")
	sign := func(body string) map[string]string {
		return map[string]string{"X-Hub-Signature-256": webhook.Sign(secret, []byte(body))}
	}
	big := `{"ref":"refs/heads/main","pad":"` + strings.Repeat("x", webhook.MaxBody) + `"}`
	for _, tc := range []struct {
		name, method, body string
		headers            map[string]string
		code               int
		want               string
	}{
		{"no signature", http.MethodPost, `{"ref":"refs/heads/main"}`, nil, 401, "missing or wrong signature"},
		{"a signature with the wrong secret", http.MethodPost, `{"ref":"refs/heads/main"}`, map[string]string{"X-Hub-Signature-256": webhook.Sign([]byte("other"), []byte(`{"ref":"refs/heads/main"}`))}, 401, "missing or wrong signature"},
		{"a signature of another body", http.MethodPost, `{"ref":"refs/heads/main"}`, sign(`{"ref":"refs/heads/dev"}`), 401, "missing or wrong signature"},
		{"a SHA-1 signature", http.MethodPost, `{"ref":"refs/heads/main"}`, map[string]string{"X-Hub-Signature": "sha1=00"}, 401, "missing or wrong signature"},
		{"a wrong GitLab token", http.MethodPost, `{"ref":"refs/heads/main"}`, map[string]string{"X-Gitlab-Token": "hook-s3cre"}, 401, "missing or wrong signature"},
		{"a body that is not JSON", http.MethodPost, `ref=refs/heads/main`, sign(`ref=refs/heads/main`), 400, "body is not a JSON object"},
		{"a JSON array", http.MethodPost, `["refs/heads/main"]`, sign(`["refs/heads/main"]`), 400, "want an object"},
		{"a body cut short", http.MethodPost, `{"ref":"refs/heads/main"`, sign(`{"ref":"refs/heads/main"`), 400, "body is not a JSON object"},
		{"a body over 25 MiB", http.MethodPost, big, sign(big), 413, "body larger than 25 MiB"},
		{"a GET", http.MethodGet, ``, nil, 405, "POST a push event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fired := false
			h := &hook.Handler{Secret: secret, Ref: "refs/heads/main", Trigger: func() { fired = true }, Log: zap.NewNop()}
			req := httptest.NewRequest(tc.method, "/hooks/git", strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Fatalf("answered %d %q, want %d %q", rec.Code, body, tc.code, tc.want)
			}
			if fired {
				t.Fatal("a pass was triggered")
			}
			if strings.Contains(string(body), string(secret)) {
				t.Fatal("the secret was echoed")
			}
		})
	}
}
