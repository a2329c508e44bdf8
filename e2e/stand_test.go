package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/e2e/fleet"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// A stand is the loop on one cluster for the reliability suite: a
// registry, a Git server and the cluster's API server, each behind a
// testenv.FaultProxy (the automator and the synchronizer have a Git proxy
// each, so a fault or a kill can aim at one), and both programs as local
// processes that a test can SIGKILL and restart with the same flags and
// the same warm clone and checkout.
type stand struct {
	t        testing.TB
	dir      string
	interval time.Duration
	// canary is every secret of the stand: the Git password, the webhook
	// secrets, the registry password when standOptions.auth.
	canary string

	cluster  *testenv.Cluster
	cs       kubernetes.Interface
	reg      *testenv.Registry
	git      *testenv.GitServer
	regProxy *testenv.FaultProxy
	gitA     *testenv.FaultProxy // the automator's way to Git
	gitS     *testenv.FaultProxy // the synchronizer's
	api      *testenv.FaultProxy

	// image is the repository the manifests and the policy name (through
	// regProxy, or an ECR host).
	image string
	// ns is where the application's objects live.
	ns string
	// policyAuth is added to the policy's spec.
	policyAuth string

	mu      sync.Mutex
	procs   map[string]*standProc
	args    map[string][]string
	env     map[string][]string
	listen  map[string]string
	person  *gitrepo.Repo
	tags    []string // pushed, in order
	commits []string // the person's commits
	n       int      // ConfigMaps written so far
}

// The stand's programs and where their state lives.
const (
	automatorProc    = "automator"
	synchronizerProc = "synchronizer"
	standRepo        = "fleet"
	standRepoPath    = "team/web"
	policyKey        = "chaos:web"
	statusNamespace  = "driftless-system"
	personName       = "Release Manager"
	// passTimeout bounds each program's pass on the stand: a server that
	// never answers costs this long, then the pass is retried.
	passTimeout = 10 * time.Second
)

type standProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

type standOptions struct {
	// canary is every secret of the stand; default a random one.
	canary string
	// auth: the registry requires user AWS and the canary as password.
	auth bool
	// automator adds arguments and environment to the automator's, once
	// the stand's servers run.
	automator func(s *stand) (args, env []string)
	// image overrides the repository the manifests and the policy name;
	// policyAuth is added to the policy's spec.
	image, policyAuth string
}

