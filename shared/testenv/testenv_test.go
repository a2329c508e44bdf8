package testenv_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/testenv"
)

func TestCluster(t *testing.T) {
	c := testenv.NewCluster(t, testenv.ClusterOptions{Nodes: 2})
	ctx := t.Context()
	admin := kubernetes.NewForConfigOrDie(c.Config)

	t.Run("DeploymentBecomesAvailable", func(t *testing.T) {
		ns := c.Namespace(t)
		replicas := int32(3)
		labels := map[string]string{"app": "web"}
		_, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1.0.0"}}},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create deployment: %v", err)
		}
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			d, err := admin.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range d.Status.Conditions {
				if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue {
					return d.Status.AvailableReplicas == replicas, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("deployment never became Available with %d replicas: %v", replicas, err)
		}
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatalf("list pods: %v", err)
		}
		if len(pods.Items) != int(replicas) {
			t.Fatalf("got %d pods, want %d", len(pods.Items), replicas)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning || !strings.HasPrefix(p.Spec.NodeName, "kwok-node-") {
				t.Errorf("pod %s: phase %s on node %q, want Running on a kwok node", p.Name, p.Status.Phase, p.Spec.NodeName)
			}
		}
	})

	t.Run("RBACForOrdinaryUser", func(t *testing.T) {
		ns := c.Namespace(t)
		cfg, err := c.UserConfig("alice")
		if err != nil {
			t.Fatal(err)
		}
		alice := kubernetes.NewForConfigOrDie(cfg)
		_, err = alice.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("alice without a RoleBinding: got %v, want Forbidden", err)
		}
		grant(t, admin, ns, rbacv1.Subject{Kind: rbacv1.UserKind, Name: "alice"})
		pollAllowed(t, func(ctx context.Context) error {
			_, err := alice.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return err
		})
		// The grant is for this namespace only.
		other := c.Namespace(t)
		if _, err := alice.CoreV1().ConfigMaps(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("alice in another namespace: got %v, want Forbidden", err)
		}
	})

	t.Run("RBACForServiceAccount", func(t *testing.T) {
		ns := c.Namespace(t)
		if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bot"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cfg, err := c.ServiceAccountConfig(ctx, ns, "bot", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		bot := kubernetes.NewForConfigOrDie(cfg)
		if _, err := bot.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("service account without a RoleBinding: got %v, want Forbidden", err)
		}
		grant(t, admin, ns, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "bot", Namespace: ns})
		pollAllowed(t, func(ctx context.Context) error {
			_, err := bot.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return err
		})
	})
}

// grant lets subject read ConfigMaps in ns.
func grant(t *testing.T, admin kubernetes.Interface, ns string, subject rbacv1.Subject) {
	t.Helper()
	ctx := t.Context()
	_, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "read-configmaps-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-configmaps"},
		Subjects:   []rbacv1.Subject{subject},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// pollAllowed waits until call stops being Forbidden: RBAC takes effect
// when the API server's informer sees the binding.
func pollAllowed(t *testing.T, call func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		last = call(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("still not allowed after the RoleBinding: %v", last)
	}
}

// countingTransport counts tag-list requests, to prove pagination happened.
type countingTransport struct {
	next     http.RoundTripper
	tagLists atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/tags/list") {
		c.tagLists.Add(1)
	}
	return c.next.RoundTrip(r)
}

func TestRegistryListsEveryTagPaged(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts testenv.RegistryOptions
	}{
		{"Anonymous", testenv.RegistryOptions{}},
		{"BasicAuthAndTLS", testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "AWS", Password: "s3cret-token"}, TLS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.NewRegistry(t, tc.opts)
			ctx := t.Context()
			tags := []string{"1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1", "latest"}
			digests, err := reg.PushImages(ctx, "team/app", tags...)
			if err != nil {
				t.Fatalf("push: %v", err)
			}
			if len(digests) != len(tags) || digests["1.0.0"] == digests["1.1.0"] {
				t.Fatalf("want %d distinct images, got %v", len(tags), digests)
			}
			repo, err := name.NewRepository(reg.Repository("team/app"))
			if err != nil {
				t.Fatal(err)
			}
			ct := &countingTransport{next: reg.Transport}
			opts := append(reg.RemoteOptions(ctx), remote.WithTransport(ct), remote.WithPageSize(2))
			got, err := remote.List(repo, opts...)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tags) {
				t.Fatalf("listed %v, want %v", got, tags)
			}
			if n := ct.tagLists.Load(); n < 3 {
				t.Fatalf("%d tag-list requests for 5 tags at page size 2, want at least 3 (pagination not exercised)", n)
			}
			if tc.opts.Auth != nil {
				_, err := remote.List(repo, remote.WithContext(ctx), remote.WithTransport(reg.Transport))
				if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
					t.Fatalf("anonymous list of an authenticated registry: got %v, want UNAUTHORIZED", err)
				}
			}
		})
	}
}

