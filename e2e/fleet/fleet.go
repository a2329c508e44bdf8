// Package fleet brings up the whole Driftless loop on one machine: a dev
// and a prod cluster, an OCI registry, a Git server with a sample
// application repository, the manifests/ applied to both clusters, and the
// automator and synchronizers running as local processes that
// authenticate as the ServiceAccounts those manifests create. `make demo`
// narrates it; the end-to-end tests drive it.
package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/testenv"
	"driftless.dev/shared/webhook"
)

// Secrets of the demo. They are written to files the programs read and
// never printed.
const (
	gitUser    = "driftless"
	gitToken   = "demo-git-t0ken"
	hookSecret = "demo-hook-s3cret"
	// Repo is the sample application repository.
	Repo = "fleet"
	// Image is the sample application's image repository.
	Image = "team/web"
	// AppNamespace is where the sample application runs.
	AppNamespace = "web"
)

// Options configure Start.
type Options struct {
	// Dir holds data, logs, kubeconfigs and secrets.
	Dir string
	// BinDir holds what `make tools` built; "" finds .tools/bin.
	BinDir string
	// Automator and Synchronizer are the programs' binaries.
	Automator, Synchronizer string
	// Manifests is the manifests/ folder to install.
	Manifests string
	// Webhooks: the registry notifies the automator and the Git server
	// notifies the synchronizers. Without, both poll every Interval.
	Webhooks bool
	// Interval is the polling interval of both programs.
	Interval time.Duration
	// Soak, when set, gates the promotion (docs/records.md): the
	// synchronizers record what they apply, a Promotion from dev to prod
	// (healthy in dev for Soak) is seeded, and Walk waits for the
	// automator's merge instead of merging by hand.
	Soak time.Duration
	// Say narrates; nil is silent.
	Say func(format string, args ...any)
	// InCluster runs the programs as the manifests' Deployments on a real
	// node in each cluster, from images built from this tree (the
	// Automator and Synchronizer binaries are then unused): see incluster.go.
	InCluster bool
	// NoInstall, with InCluster, leaves installing the manifests to the
	// caller (Install, WaitAvailable), which then times it.
	NoInstall bool
}

// Fleet is the running loop.
type Fleet struct {
	opts     Options
	Registry *testenv.Registry
	Git      *testenv.GitServer
	Clusters map[string]*testenv.Cluster
	// Listen is each program's HTTP address: "automator", "sync-dev",
	// "sync-prod".
	Listen map[string]string
	// Kubeconfigs of the ServiceAccounts the programs run as.
	Kubeconfigs map[string]string

	mu    sync.Mutex
	procs map[string]*Proc
	// forwards are the UI's local listeners (ui.go).
	forwards []net.Listener

	keysOnce sync.Once
	keysErr  error
}

// Clusters the fleet runs, each following the branch of its name.
var Clusters = []string{"dev", "prod"}

func (f *Fleet) say(format string, args ...any) {
	if f.opts.Say != nil {
		f.opts.Say(format, args...)
	}
}

