package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the faults the reliability suite injects: the states a
// SIGKILL can leave in a go-git clone on disk (Damage), and a proxy on
// loopback that makes a healthy server look throttled, failing, slow or
// unreachable (FaultProxy, below).

// Damage is one state a killed go-git writer can leave in a clone, or a
// disk can leave under it: go-git writes refs, the index and the config by
// truncating the file and writing it again, a pack's index before the pack
// is renamed into place, and temporary files it removes only when it lives
// to finish.
type Damage struct {
	// Name says what the kill left, e.g. "a ref emptied mid-write".
	Name string
	// Apply leaves that state in the clone whose working tree is dir
	// (holding .git). It returns ErrNotApplicable when the clone holds
	// nothing of the kind (no loose object to cut short).
	Apply func(dir string) error
}

// ErrNotApplicable: the clone holds nothing that Damage could break.
var ErrNotApplicable = errors.New("nothing of the kind in this clone")

// CloneDamages lists every state a kill can leave in a go-git clone. The
// order is stable, so a seed picks the same one again.
func CloneDamages() []Damage {
	return []Damage{
		{"a ref emptied mid-write", func(dir string) error {
			refs, err := files(filepath.Join(dir, ".git", "refs"), func(p string) bool {
				// The automator's trust record is written with a rename,
				// never truncated: no kill can empty it.
				return filepath.Base(p) != "verified"
			})
			if err != nil || len(refs) == 0 {
				return notApplicable(err)
			}
			// The refs a fetch rewrites are the ones a kill catches.
			slices.SortStableFunc(refs, func(a, b string) int { return rank(a) - rank(b) })
			return os.Truncate(refs[0], 0)
		}},
		{"HEAD emptied mid-write", func(dir string) error {
			return os.Truncate(filepath.Join(dir, ".git", "HEAD"), 0)
		}},
		{"the index cut short", func(dir string) error { return cutShort(filepath.Join(dir, ".git", "index")) }},
		{"the index emptied", func(dir string) error {
			p := filepath.Join(dir, ".git", "index")
			if _, err := os.Stat(p); err != nil {
				return notApplicable(err)
			}
			return os.Truncate(p, 0)
		}},
		{"the config emptied", func(dir string) error { return os.Truncate(filepath.Join(dir, ".git", "config"), 0) }},
		{"a pack's index cut short, the pack complete", func(dir string) error {
			p, err := newestPack(dir)
			if err != nil {
				return err
			}
			return cutShort(strings.TrimSuffix(p, ".pack") + ".idx")
		}},
		{"a pack without its index", func(dir string) error {
			p, err := newestPack(dir)
			if err != nil {
				return err
			}
			return os.Remove(strings.TrimSuffix(p, ".pack") + ".idx")
		}},
		{"a pack cut short", func(dir string) error {
			p, err := newestPack(dir)
			if err != nil {
				return err
			}
			return cutShort(p)
		}},
		{"a loose object cut short", func(dir string) error {
			objs, err := files(filepath.Join(dir, ".git", "objects"), func(p string) bool {
				rel, _ := filepath.Rel(filepath.Join(dir, ".git", "objects"), p)
				parts := strings.Split(rel, string(filepath.Separator))
				return len(parts) == 2 && len(parts[0]) == 2 && len(parts[1]) == 38
			})
			if err != nil || len(objs) == 0 {
				return notApplicable(err)
			}
			return cutShort(objs[len(objs)-1])
		}},
		{"temporary files left behind", func(dir string) error {
			for _, p := range []string{
				filepath.Join(dir, ".git", "objects", "pack", "tmp_pack_4207"),
				filepath.Join(dir, ".git", "objects", "pack", "tmp_obj_4207"),
				filepath.Join(dir, ".git", "._packed-refs4207"),
			} {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(p, []byte("PACK\x00\x00\x00\x02half"), 0o644); err != nil {
					return err
				}
			}
			tracked, err := workFile(dir)
			if err != nil {
				return err
			}
			// The automator's atomic write: a temporary file beside the edited one.
			return os.WriteFile(tracked+".driftless-tmp-0123456789abcdef", []byte("image: half"), 0o644)
		}},
		{"lock files left behind", func(dir string) error {
			for _, p := range []string{"index.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock"} {
				if err := os.WriteFile(filepath.Join(dir, ".git", p), nil, 0o644); err != nil {
					return err
				}
			}
			refs, err := files(filepath.Join(dir, ".git", "refs"), func(string) bool { return true })
			if err != nil || len(refs) == 0 {
				return err
			}
			return os.WriteFile(refs[0]+".lock", nil, 0o644)
		}},
		{"a working file cut short", func(dir string) error {
			p, err := workFile(dir)
			if err != nil {
				return err
			}
			return cutShort(p)
		}},
		{"a working file removed", func(dir string) error {
			p, err := workFile(dir)
			if err != nil {
				return err
			}
			return os.Remove(p)
		}},
		{"a clone killed before it was whole", func(dir string) error {
			// The objects arrived; the config and HEAD were never written.
			for _, p := range []string{"config", "HEAD"} {
				if err := os.Remove(filepath.Join(dir, ".git", p)); err != nil {
					return err
				}
			}
			return nil
		}},
	}
}

