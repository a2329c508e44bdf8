package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Every field Kustomize reads a path from, at any depth (a base, a
// component, a generator's or transformer's folder, a plugin
// configuration), pointing at a loopback server: the server must see no
// request, the error must name the file, the field and why, and nothing
// may be left in a temporary folder.
func TestNoFieldReachesTheNetwork(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fetched}\n"))
	}))
	t.Cleanup(srv.Close)
	u := srv.URL + "/f.yaml"
	host := strings.TrimPrefix(srv.URL, "http://")
	// A real repository a file:// URL could clone, if a build could run git.
	repo := t.TempDir()
	if git, err := exec.LookPath("git"); err == nil {
		for _, args := range [][]string{{"init", "-q"}, {"-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x"}} {
			if out, err := exec.Command(git, append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
	}
	why := "remote files are not read: only files inside the checkout"
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: local}\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // the file and field, before `"<url>": why`
	}{
		{"resources, a file", map[string]string{"k/kustomization.yaml": "resources: [" + u + "]\n"}, "k/kustomization.yaml: resources[0]"},
		{"resources, a git URL over http", map[string]string{"k/kustomization.yaml": "resources: ['" + srv.URL + "/org/repo.git//deploy?ref=v1']\n"}, "k/kustomization.yaml: resources[0]"},
		{"resources, git::", map[string]string{"k/kustomization.yaml": "resources: ['git::" + srv.URL + "/org/repo//deploy?ref=v1']\n"}, "k/kustomization.yaml: resources[0]"},
		{"resources, scp-like", map[string]string{"k/kustomization.yaml": "resources: ['deploy@" + host + ":org/repo.git']\n"}, "k/kustomization.yaml: resources[0]"},
		{"resources, file:// git URL", map[string]string{"k/kustomization.yaml": "resources: ['file://" + repo + "']\n"}, "k/kustomization.yaml: resources[0]"},
		{"resources, github.com", map[string]string{"k/kustomization.yaml": "resources: [github.com/org/repo/deploy]\n"}, "k/kustomization.yaml: resources[0]"},
		{"bases", map[string]string{"k/kustomization.yaml": "bases: [" + u + "]\n"}, "k/kustomization.yaml: bases[0]"},
		{"components", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\ncomponents: ['git::" + srv.URL + "/org/c.git']\n", "k/cm.yaml": cm}, "k/kustomization.yaml: components[0]"},
		{"patches path", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: " + u + "\n", "k/cm.yaml": cm}, "k/kustomization.yaml: patches[0].path"},
		{"patchesStrategicMerge", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\npatchesStrategicMerge: [" + u + "]\n", "k/cm.yaml": cm}, "k/kustomization.yaml: patchesStrategicMerge[0]"},
		{"patchesJson6902 path", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\npatchesJson6902:\n- target: {version: v1, kind: ConfigMap, name: local}\n  path: " + u + "\n", "k/cm.yaml": cm}, "k/kustomization.yaml: patchesJson6902[0].path"},
		{"transformers", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [" + u + "]\n", "k/cm.yaml": cm}, "k/kustomization.yaml: transformers[0]"},
		{"transformers, file:// git URL", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: ['file://" + repo + "']\n", "k/cm.yaml": cm}, "k/kustomization.yaml: transformers[0]"},
		{"generators", map[string]string{"k/kustomization.yaml": "generators: [" + u + "]\n"}, "k/kustomization.yaml: generators[0]"},
		{"validators", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\nvalidators: [" + u + "]\n", "k/cm.yaml": cm}, "k/kustomization.yaml: validators[0]"},
		{"configMapGenerator files", map[string]string{"k/kustomization.yaml": "configMapGenerator:\n- name: c\n  files: [" + u + "]\n"}, "k/kustomization.yaml: configMapGenerator[0].files[0]"},
		{"configMapGenerator envs", map[string]string{"k/kustomization.yaml": "configMapGenerator:\n- name: c\n  envs: [" + u + "]\n"}, "k/kustomization.yaml: configMapGenerator[0].envs[0]"},
		{"secretGenerator files", map[string]string{"k/kustomization.yaml": "secretGenerator:\n- name: s\n  files: [" + u + "]\n"}, "k/kustomization.yaml: secretGenerator[0].files[0]"},
		{"replacements path", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\nreplacements:\n- path: " + u + "\n", "k/cm.yaml": cm}, "k/kustomization.yaml: replacements[0].path"},
		{"openapi path", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\nopenapi:\n  path: " + u + "\n", "k/cm.yaml": cm}, "k/kustomization.yaml: openapi.path"},
		{"configurations", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\nconfigurations: [" + u + "]\n", "k/cm.yaml": cm}, "k/kustomization.yaml: configurations[0]"},
		{"crds", map[string]string{"k/kustomization.yaml": "resources: [cm.yaml]\ncrds: [" + u + "]\n", "k/cm.yaml": cm}, "k/kustomization.yaml: crds[0]"},
		{"nested in a base", map[string]string{
			"k/kustomization.yaml":    "resources: [../base]\n",
			"base/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: " + u + "\n", "base/cm.yaml": cm,
		}, "base/kustomization.yaml: patches[0].path"},
		{"nested in a component", map[string]string{
			"k/kustomization.yaml": "resources: [cm.yaml]\ncomponents: [../comp]\n", "k/cm.yaml": cm,
			"comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nconfigMapGenerator:\n- name: c\n  files: [" + u + "]\n",
		}, "comp/kustomization.yaml: configMapGenerator[0].files[0]"},
		{"a transformer's configuration", map[string]string{
			"k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [patch.yaml]\n", "k/cm.yaml": cm,
			"k/patch.yaml": "apiVersion: builtin\nkind: PatchTransformer\nmetadata: {name: p}\npath: " + u + "\ntarget: {kind: ConfigMap}\n",
		}, "k/patch.yaml: path"},
		{"resources in a generators folder", map[string]string{
			"k/kustomization.yaml": "resources: [cm.yaml]\ngenerators: [gen]\n", "k/cm.yaml": cm,
			"k/gen/kustomization.yaml": "resources: [" + u + "]\n",
		}, "k/gen/kustomization.yaml: resources[0]"},
		{"resources in a transformers folder", map[string]string{
			"k/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [tr]\n", "k/cm.yaml": cm,
			"k/tr/kustomization.yaml": "resources: [" + u + "]\n",
		}, "k/tr/kustomization.yaml: resources[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			sysTmp := kustomizeTemps(t, os.TempDir())
			root := tree(t, tc.files)
			_, err := Build(t.Context(), root, "k", krustyOnly)
			if n := hits.Load() - before; n != 0 {
				t.Errorf("%d request(s) reached the server", n)
			}
			if !errors.Is(err, ErrBuild) {
				t.Fatalf("got %v, want ErrBuild", err)
			}
			if !strings.Contains(err.Error(), tc.want+` "`) || !strings.Contains(err.Error(), why) {
				t.Errorf("error %q\nwants %q, the URL and %q", err, tc.want, why)
			}
			if strings.Contains(err.Error(), root) {
				t.Errorf("error %q shows the checkout's machine path", err)
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("left in the temporary folder: %v", entries)
			}
			if after := kustomizeTemps(t, filepath.Dir(tmp)); !slices.Equal(after, sysTmp) {
				t.Errorf("kustomize-* folders before %v, after %v", sysTmp, after)
			}
		})
	}
}

// kustomizeTemps lists the kustomize-* folders (clone targets) in dir.
func kustomizeTemps(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "kustomize-*"))
	return m
}

// .git is never readable, whichever way a build asks.
func TestGitFolderIsNeverRead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		path  string
		want  string
	}{
		{"configMapGenerator file", map[string]string{"kustomization.yaml": "configMapGenerator:\n- name: c\n  files: [.git/config]\n"}, ".",
			`kustomization.yaml: configMapGenerator[0].files[0] ".git/config": reaches into .git`},
		{"resources", map[string]string{"kustomization.yaml": "resources: [.git/config]\n"}, ".",
			`kustomization.yaml: resources[0] ".git/config": reaches into .git`},
		{"the path itself", map[string]string{"kustomization.yaml": "resources: []\n"}, ".git", `path ".git" reaches into .git`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.files[".git/config"] = "[remote \"origin\"]\n\turl = https://user:s3cr3t-t0ken@example.com/repo.git\n"
			root := tree(t, tc.files)
			_, err := Build(t.Context(), root, tc.path, krustyOnly)
			if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error shows .git/config: %v", err)
			}
		})
	}
	// A plain folder at the root of the checkout passes over .git.
	root := tree(t, map[string]string{"cm.yaml": cm, ".git/config": "[core]\n", ".git/objects/x.yaml": "not: an object\n"})
	objs, err := Build(t.Context(), root, ".")
	if err != nil || len(objs) != 1 {
		t.Fatalf("plain root: %v %v", objs, err)
	}
}

// A build that does not finish within its limit is stopped (its process
// killed), and the error names the path and the limit.
func TestStuckBuildStopsAtItsLimit(t *testing.T) {
	// Krusty scans its list on every append: 4,000 objects take it many
	// seconds, far beyond the limit.
	var sb strings.Builder
	for i := range 4000 {
		fmt.Fprintf(&sb, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%04d}\n---\n", i)
	}
	root := tree(t, map[string]string{"big/kustomization.yaml": "namespace: x\nresources: [objects.yaml]\n", "big/objects.yaml": sb.String()})
	_, err := Build(t.Context(), root, "big", krustyOnly, WithTimeout(300*time.Millisecond))
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, ErrBuild) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a TimeoutError", err)
	}
	if want := "build of big stopped: it did not finish within 300ms"; err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	if n := buildProcesses(t); n != 0 {
		t.Fatalf("%d build process(es) still running", n)
	}
	// The caller's own cancellation (shutdown) stops it the same way.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Build(ctx, root, "big", krustyOnly); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: got %v", err)
	}
}

// buildProcesses counts the build processes this process started that
// are still there.
func buildProcesses(t *testing.T) int {
	t.Helper()
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || string(bytes.TrimRight(cmdline, "\x00")) != childName {
			continue
		}
		status, _ := os.ReadFile(filepath.Join(d, "status"))
		if strings.Contains(string(status), fmt.Sprintf("\nPPid:\t%d\n", os.Getpid())) {
			n++
		}
	}
	return n
}