func newStand(t testing.TB, opts standOptions) *stand {
	t.Helper()
	ctx := t.Context()
	s := &stand{t: t, dir: t.TempDir(), interval: 5 * time.Second, canary: cmp.Or(opts.canary, "CANARY-"+randomHex(12)), policyAuth: opts.policyAuth,
		procs: map[string]*standProc{}, args: map[string][]string{}, env: map[string][]string{}, listen: map[string]string{}}
	s.listen[automatorProc], s.listen[synchronizerProc] = freeAddr(t), freeAddr(t)
	for name, body := range map[string]string{"git-token": s.canary, "hook-secret": s.canary} {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.cluster = testenv.NewCluster(t, testenv.ClusterOptions{Nodes: 1})
	s.cs = kubernetes.NewForConfigOrDie(s.cluster.Config)
	ropts := testenv.RegistryOptions{
		NotifyURL:     "http://" + s.listen[automatorProc] + "/hooks/registry",
		NotifyHeaders: map[string]string{"Authorization": "Bearer " + s.canary},
	}
	if opts.auth {
		ropts.Auth = &testenv.BasicAuth{Username: "AWS", Password: s.canary}
	}
	s.reg = testenv.NewRegistry(t, ropts)
	s.git = testenv.NewGitServer(t, testenv.GitServerOptions{Auth: &testenv.BasicAuth{Username: "driftless", Password: s.canary}})
	s.git.OnPush = func(string) { s.notifySynchronizer() }
	var err error
	for _, p := range []**testenv.FaultProxy{&s.gitA, &s.gitS} {
		if *p, err = testenv.StartFaultProxy(s.git.URL, testenv.FaultProxyOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup((*p).Stop)
	}
	if s.regProxy, err = testenv.StartFaultProxy(s.reg.URL, testenv.FaultProxyOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.regProxy.Stop)
	if s.api, err = s.cluster.StartAPIProxy(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.api.Stop)
	s.image = s.regProxy.Host + "/" + standRepoPath
	if opts.image != "" {
		s.image = opts.image
	}
	s.ns = s.cluster.Namespace(t)
	s.tags = []string{"1.0.0"}
	if _, err := s.reg.PushImages(ctx, standRepoPath, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	s.seed()
	s.kubeconfig()

	s.args[automatorProc] = []string{"run",
		"--git-url", s.gitA.URL + "/" + standRepo + ".git", "--git-branch", "main", "--git-username", "driftless",
		"--git-password-file", filepath.Join(s.dir, "git-token"), "--policy-path", "policies", "--manifest-path", "app",
		"--insecure-registries", s.regProxy.Host, "--workdir", s.cloneDir(automatorProc),
		"--listen", s.listen[automatorProc], "--webhook-secret-file", filepath.Join(s.dir, "hook-secret"),
		"--refresh", s.interval.String(), "--pass-timeout", passTimeout.String(), "--log-format", "json", "--log-level", "debug",
	}
	if opts.automator != nil {
		args, env := opts.automator(s)
		s.args[automatorProc] = append(s.args[automatorProc], args...)
		s.env[automatorProc] = env
	}
	s.args[synchronizerProc] = []string{"run",
		"--repo-url", s.gitS.URL + "/" + standRepo + ".git", "--branch", "main", "--path", "app",
		"--git-username", "driftless", "--git-password-file", filepath.Join(s.dir, "git-token"),
		"--checkout-dir", s.cloneDir(synchronizerProc), "--kubeconfig", filepath.Join(s.dir, "sync.kubeconfig"),
		"--listen", s.listen[synchronizerProc], "--webhook-secret-file", filepath.Join(s.dir, "hook-secret"),
		"--interval", s.interval.String(), "--pass-timeout", passTimeout.String(), "--health-timeout", "2m",
		"--log-format", "json", "--log-level", "debug",
	}
	t.Cleanup(s.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.diagnose())
		}
	})
	for _, name := range []string{automatorProc, synchronizerProc} {
		s.start(name)
	}
	return s
}

// cloneDir is the warm clone (automator) or checkout (synchronizer).
func (s *stand) cloneDir(name string) string { return filepath.Join(s.dir, name+"-clone") }

