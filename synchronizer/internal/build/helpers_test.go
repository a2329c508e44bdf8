package build

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/resource"

	"driftless.dev/synchronizer/internal/checkoutfs"
)

// krustyOnly makes Build skip the fast path: krusty renders, in its own
// process.
func krustyOnly(o *options) { o.krustyOnly = true }

func resourceBuildAnnotations() []string { return resource.BuildAnnotations }

// krustyInProcess renders root/p with krusty as a build process does
// (krustyBuild, on the same file system), but in this process: a process
// of the race-instrumented test binary takes a second to start. Only for
// inputs without URLs: this process has its network.
func krustyInProcess(t *testing.T, root, p string, order Order) ([]*unstructured.Unstructured, error) {
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
			return nil, fmt.Errorf("%w: %s", ErrBuild, explain(err, fsys.Reads()))
		}
	}
	resp := krustyBuild(request{Root: root, Path: dir, Virtual: fsys.Virtual(), Legacy: order == LegacyOrder}, &refusing{})
	if resp.Error != "" {
		return nil, fmt.Errorf("%w: %s", ErrBuild, resp.Error)
	}
	var out []*unstructured.Unstructured
	for _, b := range resp.Objects {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	if err := checkSecrets(out); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBuild, err)
	}
	return out, nil
}
