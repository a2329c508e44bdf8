package build

import "sigs.k8s.io/kustomize/api/resource"

// krustyOnly makes Build skip the fast path.
func krustyOnly(o *options) { o.krustyOnly = true }

func resourceBuildAnnotations() []string { return resource.BuildAnnotations }
