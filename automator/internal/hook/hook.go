// Package hook receives registry push notifications at /hooks/registry
// and turns them into immediate scans of the policies they concern.
// It understands CNCF distribution notifications, Docker Hub webhooks and
// ECR push events as Amazon EventBridge delivers them (an API destination
// or any forwarder that posts the event JSON).
package hook

import (
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Push is one image pushed, as far as the sender says.
type Push struct {
	// Host is the registry host when the sender names it canonically
	// (ECR); empty when it cannot be trusted to match the policy's host.
	Host string
	// Repository is the repository path, "team/app".
	Repository string
	Tag        string
}

// Target is what the handler needs from the automator.
type Target interface {
	// Match returns the policy keys watching repository repo (on host).
	Match(host, repo string) []string
	// Trigger scans those policies now.
	Trigger(keys []string)
}

// MaxBody bounds a notification's body. Real ones are small (a
// distribution envelope, a Docker Hub webhook, an EventBridge event: a few
// KiB); more is refused with 413 without being read.
const MaxBody = 1 << 20

// DefaultConcurrent is how many bodies are read at once by default.
const DefaultConcurrent = 16

// readTimeout bounds reading one body, so a sender that trickles it
// cannot hold a reading slot.
const readTimeout = 10 * time.Second

// Handler serves the webhook.
type Handler struct {
	// Secret must be presented as "Authorization: Bearer <secret>" or
	// the query parameter token=<secret> (for senders that cannot set
	// headers, such as Docker Hub). Empty disables the check.
	Secret string
	Target Target
	// Leading reports whether this replica runs the loop; a standby
	// answers 503 so the sender retries and reaches the leader.
	Leading func() bool
	Log     *zap.Logger
	// Concurrent bounds the bodies read at once; a request beyond it gets
	// 503 (senders retry) instead of memory. Default DefaultConcurrent.
	Concurrent int

	once sync.Once
	sem  chan struct{}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a registry notification", http.StatusMethodNotAllowed)
		return
	}
	if h.Secret != "" && !h.authorized(r) {
		// Never echo what was sent: it may be a near-miss secret. The
		// connection is closed, so the server does not read the body
		// either (it would, to reuse the connection).
		w.Header().Set("Connection", "close")
		http.Error(w, "missing or wrong secret", http.StatusUnauthorized)
		return
	}
	if h.Leading != nil && !h.Leading() {
		w.Header().Set("Connection", "close")
		http.Error(w, "not the leader; retry", http.StatusServiceUnavailable)
		return
	}
	// The secret is checked above from headers alone: nothing of an
	// unauthenticated request's body is read when a secret is set. Reads
	// are bounded in size, time and number.
	h.once.Do(func() { h.sem = make(chan struct{}, cmp.Or(h.Concurrent, DefaultConcurrent)) })
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		w.Header().Set("Connection", "close")
		http.Error(w, "busy; retry", http.StatusServiceUnavailable)
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(readTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		w.Header().Set("Connection", "close")
		http.Error(w, fmt.Sprintf("notification larger than %d bytes", MaxBody), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	pushes, err := Parse(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var keys []string
	for _, p := range pushes {
		keys = append(keys, h.Target.Match(p.Host, p.Repository)...)
	}
	if len(keys) > 0 {
		h.Target.Trigger(keys)
	}
	h.Log.Info("registry notification", zap.Int("pushes", len(pushes)), zap.Strings("policies", keys))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"triggered": keys})
}

func (h *Handler) authorized(r *http.Request) bool {
	got := r.URL.Query().Get("token")
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		got = strings.TrimPrefix(a, "Bearer ")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(h.Secret)) == 1
}

// Parse reads the pushes out of a notification of any supported kind.
func Parse(body []byte) ([]Push, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	switch {
	case probe["events"] != nil:
		return parseDistribution(body)
	case probe["push_data"] != nil:
		return parseDockerHub(body)
	case probe["detail-type"] != nil:
		return parseEventBridge(body)
	}
	return nil, errors.New("unknown notification: want a distribution envelope (events), a Docker Hub webhook (push_data) or an EventBridge ECR event (detail-type)")
}

func parseDistribution(body []byte) ([]Push, error) {
	var env struct {
		Events []struct {
			Action string `json:"action"`
			Target struct {
				Repository string `json:"repository"`
				Tag        string `json:"tag"`
			} `json:"target"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("distribution notification: %v", err)
	}
	var out []Push
	for _, e := range env.Events {
		// Only a tag pushed can change a choice; blob pushes and pulls
		// cannot.
		if e.Action == "push" && e.Target.Tag != "" && e.Target.Repository != "" {
			out = append(out, Push{Repository: e.Target.Repository, Tag: e.Target.Tag})
		}
	}
	return out, nil
}

func parseDockerHub(body []byte) ([]Push, error) {
	var ev struct {
		PushData struct {
			Tag string `json:"tag"`
		} `json:"push_data"`
		Repository struct {
			RepoName string `json:"repo_name"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Repository.RepoName == "" || ev.PushData.Tag == "" {
		return nil, errors.New("webhook from Docker Hub: want repository.repo_name and push_data.tag")
	}
	repo := ev.Repository.RepoName
	if !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return []Push{{Host: "index.docker.io", Repository: repo, Tag: ev.PushData.Tag}}, nil
}

func parseEventBridge(body []byte) ([]Push, error) {
	var ev struct {
		DetailType string `json:"detail-type"`
		Account    string `json:"account"`
		Region     string `json:"region"`
		Detail     struct {
			ActionType     string `json:"action-type"`
			Result         string `json:"result"`
			RepositoryName string `json:"repository-name"`
			ImageTag       string `json:"image-tag"`
		} `json:"detail"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, fmt.Errorf("event from EventBridge: %v", err)
	}
	if ev.DetailType != "ECR Image Action" || ev.Detail.ActionType != "PUSH" || ev.Detail.Result != "SUCCESS" || ev.Detail.ImageTag == "" {
		return nil, nil
	}
	if ev.Account == "" || ev.Region == "" || ev.Detail.RepositoryName == "" {
		return nil, errors.New("ECR push event from EventBridge: want account, region and detail.repository-name")
	}
	host := fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com", ev.Account, ev.Region)
	return []Push{{Host: host, Repository: ev.Detail.RepositoryName, Tag: ev.Detail.ImageTag}}, nil
}
