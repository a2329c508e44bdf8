package hook

import (
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"driftless.dev/shared/webhook"
)

// GitHandler serves /hooks/git: the Git host's push webhook, for any ref
// (a synchronizer's record is a push of the notes ref). It asks for an
// evaluation of the promotion gates and the revert rule at once, which
// fetch what moved themselves: nothing of the body is used but its
// signature.
type GitHandler struct {
	// Secret authenticates the sender: the HMAC-SHA256 of the body in
	// X-Hub-Signature-256 (GitHub), X-Gitea-Signature (Gitea, Forgejo) or
	// X-Driftless-Signature, or the secret itself in X-Gitlab-Token.
	// Empty accepts any sender (cluster-internal ones only).
	Secret []byte
	// Trigger asks for an evaluation.
	Trigger func()
	// Leading reports whether this replica runs the gates; a standby
	// answers 503 so the sender retries and reaches the leader.
	Leading func() bool
	Log     *zap.Logger

	once sync.Once
	gate *webhook.Gate
}

// gitConcurrent bounds the bodies streamed through their MAC at once.
const gitConcurrent = 8

func (h *GitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Leading != nil && !h.Leading() {
		w.Header().Set("Connection", "close")
		http.Error(w, "not the leader; retry", http.StatusServiceUnavailable)
		return
	}
	h.once.Do(func() { h.gate = webhook.NewGate(gitConcurrent) })
	if len(h.Secret) > 0 && !h.authorized(w, r) {
		return
	}
	h.Trigger()
	h.Log.Debug("git push notification")
	w.WriteHeader(http.StatusAccepted)
}

// authorized checks the sender, answering the refusal itself.
func (h *GitHandler) authorized(w http.ResponseWriter, r *http.Request) bool {
	refuse := func(code int, msg string) bool {
		w.Header().Set("Connection", "close")
		http.Error(w, msg, code)
		return false
	}
	if tok := r.Header.Get("X-Gitlab-Token"); tok != "" {
		if subtle.ConstantTimeCompare([]byte(tok), h.Secret) != 1 {
			return refuse(http.StatusUnauthorized, "wrong secret")
		}
		return true
	}
	sig := r.Header.Get("X-Hub-Signature-256")
	for _, name := range []string{"X-Gitea-Signature", "X-Driftless-Signature"} {
		if sig == "" {
			sig = r.Header.Get(name)
		}
	}
	if sig == "" {
		return refuse(http.StatusUnauthorized, "missing signature")
	}
	if !h.gate.Enter() {
		return refuse(http.StatusServiceUnavailable, "busy; retry")
	}
	defer h.gate.Leave()
	// The body streams through the MAC and is dropped: bounded in size
	// and time, never held.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(readTimeout))
	mac := webhook.NewMAC(h.Secret)
	_, err := io.Copy(mac, http.MaxBytesReader(w, r.Body, webhook.MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return refuse(http.StatusRequestEntityTooLarge, "body too large")
	case err != nil:
		return refuse(http.StatusBadRequest, "read body")
	case !webhook.Valid(mac, sig):
		return refuse(http.StatusUnauthorized, "wrong signature")
	}
	return true
}
