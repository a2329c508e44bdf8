package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/shared/testenv"
)

// In-cluster mode (Options.InCluster): each cluster has a real node, the
// programs run there as the manifests' Deployments, from images built from
// this tree and pinned by digest in the release kustomizations, and the
// registry and the Git server send their webhooks to the programs'
// Services, made NodePorts on the node's address (as a load balancer
// would expose them).
const (
	AutomatorNodePort    = 30080
	SynchronizerNodePort = 30081
)

// startInCluster is Start for Options.InCluster.
func (f *Fleet) startInCluster(ctx context.Context) error {
	t0 := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := map[string]error{}
	for _, c := range Clusters {
		wg.Go(func() {
			cl, err := testenv.StartCluster(ctx, testenv.ClusterOptions{BinDir: f.opts.BinDir, Dir: mkdir(f.opts.Dir, "cluster-"+c), Nodes: 2, RealNode: true})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[c] = fmt.Errorf("start the %s cluster: %w", c, err)
				return
			}
			f.Clusters[c] = cl
		})
	}
	wg.Wait()
	for _, c := range Clusters {
		if errs[c] != nil {
			return errs[c]
		}
	}
	dev := f.Clusters["dev"].Node
	for _, c := range Clusters {
		node := f.Clusters[c].Node
		f.Listen["sync-"+c] = fmt.Sprintf("%s:%d", node.IP, SynchronizerNodePort)
	}
	f.Listen["automator"] = fmt.Sprintf("%s:%d", dev.IP, AutomatorNodePort)
	var err error
	if f.Registry, err = testenv.StartRegistry(ctx, testenv.RegistryOptions{
		BinDir: f.opts.BinDir, Dir: mkdir(f.opts.Dir, "registry"), Address: dev.HostIP,
		NotifyURL:     "http://" + f.Listen["automator"] + "/hooks/registry",
		NotifyHeaders: map[string]string{"Authorization": "Bearer " + hookSecret},
	}); err != nil {
		return err
	}
	for _, c := range Clusters {
		if err := f.Clusters[c].Node.TrustRegistry(f.Registry.Host); err != nil {
			return err
		}
	}
	if f.Git, err = testenv.StartGitServer(ctx, testenv.GitServerOptions{Dir: mkdir(f.opts.Dir, "git"), Address: dev.HostIP,
		Auth: &testenv.BasicAuth{Username: gitUser, Password: gitToken}}); err != nil {
		return err
	}
	f.Git.OnPush = func(string) {
		for _, c := range Clusters {
			go f.notifyService(f.Listen["sync-"+c], c)
		}
		// The automator's gates act on a push too: a record is one.
		go f.notifyService(f.Listen["automator"], "dev")
	}
	f.say("started two clusters (dev, prod), each with a real node (kubelet, containerd, kube-proxy) beside a kwok node, an OCI registry at %s and a Git server at %s in %s",
		f.Registry.Host, f.Git.URL, since(t0))

	t0 = time.Now()
	out, err := f.BuildRelease(ctx)
	if err != nil {
		return err
	}
	f.say("built both images from this tree and pushed them in %s:\n%s", since(t0), indent(out))

	t0 = time.Now()
	if _, err := f.Registry.PushImages(ctx, Image, "1.0.0"); err != nil {
		return err
	}
	if err := f.seed(ctx); err != nil {
		return err
	}
	f.say("pushed %s/%s:1.0.0 and seeded the repository %s (branches dev and prod) in %s", f.Registry.Host, Image, f.Git.RepoURL(Repo), since(t0))

	if f.opts.NoInstall {
		return nil
	}
	for _, c := range Clusters {
		t0 = time.Now()
		if err := f.Install(ctx, c, c, f.Settings(c), f.Components()...); err != nil {
			return err
		}
		want := map[string]int32{"driftless-automator": 2, "driftless-synchronizer": 2}
		if c == "prod" {
			want["driftless-automator"] = 0
		}
		if err := f.WaitAvailable(ctx, c, "driftless-system", want, 3*time.Minute); err != nil {
			return err
		}
		with := ""
		if len(f.Components()) > 0 {
			with = " with manifests/" + strings.Join(f.Components(), ", manifests/")
		}
		f.say("applied the release of manifests/overlays/%s (images by digest)%s to the %s cluster; its Deployments are Available on the real node in %s", c, with, c, since(t0))
	}
	return nil
}

// Components are the manifests' components the fleet installs with each
// cluster overlay: the records one when the promotion is gated.
func (f *Fleet) Components() []string {
	if f.opts.Soak > 0 {
		return []string{RecordsComponent}
	}
	return nil
}

