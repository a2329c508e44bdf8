package hook_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"driftless.dev/automator/internal/hook"
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