// seed writes the application: a policy, a marked Deployment, three
// ConfigMaps.
func (s *stand) seed() {
	t := s.t
	files := map[string]string{
		"policies/web.yaml": fmt.Sprintf("apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: web, namespace: chaos}\nspec:\n  image: %s\n  interval: %s\n  policy:\n    semver: {range: \">=1.0.0\"}\n%s", s.image, s.interval, s.policyAuth),
		"app/deployment.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %s
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: %s:1.0.0 # {"$imagepolicy": "%s"}
`, s.ns, s.image, policyKey),
	}
	for range 3 {
		s.n++
		files[cmFile(s.n)] = s.configMap(s.n)
	}
	if _, err := s.git.Seed(t.Context(), standRepo, "main", writeTree(t, files), "Add the web application"); err != nil {
		t.Fatal(err)
	}
	var err error
	s.person, err = gitrepo.Open(t.Context(), filepath.Join(s.dir, "person"), s.git.RepoURL(standRepo), "main",
		gitrepo.Auth{Username: "driftless", Password: s.canary})
	if err != nil {
		t.Fatal(err)
	}
}

func cmFile(n int) string { return fmt.Sprintf("app/cm-%03d.yaml", n) }

func (s *stand) configMap(n int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%03d\n  namespace: %s\ndata:\n  n: \"%d\"\n", n, s.ns, n)
}

// kubeconfig gives the synchronizer a ServiceAccount allowed everything,
// reached through the API proxy (a bearer token passes a proxy; client
// certificates do not).
func (s *stand) kubeconfig() {
	t, ctx := s.t, s.t.Context()
	if _, err := s.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: statusNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := s.cs.CoreV1().ServiceAccounts(statusNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "driftless"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "driftless-chaos"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: statusNamespace, Name: "driftless"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.cluster.ServiceAccountConfig(ctx, statusNamespace, "driftless", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host = s.api.URL
	if err := testenv.WriteKubeconfig(filepath.Join(s.dir, "sync.kubeconfig"), cfg); err != nil {
		t.Fatal(err)
	}
}

// start runs a program and waits until it serves /healthz.
func (s *stand) start(name string) {
	s.t.Helper()
	log := filepath.Join(s.dir, name+".log")
	lf, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(programs[name], s.args[name]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir}, s.env[name]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	p := &standProc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); lf.Close(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	err = fleet.Until(s.t.Context(), 60*time.Second, name+" serving /healthz", func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		resp, err := http.Get("http://" + s.listen[name] + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-p.done:
		s.t.Fatalf("%s exited at start:\n%s", name, tailOf(log, 30))
	default:
	}
	if err != nil {
		s.t.Fatal(err)
	}
}

// kill ends a program with SIGKILL, as a node failure or the OOM killer
// would, and waits until it is gone.
func (s *stand) kill(name string) {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (s *stand) stop() {
	s.mu.Lock()
	procs := maps.Clone(s.procs)
	s.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// notifySynchronizer sends the synchronizer a push webhook, signed as
// GitHub signs; a dead one misses it, as it would in a cluster.
func (s *stand) notifySynchronizer() {
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.listen[synchronizerProc]+"/hooks/git", strings.NewReader(string(body)))
	req.Header.Set("X-Hub-Signature-256", fleet.Sign([]byte(s.canary), body))
	req.Header.Set("X-GitHub-Event", "push")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// pushTag pushes the next tag of the image to the registry; the registry
// notifies the automator.
func (s *stand) pushTag() string {
	s.mu.Lock()
	tag := fmt.Sprintf("1.%d.0", len(s.tags))
	s.tags = append(s.tags, tag)
	s.mu.Unlock()
	if _, err := s.reg.PushImages(s.t.Context(), standRepoPath, tag); err != nil {
		s.t.Fatal(err)
	}
	return tag
}

// change is a person's commit: one ConfigMap added, the oldest removed,
// pushed on top of whatever the automator pushed meanwhile.
func (s *stand) change() string {
	t, ctx := s.t, s.t.Context()
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if _, err := s.person.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		add := filepath.Join(s.person.Dir(), cmFile(n))
		if err := os.WriteFile(add, []byte(s.configMap(n)), 0o644); err != nil {
			t.Fatal(err)
		}
		if old := s.gitObjects(s.person.Dir()); len(old) > 3 {
			os.Remove(filepath.Join(s.person.Dir(), "app", old[0]+".yaml"))
		}
		h, err := s.person.Commit(fmt.Sprintf("Add cm-%03d", n), gitrepo.Signature{Name: personName, Email: "release@example.com"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = s.person.Push(ctx, "main")
		if err == nil {
			s.mu.Lock()
			s.commits = append(s.commits, h.String())
			s.mu.Unlock()
			return h.String()
		}
		if !errors.Is(err, gitrepo.ErrRejected) || attempt == 10 {
			t.Fatal(err)
		}
	}
}

// gitObjects lists the ConfigMaps a checkout of the repository holds.
func (s *stand) gitObjects(dir string) []string {
	entries, _ := os.ReadDir(filepath.Join(dir, "app"))
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "cm-") {
			out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
		}
	}
	slices.Sort(out)
	return out
}

// head is the branch's head on the Git server.
func (s *stand) head(ctx context.Context) string {
	h, _ := s.git.Head(ctx, standRepo, "main")
	return h
}

// syncStatus reads the status the synchronizer records in the cluster.
func (s *stand) syncStatus(ctx context.Context) map[string]string {
	cm, err := s.cs.CoreV1().ConfigMaps(statusNamespace).Get(ctx, "driftless", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return cm.Data
}

// newestTag is the newest tag pushed.
func (s *stand) newestTag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tags[len(s.tags)-1]
}

// converged reports whether everything caught up: Git holds the newest
// tag, the synchronizer applied the head and is Ready, and the cluster's
// members are exactly the ConfigMaps Git holds. why says what is missing.
func (s *stand) converged(ctx context.Context) (ok bool, why string) {
	head := s.head(ctx)
	img, err := s.git.Git(ctx, standRepo, "show", "main:app/deployment.yaml")
	if err != nil {
		return false, "read the Deployment from Git: " + err.Error()
	}
	if want := s.image + ":" + s.newestTag() + " "; !strings.Contains(img, want) {
		return false, "Git does not hold " + want
	}
	st := s.syncStatus(ctx)
	if st["lastAppliedRevision"] != "main@sha1:"+head || st["phase"] != "Ready" {
		return false, fmt.Sprintf("synchronizer %s %s at %s, head %s", st["phase"], st["reason"], st["lastAppliedRevision"], head)
	}
	inGit, inCluster := s.gitObjectsAt(ctx, head), s.clusterObjects(ctx)
	if !slices.Equal(inGit, inCluster) {
		return false, fmt.Sprintf("cluster members %v, Git %v", inCluster, inGit)
	}
	return true, ""
}

// gitObjectsAt lists the ConfigMaps of commit.
func (s *stand) gitObjectsAt(ctx context.Context, commit string) []string {
	out, err := s.git.Git(ctx, standRepo, "ls-tree", "--name-only", commit, "app/")
	if err != nil {
		return nil
	}
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if b := filepath.Base(l); strings.HasPrefix(b, "cm-") {
			names = append(names, strings.TrimSuffix(b, ".yaml"))
		}
	}
	slices.Sort(names)
	return names
}

// clusterObjects lists the ConfigMaps of the application's namespace: a
// member left behind (orphaned) or one pruned wrongly shows here.
func (s *stand) clusterObjects(ctx context.Context) []string {
	list, err := s.cs.CoreV1().ConfigMaps(s.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var names []string
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "cm-") {
			names = append(names, cm.Name)
		}
	}
	slices.Sort(names)
	return names
}

// invariants checks what a converged stand must hold, whatever happened
// before: each tag committed at most once and the newest exactly once,
// every commit of the person still in the history, no file a killed
// writer left in the clone or the checkout.
func (s *stand) invariants(ctx context.Context) error {
	var errs []error
	log, err := s.git.Git(ctx, standRepo, "log", "--format=%H %s", "main")
	if err != nil {
		return err
	}
	s.mu.Lock()
	tags, commits := slices.Clone(s.tags), slices.Clone(s.commits)
	s.mu.Unlock()
	subjects := map[string]int{}
	for _, l := range strings.Split(log, "\n") {
		if _, subject, ok := strings.Cut(l, " "); ok {
			subjects[subject]++
		}
	}
	// Each round waits for convergence before the next tag: every tag is
	// the newest for a while, so each must be committed, and once.
	for _, tag := range tags[1:] {
		if n := subjects["Update "+s.image+" to "+tag]; n != 1 {
			errs = append(errs, fmt.Errorf("tag %s committed %d times", tag, n))
		}
	}
	for _, c := range commits {
		if !strings.Contains(log, c+" ") {
			errs = append(errs, fmt.Errorf("the person's commit %s is not in the history", c))
		}
	}
	for _, name := range []string{automatorProc, synchronizerProc} {
		for _, p := range testenv.Leftovers(s.cloneDir(name)) {
			errs = append(errs, fmt.Errorf("%s left %s", name, p))
		}
	}
	return errors.Join(errs...)
}

// waitConverged waits up to limit for convergence and returns how long
// it took, or an error saying what did not catch up.
func (s *stand) waitConverged(ctx context.Context, limit time.Duration) (time.Duration, error) {
	t0 := time.Now()
	why := ""
	err := fleet.Until(ctx, limit, "convergence", func() bool {
		var ok bool
		ok, why = s.converged(ctx)
		return ok
	})
	if err != nil {
		return time.Since(t0), fmt.Errorf("not converged after %s: %s", limit, why)
	}
	return time.Since(t0), nil
}

// diagnose is what a failed test prints: each program's log tail, the
// recorded status and the branch's last commits.
func (s *stand) diagnose() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, name := range []string{automatorProc, synchronizerProc} {
		fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", name, tailOf(filepath.Join(s.dir, name+".log"), 40))
	}
	fmt.Fprintf(&b, "--- status of the synchronizer ---\n%v\n", s.syncStatus(ctx))
	out, _ := s.git.Git(ctx, standRepo, "log", "--format=%h %an: %s", "-8", "main")
	fmt.Fprintf(&b, "--- main ---\n%s\n", out)
	return b.String()
}

func tailOf(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logSize is how much a program has logged so far, to read what it logs
// from now on.
func (s *stand) logSize(name string) int64 {
	st, err := os.Stat(filepath.Join(s.dir, name+".log"))
	if err != nil {
		return 0
	}
	return st.Size()
}

// logLine returns the first line a program logged after offset that
// holds every one of subs.
func (s *stand) logLine(name string, offset int64, subs ...string) (string, bool) {
	b, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
	if int64(len(b)) < offset {
		offset = 0
	}
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		found := true
		for _, sub := range subs {
			found = found && strings.Contains(l, sub)
		}
		if found && l != "" {
			return l, true
		}
	}
	return "", false
}

// metric returns the value of the first series of a program's /metrics
// that starts with prefix (0 when there is none).
func (s *stand) metric(name, prefix string) float64 {
	resp, err := http.Get("http://" + s.listen[name] + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			var v float64
			fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v)
			return v
		}
	}
	return 0
}

// statusSummary is the synchronizer's /status as anyone reads it.
func (s *stand) statusSummary() (phase, reason string) {
	resp, err := http.Get("http://" + s.listen[synchronizerProc] + "/status")
	if err != nil {
		return "", ""
	}
	defer resp.Body.Close()
	var st struct {
		Status struct{ Phase, Reason string } `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.Status.Phase, st.Status.Reason
}

// event returns the message of an Event with reason that the
// synchronizer recorded after since.
func (s *stand) event(ctx context.Context, reason string, since time.Time) (string, bool) {
	list, err := s.cs.CoreV1().Events(statusNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", false
	}
	for _, e := range list.Items {
		if e.Reason == reason && !e.LastTimestamp.Time.Before(since.Truncate(time.Second)) {
			return e.Message, true
		}
	}
	return "", false
}

// rejectBotPushes installs a pre-receive hook on the repository that
// refuses any push whose new commit the automator wrote, as a protected
// branch would; undo removes it.
func (s *stand) rejectBotPushes() (undo func()) {
	hook := filepath.Join(s.git.Root, standRepo+".git", "hooks", "pre-receive")
	script := "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$(git log -1 --format=%an \"$new\")\" = \"Driftless Automator\" ]; then\n    echo \"pushes by the automator are frozen\" >&2; exit 1\n  fi\ndone\n"
	os.MkdirAll(filepath.Dir(hook), 0o755)
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		s.t.Fatal(err)
	}
	return func() { os.Remove(hook) }
}
