package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"driftless.dev/e2e/fleet"
	"driftless.dev/shared/records"
	"driftless.dev/shared/testenv"
)

const (
	recGitUser    = "fleet"
	recGitToken   = "records-git-t0ken"
	recHookSecret = "records-hook-s3cret"
)

// recordsSetup is a Git server whose pushes (branches and notes) notify
// every program's /hooks/git, signed as GitHub signs, and the clusters the
// synchronizers apply to.
type recordsSetup struct {
	git      *testenv.GitServer
	dir      string
	clusters map[string]*testenv.Cluster

	mu     sync.Mutex
	notify []string // listen addresses told of pushes
}

func newRecordsSetup(t testing.TB, clusters ...string) *recordsSetup {
	t.Helper()
	s := &recordsSetup{dir: t.TempDir(), clusters: map[string]*testenv.Cluster{}}
	s.git = testenv.NewGitServer(t, testenv.GitServerOptions{Auth: &testenv.BasicAuth{Username: recGitUser, Password: recGitToken}})
	s.git.OnPush = func(string) { s.pushed() }
	os.WriteFile(filepath.Join(s.dir, "git-token"), []byte(recGitToken), 0o600)
	os.WriteFile(filepath.Join(s.dir, "hook-secret"), []byte(recHookSecret), 0o600)
	for _, c := range clusters {
		cl := testenv.NewCluster(t, testenv.ClusterOptions{Nodes: 1})
		cs := kubernetes.NewForConfigOrDie(cl.Config)
		for _, ns := range []string{"driftless-system", "web"} {
			if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		s.clusters[c] = cl
	}
	return s
}

// pushed tells every program of a push, as a Git host's webhook would.
func (s *recordsSetup) pushed() {
	s.mu.Lock()
	targets := slices.Clone(s.notify)
	s.mu.Unlock()
	// No ref: each synchronizer fetches its own branch, the automators
	// their branches and the notes.
	body := []byte(`{}`)
	for _, l := range targets {
		req, _ := http.NewRequest(http.MethodPost, "http://"+l+"/hooks/git", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", fleet.Sign([]byte(recHookSecret), body))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}

func (s *recordsSetup) listen(t testing.TB) string {
	l := freeAddr(t)
	s.mu.Lock()
	s.notify = append(s.notify, l)
	s.mu.Unlock()
	return l
}

// synchronizer runs the synchronizer of cluster c, following the branch
// of its name, recording as c.
func (s *recordsSetup) synchronizer(t testing.TB, c, branch string, extra ...string) (*proc, string) {
	t.Helper()
	l := s.listen(t)
	p := start(t, "synchronizer", append([]string{"run",
		"--repo-url", s.git.RepoURL("fleet"), "--branch", branch, "--path", "clusters/" + c, "--git-username", recGitUser,
		"--git-password-file", filepath.Join(s.dir, "git-token"), "--webhook-secret-file", filepath.Join(s.dir, "hook-secret"),
		"--kubeconfig", s.clusters[c].Kubeconfig, "--listen", l, "--interval", "1h", "--log-format", "json",
		"--record", "--cluster-name", c, "--checkout-dir", filepath.Join(s.dir, "checkout-"+c+"-"+l),
	}, extra...)...)
	waitHTTP(t, p, "http://"+l+"/healthz")
	return p, l
}

// automator runs an automator following branch, with its gates.
func (s *recordsSetup) automator(t testing.TB, branch string, extra ...string) (*proc, string) {
	t.Helper()
	l := s.listen(t)
	p := start(t, "automator", append([]string{"run",
		"--git-url", s.git.RepoURL("fleet"), "--git-branch", branch, "--git-username", recGitUser,
		"--git-password-file", filepath.Join(s.dir, "git-token"), "--workdir", filepath.Join(s.dir, "automator-"+l),
		"--policy-path", "policies", "--manifest-path", "apps", "--listen", l,
		"--webhook-secret-file", filepath.Join(s.dir, "hook-secret"), "--log-format", "json",
	}, extra...)...)
	waitHTTP(t, p, "http://"+l+"/healthz")
	return p, l
}

func (s *recordsSetup) head(t testing.TB, branch string) string {
	t.Helper()
	h, err := s.git.Head(t.Context(), "fleet", branch)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// note is the deployment records of commit, as git itself shows them.
func (s *recordsSetup) note(t testing.TB, commit string) []records.Record {
	t.Helper()
	out, err := s.git.Git(t.Context(), "fleet", "log", "--notes=driftless", "--format=%N", "-1", commit)
	if err != nil {
		return nil
	}
	recs, _ := records.ParseNote(out)
	return recs
}

// find is the first record of commit's note with event (from cluster,
// when not empty).
func (s *recordsSetup) find(t testing.TB, commit string, event records.Event, cluster string) (records.Record, bool) {
	for _, r := range s.note(t, commit) {
		if r.Event == event && (cluster == "" || r.Cluster == cluster) {
			return r, true
		}
	}
	return records.Record{}, false
}

// commit writes files on branch with the real git, as a person would.
func (s *recordsSetup) commit(t testing.TB, branch, message string, files map[string]string) string {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	url := strings.Replace(s.git.RepoURL("fleet"), "http://", "http://"+recGitUser+":"+recGitToken+"@", 1)
	gitRun(t, "", "clone", "--quiet", "--branch", branch, url, work)
	for rel, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(work, rel)), 0o755)
		os.WriteFile(filepath.Join(work, rel), []byte(body), 0o644)
	}
	gitRun(t, work, "add", "-A")
	gitRun(t, work, "commit", "--quiet", "-m", message)
	gitRun(t, work, "push", "--quiet", "origin", branch)
	return gitRun(t, work, "rev-parse", "HEAD")
}

func gitRun(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com",
		"GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", args[0], err, strings.ReplaceAll(string(out), recGitToken, "***"))
	}
	return strings.TrimSpace(string(out))
}