func notApplicable(err error) error {
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return ErrNotApplicable
}

// rank orders refs: the ones a fetch writes (remote-tracking, the
// synchronizer's refs/driftless/<ref>) first.
func rank(p string) int {
	if strings.Contains(p, "/refs/remotes/") || strings.Contains(p, "/refs/driftless/") {
		return 0
	}
	return 1
}

// cutShort truncates the file at p to half its size, as a write stopped
// midway leaves it.
func cutShort(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return notApplicable(err)
	}
	if st.Size() < 2 {
		return ErrNotApplicable
	}
	return os.Truncate(p, st.Size()/2)
}

// files lists the regular files under root that keep accepts, sorted.
func files(root string, keep func(string) bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && keep(p) {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// newestPack is the pack written last: the one a killed fetch wrote.
func newestPack(dir string) (string, error) {
	packs, err := files(filepath.Join(dir, ".git", "objects", "pack"), func(p string) bool {
		return strings.HasPrefix(filepath.Base(p), "pack-") && strings.HasSuffix(p, ".pack")
	})
	if err != nil || len(packs) == 0 {
		return "", notApplicable(err)
	}
	newest, at := "", int64(0)
	for _, p := range packs {
		if st, err := os.Stat(p); err == nil && st.ModTime().UnixNano() >= at {
			newest, at = p, st.ModTime().UnixNano()
		}
	}
	return newest, nil
}

// workFile is the first tracked-looking file of the working tree (outside
// .git), in path order.
func workFile(dir string) (string, error) {
	var found string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if found == "" && d.Type().IsRegular() && !strings.Contains(d.Name(), ".driftless-tmp-") {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", fmt.Errorf("%w: no working file in %s", ErrNotApplicable, dir)
	}
	return found, nil
}

// Fault is what a FaultProxy does to the requests it matches.
type Fault struct {
	// Status answers with this HTTP status (429, 500, 503, ...) instead of
	// forwarding; a 429 or 503 carries Retry-After: 1.
	Status int
	// Latency delays each request this long before forwarding it.
	Latency time.Duration
	// Drop closes the connection without an answer.
	Drop bool
	// Down stops listening: connections are refused until the fault is
	// cleared (the port stays reserved by nobody, as a crashed server's).
	Down bool
	// Match limits the fault to the requests it accepts; nil: all.
	Match func(*http.Request) bool
}

// String names the fault for a report: "429", "slow 2s", "drop", "down".
func (f Fault) String() string {
	switch {
	case f.Down:
		return "down"
	case f.Drop:
		return "drop"
	case f.Status != 0:
		return strconv.Itoa(f.Status)
	case f.Latency > 0:
		return "slow " + f.Latency.String()
	}
	return "healthy"
}

// FaultProxy is an HTTP(S) reverse proxy on a loopback port in front of a
// real server (the registry, the Git server, the API server), with a
// switch: Set(Fault{...}) makes the server look throttled, failing, slow,
// unreachable or gone; Set(Fault{}) makes it healthy again. Streaming
// answers (watches, git packs) pass through as they come.
type FaultProxy struct {
	// Host is host:port, URL the base URL clients use instead of the
	// server's.
	Host, URL string

	target  *url.URL
	rp      *httputil.ReverseProxy
	tls     *tls.Config
	mu      sync.Mutex
	fault   Fault
	srv     *http.Server
	l       net.Listener
	faulted atomic.Int64
	total   atomic.Int64
	observe func(*http.Request)
}

// FaultProxyOptions configure StartFaultProxy.
type FaultProxyOptions struct {
	// Transport reaches the server. Default: http.DefaultTransport.
	Transport http.RoundTripper
	// TLS, when set, serves HTTPS with it (a certificate clients trust).
	TLS *tls.Config
}

// StartFaultProxy starts a healthy proxy in front of the server at target
// (a base URL).
func StartFaultProxy(target string, opts FaultProxyOptions) (*FaultProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("fault proxy: target %q: %w", target, err)
	}
	p := &FaultProxy{target: u, tls: opts.TLS}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.FlushInterval = -1
	if opts.Transport != nil {
		p.rp.Transport = opts.Transport
	}
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: listen: %w", err)
	}
	p.Host = l.Addr().String()
	scheme := "http"
	if p.tls != nil {
		scheme = "https"
	}
	p.URL = scheme + "://" + p.Host
	p.serve(l)
	return p, nil
}

