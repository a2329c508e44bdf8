package build

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"driftless.dev/shared/testenv"
	"driftless.dev/synchronizer/internal/source"
)

// Symbolic links in a repository, checked out the way the synchronizer
// checks out (the source package, go-git, from a real Git server) and the
// way a person does (git clone): a link that stays inside the checkout is
// followed, one that leaves it is refused, naming the link, with the same
// message either way, even where go-git leaves an absolute link dangling.
func TestSymlinksFromARealCheckout(t *testing.T) {
	const cm2 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\n"
	work := tree(t, map[string]string{
		"shared/cm.yaml":              cm2,
		"inside/cm.yaml":              cm,
		"abs-file/cm.yaml":            cm,
		"abs-dir/cm.yaml":             cm,
		"rel-out/cm.yaml":             cm,
		"kust-abs/kustomization.yaml": "resources: [x.yaml]\n",
		"git-link/cm.yaml":            cm,
		"loop/cm.yaml":                cm,
	})
	links := map[string]string{
		"inside/shared":   "../shared",
		"abs-file/x.yaml": "/etc/passwd",
		"abs-dir/etc":     "/etc",
		"rel-out/x.yaml":  "../../../../../../../../etc/passwd",
		"kust-abs/x.yaml": "/etc/passwd",
		"git-link/x.yaml": "../.git/config",
		"loop/again":      ".",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(work, l)); err != nil {
			t.Fatal(err)
		}
	}
	gitServer := testenv.NewGitServer(t, testenv.GitServerOptions{})
	url, err := gitServer.CreateRepo(t.Context(), "links", "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q", "--initial-branch=main"}, {"add", "--all"},
		{"-c", "user.email=a@example.com", "-c", "user.name=a", "commit", "-q", "-m", "links"},
		{"push", "-q", url, "HEAD:refs/heads/main"},
	} {
		if out, err := exec.Command("git", append([]string{"-C", work}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	src, err := source.New(source.Config{URL: url, Branch: "main", Dir: filepath.Join(t.TempDir(), "checkout")})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := src.Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	if out, err := exec.Command("git", "clone", "-q", url, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	// go-git writes an absolute target inside its working tree, where it
	// dangles; git keeps it as it is.
	if target, _ := os.Readlink(filepath.Join(rev.Dir, "abs-file/x.yaml")); target == "/etc/passwd" {
		t.Logf("go-git kept the absolute target")
	}

	for _, tc := range []struct{ path, want string }{
		{"abs-file", "render failed: abs-file/x.yaml: symbolic link escapes the checkout"},
		{"abs-dir", "render failed: abs-dir/etc: symbolic link escapes the checkout"},
		{"rel-out", "render failed: rel-out/x.yaml: symbolic link escapes the checkout"},
		{"kust-abs", `render failed: kust-abs/kustomization.yaml: resources[0] "x.yaml": symbolic link kust-abs/x.yaml escapes the checkout`},
		{"git-link", "render failed: git-link/x.yaml: symbolic link reaches into .git, which a build never reads"},
		{"loop", "render failed: loop/again: symbolic link loops back to loop"},
	} {
		for _, checkout := range []string{rev.Dir, clone} {
			_, err := Build(t.Context(), checkout, tc.path)
			if !errors.Is(err, ErrBuild) || err.Error() != tc.want {
				t.Errorf("%s from %s:\n got %v\nwant %s", tc.path, filepath.Base(checkout), err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), os.TempDir()) {
				t.Errorf("%s: message shows a machine path: %v", tc.path, err)
			}
		}
	}
	for _, checkout := range []string{rev.Dir, clone} {
		objs, err := Build(t.Context(), checkout, "inside", WithOrder(DeclarationOrder))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ids(objs), ", "); got != "ConfigMap settings, ConfigMap shared" {
			t.Errorf("inside/ from %s: rendered %s, want the linked folder's object too", filepath.Base(checkout), got)
		}
	}
}
