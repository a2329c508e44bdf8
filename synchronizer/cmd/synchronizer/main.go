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
	"time"

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
	var dir, path, order string
	var timeout time.Duration
	var allowEmpty bool
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Print the objects a checkout path renders to, as the synchronizer would apply them",
		Long: `Print the objects a checkout path renders to, as the synchronizer would apply them.

Objects are printed in kustomize build's default order (--order legacy), so the output can be
diffed with kustomize's; --order declaration keeps the order the kustomizations list them in.
A path that renders no objects is an error (a pass would refuse it too), unless --allow-empty.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := build.LegacyOrder
			switch order {
			case "legacy":
			case "declaration":
				o = build.DeclarationOrder
			default:
				return fmt.Errorf("--order %q: want legacy or declaration", order)
			}
			objs, err := build.Build(cmd.Context(), dir, path, build.WithOrder(o), build.WithTimeout(timeout))
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				if !allowEmpty {
					return fmt.Errorf("path %q renders no objects: a pass refuses an empty render (it would prune everything); --allow-empty to accept it", path)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "note: path %q renders no objects\n", path)
				return nil
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
	cmd.Flags().StringVar(&order, "order", "legacy", "order of the objects: legacy (kustomize build's default) or declaration")
	cmd.Flags().DurationVar(&timeout, "timeout", build.DefaultTimeout, "stop a build that takes longer")
	cmd.Flags().BoolVar(&allowEmpty, "allow-empty", false, "accept a path that renders no objects")
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
