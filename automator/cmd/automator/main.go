// Command automator watches image registries and commits the image bumps
// that registry policies allow.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	// Promotion windows name IANA time zones; the image has no zoneinfo.
	_ "time/tzdata"

	"github.com/spf13/cobra"

	"driftless.dev/shared/envflags"
	"driftless.dev/shared/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}

// run is main without the process: tests call it with their own
// arguments, environment and writers.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:   "automator",
		Short: "Watches image registries and commits the image bumps that registry policies allow",
		Long: `The automator reads ImagePolicy documents from a Git repository, lists the tags of
each policy's image repository, chooses the newest tag the policy allows, rewrites the
marked image references in the manifests, and commits and pushes the bump: one commit per
pass, never a force push, never a downgrade, never an empty commit.

Every flag can also be set by an environment variable: --git-url is DRIFTLESS_GIT_URL.`,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.AddCommand(runCommand(), planCommand(), validateCommand(), historyCommand())
	// Environment fallbacks, applied after the command line is parsed so
	// an explicit flag always wins.
	root.PersistentPreRunE = envflags.Hook(env)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// exitError carries a specific exit code (validate's findings).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}
