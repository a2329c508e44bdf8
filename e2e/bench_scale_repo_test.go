package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"driftless.dev/shared/testenv"
)

// bigRepo writes, with git fast-import straight into the Git server's
// bare repository name, a history of commits commits over files files
// (100 per folder under src/, plus deploy/cm.yaml, the path the
// synchronizer renders). Every commit after the first replaces three
// files with 6 KB of fresh random text, which Git cannot delta, so the
// history is about 18 KB per commit plus the files: 100 MB for 20,000
// files and 5,000 commits. It returns the repository's size on disk.
func bigRepo(t testing.TB, git *testenv.GitServer, name string, files, commits int) int64 {
	t.Helper()
	if _, err := git.CreateRepo(t.Context(), name, "main"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(git.Root, name+".git")
	cmd := exec.CommandContext(t.Context(), "git", "--git-dir", dir, "fast-import", "--quiet")
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.CreateTemp(t.TempDir(), "fast-import-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	rng := rand.New(rand.NewPCG(17, 2026))
	text := func(n int) []byte {
		raw := make([]byte, n*3/4)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		b := []byte(base64.StdEncoding.EncodeToString(raw))
		for i := 76; i < len(b); i += 77 {
			b[i] = '\n'
		}
		return b
	}
	path := func(i int) string { return fmt.Sprintf("src/dir%03d/file%05d.txt", i/100, i) }
	when := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	commit := func(c int, changes map[string][]byte) {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Dev <dev@example.com> %d +0000\n", when+int64(c)*60)
		msg := fmt.Sprintf("change %d", c)
		fmt.Fprintf(w, "data %d\n%s\n", len(msg), msg)
		for p, body := range changes {
			fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n", p, len(body))
			w.Write(body)
			w.WriteString("\n")
		}
	}
	first := map[string][]byte{"deploy/cm.yaml": []byte(configMap("big", "", "0"))}
	for i := range files - 1 {
		first[path(i)] = text(1500)
	}
	commit(0, first)
	for c := 1; c < commits; c++ {
		commit(c, map[string][]byte{
			path(rng.IntN(files - 1)): text(6000),
			path(rng.IntN(files - 1)): text(6000),
			path(rng.IntN(files - 1)): text(6000),
		})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("git fast-import: %v\n%s", err, b)
	}
	var size int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	return size
}

// BenchmarkBigRepository follows a repository of 20,000 files and 5,000
// commits (about 100 MB of history; 2,000 files and 500 commits unless
// BENCH_SCALE=full): the synchronizer's first fetch and checkout (a
// fresh --checkout-dir, `run --once`: start, fetch of the branch with its
// history, checkout, build, apply of the one ConfigMap at --path, exit),
// then one new commit (`run --once` on the same checkout). Against: `git
// clone --depth 1` and `git clone` of the same URL, and `git fetch` of the
// new commit into the full clone; and the synchronizer's first fetch with
// --allow-rewind (no keyring), which fetches the tip alone (depth 1).
// Reported: wall time and peak RSS of each (the largest process of its
// tree: git's helpers, index-pack and the like, included), and the
// synchronizer's own fetch duration from its log.
func BenchmarkBigRepository(b *testing.B) {
	files, commits := pick(2000, 20000), pick(500, 5000)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Nodes: 1})
	s := newSyncSetup(b, cluster)
	ctx := b.Context()
	for _, ns := range []string{"driftless-system"} {
		if _, err := s.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Now()
	size := bigRepo(b, s.git, "big", files, commits)
	b.Logf("repository: %d files, %d commits, %.1f MB on the server, written in %s", files, commits, float64(size)/1e6, time.Since(t0).Round(time.Second))
	url := strings.Replace(s.git.RepoURL("big"), "http://", "http://sync:"+syncGitToken+"@", 1)
	gitCmd := func(dir string, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, "git", args...)
		c.Dir = dir
		c.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
		return c
	}
	// A working clone to make the one-commit updates from.
	work := filepath.Join(b.TempDir(), "work")
	runMeasured(b, gitCmd("", "clone", "--quiet", url, work))
	runMeasured(b, gitCmd(work, "config", "user.email", "dev@example.com"))
	runMeasured(b, gitCmd(work, "config", "user.name", "Dev"))

	fetchOf := func(p []byte) float64 {
		for _, l := range strings.Split(string(p), "\n") {
			var e struct {
				Msg   string
				Fetch float64
			}
			if json.Unmarshal([]byte(l), &e) == nil && e.Msg == "applied" {
				return e.Fetch
			}
		}
		b.Fatalf("no applied line in the synchronizer's log:\n%.3000s", p)
		return 0
	}
	fig := figures{"history-MB": {float64(size) / 1e6}}
	for i := 0; b.Loop(); i++ {
		it := strconv.Itoa(i)
		ns := "big-" + it
		for _, n := range []string{ns, ns + "-shallow"} {
			if _, err := s.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		tmp := b.TempDir()
		el, rss, _ := runMeasured(b, gitCmd(tmp, "clone", "--quiet", "--depth", "1", url, "shallow"))
		fig.add("git-clone-depth1-s", el.Seconds())
		fig.add("git-clone-depth1-RSS-MiB", rss)
		el, rss, _ = runMeasured(b, gitCmd(tmp, "clone", "--quiet", url, "full"))
		fig.add("git-clone-s", el.Seconds())
		fig.add("git-clone-RSS-MiB", rss)

		checkout := filepath.Join(tmp, "checkout")
		sync := func(extra ...string) (time.Duration, float64, []byte) {
			c := exec.CommandContext(ctx, programs["synchronizer"], s.syncArgs("big", cluster.Kubeconfig, freeAddr(b),
				append([]string{"--once", "--path", "deploy", "--checkout-dir", checkout, "--name", ns, "--default-namespace", ns, "--ui=false"}, extra...)...)...)
			c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp, "GOMEMLIMIT=" + deployedMemLimit}
			return runMeasured(b, c)
		}
		el, rss, out := sync()
		fig.add("sync-first-s", el.Seconds())
		fig.add("sync-first-fetch-s", fetchOf(out))
		fig.add("sync-first-RSS-MiB", rss)

		// What a fetch of the tip alone costs: --allow-rewind without a
		// keyring fetches depth 1 (a fresh checkout, its own status).
		el, rss, _ = sync("--allow-rewind", "--checkout-dir", filepath.Join(tmp, "shallow-checkout"), "--name", ns+"-shallow", "--default-namespace", ns+"-shallow")
		fig.add("sync-shallow-s", el.Seconds())
		fig.add("sync-shallow-RSS-MiB", rss)

		// One new commit: the ConfigMap and a file of src/.
		os.WriteFile(filepath.Join(work, "deploy", "cm.yaml"), []byte(configMap("big", "", it+"-next")), 0o644)
		os.WriteFile(filepath.Join(work, "src", "dir000", "file00000.txt"), []byte("edited in "+it+"\n"), 0o644)
		runMeasured(b, gitCmd(work, "commit", "--quiet", "-am", "one more"))
		runMeasured(b, gitCmd(work, "push", "--quiet", "origin", "HEAD:main"))

		el, rss, _ = runMeasured(b, gitCmd(filepath.Join(tmp, "full"), "fetch", "--quiet", "origin"))
		fig.add("git-fetch-s", el.Seconds())
		fig.add("git-fetch-RSS-MiB", rss)
		el, rss, out = sync()
		fig.add("sync-update-s", el.Seconds())
		fig.add("sync-update-fetch-s", fetchOf(out))
		fig.add("sync-update-RSS-MiB", rss)
		if v := cmValue(b, s.cs, ns, "big"); v != it+"-next" {
			b.Fatalf("the update was not applied: the ConfigMap holds %q", v)
		}
	}
	fig.report(b)
}
