package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"driftless.dev/automator/internal/policy"
	"driftless.dev/automator/internal/registry"
	"driftless.dev/shared/testenv"
)

// throttle stands in front of the real registry and answers the first
// `fail` tag-list requests with 429 and a Retry-After, as a busy registry
// does. It injects faults; the registry behind it is real.
type throttle struct {
	next  http.Handler
	fail  int32
	seen  atomic.Int32
	first atomic.Int64 // unix nanos of the first request
	after atomic.Int64 // unix nanos of the first request let through
}

func (th *throttle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/tags/list") {
		n := th.seen.Add(1)
		if n == 1 {
			th.first.Store(time.Now().UnixNano())
		}
		if n <= th.fail {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS"}]}`, http.StatusTooManyRequests)
			return
		}
		th.after.CompareAndSwap(0, time.Now().UnixNano())
	}
	th.next.ServeHTTP(w, r)
}

func proxied(t *testing.T, reg *testenv.Registry, fail int32) (*throttle, name.Repository) {
	u, _ := url.Parse(reg.URL)
	th := &throttle{next: httputil.NewSingleHostReverseProxy(u), fail: fail}
	srv := httptest.NewServer(th)
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	return th, repo
}

func TestTagsFollowPagination(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	ctx := t.Context()
	if _, err := reg.PushImages(ctx, "team/app", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("1.0.%d", i+1))
	}
	if err := reg.Tag(ctx, "team/app", "1.0.0", want...); err != nil {
		t.Fatal(err)
	}
	want = append(want, "1.0.0")
	th, repo := proxied(t, reg, 0)
	got, err := registry.New(registry.WithPageSize(10), registry.WithInsecure(repo.RegistryStr())).Tags(ctx, repo, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got %d tags, want %d", len(got), len(want))
	}
	if n := th.seen.Load(); n != 3 {
		t.Fatalf("%d pages for 26 tags at 10 a page, want 3", n)
	}
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	if _, err := reg.PushImages(t.Context(), "team/app", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	th, repo := proxied(t, reg, 2)
	var retried atomic.Int32
	c := registry.New(registry.WithRetries(4, 10*time.Millisecond), registry.WithRetryHook(func(string, int) { retried.Add(1) }), registry.WithInsecure(repo.RegistryStr()))
	tags, err := c.Tags(t.Context(), repo, nil)
	if err != nil || len(tags) != 1 {
		t.Fatalf("tags %v, err %v", tags, err)
	}
	if retried.Load() != 2 {
		t.Fatalf("%d retries, want 2", retried.Load())
	}
	// Two Retry-After: 1 waits, not the 10ms backoff.
	if waited := time.Duration(th.after.Load() - th.first.Load()); waited < 2*time.Second {
		t.Fatalf("let through after %s, want at least 2s (Retry-After: 1, twice)", waited)
	}
	// When throttling outlasts the attempts, the error says so.
	_, repo2 := proxied(t, reg, 100)
	_, err = registry.New(registry.WithRetries(2, time.Millisecond), registry.WithInsecure(repo2.RegistryStr())).Tags(t.Context(), repo2, nil)
	if !errors.Is(err, registry.ErrThrottled) {
		t.Fatalf("got %v, want ErrThrottled", err)
	}
}

