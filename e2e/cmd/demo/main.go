// Command demo runs the whole Driftless loop on this machine for a person
// to watch and explore: `make demo` starts `demo up` in the background and
// `demo follow` prints its narration until it is ready; `make demo-down`
// stops it.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"driftless.dev/e2e/fleet"
)

// Markers `follow` stops at.
const (
	readyMarker  = "DEMO READY"
	failedMarker = "DEMO FAILED"
)

func main() {
	if err := root().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func root() *cobra.Command {
	r := &cobra.Command{Use: "demo", Short: "The Driftless loop on one machine", SilenceUsage: true, SilenceErrors: true}
	var opts fleet.Options
	var dir string
	var polling, processes bool
	up := &cobra.Command{
		Use:   "up",
		Short: "Bring the loop up, walk a new tag through it, then keep running until SIGTERM",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			opts.Dir = abs
			opts.Webhooks = !polling
			opts.InCluster = !processes
			if polling {
				if !processes {
					return errors.New("--polling runs the programs as local processes: add --processes (in Pods, the webhooks reach the programs' Services)")
				}
				opts.Interval = 5 * time.Second
			}
			err = up(ctx, opts)
			if err != nil {
				fmt.Printf("%s: %v\n", failedMarker, err)
			}
			return err
		},
	}
	up.Flags().StringVar(&dir, "dir", ".tools/demo", "folder for data and logs")
	up.Flags().StringVar(&opts.BinDir, "bin-dir", "", "what `make tools` built (default: .tools/bin)")
	up.Flags().StringVar(&opts.Automator, "automator", "bin/automator", "the automator binary")
	up.Flags().StringVar(&opts.Synchronizer, "synchronizer", "bin/synchronizer", "the synchronizer binary")
	up.Flags().StringVar(&opts.Manifests, "manifests", "manifests", "the manifests/ folder")
	up.Flags().BoolVar(&polling, "polling", false, "no webhooks: both programs poll every 5s (with --processes)")
	up.Flags().DurationVar(&opts.Soak, "soak", 3*time.Second, "the promotion gate's soak time in dev (shortened for the demo); 0 merges dev into prod by hand instead")
	up.Flags().BoolVar(&processes, "processes", false, "run the programs as local processes with the manifests' ServiceAccounts' tokens (their /status and /metrics on 127.0.0.1), instead of as the manifests' Deployments in Pods on a real node of each cluster")
	var inCluster bool
	up.Flags().BoolVar(&inCluster, "in-cluster", true, "the programs run in Pods (the default)")
	_ = up.Flags().MarkDeprecated("in-cluster", "the programs run in Pods by default; --processes runs them as local processes")

	var timeout time.Duration
	follow := &cobra.Command{
		Use:   "follow",
		Short: "Print the narration of `demo up` until it is ready or fails",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return followLog(cmd.Context(), filepath.Join(dir, "demo.log"), filepath.Join(dir, "pid"), timeout)
		},
	}
	follow.Flags().StringVar(&dir, "dir", ".tools/demo", "the folder given to up")
	follow.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait")
	r.AddCommand(up, follow)
	return r
}

