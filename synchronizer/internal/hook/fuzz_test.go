package hook_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"driftless.dev/shared/webhook"
	"driftless.dev/synchronizer/internal/hook"
)

// FuzzWebhook sends arbitrary bodies, signed and not: the handler never
// panics, triggers only for a correctly signed push to the followed ref
// (or a body without a ref), and never echoes the secret.
func FuzzWebhook(f *testing.F) {
	for _, seed := range []string{`{"ref":"refs/heads/main"}`, `{"ref":"refs/heads/dev","commits":[{"id":"x"}]}`, `{}`, ``, `[]`, `{"ref":1}`,
		`{"ref":"refs/heads/main","ref":"refs/heads/dev"}`, `{"a":{"b":[1,2,{"c":"d"}]},"ref":"refs/heads/main"}`, `{"ref":"refs/heads/main"`, "\x00\xff"} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	secret := []byte("fuzz-s3cret")
	f.Fuzz(func(t *testing.T, body string, signed bool) {
		fired := false
		h := &hook.Handler{Secret: secret, Ref: "refs/heads/main", Trigger: func() { fired = true }, Log: zap.NewNop()}
		req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(body))
		if signed {
			req.Header.Set("X-Hub-Signature-256", webhook.Sign(secret, []byte(body)))
		} else {
			req.Header.Set("X-Hub-Signature-256", webhook.Sign([]byte("other"), []byte(body)))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if fired && (!signed || rec.Code != http.StatusAccepted) {
			t.Fatalf("triggered by an unsigned or refused request (%d)", rec.Code)
		}
		if !signed && rec.Code != http.StatusUnauthorized {
			t.Fatalf("a wrongly signed request got %d", rec.Code)
		}
		if strings.Contains(rec.Body.String(), string(secret)) {
			t.Fatal("the secret was echoed")
		}
	})
}
