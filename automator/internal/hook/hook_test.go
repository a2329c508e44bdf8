package hook_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/util/wait"

	"driftless.dev/automator/internal/hook"
	"driftless.dev/shared/webhook"
)

type target struct {
	mu        sync.Mutex
	triggered []string
}

func (t *target) Match(host, repo string) []string {
	switch {
	case repo == "team/web" && (host == "" || host == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"):
		return []string{"apps:web"}
	case repo == "library/nginx" && host == "index.docker.io":
		return []string{"nginx"}
	}
	return nil
}

func (t *target) Trigger(keys []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.triggered = append(t.triggered, keys...)
}

func TestNotificationsTriggerTheirPolicies(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"distribution", `{"events":[{"action":"pull","target":{"repository":"team/web","tag":"1.0.0"}},{"action":"push","target":{"repository":"team/web","tag":"1.1.0"}},{"action":"push","target":{"repository":"team/web"}}]}`, []string{"apps:web"}},
		{"docker hub", `{"push_data":{"tag":"1.27"},"repository":{"repo_name":"nginx"}}`, []string{"nginx"}},
		{"eventbridge ecr push", `{"detail-type":"ECR Image Action","account":"123456789012","region":"eu-west-1","detail":{"action-type":"PUSH","result":"SUCCESS","repository-name":"team/web","image-tag":"1.2.0"}}`, []string{"apps:web"}},
		{"eventbridge ecr delete", `{"detail-type":"ECR Image Action","account":"123456789012","region":"eu-west-1","detail":{"action-type":"DELETE","result":"SUCCESS","repository-name":"team/web","image-tag":"1.2.0"}}`, nil},
		{"eventbridge other account", `{"detail-type":"ECR Image Action","account":"999999999999","region":"eu-west-1","detail":{"action-type":"PUSH","result":"SUCCESS","repository-name":"team/web","image-tag":"1.2.0"}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := &target{}
			srv := httptest.NewServer(&hook.Handler{Secret: "hook-secret", Target: tg, Log: zaptest.NewLogger(t)})
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer hook-secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !slices.Equal(tg.triggered, tc.want) {
				t.Fatalf("status %d, triggered %v, want %v", resp.StatusCode, tg.triggered, tc.want)
			}
		})
	}
}

func TestSecretAndLeadership(t *testing.T) {
	tg := &target{}
	leading := false
	srv := httptest.NewServer(&hook.Handler{Secret: "hook-secret", Target: tg, Log: zaptest.NewLogger(t), Leading: func() bool { return leading }})
	defer srv.Close()
	body := `{"events":[{"action":"push","target":{"repository":"team/web","tag":"1.1.0"}}]}`
	post := func(url, auth string) int {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post(srv.URL, ""); s != http.StatusUnauthorized {
		t.Fatalf("no secret: %d", s)
	}
	if s := post(srv.URL, "Bearer wrong"); s != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", s)
	}
	if s := post(srv.URL, "Bearer hook-secret"); s != http.StatusServiceUnavailable {
		t.Fatalf("standby replica: %d, want 503 so the sender retries", s)
	}
	leading = true
	if s := post(srv.URL+"?token=hook-secret", ""); s != http.StatusOK {
		t.Fatalf("secret in the query (Docker Hub): %d", s)
	}
	if len(tg.triggered) != 1 {
		t.Fatalf("triggered %v, want once", tg.triggered)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"something":"else"}`))
	req.Header.Set("Authorization", "Bearer hook-secret")
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown payload: %d, want 400", resp.StatusCode)
	}
}

func post(t *testing.T, url, auth string, body io.Reader) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

const push = `{"events":[{"action":"push","target":{"repository":"team/web","tag":"1.1.0"}}]}`

