package automate_test

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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"go.uber.org/zap/zaptest"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/checkout"
	"driftless.dev/automator/internal/ecr"
	"driftless.dev/automator/internal/ecr/ecrtest"
	"driftless.dev/automator/internal/policy"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/automator/internal/registry"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/records"
	"driftless.dev/shared/testenv"
)

// fixture is a registry with tags and a Git repository holding a policy
// and a marked Deployment.
type fixture struct {
	reg  *testenv.Registry
	git  *testenv.GitServer
	url  string
	host string
}

const deployTmpl = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  template:
    spec:
      containers:
        - name: web
          # bumped by Driftless
          image: %s/team/web:1.0.0 # {"$imagepolicy": "apps:web"}
`

const policyTmpl = `apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: web
  namespace: apps
spec:
  image: %s/team/web
  policy:
    semver:
      range: "^1.0.0"
%s`

func newFixture(t *testing.T, regOpts testenv.RegistryOptions, policyExtra string, files map[string]string) *fixture {
	t.Helper()
	f := &fixture{reg: testenv.NewRegistry(t, regOpts), git: testenv.NewGitServer(t, testenv.GitServerOptions{})}
	f.host = f.reg.Host
	if _, err := f.reg.PushImages(t.Context(), "team/web", "1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest"); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	all := map[string]string{
		"policies/web.yaml":    fmt.Sprintf(policyTmpl, f.host, policyExtra),
		"apps/web/deploy.yaml": fmt.Sprintf(deployTmpl, f.host),
		"apps/web/README.md":   "not a manifest\n",
	}
	for k, v := range files {
		all[k] = v
	}
	for rel, content := range all {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.git.Seed(t.Context(), "fleet", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	f.url = f.git.RepoURL("fleet")
	return f
}

func (f *fixture) automator(t *testing.T, clients ...registry.Option) (*automate.Automator, *gitrepo.Repo) {
	t.Helper()
	repo, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "clone"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]registry.Option{registry.WithTransport(f.reg.Transport), registry.WithInsecure(f.host), registry.WithRetries(2, 10_000_000)}, clients...)
	a, err := automate.New(automate.Config{PolicyPath: "policies"}, repo, registry.New(opts...), &registry.Credentials{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return a, repo
}

func (f *fixture) head(t *testing.T) string {
	t.Helper()
	h, err := f.git.Head(t.Context(), "fleet", "main")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (f *fixture) commits(t *testing.T) int {
	t.Helper()
	out, err := f.git.Git(t.Context(), "fleet", "rev-list", "--count", "main")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(out, &n)
	return n
}

func TestOneCommitWithTheExactDiff(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	a, _ := f.automator(t)
	ctx := t.Context()
	res, err := a.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit == "" || res.Commit != f.head(t) {
		t.Fatalf("commit %q, server head %s", res.Commit, f.head(t))
	}
	diff, _ := f.git.Git(ctx, "fleet", "diff", "--unified=0", res.Base, res.Commit)
	wantDiff := fmt.Sprintf("-          image: %[1]s/team/web:1.0.0 # {\"$imagepolicy\": \"apps:web\"}\n+          image: %[1]s/team/web:1.1.0 # {\"$imagepolicy\": \"apps:web\"}\n", f.host)
	if !strings.Contains(diff, wantDiff) || strings.Count(diff, "\n+") != 2 || strings.Count(diff, "diff --git") != 1 {
		t.Fatalf("diff:\n%s\nwant exactly the one line:\n%s", diff, wantDiff)
	}
	msg, _ := f.git.Git(ctx, "fleet", "log", "-1", "--format=%B", "main")
	for _, want := range []string{
		"Update " + f.host + "/team/web to 1.1.0\n",
		"- apps:web: " + f.host + "/team/web:1.0.0 -> " + f.host + "/team/web:1.1.0\n",
		"Driftless-Policy: apps:web\n",
		"Driftless-Image: " + f.host + "/team/web:1.1.0\n",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	trailers, _ := f.git.Git(ctx, "fleet", "log", "-1", "--format=%(trailers:key=Driftless-Policy,valueonly)", "main")
	if strings.TrimSpace(trailers) != "apps:web" {
		t.Errorf("git does not read the trailers: %q", trailers)
	}
	// Nothing new: no commit.
	before := f.commits(t)
	res, err = a.Run(ctx, nil)
	if err != nil || res.Commit != "" || f.commits(t) != before {
		t.Fatalf("second pass: commit %q, err %v, commits %d -> %d; want no commit", res.Commit, err, before, f.commits(t))
	}
	// A new tag: a new commit.
	if _, err := f.reg.PushImages(ctx, "team/web", "1.3.0"); err != nil {
		t.Fatal(err)
	}
	if res, err = a.Run(ctx, nil); err != nil || res.Commit == "" {
		t.Fatalf("third pass: %v %+v", err, res)
	}
	if got, _ := f.git.Git(ctx, "fleet", "show", "main:apps/web/deploy.yaml"); !strings.Contains(got, "/team/web:1.3.0 #") {
		t.Fatalf("deploy.yaml after 1.3.0 was pushed:\n%s", got)
	}
}

// racingRepo lets another writer push just before the automator's first push.
type racingRepo struct {
	*gitrepo.Repo
	once  sync.Once
	other func()
}

func (r *racingRepo) Push(ctx context.Context, target string) error {
	r.once.Do(r.other)
	return r.Repo.Push(ctx, target)
}

func TestAnotherWriterMeanwhileBothCommitsSurvive(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	ctx := t.Context()
	other, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "other"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	var otherCommit string
	repo, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "clone"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	racing := &racingRepo{Repo: repo, other: func() {
		os.WriteFile(filepath.Join(other.Dir(), "apps/web/README.md"), []byte("edited by a person\n"), 0o644)
		h, err := other.Commit("a person's edit", gitrepo.Signature{Name: "p", Email: "p@x"}, nil)
		if err != nil {
			t.Error(err)
			return
		}
		if err := other.Push(ctx, "main"); err != nil {
			t.Error(err)
		}
		otherCommit = h.String()
	}}
	a, err := automate.New(automate.Config{PolicyPath: "policies"}, racing, registry.New(registry.WithTransport(f.reg.Transport), registry.WithInsecure(f.host)), &registry.Credentials{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || res.Commit != f.head(t) {
		t.Fatalf("attempts %d, commit %s, head %s; want a redo on the new tip", res.Attempts, res.Commit, f.head(t))
	}
	parent, _ := f.git.Git(ctx, "fleet", "rev-parse", "main^")
	if strings.TrimSpace(parent) != otherCommit {
		t.Fatalf("the bump's parent is %s, want the other writer's commit %s", parent, otherCommit)
	}
	readme, _ := f.git.Git(ctx, "fleet", "show", "main:apps/web/README.md")
	if readme != "edited by a person\n" {
		t.Fatalf("the other writer's change was lost: %q", readme)
	}
}

func TestTwoAutomatorsAtOnceMakeOneCommit(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	before := f.commits(t)
	var wg sync.WaitGroup
	results := make([]automate.Result, 2)
	errs := make([]error, 2)
	autos := make([]*automate.Automator, 2)
	for i := range autos {
		autos[i], _ = f.automator(t)
	}
	for i := range autos {
		wg.Go(func() { results[i], errs[i] = autos[i].Run(t.Context(), nil) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.commits(t); got != before+1 {
		t.Fatalf("%d commits added, want exactly 1 (results %+v / %+v)", got-before, results[0].Commit, results[1].Commit)
	}
	if (results[0].Commit == "") == (results[1].Commit == "") {
		t.Fatalf("want exactly one automator to report a commit: %q %q", results[0].Commit, results[1].Commit)
	}
}

func TestDigestPinning(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "  digestPinning: true\n", nil)
	digests, err := f.reg.PushImages(t.Context(), "team/web", "1.1.1")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.automator(t)
	res, err := a.Run(t.Context(), nil)
	if err != nil || res.Commit == "" {
		t.Fatalf("%v %+v", err, res)
	}
	got, _ := f.git.Git(t.Context(), "fleet", "show", "main:apps/web/deploy.yaml")
	want := fmt.Sprintf("%s/team/web:1.1.1@%s #", f.host, digests["1.1.1"])
	if !strings.Contains(got, want) {
		t.Fatalf("deploy.yaml:\n%s\nwant %s", got, want)
	}
	msg, _ := f.git.Git(t.Context(), "fleet", "log", "-1", "--format=%B", "main")
	if !strings.Contains(msg, "Driftless-Digest: "+digests["1.1.1"].String()) {
		t.Fatalf("message lacks the digest trailer:\n%s", msg)
	}
}

func TestBadInputMakesNoCommit(t *testing.T) {
	t.Run("BadPolicyBesideAGoodOne", func(t *testing.T) {
		f := newFixture(t, testenv.RegistryOptions{}, "", map[string]string{
			"policies/bad.yaml": "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: bad\nspec:\n  image: x/y\n  policy:\n    semver:\n      range: '>>1'\n",
		})
		a, _ := f.automator(t)
		res, err := a.Run(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.PolicyErrs == nil || !strings.Contains(res.PolicyErrs.Error(), "policies/bad.yaml:9: spec.policy.semver.range") {
			t.Fatalf("policy errors %v, want the bad range named with file and line", res.PolicyErrs)
		}
		if res.Commit == "" {
			t.Fatal("the good policy should still commit")
		}
	})
	t.Run("NonSemverTagsOnly", func(t *testing.T) {
		f := newFixture(t, testenv.RegistryOptions{}, "", nil)
		if _, err := f.reg.PushImages(t.Context(), "team/other", "latest", "main-abc", "nightly"); err != nil {
			t.Fatal(err)
		}
		deploy := fmt.Sprintf("image: %s/team/other:latest # {\"$imagepolicy\": \"other\"}\n", f.host)
		pol := fmt.Sprintf("apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: other\nspec:\n  image: %s/team/other\n  policy:\n    semver:\n      range: '*'\n", f.host)
		src := t.TempDir()
		os.MkdirAll(filepath.Join(src, "policies"), 0o755)
		os.WriteFile(filepath.Join(src, "policies/other.yaml"), []byte(pol), 0o644)
		os.WriteFile(filepath.Join(src, "other.yaml"), []byte(deploy), 0o644)
		if _, err := f.git.Seed(t.Context(), "other", "main", src, "seed"); err != nil {
			t.Fatal(err)
		}
		repo, _ := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "c"), f.git.RepoURL("other"), "main", gitrepo.Auth{})
		a, _ := automate.New(automate.Config{PolicyPath: "policies"}, repo, registry.New(registry.WithTransport(f.reg.Transport), registry.WithInsecure(f.host)), &registry.Credentials{}, zaptest.NewLogger(t))
		before, _ := f.git.Head(t.Context(), "other", "main")
		res, err := a.Run(t.Context(), nil)
		if err != nil || res.Commit != "" {
			t.Fatalf("%v %+v", err, res)
		}
		if after, _ := f.git.Head(t.Context(), "other", "main"); after != before {
			t.Fatal("a commit was made")
		}
		if r := res.Policies[0]; r.Choice.Tag != "" || !strings.Contains(r.Choice.Reason, "none of 3 tags") || r.Choice.Considered != 3 {
			t.Fatalf("choice %+v", r.Choice)
		}
		// A plan explains each tag.
		plan, err := a.Plan(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := plan.Policies[0].Choice.Rejected; len(r) != 3 || !strings.Contains(r[0].Reason, "not a semantic version") {
			t.Fatalf("plan's rejections %+v", r)
		}
	})
	t.Run("RegistryDown", func(t *testing.T) {
		f := newFixture(t, testenv.RegistryOptions{}, "", nil)
		a, _ := f.automator(t)
		before := f.head(t)
		f.reg.Stop()
		res, err := a.Run(t.Context(), nil)
		if err != nil || res.Commit != "" || f.head(t) != before {
			t.Fatalf("err %v, commit %q", err, res.Commit)
		}
		if perr := res.Policies[0].Err; !errors.Is(perr, registry.ErrUnreachable) || !strings.Contains(perr.Error(), f.host+"/team/web") {
			t.Fatalf("policy error %v, want ErrUnreachable naming the repository", perr)
		}
	})
	t.Run("WrongCredentials", func(t *testing.T) {
		dir := t.TempDir()
		f := newFixture(t, testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "robot", Password: "right-password"}},
			"  auth:\n    provider: dockerconfig\n    dockerConfig: config.json\n", nil)
		os.WriteFile(filepath.Join(dir, "config.json"), fmt.Appendf(nil, `{"auths":{%q:{"username":"robot","password":"wrong-password"}}}`, f.host), 0o600)
		repo, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "clone"), f.url, "main", gitrepo.Auth{})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := automate.New(automate.Config{PolicyPath: "policies"}, repo, registry.New(registry.WithTransport(f.reg.Transport), registry.WithInsecure(f.host)), &registry.Credentials{DockerConfigDir: dir}, zaptest.NewLogger(t))
		before := f.head(t)
		res, err := a.Run(t.Context(), nil)
		if err != nil || res.Commit != "" || f.head(t) != before {
			t.Fatalf("err %v, commit %q", err, res.Commit)
		}
		perr := res.Policies[0].Err
		if !errors.Is(perr, registry.ErrUnauthorized) || strings.Contains(perr.Error(), "wrong-password") {
			t.Fatalf("policy error %v, want ErrUnauthorized without the password", perr)
		}
		// With the right password it works.
		os.WriteFile(filepath.Join(dir, "config.json"), fmt.Appendf(nil, `{"auths":{%q:{"username":"robot","password":"right-password"}}}`, f.host), 0o600)
		if res, err = a.Run(t.Context(), nil); err != nil || res.Commit == "" {
			t.Fatalf("with the right password: %v %+v", err, res.Policies[0].Err)
		}
	})
	t.Run("ManifestThatDoesNotParse", func(t *testing.T) {
		f := newFixture(t, testenv.RegistryOptions{}, "", map[string]string{
			"apps/web/broken.yaml": "image: x # {\"$imagepolicy\": \"apps:web\"}\n  - [unclosed\n",
		})
		a, repo := f.automator(t)
		before := f.head(t)
		_, err := a.Run(t.Context(), nil)
		if !errors.Is(err, automate.ErrPermanent) || !strings.Contains(err.Error(), "apps/web/broken.yaml") {
			t.Fatalf("got %v, want ErrPermanent naming the file", err)
		}
		if f.head(t) != before {
			t.Fatal("a commit was made")
		}
		// Nothing half edited in the clone either.
		got, _ := os.ReadFile(filepath.Join(repo.Dir(), "apps/web/deploy.yaml"))
		if !strings.Contains(string(got), "/team/web:1.0.0 #") {
			t.Fatalf("deploy.yaml was edited although the pass failed:\n%s", got)
		}
	})
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPushBranchAndSignedCommits(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	ctx := t.Context()
	key, err := openpgp.NewEntity("Driftless Automator", "test", "automator@driftless.dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "clone"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := automate.New(automate.Config{PolicyPath: "policies", PushBranch: "driftless/updates", SignKey: key},
		repo, registry.New(registry.WithTransport(f.reg.Transport), registry.WithInsecure(f.host)), &registry.Credentials{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mainBefore := f.head(t)
	first, err := a.Run(ctx, nil)
	if err != nil || first.Commit == "" {
		t.Fatalf("%v %+v", err, first)
	}
	if f.head(t) != mainBefore {
		t.Fatal("main moved: the bump belongs on the push branch")
	}
	if got, _ := f.git.Head(ctx, "fleet", "driftless/updates"); got != first.Commit {
		t.Fatalf("push branch at %s, want %s", got, first.Commit)
	}
	// A second bump stacks on the first, waiting for review: no force.
	if _, err := f.reg.PushImages(ctx, "team/web", "1.5.0"); err != nil {
		t.Fatal(err)
	}
	second, err := a.Run(ctx, nil)
	if err != nil || second.Commit == "" {
		t.Fatalf("%v %+v", err, second)
	}
	if parent, _ := f.git.Git(ctx, "fleet", "rev-parse", "driftless/updates^"); strings.TrimSpace(parent) != first.Commit {
		t.Fatalf("second bump's parent %s, want the first bump %s", parent, first.Commit)
	}
	// Both commits carry a signature the key verifies.
	var pub strings.Builder
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	key.Serialize(w)
	w.Close()
	clone, err := git.PlainCloneContext(ctx, t.TempDir(), false, &git.CloneOptions{URL: f.url, ReferenceName: "refs/heads/driftless/updates"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{first.Commit, second.Commit} {
		c, err := clone.CommitObject(plumbing.NewHash(h))
		if err != nil {
			t.Fatal(err)
		}
		if c.PGPSignature == "" {
			t.Fatalf("commit %s is not signed", h)
		}
		if _, err := c.Verify(pub.String()); err != nil {
			t.Fatalf("commit %s: signature does not verify: %v", h, err)
		}
	}
}

// TestNewestPushedFromECR: a newestPushed policy takes its tags and push
// times from ECR's DescribeImages (the local ECR API stand-in, paged past
// 1,000 images) and commits the newest one.
func TestNewestPushedFromECR(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	ctx := t.Context()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var imgs []ecrtest.Image
	for i := range 1200 {
		imgs = append(imgs, ecrtest.Image{Tags: []string{fmt.Sprintf("build-%04d", i)}, PushedAt: t0.Add(time.Duration(i) * time.Minute)})
	}
	// The newest push sorts first by name and lowest by number.
	imgs = append(imgs, ecrtest.Image{Tags: []string{"aaa-hotfix"}, PushedAt: t0.Add(48 * time.Hour)})
	standIn := &ecrtest.StandIn{Password: "unused", Images: map[string][]ecrtest.Image{"team/ecr-app": imgs}}
	api := httptest.NewServer(standIn)
	defer api.Close()
	awsCfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "policies/ecr.yaml"), `apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: ecr-app}
