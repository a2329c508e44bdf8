package build

// krustyOnly makes Build skip the fast path.
func krustyOnly(o *options) { o.krustyOnly = true }
