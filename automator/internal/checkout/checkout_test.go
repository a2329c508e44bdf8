package checkout_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"driftless.dev/automator/internal/checkout"
)

func TestLinksStayInside(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, ".git"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a/b/real.yaml"), []byte("x: 1\n"), 0o640))
	must(os.WriteFile(filepath.Join(dir, ".git/config"), []byte("[core]\n"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte("s: 1\n"), 0o644))
	for name, target := range map[string]string{
		"a/inside.yaml":  "b/real.yaml",
		"a/chain.yaml":   "inside.yaml",
		"a/dir":          "b",
		"a/abs.yaml":     filepath.Join(outside, "secret.yaml"),
		"a/up.yaml":      "../../" + filepath.Base(outside) + "/secret.yaml",
		"a/git.yaml":     "../.git/config",
		"a/loop.yaml":    "loop.yaml",
		"real.yaml.tmp0": filepath.Join(outside, "victim"),
	} {
		must(os.Symlink(target, filepath.Join(dir, name)))
	}
	tree, err := checkout.Open(dir)
	must(err)
	defer tree.Close()
	for rel, want := range map[string]string{
		"a/inside.yaml":      "a/b/real.yaml",
		"a/chain.yaml":       "a/b/real.yaml",
		"a/dir/real.yaml":    "a/b/real.yaml",
		"a/b/../b/real.yaml": "a/b/real.yaml",
	} {
		if got, err := tree.Resolve(rel); err != nil || got != want {
			t.Errorf("Resolve(%s) = %q, %v; want %q", rel, got, err, want)
		}
	}
	for _, rel := range []string{"a/abs.yaml", "a/up.yaml", "a/git.yaml", ".git/config", "../x"} {
		if _, err := tree.Resolve(rel); !errors.Is(err, checkout.ErrOutside) {
			t.Errorf("Resolve(%s): got %v, want ErrOutside", rel, err)
		}
	}
	if _, err := tree.Resolve("a/loop.yaml"); err == nil || !strings.Contains(err.Error(), "links") {
		t.Errorf("a loop: got %v", err)
	}
	// The walk reads each real file once, follows the folder link, and
	// refuses the links out by name.
	var files, refused []string
	must(tree.Walk("", func(n string) bool { return strings.HasSuffix(n, ".yaml") }, func(rel string, _ []byte) error {
		files = append(files, rel)
		return nil
	}, func(err error) { refused = append(refused, err.Error()) }))
	if !slices.Equal(files, []string{"a/b/real.yaml"}) {
		t.Errorf("walked %v", files)
	}
	slices.Sort(refused)
	if len(refused) != 4 || !strings.HasPrefix(refused[0], "a/abs.yaml: a link to ") || !strings.HasPrefix(refused[1], "a/git.yaml: a link to ../.git/config, which leads into .git") ||
		!strings.HasPrefix(refused[2], "a/loop.yaml: more than 40 links") || !strings.HasPrefix(refused[3], "a/up.yaml") {
		t.Errorf("refused %q", refused)
	}
	// A write through a link edits the file it points to, keeps its mode
	// and the link, and leaves no temporary file.
	must(tree.WriteFile("a/chain.yaml", []byte("x: 2\n")))
	if b, _ := os.ReadFile(filepath.Join(dir, "a/b/real.yaml")); string(b) != "x: 2\n" {
		t.Errorf("real.yaml = %q", b)
	}
	if st, _ := os.Lstat(filepath.Join(dir, "a/chain.yaml")); st.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if st, _ := os.Stat(filepath.Join(dir, "a/b/real.yaml")); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(dir, "a/b/*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := tree.WriteFile("a/abs.yaml", []byte("pwned")); !errors.Is(err, checkout.ErrOutside) {
		t.Errorf("write through a link out: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret.yaml")); string(b) != "s: 1\n" {
		t.Error("written outside")
	}
}