// logLines are the JSON log lines of p whose msg is msg.
func logLines(p *proc, msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// rolledOut reports whether web in cluster runs image on every replica.
func rolledOut(t testing.TB, c *testenv.Cluster, image string) bool {
	d, err := kubernetes.NewForConfigOrDie(c.Config).AppsV1().Deployments("web").Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		return false
	}
	return d.Spec.Template.Spec.Containers[0].Image == image && d.Status.ObservedGeneration >= d.Generation &&
		d.Status.UpdatedReplicas == *d.Spec.Replicas && d.Status.AvailableReplicas == *d.Spec.Replicas && d.Status.Replicas == *d.Spec.Replicas
}

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  replicas: 2
  progressDeadlineSeconds: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: %s # {"$imagepolicy": "web:web"}
`

// TestRecordsAndGatedPromotion: the synchronizers of a dev and a prod
// cluster record what they apply as Git notes; a dev commit recorded
// healthy is promoted to prod by the gate once its soak time is over,
// not before, by one merge although two automators run the gate; prod
// applies it and records it; a degraded dev commit is never promoted; and
// `automator history` tells the story from the repository alone.
func TestRecordsAndGatedPromotion(t *testing.T) {
	const soak = 3 * time.Second
	s := newRecordsSetup(t, "dev", "prod")
	ctx := t.Context()
	src := writeTree(t, map[string]string{
		"apps/web/kustomization.yaml":      "resources: [deployment.yaml]\n",
		"apps/web/deployment.yaml":         fmt.Sprintf(webDeployment, "registry.local/team/web:1.0.0"),
		"clusters/dev/kustomization.yaml":  "resources: [../../apps/web]\n",
		"clusters/prod/kustomization.yaml": "resources: [../../apps/web]\n",
		"policies/promotion.yaml": fmt.Sprintf("apiVersion: driftless.dev/v1alpha1\nkind: Promotion\nmetadata: {name: dev-to-prod}\n"+
			"spec: {from: dev, to: prod, healthyIn: [dev], soak: %s}\n", soak),
	})
	seed, err := s.git.Seed(ctx, "fleet", "dev", src, "seed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.git.Git(ctx, "fleet", "branch", "prod", "dev"); err != nil {
		t.Fatal(err)
	}
	devSync, devListen := s.synchronizer(t, "dev", "dev")
	s.synchronizer(t, "prod", "prod")
	// Two automators, no Lease: the gate's pushes are fast-forward only.
	// The gates evaluate on pushes and when a soak ends, never by the clock.
	a1, a1Listen := s.automator(t, "dev", "--promotion-targets", "prod", "--promotion-interval", "1h")
	a2, _ := s.automator(t, "dev", "--promotion-targets", "prod", "--promotion-interval", "1h")
	until(t, 60*time.Second, "both clusters to record the seed healthy", func() bool {
		_, dev := s.find(t, seed, records.Healthy, "dev")
		_, prod := s.find(t, seed, records.Healthy, "prod")
		return dev && prod
	})
	if a, ok := s.find(t, seed, records.Applied, "dev"); !ok || a.Ref != "dev" || !strings.HasPrefix(a.Digest, "sha256:") || strings.Join(a.Images, ",") != "registry.local/team/web:1.0.0" {
		t.Fatalf("dev's applied record: %+v", a)
	}

	// A dev commit: applied and healthy in dev, then promoted.
	// As the automator writes a bump (history finds bumps by their trailer).
	x := s.commit(t, "dev", "Update registry.local/team/web to 1.1.0\n\nDriftless-Image: registry.local/team/web:1.1.0\n", map[string]string{"apps/web/deployment.yaml": fmt.Sprintf(webDeployment, "registry.local/team/web:1.1.0")})
	until(t, 60*time.Second, "prod to move", func() bool { return s.head(t, "prod") != seed })
	merge := s.head(t, "prod")
	healthy, ok := s.find(t, x, records.Healthy, "dev")
	if !ok {
		t.Fatalf("promoted without a healthy record: %+v", s.note(t, x))
	}
	var promoted records.Record
	// The merge is pushed first, then recorded.
	until(t, 30*time.Second, "the promotion record", func() bool {
		promoted, ok = s.find(t, x, records.Promoted, "")
		return ok
	})
	if promoted.Commit != merge || promoted.To != "prod" || promoted.Gate != "dev-to-prod" {
		t.Fatalf("promotion record: %+v (merge %s)", promoted, merge)
	}
	if early := healthy.Time.Add(soak).Sub(promoted.Time); early > 0 {
		t.Fatalf("promoted %s before the soak time was over (healthy %s, promoted %s)", early, healthy.Time, promoted.Time)
	}
	t.Logf("promotion latency after the soak: %s (healthy %s + soak %s → promoted %s)", promoted.Time.Sub(healthy.Time.Add(soak)).Round(time.Millisecond),
		healthy.Time.Format(time.StampMilli), soak, promoted.Time.Format(time.StampMilli))
	waited := false
	for _, a := range []*proc{a1, a2} {
		for _, l := range logLines(a, "gate") {
			waited = waited || (l["state"] == "Waiting" && l["candidate"] == x && strings.Contains(fmt.Sprint(l["reason"]), "soaking until"))
		}
	}
	if !waited {
		t.Fatal("no automator said the gate was waiting for the soak")
	}
	parents, _ := s.git.Git(ctx, "fleet", "log", "-1", "--format=%P%n%an", merge)
	if parents != seed+" "+x+"\nDriftless Automator\n" {
		t.Fatalf("merge parents and author: %q", parents)
	}
	until(t, 60*time.Second, "prod to roll out 1.1.0 and record the merge healthy", func() bool {
		_, ok := s.find(t, merge, records.Healthy, "prod")
		return ok && rolledOut(t, s.clusters["prod"], "registry.local/team/web:1.1.0")
	})
	// Two automators, one merge; one promotion record.
	if n, _ := s.git.Git(ctx, "fleet", "rev-list", "--merges", "--count", "prod"); strings.TrimSpace(n) != "1" {
		t.Fatalf("%s merges on prod, want 1", n)
	}
	if n := strings.Count(fmt.Sprint(s.note(t, x)), "promoted"); n != 1 {
		t.Fatalf("%d promotion records on %s", n, x)
	}
	latency := metricValue(t, "http://"+devListen+"/metrics", "driftless_synchronizer_record_latency_seconds_sum") /
		metricValue(t, "http://"+devListen+"/metrics", "driftless_synchronizer_record_latency_seconds_count")
	t.Logf("dev record write latency (transition → note pushed), mean: %s", time.Duration(latency*float64(time.Second)).Round(time.Millisecond))
	if v := metricValue(t, "http://"+devListen+"/metrics", `driftless_synchronizer_records_total{result="written"}`); v < 4 {
		t.Fatalf("dev wrote %v records", v)
	}

	// A dev commit whose rollout fails (its Pods fit no node): degraded
	// in dev, never promoted, though its soak time passes.
	y := s.commit(t, "dev", "Pin web to a node pool that does not exist", map[string]string{"apps/web/deployment.yaml": strings.Replace(
		fmt.Sprintf(webDeployment, "registry.local/team/web:1.1.0"), "    spec:\n      containers:", "    spec:\n      nodeSelector: {pool: none}\n      containers:", 1)})
	var degraded records.Record
	until(t, 60*time.Second, "dev to record the commit degraded", func() bool {
		degraded, ok = s.find(t, y, records.Degraded, "dev")
		return ok
	})
	if !strings.Contains(degraded.Message, "Progress deadline exceeded") || degraded.Revert {
		t.Fatalf("degraded record: %+v", degraded)
	}
	// Let the time the soak would take pass (the scenario is about time
	// itself), then have the gates evaluate once more: still refused.
	until(t, 30*time.Second, "the degraded commit's soak time to pass", func() bool { return time.Now().After(degraded.Time.Add(soak)) })
	metrics := "http://" + a1Listen + "/metrics"
	evaluations := metricValue(t, metrics, `driftless_automator_gate_passes_total{result="ok"}`)
	s.pushed()
	until(t, 30*time.Second, "a gate evaluation after the soak time", func() bool {
		return metricValue(t, metrics, `driftless_automator_gate_passes_total{result="ok"}`) > evaluations
	})
	if w := metricValue(t, metrics, `driftless_automator_gate_waiting{promotion="dev-to-prod"}`); w != 0 {
		t.Fatalf("the gate still waits (%v) for a degraded commit", w)
	}
	if h := s.head(t, "prod"); h != merge {
		t.Fatalf("prod moved to %s", h)
	}
	if v := metricValue(t, "http://"+a1Listen+"/metrics", `driftless_automator_gate_refused_total{promotion="dev-to-prod",reason="degraded"}`); v != 1 {
		t.Fatalf("refused metric %v, want 1 (once per commit)", v)
	}
	out, _ := exec.CommandContext(ctx, programs["automator"], "plan", "--git-url", s.git.RepoURL("fleet"), "--git-branch", "dev", "--git-username", recGitUser,
		"--git-password-file", filepath.Join(s.dir, "git-token"), "--policy-path", "policies", "--promotion-targets", "prod",
		"--workdir", filepath.Join(t.TempDir(), "plan")).CombinedOutput()
	if !strings.Contains(string(out), "dev@"+y[:10]+" is never promoted: dev: degraded at") {
		t.Fatalf("plan:\n%s", out)
	}

	// The story, from a clone alone.
	clone := filepath.Join(t.TempDir(), "clone")
	url := strings.Replace(s.git.RepoURL("fleet"), "http://", "http://"+recGitUser+":"+recGitToken+"@", 1)
	gitRun(t, "", "clone", "--quiet", "--branch", "dev", url, clone)
	gitRun(t, clone, "fetch", "--quiet", "origin", "refs/notes/*:refs/notes/*", "+refs/heads/*:refs/remotes/origin/*")
	log := gitRun(t, clone, "log", "--notes=driftless", "--format=%h %s%n%N", "origin/prod")
	for _, want := range []string{"event=applied cluster=prod ref=prod", "event=healthy cluster=dev ref=dev", "event=promoted commit=" + merge + " to=prod gate=dev-to-prod"} {
		if !strings.Contains(log, want) {
			t.Fatalf("git log --notes=driftless lacks %q:\n%s", want, log)
		}
	}
	hist, err := exec.CommandContext(ctx, programs["automator"], "history", "--dir", clone, "--git-branch", "dev", "--policy-path", "policies").CombinedOutput()
	if err != nil || !strings.Contains(string(hist), "registry.local/team/web:1.1.0\n") ||
		!strings.Contains(string(hist), "(gate dev-to-prod)") || !strings.Contains(string(hist), "lead time") {
		t.Fatalf("history: %v\n%s", err, hist)
	}
	t.Logf("automator history:\n%s", hist)
	for _, p := range []*proc{devSync, a1, a2} {
		if strings.Contains(p.Output(), recGitToken) {
			t.Fatalf("%s logged the Git token", p.name)
		}
	}
}

// denyTag installs a ValidatingAdmissionPolicy that refuses Pods of image
// tag in namespace web (as a cluster's CVE gate would), and waits until
// it is in force.
func denyTag(t testing.TB, c *testenv.Cluster, tag string) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(c.Config)
	policy := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: deny-web-tag}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
  validations:
    - expression: "object.spec.containers.all(c, !c.image.endsWith(':` + tag + `'))"
      message: "team/web:` + tag + ` is blocked in this cluster (known vulnerability)"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: deny-web-tag}
spec:
  policyName: deny-web-tag
  validationActions: [Deny]
  matchResources: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: web}}}
`
	for _, doc := range strings.Split(policy, "---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		res := "validatingadmissionpolicies"
		if u.GetKind() == "ValidatingAdmissionPolicyBinding" {
			res = "validatingadmissionpolicybindings"
		}
		if _, err := dyn.Resource(schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: res}).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cs := kubernetes.NewForConfigOrDie(c.Config)
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "web"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x/team/web:" + tag}}}}
	until(t, 30*time.Second, "the admission policy in force", func() bool {
		_, err := cs.CoreV1().Pods("web").Create(t.Context(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "is blocked in this cluster")
	})
}

