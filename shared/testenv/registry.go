package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// BasicAuth is a user name and password.
type BasicAuth struct {
	Username string
	Password string
}

// RegistryOptions configure StartRegistry. The zero value is an anonymous,
// plain-HTTP registry on a free port.
type RegistryOptions struct {
	// BinDir holds the `registry` binary. Default: FindBinDir.
	BinDir string
	// Dir keeps storage, configuration and the log. Default: a new
	// temporary folder that Stop removes.
	Dir string
	// Auth, when set, requires these credentials (htpasswd), as ECR's
	// registry endpoint requires user AWS and a token.
	Auth *BasicAuth
	// TLS serves HTTPS with a certificate from a throw-away CA; the
	// Registry's Transport trusts it.
	TLS bool
	// NotifyURL, when set, receives the registry's push notifications
	// (distribution's webhook envelope), with NotifyHeaders on each request:
	// manifest events only (blob events are ignored, as the automator does;
	// they would only queue up in front of the next manifest's).
	NotifyURL     string
	NotifyHeaders map[string]string
	// Port fixes the listening port. Default: a free one.
	Port int
	// Address is the IP to listen on. Default 127.0.0.1; a real node's
	// HostIP makes the registry reachable from its Pods and its containerd.
	Address string
	// ReadyTimeout bounds the wait for the registry. Default 30s.
	ReadyTimeout time.Duration
}

// Registry is a running CNCF distribution registry.
type Registry struct {
	// Host is host:port, the registry part of an image reference.
	Host string
	// URL is the base URL, http:// or https://.
	URL string
	// CAPEM is the CA certificate when TLS is on.
	CAPEM []byte
	// Transport reaches the registry (trusting its CA when TLS is on).
	Transport http.RoundTripper
	// Auth holds the credentials when the registry requires them.
	Auth *BasicAuth
	// Dir holds storage, configuration and the log.
	Dir string

	proc     *process
	ownsDir  bool
	stopOnce sync.Once
}

// StartRegistry starts the distribution registry and waits until /v2/ answers.
func StartRegistry(ctx context.Context, opts RegistryOptions) (_ *Registry, err error) {
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	bin, err := binPath(opts.BinDir, "registry")
	if err != nil {
		return nil, err
	}
	r := &Registry{Dir: opts.Dir, Auth: opts.Auth, Transport: http.DefaultTransport}
	if r.Dir == "" {
		if r.Dir, err = os.MkdirTemp("", "driftless-registry-"); err != nil {
			return nil, fmt.Errorf("registry: make data dir: %w", err)
		}
		r.ownsDir = true
	}
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
	port := opts.Port
	if port == 0 {
		ps, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		port = ps[0]
	}
	r.Host = hostPort(port)
	if opts.Address != "" {
		r.Host = net.JoinHostPort(opts.Address, strconv.Itoa(port))
	}
	if opts.TLS && opts.Address == "" {
		// go-containerregistry assumes plain HTTP for 127.0.0.1 and rejects
		// https pagination links there; any other loopback address is
		// treated as the TLS registry it is.
		r.Host = net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	}
	cfg, err := r.writeConfig(opts)
	if err != nil {
		return nil, err
	}
	r.proc, err = startProcess("registry", bin, []string{"serve", cfg}, r.Dir)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: r.Transport}
	err = r.proc.waitReady(ctx, opts.ReadyTimeout, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// writeConfig writes distribution's configuration and any htpasswd file
// and certificate it names, and returns the configuration's path.
func (r *Registry) writeConfig(opts RegistryOptions) (string, error) {
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	var b strings.Builder
	fmt.Fprintf(&b, "version: 0.1\nlog:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: true\n")
	fmt.Fprintf(&b, "storage:\n  filesystem:\n    rootdirectory: %q\n  delete:\n    enabled: true\n", filepath.Join(r.Dir, "data"))
	fmt.Fprintf(&b, "http:\n  addr: %q\n  secret: %q\n", r.Host, hex.EncodeToString(secret))
	r.URL = "http://" + r.Host
	if opts.TLS {
		ca, err := newAuthority("driftless-registry-ca")
		if err != nil {
			return "", fmt.Errorf("registry: %w", err)
		}
		cert, key, err := ca.issue("registry", nil, "127.0.0.1", "127.0.0.2", "localhost")
		if err != nil {
			return "", fmt.Errorf("registry: %w", err)
		}
		if err := writeFiles(r.Dir, map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": ca.certPEM}); err != nil {
			return "", fmt.Errorf("registry: %w", err)
		}
		fmt.Fprintf(&b, "  tls:\n    certificate: %q\n    key: %q\n", filepath.Join(r.Dir, "tls.crt"), filepath.Join(r.Dir, "tls.key"))
		r.CAPEM = ca.certPEM
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.certPEM)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		r.Transport = tr
		r.URL = "https://" + r.Host
	}
	if opts.Auth != nil {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Auth.Password), bcrypt.MinCost)
		if err != nil {
			return "", fmt.Errorf("registry: hash password: %w", err)
		}
		if err := writeFiles(r.Dir, map[string][]byte{"htpasswd": fmt.Appendf(nil, "%s:%s\n", opts.Auth.Username, hash)}); err != nil {
			return "", fmt.Errorf("registry: %w", err)
		}
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: driftless-testenv\n    path: %q\n", filepath.Join(r.Dir, "htpasswd"))
	}
	if opts.NotifyURL != "" {
		fmt.Fprintf(&b, "notifications:\n  events:\n    includereferences: true\n  endpoints:\n    - name: driftless\n      url: %q\n      timeout: 2s\n      threshold: 5\n      backoff: 1s\n      ignoredmediatypes: [application/octet-stream]\n", opts.NotifyURL)
		if len(opts.NotifyHeaders) > 0 {
			b.WriteString("      headers:\n")
			for k, v := range opts.NotifyHeaders {
				fmt.Fprintf(&b, "        %s: [%q]\n", k, v)
			}
		}
	}
	path := filepath.Join(r.Dir, "config.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("registry: write config: %w", err)
	}
	return path, nil
}

