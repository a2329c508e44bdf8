// Package diff computes what a pass would change, from the pass's own
// plan: the server-side dry run of every object (live against Git, Secret
// values masked, server-kept fields dropped), what its prune would delete
// or keep, and where the pass would refuse. The CLI prints it and the UI
// shows it; neither computes anything of its own.
package diff

import (
	"context"
	"errors"
	"fmt"

	"github.com/pmezard/go-difflib/difflib"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"driftless.dev/synchronizer/internal/apply"
)

// Object is one object that would change.
type Object struct {
	Object apply.Key `json:"object"`
	// Action is created, configured or recreated; "pruned" or "orphaned"
	// for what leaves Git.
	Action apply.Action `json:"action"`
	// Live and Git are the object as YAML before and after (Secret values
	// masked, managed fields, status and server-kept metadata dropped).
	// Live is empty for a new object, Git for a pruned one.
	Live string `json:"live,omitempty"`
	Git  string `json:"git,omitempty"`
	// Unified is the unified diff of Live and Git.
	Unified string `json:"unified,omitempty"`
	// Note says why there is no preview (a kind whose CRD comes with the
	// revision) or why an object is kept.
	Note string `json:"note,omitempty"`
}

// Result is a whole diff.
type Result struct {
	Objects []Object `json:"objects"`
	// Refused is why a pass would refuse this revision ("" if it would not).
	Refused string `json:"refused,omitempty"`
}

// Engine is what a diff needs of the apply engine: the pass's own plan
// and prune plan, and a read of the live object.
type Engine interface {
	Plan(ctx context.Context, objs []*unstructured.Unstructured, opts apply.PlanOptions) (*apply.Plan, error)
	PlanPrune(ctx context.Context, members []apply.Member, keep map[apply.Key]bool) apply.PrunePlan
	Get(ctx context.Context, k apply.Key) (*unstructured.Unstructured, error)
}

var _ Engine = (*apply.Engine)(nil)

// Compute diffs objs (a render) against the cluster, members being the
// inventory a pass would prune from. An error is a failure to ask the
// cluster; what a pass would refuse is Result.Refused.
func Compute(ctx context.Context, eng Engine, objs []*unstructured.Unstructured, members []apply.Member) (Result, error) {
	var res Result
	plan, err := eng.Plan(ctx, objs, apply.PlanOptions{Force: true, Full: true})
	var ve *apply.ValidationError
	if errors.Is(err, apply.ErrEmptyRender) || errors.As(err, &ve) {
		res.Refused = err.Error()
		return res, nil
	}
	if err != nil {
		return res, err
	}
	// The live copies are read 16 at a time, as a pass writes.
	changes := plan.Changes()
	objects := make([]*Object, len(changes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, c := range changes {
		g.Go(func() error {
			o, err := object(gctx, eng, c)
			objects[i] = o
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	for _, o := range objects {
		if o != nil {
			res.Objects = append(res.Objects, *o)
		}
	}
	pp := eng.PlanPrune(ctx, members, plan.Keys())
	for _, r := range pp.Results() {
		o := Object{Object: r.Object, Action: r.Action, Note: r.Reason}
		if r.Action == apply.Pruned {
			if live, err := eng.Get(ctx, r.Object); err == nil {
				before := render(live)
				maskSecret(r.Object, before, nil)
				o.Live = dump(before)
			}
			o.Unified = fmt.Sprintf("--- %s (live)\n+++ (pruned: no longer in Git)\n", r.Object)
		}
		res.Objects = append(res.Objects, o)
	}
	if pp.Refused != nil {
		res.Refused = pp.Refused.Error()
	}
	return res, nil
}

// object diffs one change; nil when live and Git agree.
func object(ctx context.Context, eng Engine, c apply.Change) (*Object, error) {
	o := &Object{Object: c.Object, Action: c.Action}
	if c.Deferred {
		o.Note = "created once its CRD, in the same revision, is established; not previewed"
		return o, nil
	}
	var live *unstructured.Unstructured
	if c.Action != apply.Created {
		var err error
		if live, err = eng.Get(ctx, c.Object); err != nil {
			return nil, err
		}
	}
	before, after := render(live), render(c.Merged)
	maskSecret(c.Object, before, after)
	o.Live, o.Git = dump(before), dump(after)
	if o.Live == o.Git {
		return nil, nil
	}
	from := c.Object.String() + " (live)"
	if live == nil {
		from = "/dev/null (" + c.Object.String() + " does not exist)"
	}
	o.Unified, _ = difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: difflib.SplitLines(o.Live), B: difflib.SplitLines(o.Git),
		FromFile: from, ToFile: c.Object.String() + " (from Git)", Context: 3})
	return o, nil
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
