// Package hook receives Git push webhooks at /hooks/git and turns a push
// to the followed ref into an immediate fetch. It checks GitHub's and
// Gitea's HMAC signatures, GitLab's token, and a generic HMAC header for
// any other sender.
package hook

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"net/http"
	"strings"
	"sync"

	"go.uber.org/zap"

	"driftless.dev/shared/webhook"
)

// MaxConcurrent bounds requests read before they are authenticated.
const MaxConcurrent = 8

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

	once sync.Once
	gate *webhook.Gate
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a push event", http.StatusMethodNotAllowed)
		return
	}
	h.once.Do(func() { h.gate = webhook.NewGate(MaxConcurrent) })
	if !h.gate.Enter() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many webhook requests in flight; retry", http.StatusServiceUnavailable)
		return
	}
	defer h.gate.Leave()
	sender, mac, sig, ok := h.proof(r)
	if !ok {
		// Never echo what was sent: it may be a near-miss secret.
		http.Error(w, "missing or wrong signature", http.StatusUnauthorized)
		return
	}
	// The body streams through the MAC while the one field needed is
	// picked out, so a large payload costs no more memory than a small one.
	limited := &io.LimitedReader{R: r.Body, N: webhook.MaxBody + 1}
	var body io.Reader = limited
	if mac != nil {
		body = io.TeeReader(limited, mac)
	}
	ref, perr := pushRef(body)
	if _, err := io.Copy(io.Discard, body); err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if limited.N <= 0 {
		http.Error(w, "body larger than 25 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	if mac != nil && !webhook.Valid(mac, sig) {
		http.Error(w, "missing or wrong signature", http.StatusUnauthorized)
		return
	}
	if perr != nil {
		http.Error(w, "body is not a JSON object: "+perr.Error(), http.StatusBadRequest)
		return
	}
	if h.Leading != nil && !h.Leading() {
		http.Error(w, "not the leader; retry", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if ref != "" && h.Ref != "" && ref != h.Ref {
		h.Log.Debug("git push to another ref", zap.String("sender", sender), zap.String("ref", ref))
		_ = json.NewEncoder(w).Encode(map[string]any{"triggered": false, "reason": "push to " + ref + ", following " + h.Ref})
		return
	}
	h.Trigger()
	h.Log.Info("git push webhook", zap.String("sender", sender), zap.String("ref", ref))
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{"triggered": true})
}

// proof says which kind of sender this is and what must be checked once
// the body is read: a MAC to compare with sig, or nothing (GitLab sends
// the secret itself, compared here; no secret configured).
func (h *Handler) proof(r *http.Request) (sender string, mac hash.Hash, sig string, ok bool) {
	if len(h.Secret) == 0 {
		return "unauthenticated", nil, "", true
	}
	for _, s := range []struct{ header, prefix, name string }{
		{"X-Hub-Signature-256", "sha256=", "github"},
		{"X-Gitea-Signature", "", "gitea"},
		{"X-Driftless-Signature", "sha256=", "generic"},
	} {
		if v := r.Header.Get(s.header); v != "" && strings.HasPrefix(v, s.prefix) {
			return s.name, webhook.NewMAC(h.Secret), strings.TrimPrefix(v, s.prefix), true
		}
	}
	if v := r.Header.Get("X-Gitlab-Token"); v != "" {
		return "gitlab", nil, "", subtle.ConstantTimeCompare([]byte(v), h.Secret) == 1
	}
	return "", nil, "", false
}

// pushRef reads the top-level "ref" of a JSON object, skipping every
// other value token by token (a push's commit list can be megabytes). An
// empty body is an empty push.
func pushRef(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return "", errors.New("want an object")
	}
	ref := ""
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", err
		}
		if key == "ref" {
			var v any
			if err := dec.Decode(&v); err != nil {
				return "", err
			}
			ref, _ = v.(string)
			continue
		}
		if err := skip(dec); err != nil {
			return "", err
		}
	}
	_, err = dec.Token()
	return ref, err
}

// skip consumes one value.
func skip(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}
