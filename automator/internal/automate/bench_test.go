package automate_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/registry"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/testenv"
)

// BenchmarkPlan100x1000 runs the pass in-process over 100 policies of
// 1,000 tags each: the automator's own cost, for profiling
// (-cpuprofile, -memprofile). The end-to-end figure against the listing
// floor is e2e's BenchmarkAutomatorScan.
func BenchmarkPlan100x1000(b *testing.B) {
	const repos, tagsPer = 100, 1000
	start := time.Now()
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
	b.Logf("setup %s", time.Since(start))
	src := b.TempDir()
	writeFile(b, filepath.Join(src, "policies/all.yaml"), policies.String())
	writeFile(b, filepath.Join(src, "apps/images.yaml"), manifest.String())
	if _, err := git.Seed(ctx, "fleet", "main", src, "seed"); err != nil {
		b.Fatal(err)
	}
	repo, err := gitrepo.Open(ctx, filepath.Join(b.TempDir(), "clone"), git.RepoURL("fleet"), "main", gitrepo.Auth{})
	if err != nil {
		b.Fatal(err)
	}
	a, err := automate.New(automate.Config{PolicyPath: "policies"}, repo, registry.New(registry.WithBudget(0, 1), registry.WithInsecure(reg.Host)), &registry.Credentials{}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := a.Plan(ctx, nil)
		if err != nil || len(res.Changes) != repos {
			b.Fatalf("%v: %d changes", err, len(res.Changes))
		}
	}
}