func TestBudgetSpacesRequests(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	if _, err := reg.PushImages(t.Context(), "team/app", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	th, repo := proxied(t, reg, 0)
	c := registry.New(registry.WithBudget(20, 1), registry.WithInsecure(repo.RegistryStr()))
	start := time.Now()
	for range 5 {
		if _, err := c.Tags(t.Context(), repo, nil); err != nil {
			t.Fatal(err)
		}
	}
	// 5 tag lists plus the ping per call, at 20/s after a burst of 1.
	if el := time.Since(start); el < 200*time.Millisecond || th.seen.Load() != 5 {
		t.Fatalf("%d lists in %s: the budget of 20/s was not applied", th.seen.Load(), el)
	}
}

func TestDockerConfigCredentials(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "robot", Password: "pw"}})
	if _, err := reg.PushImages(t.Context(), "team/app", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A Kubernetes .dockerconfigjson with the base64 "auth" form.
	os.WriteFile(filepath.Join(dir, "pull.json"), fmt.Appendf(nil, `{"auths":{"http://%s/v1/":{"auth":"cm9ib3Q6cHc="}}}`, reg.Host), 0o600)
	ps, err := policy.Parse("p.yaml", fmt.Appendf(nil, "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app}\nspec:\n  image: %s/team/app\n  policy: {semver: {range: '*'}}\n  auth: {provider: dockerconfig, dockerConfig: pull.json}\n", reg.Host))
	if err != nil {
		t.Fatal(err)
	}
	creds := &registry.Credentials{DockerConfigDir: dir}
	auth, err := creds.For(t.Context(), ps[0])
	if err != nil {
		t.Fatal(err)
	}
	tags, err := registry.New(registry.WithInsecure(reg.Host)).Tags(t.Context(), ps[0].Repository(), auth)
	if err != nil || len(tags) != 1 {
		t.Fatalf("%v %v", tags, err)
	}
	// A config without this registry says so, naming file and host.
	os.WriteFile(filepath.Join(dir, "other.json"), []byte(`{"auths":{"ghcr.io":{"auth":"eDp5"}}}`), 0o600)
	ps[0].Spec.Auth.DockerConfig = "other.json"
	if _, err := creds.For(t.Context(), ps[0]); err == nil || !strings.Contains(err.Error(), "other.json has no credentials for "+reg.Host) {
		t.Fatalf("got %v", err)
	}
	// Credentials go to the exact host they were issued for: a look-alike
	// host gets none.
	look, err := policy.Parse("p.yaml", []byte("apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app}\nspec:\n  image: ghcr.io.evil.example/org/app\n  policy: {semver: {range: '*'}}\n  auth: {provider: dockerconfig, dockerConfig: other.json}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := creds.For(t.Context(), look[0]); err == nil || !strings.Contains(err.Error(), "has no credentials for ghcr.io.evil.example") {
		t.Fatalf("look-alike host: got %v", err)
	}
	// Only files under --docker-config-dir: a link leading out is not
	// followed, even to a valid config.
	outside := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(outside, fmt.Appendf(nil, `{"auths":{%q:{"auth":"cm9ib3Q6cHc="}}}`, reg.Host), 0o600)
	if err := os.Symlink(outside, filepath.Join(dir, "link.json")); err != nil {
		t.Fatal(err)
	}
	ps[0].Spec.Auth.DockerConfig = "link.json"
	if _, err := creds.For(t.Context(), ps[0]); err == nil || !strings.Contains(err.Error(), "link.json") {
		t.Fatalf("a link out of --docker-config-dir: got %v", err)
	}
}

// TestPlainHTTPOnlyToListedRegistries: go-containerregistry falls back to
// plain HTTP for a loopback or private address on its own; the automator
// refuses unless the administrator listed the registry.
func TestPlainHTTPOnlyToListedRegistries(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "robot", Password: "pw"}})
	if _, err := reg.PushImages(t.Context(), "team/app", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	th, repo := proxied(t, reg, 0)
	var sawAuth atomic.Int32
	next := th.next
	th.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Add(1)
		}
		next.ServeHTTP(w, r)
	})
	auth := authn.FromConfig(authn.AuthConfig{Username: "robot", Password: "pw"})
	_, err := registry.New().Tags(t.Context(), repo, auth)
	if err == nil || !strings.Contains(err.Error(), "plain HTTP to "+repo.RegistryStr()+" refused: list the registry in --insecure-registries") {
		t.Fatalf("unlisted plain-HTTP registry: got %v", err)
	}
	if sawAuth.Load() != 0 || th.seen.Load() != 0 {
		t.Fatal("the credentials went over plain HTTP to an unlisted registry")
	}
	tags, err := registry.New(registry.WithInsecure(repo.RegistryStr())).Tags(t.Context(), repo, auth)
	if err != nil || len(tags) != 1 {
		t.Fatalf("listed: %v %v", tags, err)
	}
}

