package checkoutfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func checkout(t *testing.T) (string, *FS) {
	t.Helper()
	dir := t.TempDir()
	for p, body := range map[string]string{
		"a/cm.yaml": "x", "b/file.yaml": "y", ".git/config": "[core]", "sub/.git": "gitdir: ../.git/modules/sub",
	} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644)
	}
	for link, target := range map[string]string{
		"a/up":       "../b",
		"a/abs":      "/etc/passwd",
		"a/inside":   filepath.Join(dir, "b/file.yaml"), // absolute, even though it points inside
		"a/out":      "../../outside",
		"a/loop1":    "loop2",
		"a/loop2":    "loop1",
		"a/dangling": "nothing.yaml",
		"a/chain":    "up/file.yaml",
		"a/to-git":   "../.git/config",
		"a/git-dir":  "../.git",
		"a/self":     ".",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "a/fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Close() })
	return dir, fsys
}

func TestResolve(t *testing.T) {
	dir, fsys := checkout(t)
	for _, tc := range []struct {
		in, want string
		err      error
		msg      string
	}{
		{in: "a/cm.yaml", want: "a/cm.yaml"},
		{in: Mount + "/a/cm.yaml", want: "a/cm.yaml"},
		{in: "a/up/file.yaml", want: "b/file.yaml"},
		{in: "a/chain", want: "b/file.yaml"},
		{in: "a/self/self/cm.yaml", want: "a/cm.yaml"},
		{in: "a/../b", want: "b"},
		{in: ".", want: "."},
		{in: "a/abs", err: ErrEscapes, msg: "a/abs: symbolic link escapes the checkout"},
		{in: "a/inside", err: ErrEscapes, msg: "a/inside: symbolic link escapes the checkout"},
		{in: "a/out/x", err: ErrEscapes, msg: "a/out/x: symbolic link a/out escapes the checkout"},
		{in: "../x", err: ErrEscapes, msg: "../x: escapes the checkout"},
		{in: Mount + "/../x", err: ErrEscapes},
		{in: "/etc/passwd", err: ErrEscapes, msg: "../etc/passwd: escapes the checkout"},
		{in: "a/loop1", err: ErrLinkLoop},
		{in: "a/dangling", err: ErrNotFound, msg: "a/dangling: symbolic link points to a path that does not exist in the checkout"},
		{in: "a/missing.yaml", err: ErrNotFound, msg: "a/missing.yaml: does not exist in the checkout"},
		{in: ".git/config", err: ErrGit},
		{in: "a/to-git", err: ErrGit, msg: "a/to-git: symbolic link reaches into .git, which a build never reads"},
		{in: "a/git-dir/config", err: ErrGit},
		{in: "sub/.git", err: ErrGit},
	} {
		got, err := fsys.Resolve(tc.in)
		if tc.err == nil {
			if err != nil || got != tc.want {
				t.Errorf("Resolve(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("Resolve(%q): got %v, want %v", tc.in, err, tc.err)
			continue
		}
		if tc.msg != "" && err.Error() != tc.msg {
			t.Errorf("Resolve(%q): message %q, want %q", tc.in, err, tc.msg)
		}
		if strings.Contains(err.Error(), dir) {
			t.Errorf("Resolve(%q): message shows the machine path: %v", tc.in, err)
		}
	}
}

func TestReadsAndRefusals(t *testing.T) {
	_, fsys := checkout(t)
	if b, err := fsys.ReadFile(Mount + "/a/up/file.yaml"); err != nil || string(b) != "y" {
		t.Fatalf("read through a link: %q %v", b, err)
	}
	// A FIFO would block a read forever: it is refused before it is opened.
	if _, err := fsys.ReadFile(Mount + "/a/fifo.yaml"); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("fifo: got %v", err)
	}
	if _, err := fsys.ReadFile(Mount + "/a"); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("folder: got %v", err)
	}
	d, f, err := fsys.CleanedAbs(Mount + "/a/chain")
	if err != nil || string(d) != Mount+"/b" || f != "file.yaml" {
		t.Fatalf("CleanedAbs: %q %q %v", d, f, err)
	}
	if d, f, err := fsys.CleanedAbs(Mount + "/a/up"); err != nil || string(d) != Mount+"/b" || f != "" {
		t.Fatalf("CleanedAbs of a folder: %q %q %v", d, f, err)
	}
	fsys.AddVirtual("b/kustomization.yaml", []byte("resources: []\n"))
	if b, err := fsys.ReadFile(Mount + "/a/up/kustomization.yaml"); err != nil || string(b) != "resources: []\n" {
		t.Fatalf("virtual file: %q %v", b, err)
	}
	names, err := fsys.ReadDir(Mount + "/b")
	if err != nil || strings.Join(names, ",") != "file.yaml,kustomization.yaml" {
		t.Fatalf("ReadDir: %v %v", names, err)
	}
	for name, err := range map[string]error{
		"Create":    func() error { _, err := fsys.Create(Mount + "/x"); return err }(),
		"WriteFile": fsys.WriteFile(Mount+"/a/cm.yaml", nil),
		"MkdirAll":  fsys.MkdirAll(Mount + "/x/y"),
		"RemoveAll": fsys.RemoveAll(Mount + "/a"),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s: got %v, want ErrReadOnly", name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(fsys.root.Name(), "a/cm.yaml")); err != nil || string(b) != "x" {
		t.Fatalf("the checkout changed: %q %v", b, err)
	}
	if fsys.Exists(Mount+"/.git/config") || fsys.IsDir(Mount+"/.git") {
		t.Fatal(".git is visible")
	}
	var reads []string
	for _, r := range fsys.Reads() {
		reads = append(reads, r.Path)
	}
	if strings.Join(reads, ",") != "b/file.yaml,b/kustomization.yaml" {
		t.Fatalf("reads recorded: %v", reads)
	}
	if len(fsys.Refusals()) == 0 {
		t.Fatal("the .git lookups were not recorded as refusals")
	}
}

func TestMessage(t *testing.T) {
	if got := Message("open " + Mount + "/a/b.yaml: x; root " + Mount); got != "open a/b.yaml: x; root ." {
		t.Fatalf("Message: %q", got)
	}
	if Abs("a/b") != Mount+"/a/b" || Abs(".") != Mount {
		t.Fatal("Abs")
	}
}