// TestBodiesAreBounded: 1 MiB of body at most; with a secret, nothing of
// an unauthenticated body is read (an endless one is answered at once).
func TestBodiesAreBounded(t *testing.T) {
	tg := &target{}
	srv := httptest.NewServer(&hook.Handler{Secret: "hook-secret", Target: tg, Log: zaptest.NewLogger(t)})
	defer srv.Close()
	big := `{"events":[{"action":"push","target":{"repository":"team/web","tag":"1.1.0"}}],"pad":"` + strings.Repeat("x", hook.MaxBody) + `"}`
	if s := post(t, srv.URL, "Bearer hook-secret", strings.NewReader(big)); s != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over 1 MiB: %d, want 413", s)
	}
	if len(tg.triggered) != 0 {
		t.Fatalf("an oversized notification triggered %v", tg.triggered)
	}
	// A real-sized one with padding passes.
	ok := `{"events":[{"action":"push","target":{"repository":"team/web","tag":"1.1.0"}}],"pad":"` + strings.Repeat("x", 64<<10) + `"}`
	if s := post(t, srv.URL, "Bearer hook-secret", strings.NewReader(ok)); s != http.StatusOK {
		t.Fatalf("a 64 KiB notification: %d", s)
	}
	// Without the secret, an endless body is not read: answered 401.
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { pw.Write([]byte(`{"events":[`)) }()
	if s := post(t, srv.URL, "", pr); s != http.StatusUnauthorized {
		t.Fatalf("unauthenticated endless body: %d, want 401", s)
	}
}

// TestConcurrentReadsAreCapped: without a secret every read is
// unauthenticated; bodies held open by slow senders take at most
// Concurrent slots, the next sender gets 503 (and retries), and a freed
// slot serves again.
func TestConcurrentReadsAreCapped(t *testing.T) {
	tg := &target{}
	srv := httptest.NewServer(&hook.Handler{Target: tg, Log: zaptest.NewLogger(t), Concurrent: 2})
	defer srv.Close()
	// Two slow senders: each sends the start of a body and holds it open.
	// One turned away (the other and a probe held both slots a moment)
	// tries again, as real senders retry a 503.
	var mu sync.Mutex
	var open []*io.PipeWriter
	done := false
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				pr, pw := io.Pipe()
				mu.Lock()
				if done {
					mu.Unlock()
					return
				}
				open = append(open, pw)
				mu.Unlock()
				go pw.Write([]byte(`{"events":[`))
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, pr)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					return
				}
			}
		})
	}
	status := func() int { return post(t, srv.URL, "", strings.NewReader(push)) }
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return status() == http.StatusServiceUnavailable, nil
	})
	if err != nil {
		t.Fatal("two bodies held open, and another request still got a reading slot")
	}
	mu.Lock()
	done = true
	for _, pw := range open {
		pw.Close()
	}
	mu.Unlock()
	wg.Wait()
	if s := status(); s != http.StatusOK {
		t.Fatalf("after the slow senders ended: %d, want 200", s)
	}
}

func TestGitPushTriggersTheGates(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"ref":"refs/notes/driftless"}`)
	cases := []struct {
		name    string
		secret  []byte
		headers map[string]string
		leading bool
		code    int
	}{
		{"github signature", secret, map[string]string{"X-Hub-Signature-256": webhook.Sign(secret, body)}, true, http.StatusAccepted},
		{"gitea signature", secret, map[string]string{"X-Gitea-Signature": strings.TrimPrefix(webhook.Sign(secret, body), "sha256=")}, true, http.StatusAccepted},
		{"gitlab token", secret, map[string]string{"X-Gitlab-Token": "s3cret"}, true, http.StatusAccepted},
		{"wrong signature", secret, map[string]string{"X-Hub-Signature-256": webhook.Sign([]byte("other"), body)}, true, http.StatusUnauthorized},
		{"wrong gitlab token", secret, map[string]string{"X-Gitlab-Token": "s3cre"}, true, http.StatusUnauthorized},
		{"unsigned", secret, nil, true, http.StatusUnauthorized},
		{"no secret configured", nil, nil, true, http.StatusAccepted},
		{"standby", secret, map[string]string{"X-Hub-Signature-256": webhook.Sign(secret, body)}, false, http.StatusServiceUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			triggered := 0
			h := &hook.GitHandler{Secret: c.secret, Trigger: func() { triggered++ }, Leading: func() bool { return c.leading }, Log: zap.NewNop()}
			req := httptest.NewRequest(http.MethodPost, "/hooks/git", bytes.NewReader(body))
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.code || (triggered == 1) != (c.code == http.StatusAccepted) {
				t.Fatalf("status %d (want %d), triggered %d", rec.Code, c.code, triggered)
			}
			if strings.Contains(rec.Body.String(), "s3cre") {
				t.Fatal("the answer echoes the secret")
			}
		})
	}
}