spec:
  image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/ecr-app
  auth: {provider: aws}
  policy: {newestPushed: {}}
`)
	writeFile(t, filepath.Join(src, "app.yaml"), "image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/ecr-app:build-0001 # {\"$imagepolicy\": \"ecr-app\"}\n")
	if _, err := f.git.Seed(ctx, "ecr", "main", src, "seed"); err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "clone"), f.git.RepoURL("ecr"), "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	creds := &registry.Credentials{ECR: ecr.NewTokens(awsCfg, api.URL, ecr.WithAllowedAccounts("123456789012"))}
	a, err := automate.New(automate.Config{PolicyPath: "policies"}, repo, registry.New(), creds, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(ctx, nil)
	if err != nil || res.Commit == "" {
		t.Fatalf("%v %+v", err, res.Policies)
	}
	if pr := res.Policies[0]; pr.Tags != 1201 || pr.Choice.Tag != "aaa-hotfix" {
		t.Fatalf("listed %d tags, chose %q; want 1201 and aaa-hotfix", pr.Tags, pr.Choice.Tag)
	}
	got, _ := f.git.Git(ctx, "ecr", "show", "main:app.yaml")
	if !strings.Contains(got, "/team/ecr-app:aaa-hotfix #") {
		t.Fatalf("app.yaml:\n%s", got)
	}
}

func publicKeyring(t *testing.T, keys ...*openpgp.Entity) *gitrepo.Keyring {
	t.Helper()
	var b strings.Builder
	w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
	for _, k := range keys {
		if err := k.Serialize(w); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	k, err := gitrepo.ParseKeyring(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestUntrustedHeadIsNotBuiltOn: with a keyring the automator verifies the
// history of the head before reading anything; an unsigned commit under a
// signed one (a person without a key, then a signed commit on top) gets
// no bump: signing a bump on it would carry the unsigned content into
// what the synchronizers trust.
func TestUntrustedHeadIsNotBuiltOn(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	ctx := t.Context()
	key, err := openpgp.NewEntity("Driftless Automator", "", "automator@driftless.dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	seed := f.head(t)
	cfg := automate.Config{PolicyPath: "policies", SignKey: key, Keyring: publicKeyring(t, key), VerifyAnchor: plumbing.NewHash(seed)}
	newAuto := func() *automate.Automator {
		repo, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "clone"), f.url, "main", gitrepo.Auth{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := automate.New(cfg, repo, registry.New(registry.WithTransport(f.reg.Transport), registry.WithInsecure(f.host)), &registry.Credentials{}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := newAuto()
	first, err := a.Run(ctx, nil)
	if err != nil || first.Commit == "" {
		t.Fatalf("signed history from the anchor: %v %+v", err, first)
	}
	// Someone without a key pushes, then a trusted signed commit lands on top.
	person, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "person"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(person.Dir(), "apps/web/rbac.yaml"), "kind: ClusterRoleBinding\n")
	unsigned, err := person.Commit("unsigned", gitrepo.Signature{Name: "p", Email: "p@x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(person.Dir(), "apps/web/README.md"), "signed on top\n")
	if _, err := person.Commit("signed", gitrepo.Signature{Name: "Driftless Automator", Email: "automator@driftless.dev"}, key); err != nil {
		t.Fatal(err)
	}
	if err := person.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	head := f.head(t)
	if _, err := f.reg.PushImages(ctx, "team/web", "1.5.0"); err != nil {
		t.Fatal(err)
	}
	check := func(what string, a *automate.Automator, run func(context.Context, []string) (automate.Result, error)) {
		t.Helper()
		res, err := run(ctx, nil)
		var ue *gitrepo.UntrustedError
		if !errors.As(err, &ue) || !errors.Is(err, gitrepo.ErrUntrusted) || ue.Commit != unsigned.String() {
			t.Fatalf("%s: got %v, want the unsigned commit %s refused", what, err, unsigned)
		}
		if res.Untrusted == nil || res.Untrusted.Commit != unsigned.String() || res.Commit != "" || res.Changes != nil {
			t.Fatalf("%s: result %+v, want the refusal in it and no change", what, res)
		}
		if f.head(t) != head {
			t.Fatalf("%s: a commit was pushed on an untrusted head", what)
		}
	}
	check("run", a, a.Run)
	check("plan", a, a.Plan)
	// A restart, with a new clone, refuses the same way (from the anchor).
	b := newAuto()
	check("run after a restart", b, b.Run)
}

// TestECRTokenStaysWithECR: a policy from Git names the registry; with
// provider aws it must not be able to send the installation's ECR token
// to a host of its choosing, nor make the automator assume a role the
// administrator did not list.
func TestECRTokenStaysWithECR(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "AWS", Password: "ecr-token"}})
	if _, err := reg.PushImages(t.Context(), "team/web", "1.0.0", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	// Every request the registry gets passes here first.
	u, _ := url.Parse(reg.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var requests, withAuth atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Header.Get("Authorization") != "" {
			withAuth.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	host := strings.TrimPrefix(front.URL, "http://")
	standIn := &ecrtest.StandIn{Password: "ecr-token", Account: "123456789012"}
	api := httptest.NewServer(standIn)
	defer api.Close()
	awsCfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", ""), BaseEndpoint: aws.String(api.URL)}
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "policies/web.yaml"), fmt.Sprintf(`apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: web}
spec:
  image: %s/team/web
  auth: {provider: aws, region: us-east-1, account: "123456789012"}
  policy: {semver: {range: "^1"}}