func writeFiles(dir string, files map[string][]byte) error {
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// RemoteOptions returns go-containerregistry options that reach this
// registry with its credentials.
func (r *Registry) RemoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(r.Transport)}
	if r.Auth != nil {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.Auth.Username, Password: r.Auth.Password}))
	}
	return opts
}

// Repository returns host/repo, the reference of a repository here.
func (r *Registry) Repository(repo string) string { return r.Host + "/" + repo }

// PushImages pushes one small, distinct image to repo for each tag, and
// returns each tag's manifest digest.
func (r *Registry) PushImages(ctx context.Context, repo string, tags ...string) (map[string]v1.Hash, error) {
	digests := make(map[string]v1.Hash, len(tags))
	for _, tag := range tags {
		ref, err := name.NewTag(r.Repository(repo)+":"+tag, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("push %s:%s: %w", repo, tag, err)
		}
		img, err := random.Image(256, 1)
		if err != nil {
			return nil, fmt.Errorf("push %s: make image: %w", ref, err)
		}
		if err := remote.Write(ref, img, r.RemoteOptions(ctx)...); err != nil {
			return nil, fmt.Errorf("push %s: %w", ref, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("push %s: digest: %w", ref, err)
		}
		digests[tag] = d
	}
	return digests, nil
}

// Tag points more tags at the manifest that repo:from names, one manifest
// PUT each, without pushing layers again: the cheap way to make many tags.
func (r *Registry) Tag(ctx context.Context, repo, from string, tags ...string) error {
	src, err := name.NewTag(r.Repository(repo)+":"+from, name.Insecure)
	if err != nil {
		return fmt.Errorf("tag %s:%s: %w", repo, from, err)
	}
	desc, err := remote.Get(src, r.RemoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("tag: get %s: %w", src, err)
	}
	for _, t := range tags {
		if err := remote.Tag(src.Context().Tag(t), desc, r.RemoteOptions(ctx)...); err != nil {
			return fmt.Errorf("tag %s as %s: %w", src, t, err)
		}
	}
	return nil
}

// SeedTags makes many tags of repo point at the manifest repo:from by
// writing distribution's tag links straight into its storage: 100,000
// tags take seconds instead of minutes of manifest PUTs. The registry
// serves them like any other tag (its filesystem driver reads links on
// every request). Use Tag when the registry must see the pushes.
func (r *Registry) SeedTags(ctx context.Context, repo, from string, tags ...string) error {
	src, err := name.NewTag(r.Repository(repo)+":"+from, name.Insecure)
	if err != nil {
		return fmt.Errorf("seed tags of %s: %w", repo, err)
	}
	desc, err := remote.Head(src, r.RemoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("seed tags: resolve %s: %w", src, err)
	}
	dgst := desc.Digest.String()
	base := filepath.Join(r.Dir, "data", "docker", "registry", "v2", "repositories", filepath.FromSlash(repo), "_manifests", "tags")
	// Only current/link: it is all that listing and resolving a tag read
	// (the index/ links serve deletes), and directories are the slow part.
	for _, t := range tags {
		dir := filepath.Join(base, t, "current")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("seed tag %s: %w", t, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "link"), []byte(dgst), 0o644); err != nil {
			return fmt.Errorf("seed tag %s: %w", t, err)
		}
	}
	return nil
}

// SeedSemverTags gives repo n tags, 0.0.1 (a pushed image) and then
// 0.0.2 up to n as three digits (1000 is 10.0.0), all one manifest: a
// repository of the size benchmarks scan.
func (r *Registry) SeedSemverTags(ctx context.Context, repo string, n int) error {
	if _, err := r.PushImages(ctx, repo, "0.0.1"); err != nil {
		return err
	}
	tags := make([]string, 0, n-1)
	for j := 2; j <= n; j++ {
		tags = append(tags, fmt.Sprintf("%d.%d.%d", j/100, (j/10)%10, j%10))
	}
	return r.SeedTags(ctx, repo, "0.0.1", tags...)
}

// LogTail returns the end of the registry's log.
func (r *Registry) LogTail() string {
	if r.proc == nil {
		return ""
	}
	return fmt.Sprintf("--- last lines of %s ---\n%s\n", r.proc.logPath, tailFile(r.proc.logPath, tailLines))
}

// PID returns the registry's process id.
func (r *Registry) PID() int { return r.proc.pid() }

// Stop ends the registry and removes its folder if StartRegistry made it.
func (r *Registry) Stop() {
	r.stopOnce.Do(func() {
		if r.proc != nil {
			r.proc.stop(10 * time.Second)
		}
		if r.ownsDir {
			os.RemoveAll(r.Dir)
		}
	})
}
