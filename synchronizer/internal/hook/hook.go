// Package hook receives Git push webhooks at /hooks/git and turns a push
// to the followed ref into an immediate fetch. It checks GitHub's and
// Gitea's HMAC signatures, GitLab's token, and a generic HMAC header for
// any other sender.
package hook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// Handler serves the webhook.
type Handler struct {
	// Secret is the shared webhook secret; empty accepts any request
	// (for a cluster-internal sender only).
	Secret []byte
	// Ref is the followed ref, e.g. refs/heads/main: pushes to other
	// refs are acknowledged and ignored.
	Ref string
	// Trigger asks for a pass now.
	Trigger func()
	// Leading reports whether this replica applies; a standby answers
	// 503 so the sender retries.
	Leading func() bool
	Log     *zap.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a push event", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	sender, ok := h.authenticate(r, body)
	if !ok {
		// Never echo what was sent: it may be a near-miss secret.
		http.Error(w, "missing or wrong signature", http.StatusUnauthorized)
		return
	}
	if h.Leading != nil && !h.Leading() {
		http.Error(w, "not the leader; retry", http.StatusServiceUnavailable)
		return
	}
	var push struct {
		Ref string `json:"ref"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &push); err != nil {
			http.Error(w, "body is not a JSON object: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if push.Ref != "" && h.Ref != "" && push.Ref != h.Ref {
		h.Log.Debug("git push to another ref", zap.String("sender", sender), zap.String("ref", push.Ref))
		_ = json.NewEncoder(w).Encode(map[string]any{"triggered": false, "reason": "push to " + push.Ref + ", following " + h.Ref})
		return
	}
	h.Trigger()
	h.Log.Info("git push webhook", zap.String("sender", sender), zap.String("ref", push.Ref))
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{"triggered": true})
}

// authenticate checks whichever proof the sender's kind presents.
func (h *Handler) authenticate(r *http.Request, body []byte) (string, bool) {
	sig := func(header, prefix string) (string, bool) {
		v := r.Header.Get(header)
		if v == "" || !strings.HasPrefix(v, prefix) {
			return "", false
		}
		return strings.TrimPrefix(v, prefix), true
	}
	if len(h.Secret) == 0 {
		return "unauthenticated", true
	}
	if v, ok := sig("X-Hub-Signature-256", "sha256="); ok {
		return "github", h.validMAC(body, v)
	}
	if v, ok := sig("X-Gitea-Signature", ""); ok {
		return "gitea", h.validMAC(body, v)
	}
	if v, ok := sig("X-Driftless-Signature", "sha256="); ok {
		return "generic", h.validMAC(body, v)
	}
	if v, ok := sig("X-Gitlab-Token", ""); ok {
		// GitLab sends the secret itself, not a signature.
		return "gitlab", subtle.ConstantTimeCompare([]byte(v), h.Secret) == 1
	}
	return "", false
}

func (h *Handler) validMAC(body []byte, hexSig string) bool {
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, h.Secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// Sign returns the X-Driftless-Signature (and GitHub) header value for
// body: what a generic sender computes.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
