// Command synchronizer pulls its branch of a Git repository and makes the
// cluster match it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"driftless.dev/shared/envflags"
	"driftless.dev/shared/version"
	"driftless.dev/synchronizer/internal/build"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var e *exitError
		if errors.As(err, &e) && e.quiet {
			fmt.Fprintln(os.Stderr, e.msg)
		} else {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(exitCode(err))
	}
}

// run is main without the process: tests call it with their own
// arguments, environment and writers.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:   "synchronizer",
		Short: "Pulls its branch of a Git repository and makes the cluster match it",
		Long: `The synchronizer fetches one branch (or tag) of a Git repository, builds a path of it with
Kustomize, validates the whole set with a server-side dry run, applies it with server-side
apply, prunes what left Git, heals drift as soon as a watch shows it, and reports health and
status in its ApplySet parent ConfigMap.

Every flag can also be set by an environment variable: --repo-url is DRIFTLESS_REPO_URL.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.AddCommand(runCommand(), buildCommand(), diffCommand(), statusCommand(), suspendCommand(true), suspendCommand(false))
	// Environment fallbacks, applied after the command line is parsed so
	// an explicit flag always wins.
	root.PersistentPreRunE = envflags.Hook(env)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

func buildCommand() *cobra.Command {
	var dir, path string
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Print the objects a checkout path renders to, as the synchronizer would apply them",
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := build.Build(dir, path)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for i, o := range objs {
				b, err := yaml.Marshal(o.Object)
				if err != nil {
					return fmt.Errorf("print %s %s: %w", o.GetKind(), o.GetName(), err)
				}
				if i > 0 {
					fmt.Fprintln(w, "---")
				}
				_, _ = w.Write(b)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "the checkout")
	cmd.Flags().StringVar(&path, "path", ".", "the folder inside the checkout to render (a kustomization, or plain YAML)")
	return cmd
}

// exitError carries a specific exit code (diff's "there is a difference").
// A quiet one is an outcome, not a failure: printed without "error:".
type exitError struct {
	code  int
	msg   string
	quiet bool
}

func (e *exitError) Error() string { return e.msg }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}
