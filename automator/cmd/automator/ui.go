package main

import (
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/loop"
	"driftless.dev/automator/internal/web"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/webauth"
)

// uiConfig is what the pages need besides the pass.
type uiConfig struct {
	on                 bool
	kubeconfig         string
	leaseNS, leaseName string
	leading            func() bool
}

// observe tells the metrics, and the pages' record when there is one, of
// every pass.
func observe(m loop.Observer, rec *web.Record) loop.Observer {
	if rec == nil {
		return m
	}
	return func(res automate.Result, err error, seconds float64) {
		m(res, err, seconds)
		rec.Observe(res, err, seconds)
	}
}

// mountUI adds the pages (/ui/) and their API (/api/v1/) to mux, when on
// (--ui) and a cluster is configured to authenticate and authorize users
// (--kubeconfig, or in a Pod). Without a cluster the pages are off, and
// the log says so; a --kubeconfig that cannot be read is a start-up error.
func mountUI(u uiConfig, mux *http.ServeMux, c *passConfig, b *built, rec *web.Record, gates *web.Gates, log *zap.Logger) (bool, error) {
	if !u.on {
		return false, nil
	}
	cfg, err := kubeConfig(u.kubeconfig)
	if err != nil {
		if u.kubeconfig != "" {
			return false, err
		}
		log.Warn("the web UI is off: it authenticates users with the cluster (TokenReview) and authorizes them with its RBAC on the Lease, and no cluster is configured: give --kubeconfig, or run in a Pod (--ui=false silences this)")
		return false, nil
	}
	cfg = rest.CopyConfig(cfg)
	// Reviews are cached per token for a few seconds; client-go's default
	// of 5 per second would still queue a burst of first visits.
	cfg.QPS, cfg.Burst = 20, 50
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return false, fmt.Errorf("the web UI's client: %w", err)
	}
	if rec == nil {
		return false, errors.New("the web UI needs the record of passes")
	}
	var records web.Records
	if gates != nil {
		records = gates
	}
	h, err := web.New(webauth.New(dyn), b.auto, rec, web.Config{
		Repository: gitrepo.Redact(c.gitURL), Branch: c.branch, PushBranch: c.pushBranch,
		Clone: c.workdir, ManifestPath: c.manifestPath,
		LeaseNamespace: u.leaseNS, LeaseName: u.leaseName, Leading: u.leading,
		Records: records, Mirror: b.mirror,
	}, log)
	if err != nil {
		return false, err
	}
	h.Mount(mux)
	return true, nil
}
