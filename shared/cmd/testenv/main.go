// Command testenv runs the test environment for a person: `make env-up`
// starts it in the background, `make env-down` stops it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"driftless.dev/shared/testenv"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{Use: "testenv", Short: "Run Driftless's test environment: a cluster, a registry and a Git server", SilenceUsage: true, SilenceErrors: true}
	var dir, binDir string
	var nodes int
	var realNode bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Start everything, write <dir>/env.sh, and run until SIGTERM or SIGINT",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runUp(ctx, dir, binDir, nodes, realNode)
		},
	}
	up.Flags().StringVar(&dir, "dir", "", "folder for data, logs and env.sh (required)")
	up.Flags().StringVar(&binDir, "bin-dir", "", "folder of the binaries `make tools` built (default: .tools/bin above the working directory)")
	up.Flags().IntVar(&nodes, "nodes", 2, "simulated nodes")
	up.Flags().BoolVar(&realNode, "real-node", false, "add a real node (kubelet, containerd, kube-proxy) that runs Pods tolerating "+testenv.RealNodeTaint+"; the registry and Git server then listen on its host address")
	_ = up.MarkFlagRequired("dir")

	var timeout time.Duration
	wait := &cobra.Command{
		Use:   "wait",
		Short: "Wait until `up` has written <dir>/env.sh, then print it",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWait(cmd.Context(), dir, timeout)
		},
	}
	wait.Flags().StringVar(&dir, "dir", "", "the folder given to up (required)")
	wait.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	_ = wait.MarkFlagRequired("dir")
	cleanup := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what killed environments left of their real nodes: containers, mounts, cgroups, network namespaces and links",
		RunE: func(*cobra.Command, []string) error {
			testenv.CleanupStaleNodes()
			return nil
		},
	}
	root.AddCommand(up, wait, cleanup)
	return root
}

func runUp(ctx context.Context, dir, binDir string, nodes int, realNode bool) error {
	started := time.Now()
	sub := func(name string) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.MkdirAll(p, 0o755)
	}
	cdir, err := sub("cluster")
	if err != nil {
		return err
	}
	cluster, err := testenv.StartCluster(ctx, testenv.ClusterOptions{BinDir: binDir, Dir: cdir, Nodes: nodes, RealNode: realNode})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	addr := ""
	if cluster.Node != nil {
		addr = cluster.Node.HostIP
	}
	rdir, err := sub("registry")
	if err != nil {
		return err
	}
	reg, err := testenv.StartRegistry(ctx, testenv.RegistryOptions{BinDir: binDir, Dir: rdir, Address: addr})
	if err != nil {
		return err
	}
	defer reg.Stop()
	if cluster.Node != nil {
		if err := cluster.Node.TrustRegistry(reg.Host); err != nil {
			return err
		}
	}
	gdir, err := sub("git")
	if err != nil {
		return err
	}
	git, err := testenv.StartGitServer(ctx, testenv.GitServerOptions{Dir: gdir, Address: addr})
	if err != nil {
		return err
	}
	defer git.Stop()
	repo, err := git.CreateRepo(ctx, "fleet", "main")
	if err != nil {
		return err
	}

	env := strings.Join([]string{
		"export KUBECONFIG=" + cluster.Kubeconfig,
		"export DRIFTLESS_REGISTRY=" + reg.Host,
		"export DRIFTLESS_GIT_URL=" + git.URL,
		"export DRIFTLESS_GIT_REPO=" + repo,
		"export PATH=" + binDirOr(binDir) + ":$PATH",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "env.sh.tmp"), []byte(env), 0o644); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "env.sh.tmp"), filepath.Join(dir, "env.sh")); err != nil {
		return err
	}
	fmt.Printf("ready in %s\n%s", time.Since(started).Round(100*time.Millisecond), env)
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}

func binDirOr(d string) string {
	if d != "" {
		return d
	}
	d, _ = testenv.FindBinDir()
	return d
}

func runWait(ctx context.Context, dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	envPath := filepath.Join(dir, "env.sh")
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(envPath); err == nil {
			fmt.Printf("test environment is up (logs in %s):\n\n%s\n", dir, b)
			fmt.Printf("use it with:   source %s && kubectl get nodes\nstop it with:  make env-down\n", envPath)
			return nil
		}
		if !alive(dir) {
			log, _ := os.ReadFile(filepath.Join(dir, "testenv.log"))
			return fmt.Errorf("the test environment exited before it was ready:\n%s", log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New("the test environment was not ready in time: see " + filepath.Join(dir, "testenv.log"))
}

func alive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return true // not written yet
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
