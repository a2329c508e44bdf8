// Package webhook holds what both programs' webhook receivers share: the
// HMAC-SHA256 signature senders compute, a body limit, and a cap on the
// requests whose bodies are being read before they are authenticated.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
)

// MaxBody fits every real push payload: GitHub caps its webhook payloads
// at 25 MB; registries send a few KiB.
const MaxBody = 25 << 20

// Sign returns the "sha256=<hex>" signature of body, as GitHub's
// X-Hub-Signature-256 and Driftless's X-Driftless-Signature carry it.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// NewMAC returns the running HMAC a streamed body is fed through.
func NewMAC(secret []byte) hash.Hash { return hmac.New(sha256.New, secret) }

// Valid reports whether sig (hex, with or without "sha256=") is mac's
// sum, in constant time.
func Valid(mac hash.Hash, sig string) bool {
	got, err := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
	if err != nil {
		return false
	}
	return hmac.Equal(got, mac.Sum(nil))
}

// Gate caps concurrent unauthenticated body reads: each costs memory and
// a connection before the sender has proved anything.
type Gate struct{ slots chan struct{} }

// NewGate lets n requests in at once.
func NewGate(n int) *Gate { return &Gate{slots: make(chan struct{}, n)} }

// Enter takes a slot if one is free; a full gate answers false at once
// (the sender retries), rather than queueing readers.
func (g *Gate) Enter() bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Leave frees the slot Enter took.
func (g *Gate) Leave() { <-g.slots }