func TestRegistryNotifiesPushes(t *testing.T) {
	type event struct {
		Action string `json:"action"`
		Target struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"target"`
	}
	var mu sync.Mutex
	var pushed []string
	var authHeader atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authHeader.Store(r.Header.Get("Authorization"))
		var env struct {
			Events []event `json:"events"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &env); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, e := range env.Events {
			if e.Action == "push" && e.Target.Tag != "" {
				pushed = append(pushed, e.Target.Repository+":"+e.Target.Tag)
			}
		}
		mu.Unlock()
	}))
	defer hook.Close()
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{NotifyURL: hook.URL, NotifyHeaders: map[string]string{"Authorization": "Bearer hook-secret"}})
	if _, err := reg.PushImages(t.Context(), "team/app", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(pushed, "team/app:1.0.0"), nil
	})
	if err != nil {
		t.Fatalf("no push notification for team/app:1.0.0 (got %v)", pushed)
	}
	if got := authHeader.Load(); got != "Bearer hook-secret" {
		t.Fatalf("notification Authorization header %q, want the configured one", got)
	}
}

func TestGitServerRoundTrip(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "git", Password: "p4ss"}
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{Auth: auth})
	ctx := t.Context()
	url, err := srv.CreateRepo(ctx, "fleet", "main")
	if err != nil {
		t.Fatal(err)
	}

	// A commit made and pushed with go-git...
	work := t.TempDir()
	repo, err := git.PlainInit(work, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "app.yaml"), []byte("kind: ConfigMap\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, _ := repo.Worktree()
	if _, err := wt.Add("app.yaml"); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "test", Email: "test@driftless.dev", When: time.Now()}
	hash, err := wt.Commit("add app", &git.CommitOptions{Author: sig})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		t.Fatal(err)
	}
	local, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	push := func(a *githttp.BasicAuth) error {
		return repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin", Auth: a,
			RefSpecs: []config.RefSpec{config.RefSpec(local.Name() + ":refs/heads/main")}})
	}
	if err := push(nil); err == nil || !strings.Contains(err.Error(), "authentication required") {
		t.Fatalf("push without credentials: got %v, want authentication required", err)
	}
	if err := push(&githttp.BasicAuth{Username: auth.Username, Password: auth.Password}); err != nil {
		t.Fatalf("push: %v", err)
	}

	// ...is cloned back with the same hash, and the server holds it.
	clone, err := git.PlainCloneContext(ctx, t.TempDir(), false, &git.CloneOptions{URL: url,
		Auth: &githttp.BasicAuth{Username: auth.Username, Password: auth.Password}})
	if err != nil {
		t.Fatalf("clone: %v", err)
	}
	head, err := clone.Head()
	if err != nil {
		t.Fatal(err)
	}
	if head.Hash() != hash {
		t.Fatalf("cloned head %s, pushed %s", head.Hash(), hash)
	}
	if got, err := srv.Head(ctx, "fleet", "main"); err != nil || got != hash.String() {
		t.Fatalf("server's main = %q (%v), want %s", got, err, hash)
	}
}

func TestGitServerSeed(t *testing.T) {
	srv := testenv.NewGitServer(t, testenv.GitServerOptions{})
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "apps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "apps", "web.yaml"), []byte("kind: Deployment\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hash, err := srv.Seed(t.Context(), "fleet", "dev", src, "seed")
	if err != nil {
		t.Fatal(err)
	}
	out, err := srv.Git(t.Context(), "fleet", "show", hash+":apps/web.yaml")
	if err != nil || out != "kind: Deployment\n" {
		t.Fatalf("seeded file = %q (%v)", out, err)
	}
}

