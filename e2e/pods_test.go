package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"driftless.dev/e2e/fleet"
	"driftless.dev/shared/testenv"
)

// The NodePorts the test gives the two Services, so the registry and the
// Git server (on the host) reach the programs through their Services as a
// load balancer would.
const (
	automatorNodePort    = 30080
	synchronizerNodePort = 30081
	podsGitUser          = "driftless"
	podsGitToken         = "pods-git-t0ken"
	podsHookSecret       = "pods-hook-s3cret"
	memoryLimit          = 256 << 20 // the Deployments' limits in manifests/base
	// syncLease is the synchronizer's Lease: driftless-synchronizer-<--name>.
	syncLease = "driftless-synchronizer-driftless"
)

// pair is the dev cluster with the two programs running as Pods on its
// real node, installed from the release kustomization of manifests/overlays/dev.
type pair struct {
	t       *testing.T
	cluster *testenv.Cluster
	node    *testenv.Node
	cs      kubernetes.Interface
	reg     *testenv.Registry
	git     *testenv.GitServer
	kubectl string
	dir     string
	// prod is the prod cluster, when the test has one: the same registry
	// and Git server, its own real node.
	prod *pair
}

// TestPairInPods: the images built from this tree run as the manifests'
// Deployments on a real node under the enforced restricted profile; the
// loop runs through the Pods (registry webhook to the automator's Service,
// commit, Git webhook to the synchronizer's Service, applied, rolled out);
// one replica of each leads; deleting the leaders hands over within the
// Lease duration with nothing lost or committed twice; memory stays under
// the limits.
func TestPairInPods(t *testing.T) {
	p := startPair(t, true)
	ctx := t.Context()

	// Installed as the README says: namespace and Secrets, then the release YAML.
	t0 := time.Now()
	p.install("dev")
	p.waitAvailable(map[string]int32{"driftless-automator": 2, "driftless-synchronizer": 2}, 3*time.Minute)
	t.Logf("TIMING kubectl apply → both Deployments Available (2/2 each, real containers): %s", since(t0))
	p.checkPods()

	head := p.head("dev")
	p.waitApplied("dev", head, 2*time.Minute)
	p.waitWeb("1.0.0", 2*time.Minute)
	t.Logf("TIMING kubectl apply → the synchronizer Pod applied dev and web rolled out: %s", since(t0))

	// Exactly one replica of each leads; the other stands by.
	syncLeader := p.leader(syncLease, "driftless-synchronizer")
	autoLeader := p.leader("driftless-automator", "driftless-automator")
	leaders := 0
	for _, pod := range p.pods("driftless-synchronizer") {
		var st struct {
			Leader bool `json:"leader"`
		}
		p.getJSON("http://"+pod.Status.PodIP+":8080/status", &st)
		if st.Leader {
			leaders++
			if pod.Name != syncLeader {
				t.Fatalf("synchronizer %s says it leads, the Lease names %s", pod.Name, syncLeader)
			}
		}
	}
	if leaders != 1 {
		t.Fatalf("%d synchronizer replicas say they lead, want 1", leaders)
	}

	// The loop, through the Pods.
	p.walk("1.1.0")

	// Deleting both leaders hands over to the standbys within the Lease duration.
	lease := p.lease(syncLease)
	duration := time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	t0 = time.Now()
	for _, name := range []string{syncLeader, autoLeader} {
		if err := p.cs.CoreV1().Pods("driftless-system").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var newSync, newAuto string
	p.until(duration+10*time.Second, "new leaders", func() bool {
		newSync = p.lease(syncLease).holder()
		newAuto = p.lease("driftless-automator").holder()
		return newSync != "" && newSync != syncLeader && newAuto != "" && newAuto != autoLeader
	})
	handover := time.Since(t0)
	t.Logf("TIMING leader Pods deleted → both Leases held by other replicas: %s (Lease duration %s)", handover.Round(10*time.Millisecond), duration)
	if handover > duration {
		t.Fatalf("handover took %s, longer than the Lease duration %s", handover, duration)
	}
	// Nothing lost: the next tag goes through the new leaders, once.
	p.walk("1.2.0")
	p.checkMemory()

	// The prod cluster, from the release of overlays/prod: its synchronizer
	// follows prod (the automator stands down there), and a merge of dev
	// into prod rolls 1.2.0 out.
	prod := p.prod
	t0 = time.Now()
	prod.install("prod")
	prod.waitAvailable(map[string]int32{"driftless-automator": 0, "driftless-synchronizer": 2}, 3*time.Minute)
	t.Logf("TIMING kubectl apply of overlays/prod → the synchronizer Deployment Available (2/2): %s", since(t0))
	prod.checkPods()
	prod.waitApplied("prod", p.head("prod"), 2*time.Minute)
	prod.waitWeb("1.0.0", 2*time.Minute)
	t0 = time.Now()
	merge, err := p.promote()
	if err != nil {
		t.Fatal(err)
	}
	prod.waitApplied("prod", merge, time.Minute)
	prod.waitWeb("1.2.0", time.Minute)
	t.Logf("TIMING dev merged into prod → applied by the prod synchronizer Pod and rolled out: %s", since(t0))
	if got := p.head("dev"); got == merge {
		t.Fatalf("the merge landed on dev")
	}
}

// TestTenantSynchronizerOutsideItsNamespace: manifests/overlays/tenant runs
// the tenant's synchronizer as a Pod in driftless-tenants, applying the
// tenant's repository to tenant-a. A tenant's commit that edits the
// Deployment running its synchronizer is refused and changes nothing; the
// synchronizer's ServiceAccount can neither patch that Deployment nor read
// the Secret holding its Git token, and that Secret is not in tenant-a
// where the tenant's Pods could mount it. (With the synchronizer inside
// tenant-a, as the overlay had it, all four were possible.)
func TestTenantSynchronizerOutsideItsNamespace(t *testing.T) {
	p := startPair(t, false)
	ctx := t.Context()
	src := writeTree(t, map[string]string{"deploy/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {v: \"1\"}\n"})
	good, err := p.git.Seed(ctx, "tenant-a", "main", src, "The tenant's application")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p.installTenant()
	p.until(3*time.Minute, "the tenant synchronizer to apply main@"+good, func() bool {
		cm, err := p.cs.CoreV1().ConfigMaps("tenant-a").Get(ctx, "driftless", metav1.GetOptions{})
		return err == nil && cm.Data["lastAppliedRevision"] == "main@sha1:"+good
	})
	t.Logf("TIMING kubectl apply of the tenant overlay → the tenant's repository applied by its Pod: %s", since(t0))
	if _, err := p.cs.CoreV1().ConfigMaps("tenant-a").Get(ctx, "app", metav1.GetOptions{}); err != nil {
		t.Fatalf("the tenant's ConfigMap: %v", err)
	}

	// Where it really runs: the Deployment of its Pod.
	pods := p.podsIn("driftless-tenants", "app.kubernetes.io/name=driftless-synchronizer,driftless.dev/tenant=tenant-a")
	if len(pods) == 0 {
		t.Fatal("no tenant synchronizer Pod in driftless-tenants")
	}
	runNS, sa := pods[0].Namespace, pods[0].Spec.ServiceAccountName
	deploy := "driftless-synchronizer-tenant-a"
	before, err := p.cs.AppsV1().Deployments(runNS).Get(ctx, deploy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secretName := ""
	for _, v := range before.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}

	// The tenant commits an edit of its own synchronizer: refused, nothing changed.
	bad, err := p.commitTo("tenant-a", "main", map[string]string{"deploy/takeover.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: " + deploy +
		", namespace: " + runNS + "}\nspec:\n  replicas: 5\n"})
	if err != nil {
		t.Fatal(err)
	}
	p.until(time.Minute, "the tenant's takeover commit refused", func() bool {
		cm, err := p.cs.CoreV1().ConfigMaps("tenant-a").Get(ctx, "driftless", metav1.GetOptions{})
		return err == nil && cm.Data["revision"] == "main@sha1:"+bad && cm.Data["phase"] != "Ready" &&
			strings.Contains(cm.Data["message"], runNS) && cm.Data["lastAppliedRevision"] == "main@sha1:"+good
	})
	after, err := p.cs.AppsV1().Deployments(runNS).Get(ctx, deploy, metav1.GetOptions{})
	if err != nil || after.Generation != before.Generation || *after.Spec.Replicas != *before.Spec.Replicas {
		t.Fatalf("the synchronizer's own Deployment changed: generation %d → %d (%v)", before.Generation, after.Generation, err)
	}

	// Its ServiceAccount reaches neither its Deployment nor its token (and
	// does reach the tenant's Deployments: the review itself works).
	user := "system:serviceaccount:" + runNS + ":" + sa
	for _, attr := range []authorizationv1.ResourceAttributes{
		{Namespace: runNS, Verb: "patch", Group: "apps", Resource: "deployments", Name: deploy},
		{Namespace: runNS, Verb: "get", Resource: "secrets", Name: secretName},
		{Namespace: "tenant-a", Verb: "patch", Group: "apps", Resource: "deployments", Name: "web"},
	} {
		r, err := p.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + runNS}, ResourceAttributes: &attr,
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := attr.Namespace == "tenant-a"; r.Status.Allowed != want {
			t.Errorf("%s may %s %s %s/%s: %v, want %v", user, attr.Verb, attr.Resource, attr.Namespace, attr.Name, r.Status.Allowed, want)
		}
	}
	if runNS == "tenant-a" {
		t.Fatalf("the tenant's synchronizer runs in the namespace it applies to")
	}
	if _, err := p.cs.CoreV1().Secrets("tenant-a").Get(ctx, secretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Git token Secret %s is in tenant-a, where the tenant's Pods can mount it (%v)", secretName, err)
	}
}

