package hook_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"driftless.dev/synchronizer/internal/hook"
)

func TestSendersAndSignatures(t *testing.T) {
	secret := []byte("hook-s3cret")
	var fired atomic.Int32
	leading := true
	h := &hook.Handler{Secret: secret, Ref: "refs/heads/main", Trigger: func() { fired.Add(1) }, Leading: func() bool { return leading }, Log: zap.NewNop()}
	body := `{"ref":"refs/heads/main","after":"abc"}`
	sig := hook.Sign(secret, []byte(body))
	cases := []struct {
		name   string
		header map[string]string
		body   string
		code   int
		fires  bool
	}{
		{"github", map[string]string{"X-Hub-Signature-256": sig, "X-GitHub-Event": "push"}, body, 202, true},
		{"gitea", map[string]string{"X-Gitea-Signature": strings.TrimPrefix(sig, "sha256=")}, body, 202, true},
		{"gitlab", map[string]string{"X-Gitlab-Token": "hook-s3cret"}, body, 202, true},
		{"generic", map[string]string{"X-Driftless-Signature": hook.Sign(secret, []byte(`{}`))}, `{}`, 202, true},
		{"bad signature", map[string]string{"X-Hub-Signature-256": hook.Sign([]byte("wrong"), []byte(body))}, body, 401, false},
		{"body changed after signing", map[string]string{"X-Hub-Signature-256": sig}, `{"ref":"refs/heads/main","after":"evil"}`, 401, false},
		{"wrong gitlab token", map[string]string{"X-Gitlab-Token": "nope"}, body, 401, false},
		{"no proof", nil, body, 401, false},
		{"another branch", map[string]string{"X-Hub-Signature-256": hook.Sign(secret, []byte(`{"ref":"refs/heads/dev"}`))}, `{"ref":"refs/heads/dev"}`, 200, false},
		{"not JSON", map[string]string{"X-Driftless-Signature": hook.Sign(secret, []byte(`nope`))}, `nope`, 400, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fired.Load()
			req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(c.body))
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.code || (fired.Load() > before) != c.fires {
				t.Fatalf("code %d (want %d), fired %v (want %v): %s", rec.Code, c.code, fired.Load() > before, c.fires, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "s3cret") {
				t.Fatal("the secret was echoed")
			}
		})
	}
	leading = false
	req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", sig)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("standby replica answered %d", rec.Code)
	}
}