func TestStartFailuresSayWhatAndWhy(t *testing.T) {
	ctx := t.Context()
	t.Run("MissingBinary", func(t *testing.T) {
		_, err := testenv.StartCluster(ctx, testenv.ClusterOptions{BinDir: t.TempDir()})
		var ce *testenv.ComponentError
		if !errors.As(err, &ce) || !errors.Is(err, testenv.ErrBinaryMissing) {
			t.Fatalf("got %v, want a ComponentError wrapping ErrBinaryMissing", err)
		}
		if ce.Component != "etcd" || !strings.Contains(err.Error(), "make tools") {
			t.Fatalf("error should name etcd and say `make tools`: %v", err)
		}
	})
	t.Run("PortTaken", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, err = testenv.StartRegistry(ctx, testenv.RegistryOptions{Port: l.Addr().(*net.TCPAddr).Port, Dir: t.TempDir()})
		var ce *testenv.ComponentError
		if !errors.As(err, &ce) || ce.Component != "registry" {
			t.Fatalf("got %v, want a ComponentError for the registry", err)
		}
		if !strings.Contains(ce.Tail, "address already in use") || !strings.Contains(ce.Hint, "port") {
			t.Fatalf("error should show the log line and a hint about the port: %v", err)
		}
	})
	t.Run("NeverReady", func(t *testing.T) {
		_, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{ReadyTimeout: time.Nanosecond, Dir: t.TempDir()})
		var ce *testenv.ComponentError
		if !errors.As(err, &ce) || ce.Component != "registry" || !strings.Contains(err.Error(), "not ready after") {
			t.Fatalf("got %v, want a not-ready ComponentError for the registry", err)
		}
	})
}

func TestTwoClustersSideBySide(t *testing.T) {
	var clusters [2]*testenv.Cluster
	var errs [2]error
	var wg sync.WaitGroup
	for i := range clusters {
		// Started at the same time, as a multi-cluster test would.
		wg.Go(func() {
			clusters[i], errs[i] = testenv.StartCluster(t.Context(), testenv.ClusterOptions{Dir: t.TempDir()})
		})
	}
	wg.Wait()
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(c.Stop)
		}
		if errs[i] != nil {
			t.Fatalf("start cluster %d: %v", i, errs[i])
		}
	}
	if clusters[0].Config.Host == clusters[1].Config.Host {
		t.Fatalf("both clusters at %s", clusters[0].Config.Host)
	}
	ctx := t.Context()
	one := kubernetes.NewForConfigOrDie(clusters[0].Config)
	two := kubernetes.NewForConfigOrDie(clusters[1].Config)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "only-in-one", Namespace: "default"}}
	if _, err := one.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := two.CoreV1().ConfigMaps("default").Get(ctx, "only-in-one", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the second cluster sees the first one's ConfigMap: %v", err)
	}
}

func TestSeedTagsAreServed(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	ctx := t.Context()
	digests, err := reg.PushImages(ctx, "team/app", "base")
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for i := range 1500 {
		tags = append(tags, fmt.Sprintf("1.%d.0", i))
	}
	if err := reg.SeedTags(ctx, "team/app", "base", tags...); err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(reg.Repository("team/app"))
	got, err := remote.List(repo, append(reg.RemoteOptions(ctx), remote.WithPageSize(1000))...)
	if err != nil || len(got) != 1501 {
		t.Fatalf("listed %d tags (%v), want 1501", len(got), err)
	}
	desc, err := remote.Head(repo.Tag("1.1499.0"), reg.RemoteOptions(ctx)...)
	if err != nil || desc.Digest != digests["base"] {
		t.Fatalf("seeded tag resolves to %v (%v), want %s", desc, err, digests["base"])
	}
}

// TestFreeAddrIsOutsideTheEphemeralRange: the port a test hands a program
// for --listen is one no outgoing connection can take before the program
// binds it, and it is free.
func TestFreeAddrIsOutsideTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	ephemeral, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		addr, err := testenv.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if port < 10000 || port >= ephemeral {
			t.Fatalf("FreeAddr gave %s: want a port in [10000, %d)", addr, ephemeral)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("FreeAddr gave %s, which is not free: %v", addr, err)
		}
		l.Close()
	}
}
