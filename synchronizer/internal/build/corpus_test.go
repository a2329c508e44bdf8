package build

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"driftless.dev/synchronizer/internal/checkoutfs"
)

// The fast path renders exactly what krusty renders, or declines. Every
// folder under testdata/corpus is a checkout whose path "app" is rendered
// by Build (fast path first) and by krusty alone, in both orders: the
// objects must be the same, in the same order, or both must fail. The
// file "want" says which way the case must go: "fast" (the fast path
// renders it), "krusty" (the fast path declines, krusty renders it) or
// "error" (krusty refuses it, and so does Build).
func TestSimpleMatchesKrusty(t *testing.T) {
	cases, err := filepath.Glob("testdata/corpus/*")
	if err != nil || len(cases) < 40 {
		t.Fatalf("corpus: %d cases, %v", len(cases), err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			w, err := os.ReadFile(filepath.Join(dir, "want"))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSpace(string(w))
			fast := fastPathTaken(t, dir, "app")
			switch want {
			case "fast", "krusty":
				if fast != (want == "fast") {
					t.Errorf("fast path taken: %v, want %v", fast, want == "fast")
				}
				for _, order := range []Order{DeclarationOrder, LegacyOrder} {
					ref, refErr := krustyInProcess(t, dir, "app", order)
					if !fast {
						// Build would start a process to run krusty again.
						if refErr != nil {
							t.Fatalf("krusty: %v", refErr)
						}
						continue
					}
					got, gotErr := Build(t.Context(), dir, "app", WithOrder(order))
					if gotErr != nil || refErr != nil {
						t.Fatalf("order %d: Build: %v; krusty: %v", order, gotErr, refErr)
					}
					if a, b := dump(t, got), dump(t, ref); a != b {
						t.Fatalf("order %d: Build rendered:\n%s\nkrusty rendered:\n%s", order, a, b)
					}
				}
			case "error":
				// The fast path declines, so Build is krusty in its own
				// process: it must fail as krusty does.
				if fast {
					t.Errorf("the fast path took a kustomization krusty refuses")
				}
				_, gotErr := Build(t.Context(), dir, "app")
				_, refErr := krustyInProcess(t, dir, "app", DeclarationOrder)
				if gotErr == nil || refErr == nil {
					t.Fatalf("want both to fail; Build: %v; krusty: %v", gotErr, refErr)
				}
				if gotErr.Error() != refErr.Error() {
					t.Fatalf("errors differ:\nBuild:  %v\nkrusty: %v", gotErr, refErr)
				}
			default:
				t.Fatalf("want %q: not fast, krusty or error", want)
			}
		})
	}
}

// fastPathTaken says whether simple renders root/p.
func fastPathTaken(t *testing.T, root, p string) bool {
	t.Helper()
	fsys, err := checkoutfs.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close()
	dir, _, err := fsys.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	if kustomizationFile(fsys, dir) == "" {
		if err := generate(t.Context(), fsys, dir); err != nil {
			return false
		}
	}
	_, ok, err := simple(t.Context(), fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func dump(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	var out []string
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "---\n")
}

// The fast path declines objects carrying any annotation Kustomize acts
// on; its prefixes must cover Kustomize's list.
func TestReservedAnnotationsCoverKustomizes(t *testing.T) {
	for _, a := range append(slices.Clone(resourceBuildAnnotations()), "config.kubernetes.io/local-config", "config.kubernetes.io/origin", "alpha.config.kubernetes.io/transformations") {
		covered := false
		for _, p := range reservedAnnotationPrefixes {
			covered = covered || strings.HasPrefix(a, p)
		}
		if !covered {
			t.Errorf("annotation %q is not covered", a)
		}
	}
}
