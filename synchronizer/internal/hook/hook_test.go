package hook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"driftless.dev/shared/webhook"
	"driftless.dev/synchronizer/internal/hook"
)

func TestSendersAndSignatures(t *testing.T) {
	secret := []byte("hook-s3cret")
	var fired atomic.Int32
	leading := true
	h := &hook.Handler{Secret: secret, Ref: "refs/heads/main", Trigger: func() { fired.Add(1) }, Leading: func() bool { return leading }, Log: zap.NewNop()}
	body := `{"ref":"refs/heads/main","after":"abc"}`
	sig := webhook.Sign(secret, []byte(body))
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
		{"generic", map[string]string{"X-Driftless-Signature": webhook.Sign(secret, []byte(`{}`))}, `{}`, 202, true},
		{"bad signature", map[string]string{"X-Hub-Signature-256": webhook.Sign([]byte("wrong"), []byte(body))}, body, 401, false},
		{"body changed after signing", map[string]string{"X-Hub-Signature-256": sig}, `{"ref":"refs/heads/main","after":"evil"}`, 401, false},
		{"wrong gitlab token", map[string]string{"X-Gitlab-Token": "nope"}, body, 401, false},
		{"no proof", nil, body, 401, false},
		{"another branch", map[string]string{"X-Hub-Signature-256": webhook.Sign(secret, []byte(`{"ref":"refs/heads/dev"}`))}, `{"ref":"refs/heads/dev"}`, 200, false},
		{"not JSON", map[string]string{"X-Driftless-Signature": webhook.Sign(secret, []byte(`nope`))}, `nope`, 400, false},
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

// A push payload of many megabytes is read as a stream: accepted when
// signed, refused when the signature does not match, and a body over the
// limit is refused outright.
func TestLargeBodiesStream(t *testing.T) {
	secret := []byte("hook-s3cret")
	var fired atomic.Int32
	h := &hook.Handler{Secret: secret, Ref: "refs/heads/main", Trigger: func() { fired.Add(1) }, Log: zap.NewNop()}
	big := `{"commits":[` + strings.Repeat(`{"message":"`+strings.Repeat("x", 1000)+`"},`, 5000) + `{}],"ref":"refs/heads/main"}`
	send := func(body, sig string) int {
		req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := send(big, webhook.Sign(secret, []byte(big))); code != http.StatusAccepted || fired.Load() != 1 {
		t.Fatalf("5 MB signed push: %d, fired %d", code, fired.Load())
	}
	if code := send(big, webhook.Sign([]byte("wrong"), []byte(big))); code != http.StatusUnauthorized {
		t.Fatalf("5 MB push, wrong signature: %d", code)
	}
	huge := strings.Repeat(" ", webhook.MaxBody+1)
	if code := send(huge, webhook.Sign(secret, []byte(huge))); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("body over the limit: %d", code)
	}
}

// Requests whose bodies are still being read are capped: a sender that
// stalls many of them gets 503 for the rest instead of the heap.
func TestUnauthenticatedReadsAreCapped(t *testing.T) {
	h := &hook.Handler{Secret: []byte("s"), Ref: "refs/heads/main", Trigger: func() {}, Log: zap.NewNop()}
	release := make(chan struct{})
	reading := make(chan struct{}, hook.MaxConcurrent)
	done := make(chan int, hook.MaxConcurrent)
	for range hook.MaxConcurrent {
		pr, pw := io.Pipe()
		go func() { <-release; pw.Close() }()
		req := httptest.NewRequest(http.MethodPost, "/hooks/git", &signalling{r: pr, first: reading})
		req.Header.Set("X-Hub-Signature-256", "sha256=00")
		go func() {
			// A stalled reader can lose its slot to a probe below, which
			// holds one for a moment: then it is turned away (503) before
			// reading, and tries again, as a sender would.
			for {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusServiceUnavailable {
					done <- rec.Code
					return
				}
				runtime.Gosched()
			}
		}()
	}
	// Every stalled request holds a slot once it reads its body.
	for range hook.MaxConcurrent {
		select {
		case <-reading:
		case <-time.After(10 * time.Second):
			t.Fatal("the stalled requests never started reading")
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader("{}"))
	req.Header.Set("X-Hub-Signature-256", "sha256=00")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("with %d stalled readers a new request got %d, want 503", hook.MaxConcurrent, rec.Code)
	}
	close(release)
	for range hook.MaxConcurrent {
		if code := <-done; code != http.StatusUnauthorized {
			t.Fatalf("stalled request ended with %d", code)
		}
	}
}

// signalling tells first when its body is first read.
type signalling struct {
	r     io.Reader
	once  bool
	first chan<- struct{}
}

func (s *signalling) Read(p []byte) (int, error) {
	if !s.once {
		s.once = true
		s.first <- struct{}{}
	}
	return s.r.Read(p)
}