func startPair(t *testing.T, withProd bool) *pair {
	t.Helper()
	bin, err := testenv.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{t: t, kubectl: filepath.Join(bin, "kubectl"), dir: t.TempDir()}
	t0 := time.Now()
	p.cluster = testenv.NewCluster(t, testenv.ClusterOptions{RealNode: true, Nodes: 1})
	p.node = p.cluster.Node
	p.cs = kubernetes.NewForConfigOrDie(p.cluster.Config)
	t.Cleanup(p.dumpOnFailure)
	p.reg = testenv.NewRegistry(t, testenv.RegistryOptions{
		Address:       p.node.HostIP,
		NotifyURL:     fmt.Sprintf("http://%s:%d/hooks/registry", p.node.IP, automatorNodePort),
		NotifyHeaders: map[string]string{"Authorization": "Bearer " + podsHookSecret},
	})
	if err := p.node.TrustRegistry(p.reg.Host); err != nil {
		t.Fatal(err)
	}
	p.git = testenv.NewGitServer(t, testenv.GitServerOptions{Address: p.node.HostIP, Auth: &testenv.BasicAuth{Username: podsGitUser, Password: podsGitToken}})
	if withProd {
		// Its node reaches the registry and the Git server through the host.
		prod := testenv.NewCluster(t, testenv.ClusterOptions{RealNode: true, Nodes: 1})
		p.prod = &pair{t: t, cluster: prod, node: prod.Node, cs: kubernetes.NewForConfigOrDie(prod.Config), reg: p.reg, git: p.git, kubectl: p.kubectl, dir: p.dir}
		t.Cleanup(p.prod.dumpOnFailure)
		if err := p.prod.node.TrustRegistry(p.reg.Host); err != nil {
			t.Fatal(err)
		}
	}
	p.git.OnPush = func(string) {
		go p.notifySynchronizer(p.node.IP, "dev")
		if p.prod != nil {
			go p.notifySynchronizer(p.prod.node.IP, "prod")
		}
	}
	t.Logf("TIMING clusters with a real node, registry and Git server: %s", since(t0))

	t0 = time.Now()
	p.buildImages()
	t.Logf("TIMING images built and pushed: %s", since(t0))
	if _, err := p.reg.PushImages(t.Context(), fleet.Image, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	p.seed()
	return p
}

// buildImages runs the images command as `make release` does, for this
// machine's platform, pushing to the test registry and writing the release
// kustomizations pinned by digest.
func (p *pair) buildImages() {
	t := p.t
	cmdBin := filepath.Join(p.dir, "images")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", cmdBin, "./cmd/images")
	build.Dir = filepath.Join("..", "automator")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the images command: %v\n%s", err, out)
	}
	root, _ := filepath.Abs("..")
	cmd := exec.CommandContext(t.Context(), cmdBin, "--root", root, "--out", filepath.Join(p.dir, "layout"),
		"--registry", p.reg.Host+"/driftless", "--insecure", "--release", filepath.Join(p.dir, "release"),
		"--version", "e2e", "--revision", "e2e", "--created", "0", "--platforms", "linux/"+runtime.GOARCH)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("images: %v\n%s", err, out)
	}
	t.Logf("images:\n%s", out)
	if !regexp.MustCompile(`pushed \S+/driftless/automator@sha256:[0-9a-f]{64}`).Match(out) {
		t.Fatalf("images did not report the automator's pushed digest:\n%s", out)
	}
}