---
apiVersion: driftless.dev/v1alpha1
kind: ImagePolicy
metadata: {name: ecr}
spec:
  image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web
  auth: {provider: aws, roleARN: "arn:aws:iam::123456789012:role/admin"}
  policy: {semver: {range: "^1"}}
`, host))
	writeFile(t, filepath.Join(src, "app.yaml"), fmt.Sprintf("a: %s/team/web:1.0.0 # {\"$imagepolicy\": \"web\"}\nb: 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:1.0.0 # {\"$imagepolicy\": \"ecr\"}\n", host))
	before, err := git.Seed(t.Context(), "fleet", "main", src, "seed")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "clone"), git.RepoURL("fleet"), "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	creds := &registry.Credentials{ECR: ecr.NewTokens(awsCfg, api.URL, ecr.WithAllowedAccounts("123456789012"), ecr.WithAllowedRoles("arn:aws:iam::123456789012:role/pull"))}
	a, err := automate.New(automate.Config{PolicyPath: "policies"}, repo, registry.New(registry.WithInsecure(host)), creds, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if withAuth.Load() != 0 || standIn.Total() != 0 {
		t.Fatalf("%d requests with credentials reached the non-ECR registry, %d AWS calls; want none", withAuth.Load(), standIn.Total())
	}
	if res.PolicyErrs == nil || !strings.Contains(res.PolicyErrs.Error(), "policies/web.yaml:6: spec.auth.provider: aws credentials go only to an Amazon ECR registry") {
		t.Fatalf("policy errors %v, want the non-ECR host refused naming the field", res.PolicyErrs)
	}
	if len(res.Policies) != 1 || res.Policies[0].Policy.Key() != "ecr" {
		t.Fatalf("policies scanned %+v, want only ecr", res.Policies)
	}
	if perr := res.Policies[0].Err; !errors.Is(perr, ecr.ErrRoleNotAllowed) || !strings.Contains(perr.Error(), `spec.auth.roleARN "arn:aws:iam::123456789012:role/admin" is not one of the roles the administrator allows policies to assume (--aws-allowed-roles)`) {
		t.Fatalf("role not allowed: got %v", perr)
	}
	if head, _ := git.Head(t.Context(), "fleet", "main"); head != before || res.Commit != "" {
		t.Fatal("a commit was made")
	}
}

// TestNothingWrittenOutsideTheClone: links committed to the repository
// cannot make the automator write or read outside its clone. A link
// planted under the name of the temporary file the edit used to go
// through is not followed; a marked file or a policy reached through a
// link that leaves the checkout is refused, naming the link, by run, plan
// and validate; a link inside the checkout is followed and the file it
// points to edited.
func TestNothingWrittenOutsideTheClone(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	writeFile(t, victim, "untouched\n")
	f := newFixture(t, testenv.RegistryOptions{}, "", map[string]string{
		"shared/images.yaml": "", // replaced below
	})
	ctx := t.Context()
	person, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "person"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) {
		t.Helper()
		p := filepath.Join(person.Dir(), name)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(person.Dir(), "shared/images.yaml"), fmt.Sprintf("image: %s/team/web:1.0.0 # {\"$imagepolicy\": \"apps:web\"}\n", f.host))
	link("apps/web/deploy.yaml.driftless-tmp", victim)
	link("apps/web/shared.yaml", "../../shared/images.yaml")
	if _, err := person.Commit("links", gitrepo.Signature{Name: "p", Email: "p@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := person.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	a, clone := f.automator(t)
	plan, err := a.Plan(ctx, nil)
	if err != nil || plan.Diff == "" {
		t.Fatalf("plan: %v %+v", err, plan)
	}
	res, err := a.Run(ctx, nil)
	if err != nil || res.Commit == "" {
		t.Fatalf("run: %v %+v", err, res)
	}
	if got, _ := os.ReadFile(victim); string(got) != "untouched\n" {
		t.Fatalf("a file outside the clone was written through the committed link: %q", got)
	}
	for file, want := range map[string]string{"apps/web/deploy.yaml": "/team/web:1.1.0 #", "shared/images.yaml": "/team/web:1.1.0 #"} {
		if got, _ := f.git.Git(ctx, "fleet", "show", "main:"+file); !strings.Contains(got, want) {
			t.Errorf("%s after the run:\n%s", file, got)
		}
	}
	if mode, _ := f.git.Git(ctx, "fleet", "ls-tree", "main", "apps/web/shared.yaml"); !strings.HasPrefix(mode, "120000 ") {
		t.Errorf("the in-checkout link is no longer a link: %q", mode)
	}

	// Links that leave the checkout: a marked manifest and a policy.
	writeFile(t, filepath.Join(outside, "evil.yaml"), fmt.Sprintf("image: %s/team/web:1.0.0 # {\"$imagepolicy\": \"apps:web\"}\n", f.host))
	writeFile(t, filepath.Join(outside, "policy.yaml"), fmt.Sprintf(policyTmpl, f.host, "")+"---\n"+strings.Replace(fmt.Sprintf(policyTmpl, f.host, ""), "name: web", "name: other", 1))
	if _, err := person.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	tip, _ := person.RemoteTip("main")
	if err := person.Reset(tip); err != nil {
		t.Fatal(err)
	}
	link("apps/web/evil.yaml", filepath.Join(outside, "evil.yaml"))
	up, err := filepath.Rel(filepath.Join(person.Dir(), "policies"), filepath.Join(outside, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	link("policies/outside.yaml", up) // relative, climbing out
	if _, err := person.Commit("links out", gitrepo.Signature{Name: "p", Email: "p@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := person.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.PushImages(ctx, "team/web", "1.2.0"); err != nil {
		t.Fatal(err)
	}
	before := f.head(t)
	outsideBefore, _ := os.ReadFile(filepath.Join(outside, "evil.yaml"))
	fresh, _ := f.automator(t) // a pass failed for good is not redone on the same commit
	for name, run := range map[string]func(context.Context, []string) (automate.Result, error){"run": a.Run, "plan": fresh.Plan} {
		res, err := run(ctx, nil)
		if !errors.Is(err, automate.ErrPermanent) || !strings.Contains(err.Error(), "apps/web/evil.yaml: a link to "+filepath.Join(outside, "evil.yaml")+", which leads outside the checkout: not read") {
			t.Fatalf("%s: got %v, want the marked link refused, naming it", name, err)
		}
		if res.PolicyErrs == nil || !strings.Contains(res.PolicyErrs.Error(), "policies/outside.yaml: a link to ") {
			t.Fatalf("%s: policy errors %v, want the policy link refused, naming it", name, res.PolicyErrs)
		}
		if f.head(t) != before {
			t.Fatalf("%s: a commit was made", name)
		}
	}
	tree, err := checkout.Open(clone.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	var findings []string
	errs, _ := policy.Validate(tree, "policies", "", nil)
	for _, e := range errs {
		findings = append(findings, e.Error())
	}
	all := strings.Join(findings, "\n")
	if !strings.Contains(all, "apps/web/evil.yaml: a link to") || !strings.Contains(all, "policies/outside.yaml: a link to") {
		t.Fatalf("validate findings:\n%s", all)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "evil.yaml")); string(got) != string(outsideBefore) {
		t.Fatal("the file outside was edited")
	}
	if got, _ := os.ReadFile(victim); string(got) != "untouched\n" {
		t.Fatal("the victim was written")
	}
}

// TestFluxRepository: a repository set up for Flux image automation, as
// it is: ImageRepository and ImagePolicy objects in their own files, a
// pull secret named by secretRef, markers naming the ImagePolicy, one of
// them in a file named Kustomization. The automator makes the commit
// Flux's automation would.
func TestFluxRepository(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{Auth: &testenv.BasicAuth{Username: "robot", Password: "pull-pw"}})
	if _, err := reg.PushImages(t.Context(), "team/podinfo", "6.0.0", "6.1.0", "7.0.0"); err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, "regcred/.dockerconfigjson"), fmt.Sprintf(`{"auths":{%q:{"username":"robot","password":"pull-pw"}}}`, reg.Host))
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "clusters/dev/image-repository.yaml"), fmt.Sprintf(`apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: podinfo
  namespace: flux-system