// TestFailingBumpIsReverted: a tag whose Pods the cluster refuses is
// bumped, applied, recorded degraded with a revert asked for; the
// automator reverts the bump, the synchronizer applies the revert, the
// previous version runs again, the tag is never chosen again (the next
// good one is), and the records and history tell the story.
//
// The failure is a real one: a ValidatingAdmissionPolicy (an image gate
// such as a CVE policy) refuses the new ReplicaSet's Pods, the Deployment
// passes its progress deadline, and kstatus says Failed. kwok's stages
// make every Pod it schedules Ready, so a failing Pod is made by the
// API server here, not simulated.
func TestFailingBumpIsReverted(t *testing.T) {
	s := newRecordsSetup(t, "dev")
	ctx := t.Context()
	denyTag(t, s.clusters["dev"], "1.1.0")
	aListen := s.listen(t)
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{NotifyURL: "http://" + aListen + "/hooks/registry",
		NotifyHeaders: map[string]string{"Authorization": "Bearer " + recHookSecret}})
	if _, err := reg.PushImages(ctx, "team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	img := func(tag string) string { return reg.Host + "/team/web:" + tag }
	src := writeTree(t, map[string]string{
		"apps/web/kustomization.yaml":     "resources: [deployment.yaml]\n",
		"apps/web/deployment.yaml":        fmt.Sprintf(webDeployment, img("1.0.0")),
		"clusters/dev/kustomization.yaml": "resources: [../../apps/web]\n",
		"policies/web.yaml": fmt.Sprintf("apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: web, namespace: web}\n"+
			"spec:\n  image: %s/team/web\n  interval: 1h\n  policy: {semver: {range: \"^1.0.0\"}}\n", reg.Host),
	})
	seed, err := s.git.Seed(ctx, "fleet", "main", src, "seed")
	if err != nil {
		t.Fatal(err)
	}
	sync, _ := s.synchronizer(t, "dev", "main", "--revert-on-failure")
	a := start(t, "automator", "run", "--git-url", s.git.RepoURL("fleet"), "--git-branch", "main", "--git-username", recGitUser,
		"--git-password-file", filepath.Join(s.dir, "git-token"), "--workdir", filepath.Join(s.dir, "automator"),
		"--policy-path", "policies", "--manifest-path", "apps", "--listen", aListen, "--insecure-registries", reg.Host,
		"--webhook-secret-file", filepath.Join(s.dir, "hook-secret"), "--log-format", "json", "--promotion-interval", "1h")
	waitHTTP(t, a, "http://"+aListen+"/healthz")
	until(t, 60*time.Second, "web 1.0.0 healthy in dev", func() bool {
		_, ok := s.find(t, seed, records.Healthy, "dev")
		return ok && rolledOut(t, s.clusters["dev"], img("1.0.0"))
	})

	pushed := time.Now()
	if _, err := reg.PushImages(ctx, "team/web", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	var bump, revert string
	until(t, 90*time.Second, "the bump and its revert", func() bool {
		log, _ := s.git.Git(ctx, "fleet", "log", "--format=%H %s", "main")
		for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
			h, subject, _ := strings.Cut(line, " ")
			switch {
			case subject == "Update "+reg.Host+"/team/web to 1.1.0":
				bump = h
			case strings.HasPrefix(subject, `Revert "Update `+reg.Host+`/team/web to 1.1.0"`):
				revert = h
			}
		}
		return bump != "" && revert != ""
	})
	until(t, 60*time.Second, "the revert applied and 1.0.0 running again", func() bool {
		_, ok := s.find(t, revert, records.Healthy, "dev")
		return ok && rolledOut(t, s.clusters["dev"], img("1.0.0"))
	})
	t.Logf("tag pushed → previous version running again, recorded healthy: %s", time.Since(pushed).Round(time.Millisecond))

	// The records tell the story.
	var story []string
	for _, r := range s.note(t, bump) {
		story = append(story, string(r.Event))
	}
	if strings.Join(story, ",") != "applied,degraded,reverted" {
		t.Fatalf("records of the bump: %v", s.note(t, bump))
	}
	applied, _ := s.find(t, bump, records.Applied, "dev")
	degraded, _ := s.find(t, bump, records.Degraded, "dev")
	reverted, _ := s.find(t, bump, records.Reverted, "")
	if !slices.Contains(applied.Images, img("1.1.0")) || !degraded.Revert || !strings.Contains(degraded.Message, "Progress deadline exceeded") ||
		reverted.Commit != revert || !slices.Contains(reverted.Images, img("1.1.0")) {
		t.Fatalf("applied %+v\ndegraded %+v\nreverted %+v", applied, degraded, reverted)
	}
	t.Logf("degraded recorded → revert pushed: %s", reverted.Time.Sub(degraded.Time).Round(time.Millisecond))
	msg, _ := s.git.Git(ctx, "fleet", "log", "-1", "--format=%B", revert)
	if !strings.Contains(msg, "its rollout failed in dev") || !strings.Contains(msg, "Record: "+degraded.Format()) {
		t.Fatalf("revert message:\n%s", msg)
	}
	d, _ := kubernetes.NewForConfigOrDie(s.clusters["dev"].Config).AppsV1().Deployments("web").Get(ctx, "web", metav1.GetOptions{})
	if c := deploymentCondition(d, appsv1.DeploymentProgressing); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("web is not progressing again: %+v", d.Status.Conditions)
	}

	// 1.1.0 is never chosen again; the next good tag is.
	if _, err := reg.PushImages(ctx, "team/web", "1.0.1"); err != nil {
		t.Fatal(err)
	}
	until(t, 60*time.Second, "1.0.1 bumped, applied and healthy", func() bool {
		h := s.head(t, "main")
		_, ok := s.find(t, h, records.Healthy, "dev")
		return h != revert && ok && rolledOut(t, s.clusters["dev"], img("1.0.1"))
	})
	if n := commitsWithSubject(t, s, "Update "+reg.Host+"/team/web to 1.1.0"); n != 1 {
		t.Fatalf("%d bumps to 1.1.0, want 1", n)
	}
	hist, err := exec.CommandContext(ctx, programs["automator"], "history", "--git-url", s.git.RepoURL("fleet"), "--git-branch", "main",
		"--git-username", recGitUser, "--git-password-file", filepath.Join(s.dir, "git-token"), "--image", "team/web:1.1.0").CombinedOutput()
	if err != nil || !strings.Contains(string(hist), "degraded") || !strings.Contains(string(hist), "reverted    ") {
		t.Fatalf("history: %v\n%s", err, hist)
	}
	t.Logf("automator history --image team/web:1.1.0:\n%s", hist)
	if v := metricValue(t, "http://"+aListen+"/metrics", `driftless_automator_reverts_total{result="reverted"}`); v != 1 {
		t.Fatalf("reverts metric %v", v)
	}
	for _, p := range []*proc{sync, a} {
		if strings.Contains(p.Output(), recGitToken) {
			t.Fatalf("%s logged the Git token", p.name)
		}
	}
}

func deploymentCondition(d *appsv1.Deployment, typ appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == typ {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func commitsWithSubject(t testing.TB, s *recordsSetup, subject string) int {
	t.Helper()
	out, _ := s.git.Git(t.Context(), "fleet", "log", "--format=%s", "main")
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if l == subject {
			n++
		}
	}
	return n
}
