package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"driftless.dev/shared/testenv"
)

// BenchmarkAutomatorScan measures one `automator run --once` pass over 100 policies
// whose repositories hold 1,000 tags each, against the floor: plain
// go-containerregistry listing of the same repositories, 8 at a time,
// page size 1,000, in the same run. Reported: seconds of each, their
// ratio, and the automator's peak RSS.
func BenchmarkAutomatorScan(b *testing.B) {
	const repos, tagsPer = 100, 1000
	reg := testenv.NewRegistry(b, testenv.RegistryOptions{})
	git := testenv.NewGitServer(b, testenv.GitServerOptions{})
	ctx := b.Context()
	var policies, manifest strings.Builder
	for i := range repos {
		repo := fmt.Sprintf("team/app%03d", i)
		if err := reg.SeedSemverTags(ctx, repo, tagsPer); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&policies, "---\napiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: app%03d}\nspec:\n  image: %s/%s\n  policy: {semver: {range: \"<9.0.0\"}}\n", i, reg.Host, repo)
		fmt.Fprintf(&manifest, "- image: %s/%s:0.0.1 # {\"$imagepolicy\": \"app%03d\"}\n", reg.Host, repo, i)
	}
	src := writeTree(b, map[string]string{"policies/all.yaml": policies.String(), "apps/images.yaml": manifest.String()})
	if _, err := git.Seed(ctx, "fleet", "main", src, "seed"); err != nil {
		b.Fatal(err)
	}
	workdir := filepath.Join(b.TempDir(), "clone")

	floor := func() time.Duration {
		repoNames := make([]string, repos)
		for i := range repos {
			repoNames[i] = fmt.Sprintf("team/app%03d", i)
		}
		return listFloor(b, reg, repoNames, tagsPer)
	}
	plan := func() (time.Duration, int64) {
		// A pass that finds nothing new: the steady state of a running
		// automator (its warm clone, no commit), with the default budget.
		cmd := exec.CommandContext(ctx, programs["automator"], "run", "--once", "--git-url", git.RepoURL("fleet"), "--workdir", workdir,
			"--policy-path", "policies", "--log-level", "error", "--insecure-registries", reg.Host)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		el := time.Since(start)
		if err != nil {
			b.Fatalf("plan: %v\n%s", err, out)
		}
		if len(out) != 0 {
			b.Fatalf("the pass printed something at level error:\n%.2000s", out)
		}
		return el, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss / 1024
	}
	plan() // warm the clone and make the one bump commit, as a running automator has
	if got, _ := git.Git(ctx, "fleet", "show", "main:apps/images.yaml"); strings.Count(got, ":8.9.9 #") != repos {
		b.Fatalf("the first pass did not bump all %d images to 8.9.9:\n%.500s", repos, got)
	}
	var floorSum, autoSum time.Duration
	var rss int64
	n := 0
	for b.Loop() {
		floorSum += floor()
		el, r := plan()
		autoSum += el
		rss = max(rss, r)
		n++
	}
	b.ReportMetric(floorSum.Seconds()/float64(n), "floor-s")
	b.ReportMetric(autoSum.Seconds()/float64(n), "automator-s")
	b.ReportMetric(autoSum.Seconds()/floorSum.Seconds(), "ratio")
	b.ReportMetric(float64(rss), "peak-RSS-MiB")
}

// BenchmarkAutomatorTagToCommit measures a running automator: a tag
// pushed to the registry (its manifest PUT answered) until the bump
// commit is on the branch, through the registry's webhook.
func BenchmarkAutomatorTagToCommit(b *testing.B) {
	s := newAutomatorSetup(b, 1, "1h")
	a := start(b, "automator", s.args(0, "--log-level", "info")...)
	waitHTTP(b, a, "http://"+s.listen[0]+"/readyz")
	head := func() string {
		h, _ := s.git.Head(b.Context(), "fleet", "main")
		return h
	}
	until(b, 30*time.Second, "the first pass", func() bool {
		return metric(b, "http://"+s.listen[0]+"/metrics", "driftless_automator_passes_total") != ""
	})
	var total time.Duration
	n := 0
	for b.Loop() {
		n++
		before := head()
		tag := fmt.Sprintf("1.1.%d", n)
		if err := s.reg.Tag(b.Context(), "team/web", "1.0.0", tag); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for head() == before {
			if time.Now().After(deadline) {
				b.Fatalf("no commit for %s:\n%s", tag, a.Output())
			}
			time.Sleep(2 * time.Millisecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()/float64(n), "tag-to-commit-s")
}

// listFloor lists the tags of every repository named, 8 at a time, with
// go-containerregistry's remote.List (1,000 tags a page): the floor a
// scan is measured against. Each must hold tagsPer tags.
func listFloor(b *testing.B, reg *testenv.Registry, repos []string, tagsPer int) time.Duration {
	ctx := b.Context()
	start := time.Now()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, repo := range repos {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r, _ := name.NewRepository(reg.Host+"/"+repo, name.Insecure)
			tags, err := remote.List(r, append(reg.RemoteOptions(ctx), remote.WithPageSize(1000))...)
			if err != nil || len(tags) != tagsPer {
				b.Errorf("floor list %s: %d tags, %v", r, len(tags), err)
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