func (p *FaultProxy) serve(l net.Listener) {
	if p.tls != nil {
		l = tls.NewListener(l, p.tls)
	}
	srv := &http.Server{Handler: http.HandlerFunc(p.handle), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	p.srv, p.l = srv, l
	go func() { _ = srv.Serve(l) }()
}

// Set switches the fault on (the zero Fault: healthy). Down closes the
// listener and every open connection; clearing it listens again on the
// same port.
func (p *FaultProxy) Set(f Fault) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	wasDown := p.fault.Down
	p.fault = f
	switch {
	case f.Down && !wasDown:
		_ = p.srv.Close()
	case !f.Down && wasDown:
		l, err := net.Listen("tcp", p.Host)
		if err != nil {
			return fmt.Errorf("fault proxy: listen again on %s: %w", p.Host, err)
		}
		p.serve(l)
	}
	return nil
}

// Observe calls fn with every request before it is faulted or forwarded,
// in the request's goroutine: fn may hold it (to kill its sender at that
// moment). nil stops observing.
func (p *FaultProxy) Observe(fn func(*http.Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.observe = fn
}

// Faulted is how many requests a fault was applied to, Total how many
// arrived.
func (p *FaultProxy) Faulted() int64 { return p.faulted.Load() }
func (p *FaultProxy) Total() int64   { return p.total.Load() }

func (p *FaultProxy) handle(w http.ResponseWriter, r *http.Request) {
	p.total.Add(1)
	p.mu.Lock()
	f, observe := p.fault, p.observe
	p.mu.Unlock()
	if observe != nil {
		observe(r)
	}
	if f.Match != nil && !f.Match(r) {
		f = Fault{}
	}
	if f.Status != 0 || f.Latency > 0 || f.Drop {
		p.faulted.Add(1)
	}
	switch {
	case f.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2: the stream is reset
	case f.Status != 0:
		if f.Status == http.StatusTooManyRequests || f.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "fault injected: "+http.StatusText(f.Status), f.Status)
		return
	case f.Latency > 0:
		select {
		case <-r.Context().Done():
			return
		case <-time.After(f.Latency):
		}
	}
	p.rp.ServeHTTP(w, r)
}

// Stop closes the proxy.
func (p *FaultProxy) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.srv.Close()
}

// StartAPIProxy starts a FaultProxy in front of the cluster's API server,
// serving HTTPS with a certificate of the cluster's CA, so a client of
// ServiceAccountConfig (a bearer token; client certificates do not pass a
// proxy) reaches the cluster through it once its Host is the proxy's URL.
func (c *Cluster) StartAPIProxy() (*FaultProxy, error) {
	certPEM, keyPEM, err := c.ca.issue("driftless-fault-proxy", nil, "127.0.0.1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.ca.certPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 100}
	return StartFaultProxy(c.Config.Host, FaultProxyOptions{Transport: tr,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}})
}

// Leftovers lists the temporary and lock files under dir that git, go-git
// or Driftless write beside a file they replace: after a program's work
// (or its recovery from a kill) there must be none.
func Leftovers(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := d.Name()
		if strings.HasSuffix(name, ".lock") || strings.HasPrefix(name, "tmp_") || strings.HasPrefix(name, "._packed-refs") ||
			strings.Contains(name, "driftless-tmp-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
