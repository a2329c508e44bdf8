package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
