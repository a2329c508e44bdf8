package recorder_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
	"driftless.dev/shared/testenv"
	"driftless.dev/synchronizer/internal/metrics"
	"driftless.dev/synchronizer/internal/reconcile"
	"driftless.dev/synchronizer/internal/recorder"
)

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: "registry.local/team/init:2.0.0"}]
      containers:
        - {name: web, image: "registry.local/team/web:1.1.0"}
        - {name: sidecar, image: "registry.local/team/proxy:3.0.0"}
`

const cronJob = `apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: web}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: report, image: "registry.local/team/web:1.1.0"}]
`

func objects(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func TestDigestAndImages(t *testing.T) {
	objs := objects(t, deployment, cronJob)
	rev := objects(t, cronJob, deployment)
	if recorder.Digest(objs) != recorder.Digest(rev) || !strings.HasPrefix(recorder.Digest(objs), "sha256:") {
		t.Fatal("the digest depends on the order of the objects")
	}
	changed := objects(t, strings.Replace(deployment, "web:1.1.0", "web:1.2.0", 1), cronJob)
	if recorder.Digest(objs) == recorder.Digest(changed) {
		t.Fatal("the digest does not change with an image")
	}
	want := "registry.local/team/init:2.0.0,registry.local/team/proxy:3.0.0,registry.local/team/web:1.1.0"
	if got := strings.Join(recorder.Images(objs), ","); got != want {
		t.Fatalf("images %s, want %s", got, want)
	}
}

// repo is a repository on a real Git server with a few commits.
type repo struct {
	srv     *testenv.GitServer
	url     string
	commits []string
}

func newRepo(t *testing.T, auth *testenv.BasicAuth) *repo {
	t.Helper()
	r := &repo{srv: testenv.NewGitServer(t, testenv.GitServerOptions{Auth: auth})}
	src := t.TempDir()
	for i := range 2 {
		os.WriteFile(filepath.Join(src, "app.yaml"), fmt.Appendf(nil, "v: %d\n", i), 0o644)
		h, err := r.srv.Seed(t.Context(), fmt.Sprintf("fleet%d", i), "main", src, "seed")
		if err != nil {
			t.Fatal(err)
		}
		r.commits = append(r.commits, h)
	}
	r.url = r.srv.RepoURL("fleet0")
	return r
}

// note is the note on commit as the real git shows it in the server's
// repository.
func (r *repo) note(t *testing.T, name, commit string) []records.Record {
	t.Helper()
	out, err := r.srv.Git(t.Context(), name, "log", "--notes=driftless", "--format=%N", "-1", commit)
	if err != nil {
		t.Fatal(err)
	}
	recs, errs := records.ParseNote(out)
	if len(errs) > 0 {
		t.Fatalf("note of %s: %v\n%s", commit, errs, out)
	}
	return recs
}

func newRecorder(t *testing.T, url string, auth gitrepo.Auth, cfg recorder.Config) (*recorder.Recorder, *metrics.Metrics) {
	t.Helper()
	m, err := gitrepo.OpenMirror("", url, auth)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "dev"
	}
	cfg.Author = gitrepo.Signature{Name: "Driftless Synchronizer", Email: "sync@driftless.dev"}
	met := metrics.New(prometheus.NewRegistry())
	rec, err := recorder.New(cfg, m.Notes(records.DefaultNotes), met, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return rec, met
}

func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestRecordsInGit: applied, healthy and degraded become lines of the
// commit's note that `git log --notes=driftless` shows, with the digest
// and images of what was applied, and the revert request when asked for.
func TestRecordsInGit(t *testing.T) {
	r := newRepo(t, nil)
	rec, met := newRecorder(t, r.url, gitrepo.Auth{}, recorder.Config{RevertOnFailure: true})
	objs := objects(t, deployment, cronJob)
	c := r.commits[0]
	t0 := time.Now().UTC()
	rec.Observe(reconcile.Transition{Event: records.Applied, Revision: "main@sha1:" + c, Time: t0, Objects: objs})
	rec.Observe(reconcile.Transition{Event: records.Healthy, Revision: "main@sha1:" + c, Time: t0.Add(time.Second)})
	rec.Observe(reconcile.Transition{Event: records.Degraded, Revision: "main@sha1:" + c, Time: t0.Add(2 * time.Second), Message: "not healthy: Deployment.apps web/web Failed"})
	until(t, "three records written", func() bool { return rec.Status().Written == 3 })

	got := r.note(t, "fleet0", c)
	if len(got) != 3 {
		t.Fatalf("note: %+v", got)
	}
	a, h, d := got[0], got[1], got[2]
	if a.Event != records.Applied || a.Cluster != "dev" || a.Ref != "main" || !a.Time.Equal(t0) || a.Digest != recorder.Digest(objs) ||
		strings.Join(a.Images, ",") != strings.Join(recorder.Images(objs), ",") {
		t.Fatalf("applied: %+v", a)
	}
	if h.Event != records.Healthy || d.Event != records.Degraded || !d.Revert || d.Message != "not healthy: Deployment.apps web/web Failed" || h.Digest != "" {
		t.Fatalf("healthy %+v, degraded %+v", h, d)
	}
	if n := testutil.ToFloat64(met.Records.WithLabelValues("written")); n != 3 {
		t.Fatalf("written metric %v", n)
	}
	if testutil.CollectAndCount(met.RecordLatency) != 1 {
		t.Fatal("no latency observed")
	}
}

// TestUnreachableGitDelaysRecordsWithoutLosingThem: while the repository
// cannot be written (here: it does not exist yet), Observe still returns
// at once, the failures show in Status and the metrics without the
// token, and once Git is back every record is written, in order.
func TestUnreachableGitDelaysRecordsWithoutLosingThem(t *testing.T) {
	auth := &testenv.BasicAuth{Username: "sync", Password: "s3cret-token"}
	r := newRepo(t, auth)
	url := r.srv.RepoURL("later")
	rec, met := newRecorder(t, url, gitrepo.Auth{Username: auth.Username, Password: auth.Password}, recorder.Config{Retry: 20 * time.Millisecond, MaxRetry: 50 * time.Millisecond})
	c := r.commits[1] // fleet1's commit: pushed to "later" below
	for i := range 5 {
		start := time.Now()
		rec.Observe(reconcile.Transition{Event: records.Applied, Revision: "main@sha1:" + c, Time: time.Now().Add(time.Duration(i) * time.Millisecond), Objects: objects(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c%d}\n", i))})
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Logf("Observe took %s", d) // reported, not asserted: wall clock
		}
	}
	until(t, "failed writes", func() bool { return rec.Status().Failed >= 10 })
	st := rec.Status()
	if st.Pending != 5 || st.Written != 0 || st.LastError == "" || strings.Contains(st.LastError, auth.Password) {
		t.Fatalf("status while Git cannot be written: %+v", st)
	}
	if testutil.ToFloat64(met.Records.WithLabelValues("failed")) < 10 || testutil.ToFloat64(met.RecordsPending) != 5 {
		t.Fatal("metrics do not show the failures")
	}
	// Git comes back: the repository exists, holding the commit.
	if _, err := r.srv.CreateRepo(t.Context(), "later", "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.srv.Git(t.Context(), "fleet1", "push", "--quiet", filepath.Join(r.srv.Root, "later.git"), "main"); err != nil {
		t.Fatal(err)
	}
	until(t, "every record written", func() bool { return rec.Status().Written == 5 })
	got := r.note(t, "later", c)
	if len(got) != 5 || rec.Status().LastError != "" || rec.Status().Pending != 0 {
		t.Fatalf("note %+v, status %+v", got, rec.Status())
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Time.After(got[i-1].Time) {
			t.Fatalf("records out of order: %+v", got)
		}
	}
}

// TestRestartDoesNotRepeatWhatGitSays: a new process tells applied and
// healthy again for what runs; the note already says so, and nothing is
// added. A new event after that is.
func TestRestartDoesNotRepeatWhatGitSays(t *testing.T) {
	r := newRepo(t, nil)
	c := "main@sha1:" + r.commits[0]
	objs := objects(t, deployment)
	first, _ := newRecorder(t, r.url, gitrepo.Auth{}, recorder.Config{})
	first.Observe(reconcile.Transition{Event: records.Applied, Revision: c, Time: time.Now(), Objects: objs})
	first.Observe(reconcile.Transition{Event: records.Healthy, Revision: c, Time: time.Now()})
	until(t, "written", func() bool { return first.Status().Written == 2 })

	second, _ := newRecorder(t, r.url, gitrepo.Auth{}, recorder.Config{})
	second.Observe(reconcile.Transition{Event: records.Applied, Revision: c, Time: time.Now(), Objects: objs})
	second.Observe(reconcile.Transition{Event: records.Healthy, Revision: c, Time: time.Now()})
	second.Observe(reconcile.Transition{Event: records.Degraded, Revision: c, Time: time.Now(), Message: "x"})
	until(t, "handled", func() bool { return second.Status().Written == 3 })
	var events []string
	for _, rec := range r.note(t, "fleet0", r.commits[0]) {
		events = append(events, string(rec.Event))
	}
	if strings.Join(events, ",") != "applied,healthy,degraded" {
		t.Fatalf("note after a restart: %v", events)
	}
}

// TestClustersRecordingAtOnceLoseNothing: several synchronizers (one per
// cluster) record on the same commits at the same time; every record of
// every cluster is in Git.
func TestClustersRecordingAtOnceLoseNothing(t *testing.T) {
	r := newRepo(t, nil)
	clusters := []string{"dev", "staging", "prod-eu", "prod-us"}
	var recs []*recorder.Recorder
	for _, cl := range clusters {
		rec, _ := newRecorder(t, r.url, gitrepo.Auth{}, recorder.Config{Cluster: cl})
		recs = append(recs, rec)
	}
	var wg sync.WaitGroup
	for _, rec := range recs {
		wg.Go(func() {
			for i := range 10 {
				rec.Observe(reconcile.Transition{Event: records.Healthy, Revision: "main@sha1:" + r.commits[0], Time: time.Now().Add(time.Duration(i) * time.Second)})
			}
		})
	}
	wg.Wait()
	until(t, "every cluster's records written", func() bool {
		return !slices.ContainsFunc(recs, func(rec *recorder.Recorder) bool { return rec.Status().Written != 10 })
	})
	per := map[string]int{}
	for _, rec := range r.note(t, "fleet0", r.commits[0]) {
		per[rec.Cluster]++
	}
	for _, cl := range clusters {
		if per[cl] != 10 {
			t.Fatalf("records per cluster %v, want 10 each", per)
		}
	}
}

func TestClusterNameIsChecked(t *testing.T) {
	for _, bad := range []string{"", "Dev", "dev cluster", "-dev", strings.Repeat("a", 64), "dev\nevent=healthy"} {
		if _, err := recorder.New(recorder.Config{Cluster: bad}, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "cluster name") {
			t.Errorf("cluster %q: %v", bad, err)
		}
	}
}
