package main

import (
	"net/http"

	"go.uber.org/zap"
	"k8s.io/client-go/dynamic"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/webauth"
	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/reconcile"
	"driftless.dev/synchronizer/internal/web"
)

// mountUI adds the pages (/ui/) and their API (/api/v1/) to mux, when on
// (--ui). Pods and
// ReplicaSets are read with dyn, the synchronizer's own client, not the
// identity it applies as.
func mountUI(on bool, mux *http.ServeMux, dyn dynamic.Interface, parent inventory.Parent, rec *reconcile.Reconciler, eng *apply.Engine,
	store *inventory.Store, repoURL string, rc reconcile.Config, leading func() bool, log *zap.Logger) error {
	if !on {
		return nil
	}
	h, err := web.New(webauth.New(dyn), web.Sources{Loop: rec, Tracker: eng.Tracker(), Store: store, Engine: eng, Kube: dyn},
		web.Config{Parent: parent, Repository: gitrepo.Redact(repoURL), Path: rc.Path, Interval: rc.Interval, Resync: rc.Resync, Leading: leading}, log)
	if err != nil {
		return err
	}
	h.Mount(mux)
	return nil
}
