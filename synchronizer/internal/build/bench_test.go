package build

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// BenchmarkKustomize1000 renders 1,000 objects through a kustomization
// (the fast path); BenchmarkKrusty1000 the same through krusty.
func BenchmarkKustomize1000(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%04d}\ndata: {key: value}\n---\n", i)
	}
	os.MkdirAll(filepath.Join(dir, "apps"), 0o755)
	os.WriteFile(filepath.Join(dir, "apps", "objects.yaml"), []byte(sb.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "apps", "kustomization.yaml"), []byte("namespace: sync\nresources: [objects.yaml]\n"), 0o644)
	for b.Loop() {
		objs, err := Build(b.Context(), dir, "apps")
		if err != nil || len(objs) != 1000 {
			b.Fatal(len(objs), err)
		}
	}
}

func BenchmarkKrusty1000(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%04d}\ndata: {key: value}\n---\n", i)
	}
	os.MkdirAll(filepath.Join(dir, "apps"), 0o755)
	os.WriteFile(filepath.Join(dir, "apps", "objects.yaml"), []byte(sb.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "apps", "kustomization.yaml"), []byte("namespace: sync\nresources: [objects.yaml]\n"), 0o644)
	for b.Loop() {
		if objs, err := Build(b.Context(), dir, "apps", krustyOnly); err != nil || len(objs) != 1000 {
			b.Fatal(len(objs), err)
		}
	}
}

// TestBuildsPutBackTheGCPace: builds collect the heap more often while
// they run (collectOften); builds at once (tenants) and one that fails
// leave the process's setting as it was.
func TestBuildsPutBackTheGCPace(t *testing.T) {
	prev := debug.SetGCPercent(77)
	defer debug.SetGCPercent(prev)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "apps"), 0o755)
	os.WriteFile(filepath.Join(dir, "apps", "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n"), 0o644)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			p := "apps"
			if i%2 == 1 {
				p = "."
			}
			_, _ = Build(t.Context(), dir, p)
		})
	}
	wg.Wait()
	if got := debug.SetGCPercent(prev); got != 77 {
		t.Fatalf("GC percent after the builds: %d, want 77 as before them", got)
	}
}