// TestCredentialsStayWithTheirRegistry: a registry that sends its token
// challenge to a realm on another site does not get the credentials sent
// there. The registry behind the challenge is real; the front only
// answers /v2/ with the redirecting challenge.
func TestCredentialsStayWithTheirRegistry(t *testing.T) {
	var realmHits atomic.Int32
	realm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		realmHits.Add(1)
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer realm.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+strings.Replace(strings.TrimPrefix(realm.URL, "http://"), "127.0.0.1", "localhost", 1)+`/token",service="registry"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
	}))
	defer front.Close()
	repo, _ := name.NewRepository(strings.TrimPrefix(front.URL, "http://") + "/team/app")
	// "localhost", a name: go-containerregistry refuses realms at private
	// addresses itself, but not names that resolve to one.
	realmHost := strings.Replace(strings.TrimPrefix(realm.URL, "http://"), "127.0.0.1", "localhost", 1)
	auth := authn.FromConfig(authn.AuthConfig{Username: "robot", Password: "pw"})
	_, err := registry.New(registry.WithInsecure(repo.RegistryStr(), realmHost)).Tags(t.Context(), repo, auth)
	if err == nil || !strings.Contains(err.Error(), "credentials for "+repo.RegistryStr()+" not sent to "+realmHost) {
		t.Fatalf("got %v, want the realm on another host refused", err)
	}
	if realmHits.Load() != 0 {
		t.Fatal("the credentials reached a token realm on another host")
	}
}

// A refusal keeps what go-containerregistry said: errors.Is finds the
// reason a person acts on, errors.As the *transport.Error with its status,
// and the message carries no credential.
func TestRegistryErrorKeepsTheTransportError(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "robot", Password: "pw"}})
	repo, err := name.NewRepository(reg.Host+"/team/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	wrong := authn.FromConfig(authn.AuthConfig{Username: "robot", Password: "wrong-s3cret"})
	_, err = registry.New(registry.WithInsecure(reg.Host)).Tags(t.Context(), repo, wrong)
	var re *registry.RegistryError
	var terr *transport.Error
	if !errors.Is(err, registry.ErrUnauthorized) || !errors.As(err, &re) || !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("got %v (%T)", err, err)
	}
	if strings.Contains(err.Error(), "wrong-s3cret") {
		t.Fatalf("the password reached the message: %v", err)
	}
}

// TestSilentRegistryIsNamedAsSuch: a registry that accepts connections
// and never answers fails the listing when its context ends, and the
// error says the registry did not answer, not what the parallel HTTPS
// probe of an insecure registry said (which hid the cause before).
func TestSilentRegistryIsNamedAsSuch(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	p, err := testenv.StartFaultProxy(reg.URL, testenv.FaultProxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	p.Set(testenv.Fault{Latency: time.Hour})
	repo, _ := name.NewRepository(p.Host + "/team/app")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = registry.New(registry.WithInsecure(p.Host)).Tags(ctx, repo, nil)
	if !errors.Is(err, registry.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "no answer") || strings.Contains(err.Error(), "HTTPS client") {
		t.Fatalf("a registry that never answers: %v", err)
	}
}

// TestOneHandshakePerRegistry: listing many repositories of one registry
// (Basic auth, as ECR) asks /v2/ once for all of them, not once per
// repository (go-containerregistry's handshake per call took most of a
// pass's request budget); the credentials still reach every request, and
// a registry whose answer changed (the password rotated) is asked again.
func TestOneHandshakePerRegistry(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "AWS", Password: "token"}})
	ctx := t.Context()
	const repos = 6
	for i := range repos {
		if _, err := reg.PushImages(ctx, fmt.Sprintf("team/app%d", i), "1.0.0"); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := url.Parse(reg.URL)
	var pings, lists atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			pings.Add(1)
		case strings.HasSuffix(r.URL.Path, "/tags/list"):
			lists.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	c := registry.New(registry.WithInsecure(host))
	auth := &authn.Basic{Username: "AWS", Password: "token"}
	for i := range repos {
		repo, _ := name.NewRepository(fmt.Sprintf("%s/team/app%d", host, i))
		tags, err := c.Tags(ctx, repo, auth)
		if err != nil || len(tags) != 1 {
			t.Fatalf("list %s: %v %v", repo, tags, err)
		}
		if _, err := c.Digest(ctx, repo, "1.0.0", auth); err != nil {
			t.Fatalf("digest of %s: %v", repo, err)
		}
	}
	// The first call's handshake pings twice (once to learn the
	// challenge, once as go-containerregistry builds the transport); every
	// other call reuses it.
	if n := pings.Load(); n > 2 {
		t.Fatalf("%d pings of /v2/ for %d repositories of one registry, want at most 2", n, repos)
	}
	if n := lists.Load(); n != repos {
		t.Fatalf("%d tag lists, want %d", n, repos)
	}
	// Other credentials are another handshake, and wrong ones fail as
	// before, naming the reason.
	repo, _ := name.NewRepository(host + "/team/app0")
	_, err := c.Tags(ctx, repo, &authn.Basic{Username: "AWS", Password: "wrong"})
	if !errors.Is(err, registry.ErrUnauthorized) {
		t.Fatalf("wrong password: got %v, want ErrUnauthorized", err)
	}
	if _, err := c.Tags(ctx, repo, auth); err != nil {
		t.Fatalf("the right password again: %v", err)
	}
}
