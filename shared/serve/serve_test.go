package serve_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"driftless.dev/shared/serve"
)

// A client that sends its headers and then stalls mid-body is cut off
// at the read timeout: it cannot hold a connection (and the handler's
// memory) for ever.
func TestStalledBodyIsCutOff(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		read <- err
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go serve.Serve(ctx, l, h, serve.Timeouts{ReadHeader: time.Second, Read: 300 * time.Millisecond, Write: time.Second, Idle: time.Second})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{\"ref\":")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("the handler read a whole body that was never sent")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled body held the handler for 10s")
	}
	// And the connection is closed.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(c).ReadByte(); err == nil {
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("connection still open: %v", err)
		}
	}
}

func TestLivenessFailsHealthz(t *testing.T) {
	mux := serve.Mux(serve.NewRegistry(), func() error { return nil }, serve.WithLiveness(func() error { return io.ErrUnexpectedEOF }))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go serve.Serve(ctx, l, mux)
	resp, err := http.Get("http://" + l.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/healthz answered %d for a loop that is stuck", resp.StatusCode)
	}
}
