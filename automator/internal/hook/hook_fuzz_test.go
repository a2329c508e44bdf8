package hook_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"driftless.dev/automator/internal/hook"
)

// FuzzParse reads arbitrary notification bodies: no panic, and every push
// read names a repository and a tag (a push without a tag cannot change
// a choice). Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		pushes, err := hook.Parse(body)
		if err != nil {
			return
		}
		for _, p := range pushes {
			if p.Repository == "" || p.Tag == "" {
				t.Fatalf("push without a repository or a tag: %+v", p)
			}
		}
	})
}

// FuzzRegistryWebhook sends arbitrary bodies, with the right secret, a
// wrong one or none: no panic; only an authorized request with a body
// that parses triggers, and only the policies its pushes match; a
// refused request triggers nothing; no answer echoes the secret. Seeds:
// testdata/fuzz/FuzzRegistryWebhook.
func FuzzRegistryWebhook(f *testing.F) {
	const secret = "fuzz-hook-s3cret"
	f.Fuzz(func(t *testing.T, body string, auth uint8) {
		tg := &target{}
		h := &hook.Handler{Secret: secret, Target: tg, Log: zap.NewNop()}
		url := "/hooks/registry"
		req := httptest.NewRequest(http.MethodPost, url, strings.NewReader(body))
		switch auth % 4 {
		case 0:
			req.Header.Set("Authorization", "Bearer "+secret)
		case 1:
			req = httptest.NewRequest(http.MethodPost, url+"?token="+secret, strings.NewReader(body))
		case 2:
			req.Header.Set("Authorization", "Bearer "+secret+"x")
		}
		authorized := auth%4 < 2
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		tg.mu.Lock()
		triggered := tg.triggered
		tg.mu.Unlock()
		switch {
		case !authorized && (rec.Code != http.StatusUnauthorized || len(triggered) > 0):
			t.Fatalf("unauthorized request: %d, triggered %v", rec.Code, triggered)
		case authorized && rec.Code == http.StatusOK:
			pushes, err := hook.Parse([]byte(body))
			if err != nil {
				t.Fatalf("answered 200 to a body Parse refuses: %v", err)
			}
			want := 0
			for _, p := range pushes {
				want += len(tg.Match(p.Host, p.Repository))
			}
			if len(triggered) != want {
				t.Fatalf("triggered %v for %d matching pushes", triggered, want)
			}
		case authorized && rec.Code != http.StatusBadRequest:
			t.Fatalf("authorized request: %d", rec.Code)
		case len(triggered) > 0 && rec.Code != http.StatusOK:
			t.Fatalf("triggered %v and answered %d", triggered, rec.Code)
		}
		if strings.Contains(rec.Body.String(), secret) {
			t.Fatal("the secret was echoed")
		}
	})
}