spec:
  image: %s/team/podinfo
  interval: 1m
  secretRef:
    name: regcred
`, reg.Host))
	writeFile(t, filepath.Join(src, "clusters/dev/image-policy.yaml"), `apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: podinfo
  namespace: flux-system
spec:
  imageRepositoryRef:
    name: podinfo
  policy:
    semver:
      range: 6.x
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 30m
  sourceRef: {kind: GitRepository, name: flux-system}
  update: {path: ./apps, strategy: Setters}
`)
	writeFile(t, filepath.Join(src, "apps/podinfo/deployment.yaml"), fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfo\n          image: %s/team/podinfo:6.0.0 # {\"$imagepolicy\": \"flux-system:podinfo\"}\n", reg.Host))
	writeFile(t, filepath.Join(src, "apps/podinfo/Kustomization"), "resources: [deployment.yaml]\nimages:\n  - name: podinfo\n    newTag: 6.0.0 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}\n")
	base, err := git.Seed(t.Context(), "fleet", "main", src, "seed")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.Open(t.Context(), filepath.Join(t.TempDir(), "clone"), git.RepoURL("fleet"), "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := automate.New(automate.Config{PolicyPath: "."}, repo, registry.New(registry.WithInsecure(reg.Host)), &registry.Credentials{DockerConfigDir: secrets}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(t.Context(), nil)
	if err != nil || res.PolicyErrs != nil || res.Commit == "" {
		t.Fatalf("run: %v, policy errors %v, result %+v", err, res.PolicyErrs, res.Policies)
	}
	if pr := res.Policies[0]; pr.Policy.Key() != "flux-system:podinfo" || pr.Choice.Tag != "6.1.0" {
		t.Fatalf("policy %s chose %q (%s)", pr.Policy.Key(), pr.Choice.Tag, pr.Choice.Reason)
	}
	diff, _ := git.Git(t.Context(), "fleet", "diff", "--unified=0", base, res.Commit)
	for _, want := range []string{
		"+          image: " + reg.Host + "/team/podinfo:6.1.0 # {\"$imagepolicy\": \"flux-system:podinfo\"}",
		"+    newTag: 6.1.0 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}",
	} {
		if !strings.Contains(diff, want) {
			t.Errorf("the commit lacks %q:\n%s", want, diff)
		}
	}
	if strings.Count(diff, "diff --git") != 2 {
		t.Errorf("the commit changes other files:\n%s", diff)
	}
}

// countingTransport counts the requests that reach the registry.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestPermanentFailureWaitsForTheBranchToMove: a pass that fails for good
// (here a digest marker for a policy that pins none, found once the
// registry was asked) is not redone on the same commit: the passes after
// it fetch, see the branch has not moved, and say so without asking any
// registry; a fix pushed makes the next pass work.
func TestPermanentFailureWaitsForTheBranchToMove(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", map[string]string{
		"apps/web/broken.yaml": "digest: sha256:00 # {\"$imagepolicy\": \"apps:web:digest\"}\n",
	})
	ctx := t.Context()
	counter := &countingTransport{next: f.reg.Transport}
	a, _ := f.automator(t, registry.WithTransport(counter))
	_, err := a.Run(ctx, nil)
	if !errors.Is(err, automate.ErrPermanent) {
		t.Fatalf("got %v, want ErrPermanent", err)
	}
	asked := counter.n.Load()
	if asked == 0 {
		t.Fatal("the first pass did not reach the registry: the failure must come after the scan")
	}
	res, err := a.Run(ctx, nil)
	if !errors.Is(err, automate.ErrPermanent) || !res.Stuck || !strings.Contains(err.Error(), "apps/web/broken.yaml") || !strings.Contains(err.Error(), "not retried until the branch moves") {
		t.Fatalf("second pass on the same commit: %v (stuck %v)", err, res.Stuck)
	}
	if n := counter.n.Load(); n != asked {
		t.Fatalf("the second pass on the same broken commit made %d registry requests, want none", n-asked)
	}
	// The fix.
	person, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "person"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(person.Dir(), "apps/web/broken.yaml"))
	if _, err := person.Commit("fix", gitrepo.Signature{Name: "p", Email: "p@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := person.Push(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if res, err := a.Run(ctx, nil); err != nil || res.Stuck || res.Commit == "" {
		t.Fatalf("after the fix: %v %+v", err, res)
	}
}

// TestRevertedTagIsNotChosenAgain: once the automator reverted a bump
// whose rollout failed (a reverted record in the notes), the pass passes
// over that tag, says why in the plan, and takes the next good one.
func TestRevertedTagIsNotChosenAgain(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	ctx := t.Context()
	seed := f.head(t)
	notes, err := gitrepo.OpenMirror("", f.url, gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	rec := records.Record{Time: time.Now(), Event: records.Reverted, Commit: seed, Images: []string{f.host + "/team/web:1.1.0"}, By: "Driftless Automator"}
	if _, err := notes.Notes(records.DefaultNotes).Append(ctx, map[plumbing.Hash][]string{plumbing.NewHash(seed): {rec.Format()}}, gitrepo.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	mirror, _ := gitrepo.OpenMirror("", f.url, gitrepo.Auth{})
	runner, err := promote.New(promote.Config{Branch: "main"}, mirror, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.Open(ctx, filepath.Join(t.TempDir(), "clone"), f.url, "main", gitrepo.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.WithTransport(f.reg.Transport), registry.WithInsecure(f.host))
	a, err := automate.New(automate.Config{PolicyPath: "policies", Skip: runner}, repo, reg, &registry.Credentials{}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := a.Plan(ctx, nil)
	if err != nil || plan.Diff != "" {
		t.Fatalf("plan: %v %+v", err, plan)
	}
	ch := plan.Policies[0].Choice
	var why string
	for _, r := range ch.Rejected {
		if r.Tag == "1.1.0" {
			why = r.Reason
		}
	}
	if ch.Tag != "1.0.0" || !strings.HasPrefix(why, "reverted after a failed rollout (bump "+seed[:10]) {
		t.Fatalf("choice %+v; 1.1.0 passed over because %q", ch, why)
	}
	if res, err := a.Run(ctx, nil); err != nil || res.Commit != "" || f.head(t) != seed {
		t.Fatalf("run: %v %+v", err, res)
	}
	// A new tag is chosen as usual.
	if _, err := f.reg.PushImages(ctx, "team/web", "1.1.1"); err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(ctx, nil)
	if err != nil || res.Commit == "" || !strings.Contains(res.Message, "team/web:1.1.1") {
		t.Fatalf("run after 1.1.1: %v %+v", err, res)
	}
}

// TestPlanWhileRunning: a plan asked for from the UI and the loop's passes
// share one clone; each waits for the other, so no plan sees a half-reset
// tree and no pass commits a plan's leftovers.
func TestPlanWhileRunning(t *testing.T) {
	f := newFixture(t, testenv.RegistryOptions{}, "", nil)
	a, _ := f.automator(t)
	before := f.commits(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var commits []string
	for i := range 12 {
		wg.Go(func() {
			var res automate.Result
			var err error
			if i%3 == 0 {
				res, err = a.Run(t.Context(), nil)
			} else {
				res, err = a.Plan(t.Context(), nil)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil && (len(res.Policies) != 1 || res.Policies[0].Err != nil || res.Policies[0].Choice.Tag != "1.1.0") {
				err = fmt.Errorf("policies %+v", res.Policies)
			}
			if err != nil {
				errs = append(errs, err)
			}
			if res.Commit != "" {
				commits = append(commits, res.Commit)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("plans and passes at once: %v", err)
	}
	if got := f.commits(t); got != before+1 || len(commits) != 1 || commits[0] != f.head(t) {
		t.Fatalf("%d commits added (%v), want exactly the one bump at the head %s", got-before, commits, f.head(t))
	}
	diff, _ := f.git.Git(t.Context(), "fleet", "diff", "--stat", "main^", "main")
	if !strings.Contains(diff, "apps/web/deploy.yaml") || !strings.Contains(diff, "1 file changed") {
		t.Fatalf("the bump holds more than its edit:\n%s", diff)
	}
}
