package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"

	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/build"
	"driftless.dev/synchronizer/internal/diff"
	"driftless.dev/synchronizer/internal/inventory"
)

// Exit codes of diff, as kubectl diff and git diff use them.
const (
	diffSame    = 0
	diffDiffers = 1
	diffInvalid = 2
)

func diffCommand() *cobra.Command {
	var cl clusterFlags
	var dir, path, defaultNS string
	var allowEmpty, pruneProtected bool
	var maxPrune int
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show what a pass would change in the live cluster (server-side dry run); exit 0 when nothing, 1 when something, 2 when the pass would be refused or diff failed",
		Long: `diff answers from the plan a pass executes: the same validation (a server-side dry run of
every changed object), the same refusals (empty render, prune limit), the same prune decisions
(opt-outs, protected kinds). Secret values are masked.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			n, err := runDiff(cmd.Context(), w, &cl, dir, path, apply.Options{
				DefaultNamespace: defaultNS, AllowEmpty: allowEmpty, MaxPrune: maxPrune, AllowPruneProtected: pruneProtected,
			})
			var refused *refusal
			switch {
			case errors.As(err, &refused):
				fmt.Fprintln(w, "would be refused:", refused.err)
				return &exitError{code: diffInvalid, msg: "a pass would refuse this revision", quiet: true}
			case err != nil:
				return &exitError{code: diffInvalid, msg: err.Error()}
			case n > 0:
				return &exitError{code: diffDiffers, msg: fmt.Sprintf("%d object(s) differ", n), quiet: true}
			}
			fmt.Fprintln(w, "no differences")
			return nil
		},
	}
	cl.flags(cmd.Flags())
	cmd.Flags().StringVar(&dir, "dir", ".", "the checkout")
	cmd.Flags().StringVar(&path, "path", ".", "the folder inside the checkout to render")
	cmd.Flags().StringVar(&defaultNS, "default-namespace", "default", "namespace for namespaced objects without one, outside tenant mode")
	cmd.Flags().BoolVar(&allowEmpty, "allow-empty", false, "as the synchronizer's flag: an empty render prunes everything")
	cmd.Flags().IntVar(&maxPrune, "max-prune", 100, "as the synchronizer's flag: the prune limit per pass")
	cmd.Flags().BoolVar(&pruneProtected, "prune-protected", false, "as the synchronizer's flag")
	return cmd
}

// refusal is what a pass would refuse, with the pass's own words.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }

// runDiff prints the differences and returns how many objects differ.
func runDiff(ctx context.Context, w io.Writer, cl *clusterFlags, dir, path string, opts apply.Options) (int, error) {
	objs, err := build.Build(ctx, dir, path)
	if err != nil {
		return 0, &refusal{err}
	}
	cfg, err := cl.config()
	if err != nil {
		return 0, err
	}
	applyCfg, err := cl.applyConfig(cfg)
	if err != nil {
		return 0, err
	}
	parent := cl.parent()
	opts.SetID, opts.Tenant, opts.FieldManager = parent.ID(), cl.tenant, apply.FieldManagerFor(parent.Namespace, parent.Name)
	eng, err := apply.New(applyCfg, opts, zap.NewNop())
	if err != nil {
		return 0, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	st, err := inventory.NewStore(dyn, parent, "", "").Read(ctx)
	if err != nil {
		return 0, err
	}
	res, err := diff.Compute(ctx, eng, objs, st.Members)
	if err != nil {
		return 0, err
	}
	for _, o := range res.Objects {
		switch {
		case o.Action == apply.Orphaned:
			fmt.Fprintf(w, "~~~ %s (kept, no longer managed): %s\n", o.Object, o.Note)
		case o.Unified != "":
			fmt.Fprint(w, o.Unified)
		default:
			fmt.Fprintf(w, "+++ %s (%s)\n", o.Object, o.Note)
		}
	}
	if res.Refused != "" {
		return len(res.Objects), &refusal{errors.New(res.Refused)}
	}
	return len(res.Objects), nil
}