// Root is the repository's root: the folder above manifests/.
func (f *Fleet) Root() string { return filepath.Dir(f.opts.Manifests) }

// ReleaseDir holds the release kustomizations BuildRelease wrote.
func (f *Fleet) ReleaseDir() string { return filepath.Join(f.opts.Dir, "release") }

// BuildRelease builds both images for this machine's platform with the
// images command, as `make release` does, pushes them to the registry and
// writes the release kustomizations. It returns the command's report.
func (f *Fleet) BuildRelease(ctx context.Context) (string, error) {
	bin := filepath.Join(f.opts.Dir, "driftless-images")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/images")
	build.Dir = filepath.Join(f.Root(), "automator")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the images command: %w\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin, "--root", f.Root(), "--out", filepath.Join(f.opts.Dir, "images"),
		"--registry", f.Registry.Host+"/driftless", "--insecure", "--release", f.ReleaseDir(),
		"--version", "e2e", "--revision", "e2e", "--created", "0", "--platforms", "linux/"+runtime.GOARCH)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("images: %w\n%s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Placement puts a Pod template on the real node.
func Placement() string {
	return fmt.Sprintf(`
      nodeSelector: {kubernetes.io/hostname: %s}
      tolerations: [{key: %s, operator: Exists, effect: NoSchedule}]`, testenv.RealNodeName, testenv.RealNodeTaint)
}

// Settings is what this environment puts on top of the release of a
// cluster overlay: the repository, the cluster's name in the records,
// the Pods on the real node, the two Services as NodePorts.
func (f *Fleet) Settings(overlay string) string {
	repo := f.Git.RepoURL(Repo)
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: driftless-automator, namespace: driftless-system}
spec:
  template:
    spec:` + Placement() + `
      containers:
        - name: automator
          env:
            - {name: DRIFTLESS_GIT_URL, value: "` + repo + `"}
            - {name: DRIFTLESS_GIT_USERNAME, value: ` + gitUser + `}
            # The test registry speaks plain HTTP; the automator allows that only by name.
            - {name: DRIFTLESS_INSECURE_REGISTRIES, value: "` + f.Registry.Host + `"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: driftless-synchronizer, namespace: driftless-system}
spec:
  template:
    spec:` + Placement() + `
      containers:
        - name: synchronizer
          env:
            - {name: DRIFTLESS_REPO_URL, value: "` + repo + `"}
            - {name: DRIFTLESS_GIT_USERNAME, value: ` + gitUser + `}
            - {name: DRIFTLESS_CLUSTER_NAME, value: ` + overlay + `}
---
apiVersion: v1
kind: Service
metadata: {name: driftless-automator, namespace: driftless-system}
spec:
  type: NodePort
  ports: [{name: http, port: 80, targetPort: http, nodePort: ` + fmt.Sprint(AutomatorNodePort) + `}]
---
apiVersion: v1
kind: Service
metadata: {name: driftless-synchronizer, namespace: driftless-system}
spec:
  type: NodePort
  ports: [{name: http, port: 80, targetPort: http, nodePort: ` + fmt.Sprint(SynchronizerNodePort) + `}]
`
}

// Install does what the README tells a person: the namespace and the
// Secrets the programs mount, then `kubectl apply` of the release of
// overlay with settings (a strategic-merge patch) on top, and the
// manifests/components named (e.g. "components/apply-as"). The Secrets go
// to the namespace of the overlay's synchronizer (driftless-system, or
// driftless-tenants for the tenant overlay).
func (f *Fleet) Install(ctx context.Context, c, overlay, settings string, components ...string) error {
	dir := filepath.Join(f.opts.Dir, "install-"+c+"-"+overlay)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, filepath.Join(f.ReleaseDir(), overlay))
	if err != nil {
		return err
	}
	k := "resources: [" + rel + "]\npatches:\n  - path: settings.yaml\n"
	for i, comp := range components {
		r, err := filepath.Rel(dir, filepath.Join(f.opts.Manifests, comp))
		if err != nil {
			return err
		}
		if i == 0 {
			k += "components:\n"
		}
		k += "  - " + r + "\n"
	}
	for name, body := range map[string]string{
		"kustomization.yaml": k,
		"settings.yaml":      settings,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	ns, secrets := "driftless-system", []string{"driftless-automator", "driftless-synchronizer"}
	if overlay == "tenant" {
		ns, secrets = "driftless-tenants", []string{"driftless-synchronizer-tenant-a"}
	}
	steps := [][]string{{"create", "namespace", ns}}
	for _, s := range secrets {
		steps = append(steps, []string{"-n", ns, "create", "secret", "generic", s,
			"--from-file=token=" + filepath.Join(f.opts.Dir, "git-token"), "--from-file=webhook-secret=" + filepath.Join(f.opts.Dir, "hook-secret")})
	}
	if slices.Contains(components, RecordsComponent) {
		// What the component mounts: this cluster's record signing key,
		// and the keyring of every synchronizer's public key for the
		// automator.
		if err := f.recordKeys(); err != nil {
			return err
		}
		steps = append(steps,
			[]string{"-n", ns, "create", "secret", "generic", "driftless-record-signing-key", "--from-file=signing-key=" + f.recordKey(c)},
			[]string{"-n", ns, "create", "configmap", "driftless-record-keyring", "--from-file=keyring.asc=" + f.recordKeyring()})
	}
	steps = append(steps, []string{"apply", "--server-side", "-k", dir})
	for _, s := range steps {
		if out, err := f.Kubectl(ctx, c, s...); err != nil {
			return fmt.Errorf("kubectl %s in %s: %w\n%s", s[0], c, err, out)
		}
	}
	return nil
}

// WaitAvailable waits until each named Deployment in ns has its replicas
// updated and available.
func (f *Fleet) WaitAvailable(ctx context.Context, c, ns string, want map[string]int32, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(f.Clusters[c].Config)
	if err != nil {
		return err
	}
	return Until(ctx, timeout, fmt.Sprintf("Deployments %v Available in %s", want, c), func() bool {
		for name, n := range want {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil || d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas != n || d.Status.UpdatedReplicas != n || !available(d) {
				return false
			}
		}
		return true
	})
}

func available(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// notifyService sends the push webhook of branch to a synchronizer
// Service, signed as GitHub signs, until a replica that leads takes it: a
// standby answers 503, and a new connection may reach the other replica.
func (f *Fleet) notifyService(addr, branch string) {
	body := []byte(`{"ref":"refs/heads/` + branch + `"}`)
	var last string
	for try := 1; try <= 25; try++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks/git", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", Sign([]byte(hookSecret), body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Close = true
		// A Pod that just went away may still be an endpoint for a
		// moment, and its address answers nothing: try again soon, as a
		// Git host's sender does after its timeout.
		resp, err := hookClient.Do(req)
		if err != nil {
			last = err.Error()
		} else {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				f.webhookLog("push webhook of %s to %s: %s at try %d", branch, addr, resp.Status, try)
				return
			}
			last = resp.Status
		}
		time.Sleep(200 * time.Millisecond) // the sender's retry interval
	}
	// Before a replica leads (the install), or while no endpoint of the
	// Service is ready, a webhook is lost, as a Git host's would be; the
	// program's polling catches up.
	f.webhookLog("push webhook of %s to %s: not taken in 25 tries (last: %s)", branch, addr, last)
}

var hookClient = &http.Client{Timeout: 2 * time.Second}

// webhookLog notes what became of a webhook the Git server sent, in
// webhooks.log of the fleet's folder (Diagnose shows its tail).
func (f *Fleet) webhookLog(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if lf, err := os.OpenFile(f.WebhookLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(lf, time.Now().UTC().Format("15:04:05.000")+" "+format+"\n", args...)
		lf.Close()
	}
}

// WebhookLog is the file where what became of the Git server's webhooks
// is noted.
func (f *Fleet) WebhookLog() string { return filepath.Join(f.opts.Dir, "webhooks.log") }

// statusInCluster reads /status of the leading synchronizer Pod of
// cluster c, at its Pod IP (the host routes to the node's Pods).
func (f *Fleet) statusInCluster(c string) SyncStatus {
	var last SyncStatus
	cl, ok := f.Clusters[c]
	if !ok {
		return last
	}
	cs, err := kubernetes.NewForConfig(cl.Config)
	if err != nil {
		return last
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods("driftless-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=driftless-synchronizer"})
	if err != nil {
		return last
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		resp, err := client.Get("http://" + p.Status.PodIP + ":8080/status")
		if err != nil {
			continue
		}
		var st SyncStatus
		_ = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		last = st
		if st.Leader {
			break
		}
	}
	// The message, which /status shows only to an authorized user, as
	// kubectl reads it.
	if cm, err := cs.CoreV1().ConfigMaps("driftless-system").Get(ctx, "driftless", metav1.GetOptions{}); err == nil {
		last.Status.Message = cm.Data["message"]
	}
	return last
}
