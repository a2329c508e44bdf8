package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/reconcile"
)

// validateRun names every bad value among run's flags at once, before
// anything starts: a value the loop would take quietly (a negative limit,
// a zero timeout, a path out of the repository, a URL no transport
// speaks, a branch overridden by a tag) is a start-up error naming the
// flag and what it wants.
func validateRun(fs *pflag.FlagSet, src *sourceFlags, cl *clusterFlags, rc reconcile.Config, opts apply.Options, buildTimeout time.Duration) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u := src.url; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "ssh://") &&
		!(strings.Contains(u, "@") && strings.Contains(u, ":") && !strings.Contains(u, "://")) {
		bad("--repo-url %q: want an https://, http:// or ssh:// URL (or user@host:path)", gitrepo.Redact(u))
	}
	if fs.Changed("branch") && src.tag != "" {
		bad("--branch %q and --tag %q: follow one", src.branch, src.tag)
	}
	if p := filepath.Clean(filepath.FromSlash(src.path)); p != "." && !filepath.IsLocal(p) {
		bad("--path %q: want a folder inside the repository, relative, without '..'", src.path)
	}
	for _, f := range []struct{ flag, ns string }{{"--namespace", cl.tenant}, {"--system-namespace", cl.system}} {
		if f.ns == "" && f.flag == "--namespace" {
			continue
		}
		if msgs := validation.IsDNS1123Label(f.ns); len(msgs) > 0 {
			bad("%s %q: not a namespace name: %s", f.flag, f.ns, strings.Join(msgs, "; "))
		}
	}
	if msgs := validation.IsDNS1123Subdomain(cl.name); len(msgs) > 0 {
		bad("--name %q: not a ConfigMap name: %s", cl.name, strings.Join(msgs, "; "))
	}
	if opts.Concurrency < 1 {
		bad("--concurrency %d: at least 1", opts.Concurrency)
	}
	if opts.MaxPrune < 0 {
		bad("--max-prune %d: 0 (no limit) or more", opts.MaxPrune)
	}
	if rc.Resync < 0 {
		bad("--resync %s: 0 (never) or more", rc.Resync)
	}
	for _, f := range []struct {
		flag string
		d    time.Duration
	}{{"--health-timeout", rc.HealthTimeout}, {"--pass-timeout", rc.PassTimeout}, {"--build-timeout", buildTimeout}} {
		if f.d < time.Second {
			bad("%s %s: at least 1s", f.flag, f.d)
		}
	}
	return errors.Join(errs...)
}
