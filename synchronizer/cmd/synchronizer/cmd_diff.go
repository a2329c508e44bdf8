package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/build"
	"driftless.dev/synchronizer/internal/inventory"
)

func diffCommand() *cobra.Command {
	var cl clusterFlags
	var dir, path, defaultNS string
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show what applying a checkout path would change in the live cluster (a server-side dry run); exit 1 when anything would",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			objs, err := build.Build(ctx, dir, path)
			if err != nil {
				return err
			}
			cfg, err := cl.config()
			if err != nil {
				return err
			}
			parent := cl.parent()
			eng, err := apply.NewForConfig(cfg, apply.Options{SetID: parent.ID(), Tenant: cl.tenant, DefaultNamespace: defaultNS}, zap.NewNop())
			if err != nil {
				return err
			}
			previews, err := eng.Preview(ctx, objs)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			changed := 0
			desired := map[apply.Key]bool{}
			for _, p := range previews {
				desired[p.Object] = true
				before, after := render(p.Live), render(p.Merged)
				maskSecret(p.Object, before, after)
				a, b := dump(before), dump(after)
				if a == b {
					continue
				}
				changed++
				fmt.Fprintf(w, "--- %s (live)\n+++ %s (from Git)\n", p.Object, p.Object)
				unified(w, a, b)
			}
			// What a pass would prune: members the render no longer has.
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return err
			}
			st, err := inventory.NewStore(dyn, parent, "", "").Read(ctx)
			if err != nil {
				return err
			}
			live, err := eng.Members(ctx, st.GroupKinds)
			if err != nil {
				return err
			}
			for _, k := range live {
				if !desired[k] {
					changed++
					fmt.Fprintf(w, "--- %s (live)\n+++ (pruned: no longer in Git)\n", k)
				}
			}
			if changed > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d object(s) differ", changed)}
			}
			fmt.Fprintln(w, "no differences")
			return nil
		},
	}
	cl.flags(cmd.Flags())
	cmd.Flags().StringVar(&dir, "dir", ".", "the checkout")
	cmd.Flags().StringVar(&path, "path", ".", "the folder inside the checkout to render")
	cmd.Flags().StringVar(&defaultNS, "default-namespace", "default", "namespace for namespaced objects without one, outside tenant mode")
	return cmd
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

// unified writes a line diff of a and b with three lines of context.
func unified(w io.Writer, a, b string) {
	type line struct {
		op   byte
		text string
	}
	var lines []line
	for _, d := range diff.Do(a, b) {
		op := byte(' ')
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			op = '-'
		case diffmatchpatch.DiffInsert:
			op = '+'
		}
		for _, l := range strings.SplitAfter(d.Text, "\n") {
			if l != "" {
				lines = append(lines, line{op, strings.TrimSuffix(l, "\n")})
			}
		}
	}
	near := func(i int) bool {
		for j := max(0, i-3); j <= min(len(lines)-1, i+3); j++ {
			if lines[j].op != ' ' {
				return true
			}
		}
		return false
	}
	skipped := false
	for i, l := range lines {
		if !near(i) {
			skipped = true
			continue
		}
		if skipped {
			fmt.Fprintln(w, "@@ ... @@")
			skipped = false
		}
		fmt.Fprintf(w, "%c%s\n", l.op, l.text)
	}
}
