package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/build"
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
	objs, err := build.Build(dir, path)
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
	plan, err := eng.Plan(ctx, objs, apply.PlanOptions{Force: true, Full: true})
	var ve *apply.ValidationError
	if errors.Is(err, apply.ErrEmptyRender) || errors.As(err, &ve) {
		return 0, &refusal{err}
	}
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, c := range plan.Changes() {
		if c.Deferred {
			changed++
			fmt.Fprintf(w, "+++ %s (created once its CRD, in the same revision, is established; not previewed)\n", c.Object)
			continue
		}
		var live *unstructured.Unstructured
		if c.Action != apply.Created {
			if live, err = eng.Get(ctx, c.Object); err != nil {
				return changed, err
			}
		}
		before, after := render(live), render(c.Merged)
		maskSecret(c.Object, before, after)
		a, b := dump(before), dump(after)
		if a == b {
			continue
		}
		changed++
		from := c.Object.String() + " (live)"
		if live == nil {
			from = "/dev/null (" + c.Object.String() + " does not exist)"
		}
		text, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: difflib.SplitLines(a), B: difflib.SplitLines(b),
			FromFile: from, ToFile: c.Object.String() + " (from Git)", Context: 3})
		fmt.Fprint(w, text)
	}
	// What the pass's prune would do, from its own plan.
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return changed, err
	}
	st, err := inventory.NewStore(dyn, parent, "", "").Read(ctx)
	if err != nil {
		return changed, err
	}
	pp := eng.PlanPrune(ctx, st.Members, plan.Keys())
	for _, r := range pp.Results() {
		changed++
		if r.Action == apply.Pruned {
			fmt.Fprintf(w, "--- %s (live)\n+++ (pruned: no longer in Git)\n", r.Object)
		} else {
			fmt.Fprintf(w, "~~~ %s (kept, no longer managed): %s\n", r.Object, r.Reason)
		}
	}
	if pp.Refused != nil {
		return changed, &refusal{pp.Refused}
	}
	return changed, nil
}

// render drops what the server keeps for itself, so the diff shows only
// what Git decides.
func render(u *unstructured.Unstructured) map[string]any {
	if u == nil {
		return nil
	}
	o := u.DeepCopy().Object
	unstructured.RemoveNestedField(o, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"} {
		unstructured.RemoveNestedField(o, "metadata", f)
	}
	return o
}

// maskSecret replaces a Secret's values with *** and says which changed,
// as kubectl diff does: a value never reaches the terminal.
func maskSecret(k apply.Key, before, after map[string]any) {
	if k.Group != "" || k.Kind != "Secret" {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		b, _, _ := unstructured.NestedMap(before, field)
		a, _, _ := unstructured.NestedMap(after, field)
		for key, av := range a {
			if bv, ok := b[key]; ok && fmt.Sprint(bv) == fmt.Sprint(av) {
				a[key], b[key] = "***", "***"
			} else {
				a[key] = "*** (after)"
				if ok {
					b[key] = "*** (before)"
				}
			}
		}
		for key := range b {
			if _, ok := a[key]; !ok {
				b[key] = "*** (before)"
			}
		}
		if before != nil && b != nil {
			_ = unstructured.SetNestedMap(before, b, field)
		}
		if after != nil && a != nil {
			_ = unstructured.SetNestedMap(after, a, field)
		}
	}
}

func dump(o map[string]any) string {
	if o == nil {
		return ""
	}
	b, _ := yaml.Marshal(o)
	return string(b)
}