func up(ctx context.Context, opts fleet.Options) error {
	t0 := time.Now()
	step := 0
	opts.Say = func(format string, args ...any) {
		fmt.Printf(format+"\n", args...)
	}
	heading := func(s string) {
		step++
		fmt.Printf("\n== %d. %s  (at %s)\n", step, s, time.Since(t0).Round(10*time.Millisecond))
	}
	for _, p := range []*string{&opts.Automator, &opts.Synchronizer, &opts.Manifests} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	// The Git server's CGI writes to this process's stderr; with records
	// on it says "cannot lock ref" whenever two clusters push notes at
	// once (the loser is refused, as it must be, and redoes its write).
	// That goes to a log of its own, not into the narration.
	if gitLog, err := os.Create(filepath.Join(opts.Dir, "git-http-backend.log")); err == nil {
		defer gitLog.Close()
		os.Stderr = gitLog
	}
	heading("Start the environment, seed the repository, install manifests/, run the programs")
	f, err := fleet.Start(ctx, opts)
	if f != nil {
		defer f.Stop()
	}
	if err != nil {
		return err
	}
	if opts.InCluster {
		fmt.Printf("automator (dev branch) and synchronizers run as Pods; their Services are NodePorts: %s (automator, dev), %s (dev), %s (prod)\n",
			f.Listen["automator"], f.Listen["sync-dev"], f.Listen["sync-prod"])
	} else {
		fmt.Printf("automator (dev branch) on %s, synchronizers on %s (dev) and %s (prod), as their ServiceAccounts\n",
			f.Listen["automator"], f.Listen["sync-dev"], f.Listen["sync-prod"])
	}

	heading("Both clusters apply their branch: web 1.0.0 rolls out")
	if err := f.Ready(ctx, 2*time.Minute); err != nil {
		return err
	}
	for _, c := range fleet.Clusters {
		r := f.Web(ctx, c)
		fmt.Printf("%-4s  %d/%d replicas on %s   (%s)\n", c, r.Ready, r.Replicas, r.Image, f.Status("sync-"+c).Status.Message)
	}

	heading("A new image tag: registry → automator → Git → dev; dev records it healthy; the gate promotes it to prod")
	t, err := f.Walk(ctx, "1.1.0", 2*time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("\ntag pushed → commit %.2fs → applied in dev %.2fs → rolled out in dev %.2fs; merged → prod rolled out %.2fs\n",
		t.Commit.Seconds(), t.DevApplied.Seconds(), t.DevRolledOut.Seconds(), t.ProdRolledOut.Seconds())
	if opts.Soak > 0 {
		heading("The record, from Git alone: git log --notes=driftless, automator history")
		if err := showRecords(ctx, f, opts, t); err != nil {
			return err
		}
	}

	heading("Drift: someone scales web in dev by hand; the synchronizer puts it back")
	if out, err := f.Kubectl(ctx, "dev", "-n", fleet.AppNamespace, "scale", "deployment/web", "--replicas=5"); err != nil {
		return fmt.Errorf("kubectl scale: %v\n%s", err, out)
	}
	start := time.Now()
	if err := fleet.Until(ctx, time.Minute, "the scale to be reverted", func() bool { return f.Web(ctx, "dev").Replicas == 2 }); err != nil {
		return err
	}
	fmt.Printf("kubectl scale --replicas=5 reverted to 2 in %s\n", time.Since(start).Round(time.Millisecond))

	heading("The web UI of each program")
	if err := showUI(ctx, f, opts); err != nil {
		return err
	}

	fmt.Printf("\nThe demo took %s.\n\n%s\n%s\n", time.Since(t0).Round(100*time.Millisecond), f.Explore(opts.Dir), readyMarker)
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}

// showRecords prints the notes on prod's history and what `automator
// history` reads from the repository, once prod recorded the merge.
func showRecords(ctx context.Context, f *fleet.Fleet, opts fleet.Options, t fleet.Timings) error {
	if err := fleet.Until(ctx, time.Minute, "prod's healthy record", func() bool {
		out, _ := f.Git.Git(ctx, fleet.Repo, "notes", "--ref=driftless", "show", t.MergeCommit)
		return strings.Contains(out, "event=healthy cluster=prod")
	}); err != nil {
		return err
	}
	log, _ := f.Git.Git(ctx, fleet.Repo, "log", "-3", "--notes=driftless", "--format=%h %s%n%N", "prod")
	fmt.Printf("$ git log --notes=driftless --format='%%h %%s%%n%%N' origin/prod\n%s\n", strings.TrimSpace(log))
	cmd := exec.CommandContext(ctx, opts.Automator, "history", "--git-url", f.Git.RepoURL(fleet.Repo), "--git-branch", "dev",
		"--policy-path", "policies", "--git-username", "driftless", "--git-password-file", filepath.Join(opts.Dir, "git-token"), "--image", fleet.Image)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("automator history: %v\n%s", err, out)
	}
	fmt.Printf("\n$ automator history --git-url %s --git-branch dev --policy-path policies --image %s\n%s", f.Git.RepoURL(fleet.Repo), fleet.Image, out)
	return nil
}

// showUI makes a token to log in with, prints where each program's pages
// are, and what the automator's fleet page says of the records and gates.
func showUI(ctx context.Context, f *fleet.Fleet, opts fleet.Options) error {
	ui, err := f.UIAccess(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("Log in with a token of the ServiceAccount driftless-system/%s (TokenRequest API, valid %.0f h), which a Role in\n"+
		"each cluster lets view and act on both programs (get and update on the ConfigMap driftless and the Lease\n"+
		"driftless-automator) and nothing else. The token is in a file, never printed; a cluster's programs accept only its own:\n\n", fleet.UIOperator, fleet.UITokenTTL.Hours())
	for _, p := range []struct{ name, what, cluster string }{
		{"automator", "automator (dev)", "dev"}, {"sync-dev", "synchronizer dev", "dev"}, {"sync-prod", "synchronizer prod", "prod"},
	} {
		fmt.Printf("  %-18s %-30s token: cat %s\n", p.what, ui.URLs[p.name], ui.TokenFiles[p.cluster])
	}
	if opts.InCluster {
		fmt.Printf("\n127.0.0.1 forwards each connection to the program's leading Pod. ")
	} else {
		fmt.Printf("\n")
	}
	fmt.Printf("The session cookie is Secure: browsers keep it over plain HTTP\n" +
		"on localhost only (from another machine: ssh -L PORT:127.0.0.1:PORT).\n")
	if opts.Soak == 0 {
		return nil
	}
	// The fleet page, read with that token, once it has prod's record of
	// the merge.
	var v fleet.FleetView
	var readErr error
	if err := fleet.Until(ctx, time.Minute, "the fleet page to show prod healthy", func() bool {
		v, readErr = ui.Fleet(ctx)
		return readErr == nil && v.Healthy("prod", "prod")
	}); err != nil {
		return fmt.Errorf("%w (last read: %v, %s)", err, readErr, v.Says())
	}
	fmt.Printf("\nThe automator's fleet page (%sfleet), from Git alone, with the records and the gate:\n%s\n", ui.URLs["automator"], indent(v.Says()))
	return nil
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// followLog prints path as it grows, until a marker line or the process
// in pidFile exits.
func followLog(ctx context.Context, path, pidFile string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var off int64
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			f.Seek(off, io.SeekStart)
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				off += int64(len(line)) + 1
				fmt.Println(line)
				if strings.HasPrefix(line, failedMarker) {
					f.Close()
					return errors.New("the demo failed: see " + path)
				}
				if line == readyMarker {
					f.Close()
					return nil
				}
			}
			f.Close()
		}
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) != nil {
				return errors.New("the demo exited: see " + path)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the demo was not ready in time: see " + path)
}