// seed writes the sample application on dev: a Deployment whose image the
// automator bumps, applied by the synchronizer to the kwok nodes.
func (p *pair) seed() {
	img := p.reg.Host + "/" + fleet.Image
	src := writeTree(p.t, map[string]string{
		"policies/web.yaml": "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: web, namespace: web}\nspec:\n  image: " + img +
			"\n  interval: 1h\n  policy:\n    semver: {range: \"^1.0.0\"}\n",
		"apps/web/kustomization.yaml": "resources: [namespace.yaml, deployment.yaml]\n",
		"apps/web/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
		"apps/web/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n" +
			"  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: " + img + ":1.0.0 # {\"$imagepolicy\": \"web:web\"}\n",
		"clusters/dev/kustomization.yaml":  "resources: [../../apps/web]\n",
		"clusters/prod/kustomization.yaml": "resources: [../../apps/web]\n",
	})
	if _, err := p.git.Seed(p.t.Context(), fleet.Repo, "dev", src, "Add the web application"); err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.git.Git(p.t.Context(), fleet.Repo, "branch", "prod", "dev"); err != nil {
		p.t.Fatal(err)
	}
}

// install creates the namespace and Secrets, then applies the release
// kustomization of overlay with this environment's settings on top: the
// repository, the Pods on the real node, the Services as NodePorts.
func (p *pair) install(overlay string) {
	t := p.t
	repo := p.git.RepoURL(fleet.Repo)
	overlayDir := filepath.Join(p.dir, "install-"+overlay)
	rel, _ := filepath.Rel(overlayDir, filepath.Join(p.dir, "release", overlay))
	placement := fmt.Sprintf(`
      nodeSelector: {kubernetes.io/hostname: %s}
      tolerations: [{key: %s, operator: Exists, effect: NoSchedule}]`, testenv.RealNodeName, testenv.RealNodeTaint)
	files := map[string]string{
		"kustomization.yaml": "resources: [" + rel + "]\npatches:\n  - path: settings.yaml\n",
		"settings.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: driftless-automator, namespace: driftless-system}
spec:
  template:
    spec:` + placement + `
      containers:
        - name: automator
          env:
            - {name: DRIFTLESS_GIT_URL, value: "` + repo + `"}
            - {name: DRIFTLESS_GIT_USERNAME, value: ` + podsGitUser + `}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: driftless-synchronizer, namespace: driftless-system}
spec:
  template:
    spec:` + placement + `
      containers:
        - name: synchronizer
          env:
            - {name: DRIFTLESS_REPO_URL, value: "` + repo + `"}
            - {name: DRIFTLESS_GIT_USERNAME, value: ` + podsGitUser + `}
---
apiVersion: v1
kind: Service
metadata: {name: driftless-automator, namespace: driftless-system}
spec:
  type: NodePort
  ports: [{name: http, port: 80, targetPort: http, nodePort: ` + fmt.Sprint(automatorNodePort) + `}]
---
apiVersion: v1
kind: Service
metadata: {name: driftless-synchronizer, namespace: driftless-system}
spec:
  type: NodePort
  ports: [{name: http, port: 80, targetPort: http, nodePort: ` + fmt.Sprint(synchronizerNodePort) + `}]
`,
	}
	for name, body := range files {
		if err := os.MkdirAll(overlayDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(overlayDir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secrets := p.secretFiles()
	p.run("create", "namespace", "driftless-system")
	for _, s := range []string{"driftless-automator", "driftless-synchronizer"} {
		p.run("-n", "driftless-system", "create", "secret", "generic", s,
			"--from-file=token="+filepath.Join(secrets, "token"), "--from-file=webhook-secret="+filepath.Join(secrets, "webhook-secret"))
	}
	p.run("apply", "--server-side", "-k", overlayDir)
}

// installTenant applies the release kustomization of overlays/tenant, with
// the tenant repository, a short poll interval and the Pods on the real node.
func (p *pair) installTenant() {
	t := p.t
	dir := filepath.Join(p.dir, "install-tenant")
	rel, _ := filepath.Rel(dir, filepath.Join(p.dir, "release", "tenant"))
	files := map[string]string{
		"kustomization.yaml": "resources: [" + rel + "]\npatches:\n  - path: settings.yaml\n",
		"settings.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: driftless-synchronizer-tenant-a, namespace: driftless-tenants}
spec:
  template:
    spec:
      nodeSelector: {kubernetes.io/hostname: ` + testenv.RealNodeName + `}
      tolerations: [{key: ` + testenv.RealNodeTaint + `, operator: Exists, effect: NoSchedule}]
      containers:
        - name: synchronizer
          env:
            - {name: DRIFTLESS_REPO_URL, value: "` + p.git.RepoURL("tenant-a") + `"}
            - {name: DRIFTLESS_GIT_USERNAME, value: ` + podsGitUser + `}
            - {name: DRIFTLESS_INTERVAL, value: 1s}
`,
	}
	os.MkdirAll(dir, 0o755)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secrets := p.secretFiles()
	p.run("create", "namespace", "driftless-tenants")
	p.run("-n", "driftless-tenants", "create", "secret", "generic", "driftless-synchronizer-tenant-a",
		"--from-file=token="+filepath.Join(secrets, "token"), "--from-file=webhook-secret="+filepath.Join(secrets, "webhook-secret"))
	p.run("apply", "--server-side", "-k", dir)
}