// Start brings everything up. On error, what started is stopped.
func Start(ctx context.Context, opts Options) (_ *Fleet, err error) {
	if opts.Interval == 0 {
		opts.Interval = time.Hour
	}
	f := &Fleet{opts: opts, Clusters: map[string]*testenv.Cluster{}, Listen: map[string]string{}, Kubeconfigs: map[string]string{}, procs: map[string]*Proc{}}
	defer func() {
		if err != nil {
			f.Stop()
		}
	}()
	for _, p := range []struct{ name, body string }{{"git-token", gitToken}, {"hook-secret", hookSecret}} {
		if err := os.WriteFile(filepath.Join(opts.Dir, p.name), []byte(p.body), 0o600); err != nil {
			return nil, err
		}
	}
	if opts.InCluster {
		if err := f.startInCluster(ctx); err != nil {
			return nil, err
		}
		return f, nil
	}
	for _, name := range []string{"automator", "sync-dev", "sync-prod"} {
		if f.Listen[name], err = freeAddr(); err != nil {
			return nil, err
		}
	}

	t0 := time.Now()
	ropts := testenv.RegistryOptions{BinDir: opts.BinDir, Dir: mkdir(opts.Dir, "registry")}
	if opts.Webhooks {
		ropts.NotifyURL = "http://" + f.Listen["automator"] + "/hooks/registry"
		ropts.NotifyHeaders = map[string]string{"Authorization": "Bearer " + hookSecret}
	}
	if f.Registry, err = testenv.StartRegistry(ctx, ropts); err != nil {
		return nil, err
	}
	if f.Git, err = testenv.StartGitServer(ctx, testenv.GitServerOptions{Dir: mkdir(opts.Dir, "git"), Auth: &testenv.BasicAuth{Username: gitUser, Password: gitToken}}); err != nil {
		return nil, err
	}
	if opts.Webhooks {
		f.Git.OnPush = func(string) { f.notifySynchronizers() }
	}
	for _, c := range Clusters {
		cl, err := testenv.StartCluster(ctx, testenv.ClusterOptions{BinDir: opts.BinDir, Dir: mkdir(opts.Dir, "cluster-"+c), Nodes: 2})
		if err != nil {
			return nil, fmt.Errorf("start the %s cluster: %w", c, err)
		}
		f.Clusters[c] = cl
	}
	f.say("started two clusters (dev, prod), an OCI registry at %s and a Git server at %s in %s", f.Registry.Host, f.Git.URL, since(t0))

	t0 = time.Now()
	if _, err := f.Registry.PushImages(ctx, Image, "1.0.0"); err != nil {
		return nil, err
	}
	if err := f.seed(ctx); err != nil {
		return nil, err
	}
	f.say("pushed %s/%s:1.0.0 and seeded the repository %s (branches dev and prod) in %s", f.Registry.Host, Image, f.Git.RepoURL(Repo), since(t0))

	t0 = time.Now()
	for _, c := range Clusters {
		out, err := f.Kubectl(ctx, c, "apply", "--server-side", "-k", filepath.Join(opts.Manifests, "overlays", c))
		if err != nil {
			return nil, fmt.Errorf("apply manifests/overlays/%s to the %s cluster: %w\n%s", c, c, err, out)
		}
		f.say("applied manifests/overlays/%s to the %s cluster:\n%s", c, c, indent(out))
	}
	for _, c := range Clusters {
		for _, sa := range []string{"driftless-automator", "driftless-synchronizer"} {
			cfg, err := f.Clusters[c].ServiceAccountConfig(ctx, "driftless-system", sa, 24*time.Hour)
			if err != nil {
				return nil, fmt.Errorf("token for %s in %s: %w", sa, c, err)
			}
			path := filepath.Join(opts.Dir, c+"-"+sa+".kubeconfig")
			if err := testenv.WriteKubeconfig(path, cfg); err != nil {
				return nil, err
			}
			f.Kubeconfigs[c+"/"+sa] = path
		}
	}
	f.say("minted ServiceAccount tokens (TokenRequest API) for driftless-automator and driftless-synchronizer in both clusters in %s", since(t0))
	if opts.Soak > 0 {
		if err := f.recordKeys(); err != nil {
			return nil, err
		}
	}

	if err := f.StartAutomator(ctx); err != nil {
		return nil, err
	}
	for _, c := range Clusters {
		if err := f.StartSynchronizer(ctx, c); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }

func mkdir(parent, name string) string {
	p := filepath.Join(parent, name)
	os.MkdirAll(p, 0o755)
	return p
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// freeAddr is a free loopback address outside the ports outgoing
// connections take (see testenv.FreeAddr).
func freeAddr() (string, error) { return testenv.FreeAddr() }

// seed writes the sample application: a base, dev and prod overlays, and
// the registry policy the automator follows.
func (f *Fleet) seed(ctx context.Context) error {
	img := f.Registry.Host + "/" + Image
	files := map[string]string{
		"policies/web.yaml": `apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: web, namespace: web}
spec:
  image: ` + img + `
  interval: ` + f.opts.Interval.String() + `
  policy:
    semver: {range: "^1.0.0"}
`,
		"apps/web/kustomization.yaml": "resources: [namespace.yaml, deployment.yaml, service.yaml]\n",
		"apps/web/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
		"apps/web/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: ` + img + `:1.0.0 # {"$imagepolicy": "web:web"}
          ports:
            - containerPort: 8080
`,
		"apps/web/service.yaml":            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: web\nspec:\n  selector: {app: web}\n  ports:\n    - port: 80\n      targetPort: 8080\n",
		"clusters/dev/kustomization.yaml":  "resources: [../../apps/web]\n",
		"clusters/prod/kustomization.yaml": "resources: [../../apps/web]\npatches:\n  - target: {kind: Deployment, name: web}\n    patch: |\n      - op: replace\n        path: /spec/replicas\n        value: 3\n",
		"README.md":                        "The sample fleet: apps/ holds the application, clusters/<name>/ what each cluster applies,\npolicies/ the registry policies. The dev branch is applied to dev; merge dev into prod to promote.\n",
	}
	if f.opts.Soak > 0 {
		files["policies/promotion.yaml"] = "apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: dev-to-prod}\n" +
			"spec: {from: dev, to: prod, healthyIn: [dev], soak: " + f.opts.Soak.String() + "}\n"
	}
	src := mkdir(f.opts.Dir, "seed")
	for rel, body := range files {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	if _, err := f.Git.Seed(ctx, Repo, "dev", src, "Add the web application"); err != nil {
		return err
	}
	if _, err := f.Git.Git(ctx, Repo, "branch", "prod", "dev"); err != nil {
		return fmt.Errorf("create branch prod: %w", err)
	}
	return nil
}

// Kubectl runs the kubectl `make tools` built against cluster c as admin.
func (f *Fleet) Kubectl(ctx context.Context, c string, args ...string) (string, error) {
	bin := filepath.Join(f.binDir(), "kubectl")
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", f.Clusters[c].Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (f *Fleet) binDir() string {
	if f.opts.BinDir != "" {
		return f.opts.BinDir
	}
	d, _ := testenv.FindBinDir()
	return d
}

// Proc is one running program.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
}

// Done is closed when the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

func (f *Fleet) start(name, bin string, args ...string) (*Proc, error) {
	log := filepath.Join(f.opts.Dir, name+".log")
	lf, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + f.opts.Dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(p.done) }()
	f.mu.Lock()
	f.procs[name] = p
	f.mu.Unlock()
	return p, nil
}

// Proc returns the running program name.
func (f *Fleet) Proc(name string) *Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs[name]
}

// StartAutomator runs the automator against the dev branch, as the dev
// cluster's driftless-automator ServiceAccount (for its Lease).
func (f *Fleet) StartAutomator(ctx context.Context) error {
	return f.StartAutomatorReplica(ctx, "automator", f.Listen["automator"])
}

// StartAutomatorReplica runs one automator replica named name on listen.
func (f *Fleet) StartAutomatorReplica(ctx context.Context, name, listen string) error {
	_, err := f.start(name, f.opts.Automator, append([]string{"run",
		"--git-url", f.Git.RepoURL(Repo), "--git-branch", "dev", "--git-username", gitUser,
		"--git-password-file", filepath.Join(f.opts.Dir, "git-token"),
		"--policy-path", "policies", "--manifest-path", "apps", "--insecure-registries", f.Registry.Host,
		"--workdir", filepath.Join(f.opts.Dir, name+"-clone"),
		"--listen", listen, "--webhook-secret-file", filepath.Join(f.opts.Dir, "hook-secret"),
		"--leader-elect", "--lease-namespace", "driftless-system", "--identity", name,
		"--kubeconfig", f.Kubeconfigs["dev/driftless-automator"],
		"--refresh", f.opts.Interval.String(), "--log-format", "json"}, f.gated("--promotion-targets", "prod", "--record-keyring", f.recordKeyring())...)...)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, "http://"+listen+"/healthz", f.Proc(name))
}

// gated is args when the promotion is gated.
func (f *Fleet) gated(args ...string) []string {
	if f.opts.Soak > 0 {
		return args
	}
	return nil
}

// StartSynchronizer runs the synchronizer of cluster c, following the
// branch of the same name, as that cluster's driftless-synchronizer
// ServiceAccount.
func (f *Fleet) StartSynchronizer(ctx context.Context, c string) error {
	return f.StartSynchronizerReplica(ctx, c, "sync-"+c, f.Listen["sync-"+c])
}

// StartSynchronizerReplica runs one synchronizer replica of cluster c.
func (f *Fleet) StartSynchronizerReplica(ctx context.Context, c, name, listen string) error {
	_, err := f.start(name, f.opts.Synchronizer, append([]string{"run",
		"--repo-url", f.Git.RepoURL(Repo), "--branch", c, "--path", "clusters/" + c,
		"--git-username", gitUser, "--git-password-file", filepath.Join(f.opts.Dir, "git-token"),
		"--checkout-dir", filepath.Join(f.opts.Dir, name+"-checkout"),
		"--kubeconfig", f.Kubeconfigs[c+"/driftless-synchronizer"],
		"--listen", listen, "--webhook-secret-file", filepath.Join(f.opts.Dir, "hook-secret"),
		"--leader-elect", "--identity", name, "--interval", f.opts.Interval.String(),
		"--health-timeout", "2m", "--log-format", "json"}, f.gated("--record", "--cluster-name", c, "--record-signing-key", f.recordKey(c))...)...)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, "http://"+listen+"/healthz", f.Proc(name))
}

func waitHTTP(ctx context.Context, u string, p *Proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.Log)
			return fmt.Errorf("%s exited:\n%s", p.Name, tail(string(b), 20))
		default:
		}
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s does not serve %s", p.Name, u)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// notifySynchronizers sends each synchronizer a push webhook, signed as
// GitHub signs; a standby or a stopped one just misses it (polling
// catches up).
func (f *Fleet) notifySynchronizers() {
	f.mu.Lock()
	var targets []string
	for name := range f.procs {
		// The automators too: a record is a push, and their gates act on it.
		if strings.HasPrefix(name, "sync-") || strings.HasPrefix(name, "automator") {
			targets = append(targets, name)
		}
	}
	f.mu.Unlock()
	for _, name := range targets {
		c := strings.TrimPrefix(strings.SplitN(name, ".", 2)[0], "sync-")
		body := []byte(`{"ref":"refs/heads/` + c + `"}`)
		req, _ := http.NewRequest(http.MethodPost, "http://"+f.listenOf(name)+"/hooks/git", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", Sign([]byte(hookSecret), body))
		req.Header.Set("X-GitHub-Event", "push")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}

// Sign is the X-Hub-Signature-256 value GitHub sends with body.
func Sign(secret, body []byte) string { return webhook.Sign(secret, body) }

// Diagnose is what a failed test prints: the tail of every program's log
// (the logs live in a folder the test removes), each synchronizer's status
// as the cluster records it, and the branch heads.
func (f *Fleet) Diagnose(ctx context.Context) string {
	var b strings.Builder
	f.mu.Lock()
	names := slices.Sorted(maps.Keys(f.procs))
	procs := maps.Clone(f.procs)
	f.mu.Unlock()
	for _, name := range names {
		log, _ := os.ReadFile(procs[name].Log)
		fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", name, tail(string(log), 40))
	}
	for _, c := range slices.Sorted(maps.Keys(f.Clusters)) {
		cs, err := kubernetes.NewForConfig(f.Clusters[c].Config)
		if err != nil {
			continue
		}
		if cm, err := cs.CoreV1().ConfigMaps("driftless-system").Get(ctx, "driftless", metav1.GetOptions{}); err == nil {
			fmt.Fprintf(&b, "--- status of the %s synchronizer ---\n%v\n", c, cm.Data)
		} else {
			fmt.Fprintf(&b, "--- status of the %s synchronizer: %v\n", c, err)
		}
	}
	for _, branch := range []string{"dev", "prod"} {
		out, _ := f.Git.Git(ctx, Repo, "log", "--oneline", "-5", branch)
		fmt.Fprintf(&b, "--- %s ---\n%s\n", branch, out)
	}
	return b.String()
}

func (f *Fleet) listenOf(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Listen[name]
}

// SetListen records the address of an extra replica.
func (f *Fleet) SetListen(name, addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Listen[name] = addr
}

// Kill ends a program at once (SIGKILL), as a node failure would.
func (f *Fleet) Kill(name string) {
	p := f.Proc(name)
	if p == nil {
		return
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Stop ends the programs and the environment.
func (f *Fleet) Stop() {
	f.mu.Lock()
	procs, forwards := f.procs, f.forwards
	f.forwards = nil
	f.mu.Unlock()
	for _, l := range forwards {
		l.Close()
	}
	for _, p := range procs {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.Cmd.Process.Kill()
		}
	}
	// The clusters stop at once: a real node takes seconds to stop.
	var wg sync.WaitGroup
	for _, c := range f.Clusters {
		wg.Go(c.Stop)
	}
	wg.Wait()
	if f.Git != nil {
		f.Git.Stop()
	}
	if f.Registry != nil {
		f.Registry.Stop()
	}
}

// SyncStatus is a synchronizer's /status.
type SyncStatus struct {
	Leader bool `json:"leader"`
	Status struct {
		Phase               string `json:"phase"`
		Reason              string `json:"reason"`
		Message             string `json:"message"`
		Revision            string `json:"revision"`
		LastAppliedRevision string `json:"lastAppliedRevision"`
	} `json:"status"`
}

// Status reads the /status of the program name ("" fields when down).
// The message, which /status shows only to an authorized user, comes
// from the status ConfigMap, as kubectl reads it.
func (f *Fleet) Status(name string) SyncStatus {
	if f.opts.InCluster {
		return f.statusInCluster(strings.TrimPrefix(name, "sync-"))
	}
	var st SyncStatus
	resp, err := http.Get("http://" + f.listenOf(name) + "/status")
	if err != nil {
		return st
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	if c, ok := f.Clusters[strings.TrimPrefix(name, "sync-")]; ok {
		if cs, err := kubernetes.NewForConfig(c.Config); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if cm, err := cs.CoreV1().ConfigMaps("driftless-system").Get(ctx, "driftless", metav1.GetOptions{}); err == nil {
				st.Status.Message = cm.Data["message"]
			}
		}
	}
	return st
}

// Rollout is the web Deployment's state in one cluster.
type Rollout struct {
	Image                    string
	Replicas, Updated, Ready int32
	Done                     bool
}

// Web returns the sample application's rollout in cluster c.
func (f *Fleet) Web(ctx context.Context, c string) Rollout {
	cs, err := kubernetes.NewForConfig(f.Clusters[c].Config)
	if err != nil {
		return Rollout{}
	}
	d, err := cs.AppsV1().Deployments(AppNamespace).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return Rollout{}
	}
	r := Rollout{Image: d.Spec.Template.Spec.Containers[0].Image, Updated: d.Status.UpdatedReplicas, Ready: d.Status.AvailableReplicas}
	if d.Spec.Replicas != nil {
		r.Replicas = *d.Spec.Replicas
	}
	r.Done = d.Status.ObservedGeneration >= d.Generation && r.Updated == r.Replicas && r.Ready == r.Replicas &&
		d.Status.Replicas == r.Replicas
	return r
}

// Head is the commit branch points at.
func (f *Fleet) Head(ctx context.Context, branch string) string {
	h, _ := f.Git.Head(ctx, Repo, branch)
	return h
}

// Show is `git show` of a commit, for the narration.
func (f *Fleet) Show(ctx context.Context, commit string) string {
	out, _ := f.Git.Git(ctx, Repo, "show", "--stat", "--patch", "--format=commit %H%nAuthor: %an <%ae>%n%n%B", commit)
	return out
}

// Promote merges dev into prod, as a reviewed pull request's merge would,
// with git itself, and returns the merge commit.
func (f *Fleet) Promote(ctx context.Context) (string, error) {
	return f.withClone(ctx, Repo, "prod", func(git func(...string) (string, error), _ string) error {
		_, err := git("merge", "--no-ff", "--quiet", "-m", "Promote dev to prod", "origin/dev")
		return err
	})
}

// Commit writes files on branch (an empty body deletes the file), commits
// and pushes with git itself, as a person would, and returns the commit.
func (f *Fleet) Commit(ctx context.Context, branch, message string, files map[string]string) (string, error) {
	return f.CommitTo(ctx, Repo, branch, message, files)
}

// CommitTo is Commit in another repository of the Git server.
func (f *Fleet) CommitTo(ctx context.Context, repo, branch, message string, files map[string]string) (string, error) {
	return f.withClone(ctx, repo, branch, func(git func(...string) (string, error), dir string) error {
		for rel, body := range files {
			p := filepath.Join(dir, rel)
			if body == "" {
				if err := os.Remove(p); err != nil {
					return err
				}
				continue
			}
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				return err
			}
		}
		if _, err := git("add", "-A"); err != nil {
			return err
		}
		_, err := git("commit", "--quiet", "-m", message)
		return err
	})
}

// withClone clones branch, lets change commit to it, and pushes; when
// someone pushed meanwhile, it rebases and pushes again, never forcing.
func (f *Fleet) withClone(ctx context.Context, repo, branch string, change func(git func(...string) (string, error), dir string) error) (string, error) {
	work := filepath.Join(f.opts.Dir, "work-"+fmt.Sprint(time.Now().UnixNano()))
	defer os.RemoveAll(work)
	authed, err := url.Parse(f.Git.RepoURL(repo))
	if err != nil {
		return "", err
	}
	authed.User = url.UserPassword(gitUser, gitToken)
	run := func(dir string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Release Manager", "GIT_AUTHOR_EMAIL=release@example.com",
			"GIT_COMMITTER_NAME=Release Manager", "GIT_COMMITTER_EMAIL=release@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			// The URL carries the token: never let it into an error.
			return "", fmt.Errorf("git %s: %s", args[0], strings.ReplaceAll(string(out), gitToken, "***"))
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := run(f.opts.Dir, "clone", "--quiet", "--branch", branch, authed.String(), work); err != nil {
		return "", err
	}
	git := func(args ...string) (string, error) { return run(work, args...) }
	if err := change(git, work); err != nil {
		return "", err
	}
	for i := 0; ; i++ {
		if _, err := git("push", "--quiet", "origin", branch); err == nil {
			break
		} else if i == 4 {
			return "", err
		}
		if _, err := git("pull", "--rebase", "--quiet", "origin", branch); err != nil {
			return "", err
		}
	}
	return git("rev-parse", "HEAD")
}

// Until polls cond every 20 ms until it holds, or fails after timeout.
func Until(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
