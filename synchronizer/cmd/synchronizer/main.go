// Command synchronizer: Pulls its branch of a Git repository and makes the cluster match it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"driftless.dev/shared/version"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run is main without the process: tests call it with their own arguments
// and writers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "synchronizer",
		Short:         "Pulls its branch of a Git repository and makes the cluster match it",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Subcommands arrive with the program's issue; until then the
		// root prints its help.
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}
