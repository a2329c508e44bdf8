package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"driftless.dev/shared/testenv"
)

// seedRegistry gives repos repositories team/appNNN of the registry in
// dir tagsPer tags each: 0.0.1, pushed through the API (one image, the
// same manifest in every repository), and 0.0.2 up to tagsPer written
// straight into distribution's filesystem storage, as seeding a million
// tags through the API would take about 45 minutes.
//
// How, exactly: distribution keeps a tag as the folder
// repositories/<name>/_manifests/tags/<tag>/ holding current/link (the
// manifest's digest) and index/sha256/<digest>/link. Seeding writes one
// such folder, with both links to the pushed manifest, and makes every
// seeded tag of every repository a symbolic link to it: a million tag
// folders would cost gigabytes of directory blocks. The registry cannot
// tell: it lists a repository's tags by reading the names in tags/ and
// stat-ing each (through the link), and resolves a tag by reading
// current/link, as for a pushed tag.
func seedRegistry(t testing.TB, dir string, repos, tagsPer int) {
	t.Helper()
	ctx := t.Context()
	reg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range repos {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ref, _ := name.NewTag(reg.Repository(fmt.Sprintf("team/app%04d", i))+":0.0.1", name.Insecure)
			if err := remote.Write(ref, img, reg.RemoteOptions(ctx)...); err != nil {
				t.Errorf("push %s: %v", ref, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	store := filepath.Join(dir, "data", "docker", "registry", "v2")
	shared := filepath.Join(store, "seeded-tag")
	for _, link := range []string{filepath.Join(shared, "current", "link"), filepath.Join(shared, "index", "sha256", digest.Hex, "link")} {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(link, []byte(digest.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range repos {
		tags := filepath.Join(store, "repositories", "team", fmt.Sprintf("app%04d", i), "_manifests", "tags")
		target, err := filepath.Rel(tags, shared)
		if err != nil {
			t.Fatal(err)
		}
		for j := 2; j <= tagsPer; j++ {
			if err := os.Symlink(target, filepath.Join(tags, fmt.Sprintf("%d.%d.%d", j/100, (j/10)%10, j%10))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// BenchmarkAutomatorScale is the automator's growth curve and its webhook
// latency at scale, on one registry whose repositories hold 1,000 tags
// each:
//   - repos=N: one `automator run --once` pass (warm clone, nothing new,
//     the default request budget) over N policies, against the floor:
//     go-containerregistry remote.List of the same N repositories, 8 at a
//     time, page size 1,000, in the same iteration. N is 100 and 1,000
//     (100 and 300 unless BENCH_SCALE=full). Reported: seconds of each,
//     their ratio, the pass's peak RSS, and the same pass without the
//     request budget (--registry-rps 0): every repository of 1,000 tags
//     is two requests (a full page makes distribution send a Link to a
//     next, empty, one), so 1,000 repositories are 2,000 requests, 8 s at
//     the default budget of 200 a second;
//   - tag-to-commit: a running automator with one policy per repository
//     (1,000 with BENCH_SCALE=full); a tag pushed to one of them (its
//     manifest PUT answered) until the bump commit is on the branch,
//     through the registry's webhook.
func BenchmarkAutomatorScale(b *testing.B) {
	const tagsPer = 1000
	sizes := pick([]int{100, 300}, []int{100, 1000})
	repos := sizes[len(sizes)-1]
	dir := b.TempDir()
	t0 := time.Now()
	seedRegistry(b, dir, repos, tagsPer)
	b.Logf("seeded %d repositories × %d tags in %s", repos, tagsPer, time.Since(t0).Round(time.Second))
	listen := freeAddr(b)
	// Started again on the seeded storage, now sending its notifications
	// to the automator of tag-to-commit (the seeding's pushes must not
	// reach it).
	reg := testenv.NewRegistry(b, testenv.RegistryOptions{Dir: dir,
		NotifyURL: "http://" + listen + "/hooks/registry", NotifyHeaders: map[string]string{"Authorization": "Bearer " + hookSecret}})
	git := testenv.NewGitServer(b, testenv.GitServerOptions{Auth: &testenv.BasicAuth{Username: "bot", Password: gitToken}})
	ctx := b.Context()
	secrets := b.TempDir()
	os.WriteFile(filepath.Join(secrets, "git-token"), []byte(gitToken), 0o600)
	os.WriteFile(filepath.Join(secrets, "hook-secret"), []byte(hookSecret), 0o600)
	seed := func(fleet string, n int, semver string) {
		var policies, manifest strings.Builder
		for i := range n {
			fmt.Fprintf(&policies, "---\napiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app%04d}\nspec:\n  image: %s/team/app%04d\n  interval: 1h\n  policy: {semver: {range: %q}}\n", i, reg.Host, i, semver)
			fmt.Fprintf(&manifest, "- image: %s/team/app%04d:0.0.1 # {\"$imagepolicy\": \"app%04d\"}\n", reg.Host, i, i)
		}
		src := writeTree(b, map[string]string{"policies/all.yaml": policies.String(), "apps/images.yaml": manifest.String()})
		if _, err := git.Seed(ctx, fleet, "main", src, "seed"); err != nil {
			b.Fatal(err)
		}
	}
	args := func(fleet, workdir string, extra ...string) []string {
		return append([]string{"run", "--git-url", git.RepoURL(fleet), "--git-username", "bot", "--git-password-file", filepath.Join(secrets, "git-token"),
			"--workdir", workdir, "--policy-path", "policies", "--insecure-registries", reg.Host}, extra...)
	}

	for _, n := range sizes {
		b.Run("repos="+strconv.Itoa(n), func(b *testing.B) {
			fleet := "scan-" + strconv.Itoa(n)
			seed(fleet, n, "<9.0.0")
			workdir := filepath.Join(b.TempDir(), "clone")
			floor := func() time.Duration {
				repoNames := make([]string, n)
				for i := range n {
					repoNames[i] = fmt.Sprintf("team/app%04d", i)
				}
				return listFloor(b, reg, repoNames, tagsPer)
			}
			pass := func(extra ...string) (time.Duration, float64) {
				cmd := exec.CommandContext(ctx, programs["automator"], args(fleet, workdir, append([]string{"--once", "--log-level", "error"}, extra...)...)...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir(), "GOMEMLIMIT=" + deployedMemLimit}
				el, rss, out := runMeasured(b, cmd)
				if len(out) != 0 {
					b.Fatalf("the pass printed something at level error:\n%.2000s", out)
				}
				return el, rss
			}
			pass() // warm the clone and make the one bump commit, as a running automator has
			if got, _ := git.Git(ctx, fleet, "show", "main:apps/images.yaml"); strings.Count(got, ":8.9.9 #") != n {
				b.Fatalf("the first pass did not bump all %d images to 8.9.9:\n%.500s", n, got)
			}
			fig := figures{}
			for b.Loop() {
				fl := floor()
				el, rss := pass()
				fig.add("floor-s", fl.Seconds())
				fig.add("automator-s", el.Seconds())
				fig.add("automator/floor", el.Seconds()/fl.Seconds())
				fig.add("peak-RSS-MiB", rss)
				// The same pass without the request budget (the floor has
				// none): what the budget costs.
				el, _ = pass("--registry-rps", "0")
				fig.add("unbudgeted-s", el.Seconds())
				fig.add("unbudgeted/floor", el.Seconds()/fl.Seconds())
			}
			fig.report(b)
		})
	}

	b.Run("tag-to-commit/policies="+strconv.Itoa(repos), func(b *testing.B) {
		seed("hook", repos, ">=0.0.1")
		a := startEnv(b, []string{"GOMEMLIMIT=" + deployedMemLimit}, "automator", args("hook", filepath.Join(b.TempDir(), "clone"),
			"--listen", listen, "--webhook-secret-file", filepath.Join(secrets, "hook-secret"), "--log-format", "json", "--log-level", "info", "--refresh", "1h")...)
		waitHTTP(b, a, "http://"+listen+"/readyz")
		until(b, 5*time.Minute, "the first pass", func() bool {
			got, _ := git.Git(ctx, "hook", "show", "main:apps/images.yaml")
			return strings.Count(got, ":10.0.0 #") == repos
		})
		head := func() string { h, _ := git.Head(ctx, "hook", "main"); return h }
		fig := figures{}
		i := 0
		for b.Loop() {
			i++
			before := head()
			repo := fmt.Sprintf("team/app%04d", (i*37)%repos)
			tag := fmt.Sprintf("10.1.%d", i)
			if err := reg.Tag(ctx, repo, "0.0.1", tag); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			until(b, time.Minute, "the bump commit of "+repo+":"+tag, func() bool { return head() != before })
			fig.add("tag-to-commit-s", time.Since(start).Seconds())
		}
		fig.add("RSS-MiB", procStatus(a.cmd.Process.Pid, "VmRSS"))
		fig.add("peak-RSS-MiB", procStatus(a.cmd.Process.Pid, "VmHWM"))
		fig.report(b)
	})
}