func (p *pair) secretFiles() string {
	secrets := filepath.Join(p.dir, "secrets")
	os.MkdirAll(secrets, 0o700)
	os.WriteFile(filepath.Join(secrets, "token"), []byte(podsGitToken), 0o600)
	os.WriteFile(filepath.Join(secrets, "webhook-secret"), []byte(podsHookSecret), 0o600)
	return secrets
}

func (p *pair) podsIn(ns, selector string) []corev1.Pod {
	l, err := p.cs.CoreV1().Pods(ns).List(p.t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		p.t.Fatal(err)
	}
	return l.Items
}

// promote merges dev into prod, as a reviewed pull request would.
func (p *pair) promote() (string, error) {
	return p.gitChange(fleet.Repo, "prod", func(git func(...string) (string, error), _ string) error {
		_, err := git("merge", "--no-ff", "--quiet", "-m", "Promote dev to prod", "origin/dev")
		return err
	})
}

// commitTo writes files on branch of repo with git itself, as a person would.
func (p *pair) commitTo(repo, branch string, files map[string]string) (string, error) {
	return p.gitChange(repo, branch, func(git func(...string) (string, error), work string) error {
		for rel, body := range files {
			os.MkdirAll(filepath.Dir(filepath.Join(work, rel)), 0o755)
			if err := os.WriteFile(filepath.Join(work, rel), []byte(body), 0o644); err != nil {
				return err
			}
		}
		for _, args := range [][]string{{"add", "-A"}, {"commit", "--quiet", "-m", "tenant change"}} {
			if _, err := git(args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// gitChange clones branch of repo, lets change commit, and pushes.
func (p *pair) gitChange(repo, branch string, change func(git func(...string) (string, error), work string) error) (string, error) {
	ctx := p.t.Context()
	work := p.t.TempDir()
	url := strings.Replace(p.git.RepoURL(repo), "http://", "http://"+podsGitUser+":"+podsGitToken+"@", 1)
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Tenant", "GIT_AUTHOR_EMAIL=tenant@example.com", "GIT_COMMITTER_NAME=Tenant", "GIT_COMMITTER_EMAIL=tenant@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %s", args[0], strings.ReplaceAll(string(out), podsGitToken, "***"))
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := git("clone", "--quiet", "--branch", branch, url, "."); err != nil {
		return "", err
	}
	if err := change(git, work); err != nil {
		return "", err
	}
	if _, err := git("push", "--quiet", "origin", branch); err != nil {
		return "", err
	}
	return git("rev-parse", "HEAD")
}

func (p *pair) run(args ...string) string {
	p.t.Helper()
	out, err := exec.CommandContext(p.t.Context(), p.kubectl, append([]string{"--kubeconfig", p.cluster.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p *pair) until(timeout time.Duration, what string, cond func() bool) {
	p.t.Helper()
	err := wait.PollUntilContextTimeout(p.t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		p.t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

func (p *pair) waitAvailable(want map[string]int32, timeout time.Duration) {
	p.until(timeout, fmt.Sprintf("Deployments %v Available", want), func() bool {
		for name, n := range want {
			d, err := p.cs.AppsV1().Deployments("driftless-system").Get(p.t.Context(), name, metav1.GetOptions{})
			if err != nil || d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas != n || d.Status.UpdatedReplicas != n {
				return false
			}
			if !available(d) {
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

func (p *pair) pods(app string) []corev1.Pod {
	l, err := p.cs.CoreV1().Pods("driftless-system").List(p.t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
	if err != nil {
		p.t.Fatal(err)
	}
	var live []corev1.Pod
	for _, pod := range l.Items {
		if pod.DeletionTimestamp == nil {
			live = append(live, pod)
		}
	}
	return live
}

// checkPods: real containers on the real node, running as 65532 with a
// read-only root, their ServiceAccount's token projected by the kubelet
// (in-cluster configuration, nothing mounted by hand), images by digest.
func (p *pair) checkPods() {
	t := p.t
	for _, app := range []string{"driftless-automator", "driftless-synchronizer"} {
		for _, pod := range p.pods(app) {
			if pod.Spec.NodeName != testenv.RealNodeName {
				t.Fatalf("%s runs on %s, want the real node", pod.Name, pod.Spec.NodeName)
			}
			c := pod.Spec.Containers[0]
			st := pod.Status.ContainerStatuses[0]
			if !strings.Contains(c.Image, "@sha256:") || !st.Ready || st.State.Running == nil || !strings.HasPrefix(st.ContainerID, "containerd://") {
				t.Fatalf("%s: image %s, status %+v", pod.Name, c.Image, st)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
				pod.Spec.SecurityContext.RunAsUser == nil || *pod.Spec.SecurityContext.RunAsUser != 65532 {
				t.Fatalf("%s: security context %+v / %+v", pod.Name, pod.Spec.SecurityContext, c.SecurityContext)
			}
			if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
			}) {
				t.Fatalf("%s: no projected ServiceAccount token: %+v", pod.Name, c.VolumeMounts)
			}
		}
	}
	ns, err := p.cs.CoreV1().Namespaces().Get(t.Context(), "driftless-system", metav1.GetOptions{})
	if err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Fatalf("driftless-system does not enforce restricted: %v %v", ns.Labels, err)
	}
}

type leaseView struct{ coordinationv1.Lease }

func (l leaseView) holder() string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func (p *pair) lease(name string) leaseView {
	l, err := p.cs.CoordinationV1().Leases("driftless-system").Get(p.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return leaseView{}
	}
	return leaseView{*l}
}

// leader waits until the Lease name is held by a live Pod of app and returns it.
func (p *pair) leader(lease, app string) string {
	var holder string
	p.until(time.Minute, "a leader of "+app, func() bool {
		holder = p.lease(lease).holder()
		return slices.ContainsFunc(p.pods(app), func(pod corev1.Pod) bool { return pod.Name == holder })
	})
	return holder
}

func (p *pair) getJSON(url string, v any) {
	p.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		p.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		p.t.Fatalf("GET %s: %v", url, err)
	}
}

func (p *pair) head(branch string) string {
	h, _ := p.git.Head(p.t.Context(), fleet.Repo, branch)
	return h
}

func (p *pair) waitApplied(branch, commit string, timeout time.Duration) {
	p.until(timeout, "the synchronizer to apply "+branch+"@"+commit, func() bool {
		cm, err := p.cs.CoreV1().ConfigMaps("driftless-system").Get(p.t.Context(), "driftless", metav1.GetOptions{})
		return err == nil && cm.Data["lastAppliedRevision"] == branch+"@sha1:"+commit
	})
}

func (p *pair) waitWeb(tag string, timeout time.Duration) {
	want := p.reg.Host + "/" + fleet.Image + ":" + tag
	p.until(timeout, "web to roll out "+tag, func() bool {
		d, err := p.cs.AppsV1().Deployments(fleet.AppNamespace).Get(p.t.Context(), "web", metav1.GetOptions{})
		return err == nil && d.Spec.Template.Spec.Containers[0].Image == want && d.Status.ObservedGeneration >= d.Generation &&
			d.Status.UpdatedReplicas == 2 && d.Status.AvailableReplicas == 2 && d.Status.Replicas == 2
	})
}

// walk pushes tag and follows it: registry webhook → the automator Pod's
// commit → Git webhook → the synchronizer Pod applies → web rolls out.
// The bump is committed exactly once.
func (p *pair) walk(tag string) {
	t := p.t
	before := p.head("dev")
	t0 := time.Now()
	if _, err := p.reg.PushImages(t.Context(), fleet.Image, tag); err != nil {
		t.Fatal(err)
	}
	p.until(time.Minute, "the automator's bump to "+tag, func() bool { return p.head("dev") != before })
	commit := p.head("dev")
	tCommit := time.Since(t0)
	p.waitApplied("dev", commit, time.Minute)
	tApplied := time.Since(t0)
	p.waitWeb(tag, time.Minute)
	t.Logf("TIMING %s pushed → bump commit %s (through the automator's Service), applied %s (through the synchronizer's Service), rolled out %s",
		tag, tCommit.Round(10*time.Millisecond), tApplied.Round(10*time.Millisecond), since(t0))
	want := p.reg.Host + "/" + fleet.Image + ":" + tag
	out, err := p.git.Git(t.Context(), fleet.Repo, "log", "--format=%B%x00", "dev")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, msg := range strings.Split(out, "\x00") {
		if strings.Contains(msg, want) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d bump commits to %s on dev, want 1:\n%s", n, tag, out)
	}
}

// notifySynchronizer sends the push webhook to the synchronizer's Service
// (its NodePort), signed as GitHub signs, until a replica that leads takes
// it (a standby answers 503, and the Service picks a replica at random).
func (p *pair) notifySynchronizer(nodeIP, branch string) {
	body := []byte(`{"ref":"refs/heads/` + branch + `"}`)
	url := fmt.Sprintf("http://%s:%d/hooks/git", nodeIP, synchronizerNodePort)
	for range 20 {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", fleet.Sign([]byte(podsHookSecret), body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Close = true // a new connection, so the Service may pick the other replica
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond) // a sender's retry interval, not a wait for a state
	}
}

// checkMemory reads each container's working set from the kubelet's
// summary API and compares it with the Deployment's limit.
func (p *pair) checkMemory() {
	t := p.t
	raw, err := p.cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes/" + testenv.RealNodeName + "/proxy/stats/summary").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("kubelet stats: %v", err)
	}
	var summary struct {
		Pods []struct {
			PodRef struct {
				Name, Namespace string
			} `json:"podRef"`
			Containers []struct {
				Name   string `json:"name"`
				Memory struct {
					WorkingSetBytes *uint64 `json:"workingSetBytes"`
					RSSBytes        *uint64 `json:"rssBytes"`
				} `json:"memory"`
			} `json:"containers"`
		} `json:"pods"`
	}
	if err := json.Unmarshal(raw, &summary); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, pod := range summary.Pods {
		if pod.PodRef.Namespace != "driftless-system" {
			continue
		}
		for _, c := range pod.Containers {
			if c.Memory.WorkingSetBytes == nil {
				continue
			}
			seen++
			ws := *c.Memory.WorkingSetBytes
			var rss uint64
			if c.Memory.RSSBytes != nil {
				rss = *c.Memory.RSSBytes
			}
			t.Logf("MEMORY %s/%s: working set %.1f MiB, RSS %.1f MiB (limit %d MiB)", pod.PodRef.Name, c.Name, float64(ws)/(1<<20), float64(rss)/(1<<20), memoryLimit>>20)
			if ws >= memoryLimit {
				t.Errorf("%s uses %d bytes, at or over its limit", pod.PodRef.Name, ws)
			}
		}
	}
	if seen < 4 {
		t.Fatalf("the kubelet reported memory for %d driftless containers, want 4:\n%s", seen, raw)
	}
}

// dumpOnFailure prints what a person needs to see why: every program
// Pod's log, the Pods' states and the branch heads.
func (p *pair) dumpOnFailure() {
	if !p.t.Failed() {
		return
	}
	ctx := context.Background()
	var b strings.Builder
	pods, _ := p.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if pods != nil {
		for _, pod := range pods.Items {
			fmt.Fprintf(&b, "pod %s/%s on %s: %s %+v\n", pod.Namespace, pod.Name, pod.Spec.NodeName, pod.Status.Phase, pod.Status.ContainerStatuses)
			if pod.Spec.NodeName != testenv.RealNodeName {
				continue
			}
			logs, err := p.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{TailLines: ptrTo[int64](60)}).DoRaw(ctx)
			fmt.Fprintf(&b, "--- logs of %s (%v) ---\n%s\n", pod.Name, err, logs)
		}
	}
	if p.git != nil {
		for _, repo := range []string{fleet.Repo, "tenant-a"} {
			out, _ := p.git.Git(ctx, repo, "log", "--oneline", "--decorate", "--all", "-n", "20")
			fmt.Fprintf(&b, "--- branch heads of %s ---\n%s\n", repo, out)
		}
	}
	for _, ns := range []string{"driftless-system", "tenant-a"} {
		if cm, err := p.cs.CoreV1().ConfigMaps(ns).Get(ctx, "driftless", metav1.GetOptions{}); err == nil {
			fmt.Fprintf(&b, "--- synchronizer status in %s ---\n%v\n", ns, cm.Data)
		}
	}
	p.t.Logf("what the Pods did:\n%s", b.String())
}

func ptrTo[T any](v T) *T { return &v }

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }
