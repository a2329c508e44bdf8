package hook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"driftless.dev/automator/internal/hook"
)

// TestBadInputRegistryWebhook: each bad registry notification is refused
// with a status and a message saying what was expected, scans nothing,
// and never echoes the secret.
func TestBadInputRegistryWebhook(t *testing.T) {
	const secret = "hook-s3cret"
	bearer := map[string]string{"Authorization": "Bearer " + secret}
	for _, tc := range []struct {
		name, method, body string
		headers            map[string]string
		code               int
		want               string
	}{
		{"no secret", http.MethodPost, `{"events":[]}`, nil, 401, "missing or wrong secret"},
		{"a wrong secret", http.MethodPost, `{"events":[]}`, map[string]string{"Authorization": "Bearer hook-s3cre"}, 401, "missing or wrong secret"},
		{"the secret as Basic credentials", http.MethodPost, `{"events":[]}`, map[string]string{"Authorization": "Basic " + secret}, 401, "missing or wrong secret"},
		{"a body that is not JSON", http.MethodPost, `events: []`, bearer, 400, "not a JSON object"},
		{"an unknown notification", http.MethodPost, `{"hello":"world"}`, bearer, 400, "unknown notification: want a distribution envelope (events), a Docker Hub webhook (push_data) or an EventBridge ECR event (detail-type)"},
		{"a Docker Hub webhook without a tag", http.MethodPost, `{"push_data":{},"repository":{"repo_name":"team/web"}}`, bearer, 400, "want repository.repo_name and push_data.tag"},
		{"a Docker Hub webhook without a repository", http.MethodPost, `{"push_data":{"tag":"1.0"},"repository":{}}`, bearer, 400, "want repository.repo_name and push_data.tag"},
		{"an ECR push event without its repository", http.MethodPost, `{"detail-type":"ECR Image Action","account":"123456789012","region":"eu-west-1","detail":{"action-type":"PUSH","result":"SUCCESS","image-tag":"1.2.0"}}`, bearer, 400, "want account, region and detail.repository-name"},
		{"a distribution envelope of the wrong shape", http.MethodPost, `{"events":{"action":"push"}}`, bearer, 400, "distribution notification"},
		{"a body over 1 MiB", http.MethodPost, `{"events":[],"pad":"` + strings.Repeat("x", hook.MaxBody) + `"}`, bearer, 413, "notification larger than"},
		{"a GET", http.MethodGet, ``, bearer, 405, "POST a registry notification"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := &target{}
			h := &hook.Handler{Secret: secret, Target: tg, Log: zap.NewNop()}
			req := httptest.NewRequest(tc.method, "/hooks/registry", strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Fatalf("answered %d %q, want %d %q", rec.Code, body, tc.code, tc.want)
			}
			if len(tg.triggered) > 0 {
				t.Fatalf("scans triggered: %v", tg.triggered)
			}
			if strings.Contains(string(body), secret) {
				t.Fatal("the secret was echoed")
			}
		})
	}
}
