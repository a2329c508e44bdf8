// Package web serves the synchronizer's pages (/ui/) and their JSON
// (/api/v1/): the overview, the applied objects with their health and the
// Pods under them, the diff of live against Git, the history of passes
// and of the branch, and the actions sync now, suspend and resume. Every
// answer comes from the pass's own code (the reconciler's status,
// history and last render, the apply engine's tracker, diff.Compute, the
// inventory store); the pages show what the API answers and nothing else.
// Who may see and act is the cluster's RBAC, through shared/webui.
package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"driftless.dev/shared/webauth"
	"driftless.dev/shared/webui"
	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/diff"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/reconcile"
)

// Loop is what the pages need of the reconciler (*reconcile.Reconciler).
type Loop interface {
	Status() inventory.Status
	History() []reconcile.PassRecord
	Desired() (reconcile.Desired, []apply.Member)
	Passes() int
	Trigger()
}

// Tracker is what the engine knows of the applied objects (*apply.Tracker).
type Tracker interface {
	Objects() []apply.ObjectState
}

// Store reads the parent and suspends or resumes (*inventory.Store), the
// same operation as `synchronizer suspend` and `resume`.
type Store interface {
	Read(ctx context.Context) (inventory.State, error)
	SetSuspended(ctx context.Context, on bool) error
}

var (
	_ Loop    = (*reconcile.Reconciler)(nil)
	_ Tracker = (*apply.Tracker)(nil)
	_ Store   = (*inventory.Store)(nil)
)

// Sources are the synchronizer's parts the pages read.
type Sources struct {
	Loop    Loop
	Tracker Tracker
	Store   Store
	// Engine computes diffs with the pass's own plan (*apply.Engine).
	Engine diff.Engine
	// Kube is the synchronizer's own client: the ReplicaSets and Pods under
	// each workload are listed with it, one LIST of each per namespace shown.
	Kube dynamic.Interface
}

// Config describes the synchronizer the pages are about.
type Config struct {
	Parent inventory.Parent
	// Repository is the followed repository's URL, credentials redacted.
	Repository string
	Path       string
	// Interval and Resync are the loop's: the next pass is due an
	// Interval after the last one ended, unless a webhook comes first.
	Interval, Resync time.Duration
	// Leading says whether this replica runs passes (nil: always).
	Leading func() bool
}

// Handler serves the pages and the API.
type Handler struct {
	src Sources
	cfg Config
	ui  *webui.UI
	log *zap.Logger
}

//go:embed pages/*.html
var pagesFS embed.FS

// New returns the synchronizer's UI, authorized by auth (the cluster's
// TokenReview and SubjectAccessReview): viewing needs get on the status
// ConfigMap, acting needs update on it.
func New(auth webui.Checker, src Sources, cfg Config, log *zap.Logger) (*Handler, error) {
	if cfg.Leading == nil {
		cfg.Leading = func() bool { return true }
	}
	cm := webauth.Attributes{Resource: "configmaps", Namespace: cfg.Parent.Namespace, Name: cfg.Parent.Name}
	view, act := cm, cm
	view.Verb, act.Verb = "get", "update"
	ui, err := webui.New(auth, webui.Options{
		Title: "Driftless synchronizer " + cfg.Parent.Namespace + "/" + cfg.Parent.Name,
		View:  view, Act: act,
		Nav: []webui.Link{{Label: "Overview", Href: "/ui/"}, {Label: "Objects", Href: "/ui/objects"},
			{Label: "Diff", Href: "/ui/diff"}, {Label: "History", Href: "/ui/history"}},
		Funcs: template.FuncMap{"healthOrder": healthOrder, "rev": shortRevision},
	}, log, pagesFS, "pages/*.html")
	if err != nil {
		return nil, err
	}
	return &Handler{src: src, cfg: cfg, ui: ui, log: log}, nil
}

// Mount adds the pages, the API and the login routes to mux.
func (h *Handler) Mount(mux *http.ServeMux) {
	h.ui.Mount(mux)
	views := []struct {
		page, path string
		view       webui.View
	}{
		{"overview", "", h.overview},
		{"objects", "objects", h.objects},
		{"diff", "diff", h.diff},
		{"history", "history", h.history},
	}
	for _, v := range views {
		api := "/api/v1/" + v.path
		if v.path == "" {
			api = "/api/v1/overview"
		}
		mux.Handle("GET "+api, h.ui.API(v.view))
		ui := "/ui/" + v.path
		if v.path == "" {
			ui = "/ui/{$}"
		}
		mux.Handle("GET "+ui, h.ui.Page(v.page, v.view))
	}
	mux.Handle("POST /api/v1/sync", h.ui.Action(h.sync))
	mux.Handle("POST /api/v1/suspend", h.ui.Action(h.suspend(true)))
	mux.Handle("POST /api/v1/resume", h.ui.Action(h.suspend(false)))
}

// ActionResult is what an action answers.
type ActionResult struct {
	Action  string `json:"action"`
	Message string `json:"message"`
}

func (h *Handler) sync(*http.Request, webauth.User) (any, error) {
	if !h.cfg.Leading() {
		return nil, webui.Errorf(http.StatusServiceUnavailable, "this replica is on standby: the leader runs passes; send the request to it (or retry through the Service)")
	}
	h.src.Loop.Trigger()
	return ActionResult{Action: "sync", Message: "a pass was requested: it starts as soon as the loop is free"}, nil
}

func (h *Handler) suspend(on bool) webui.Do {
	return func(r *http.Request, u webauth.User) (any, error) {
		// The user's right to update the ConfigMap was checked; the
		// synchronizer writes the annotation with its own identity, as
		// the CLI would with the user's.
		if err := h.src.Store.SetSuspended(r.Context(), on); err != nil {
			return nil, err
		}
		h.log.Info("suspend set from the UI", zap.Bool("suspended", on), zap.String("user", u.Name))
		if on {
			return ActionResult{Action: "suspend", Message: "suspended: from the next pass on nothing is applied, pruned or healed (Sync now makes it take effect now)"}, nil
		}
		return ActionResult{Action: "resume", Message: "resumed: the next pass applies the branch again (Sync now runs it now)"}, nil
	}
}

// findDesired returns the render's objects matching k. A namespaced
// object written without a namespace in Git gets one only when applied,
// so an empty namespace matches too.
func findDesired(objs []*unstructured.Unstructured, k apply.Key) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if gvk.Group == k.Group && gvk.Kind == k.Kind && o.GetName() == k.Name && (o.GetNamespace() == k.Namespace || o.GetNamespace() == "") {
			out = append(out, o)
		}
	}
	return out
}

// shortRevision is main@sha1:0123456789abcdef… as main@0123456789.
func shortRevision(rev string) string {
	ref, hash, ok := strings.Cut(rev, "@sha1:")
	if !ok || len(hash) < 10 {
		return rev
	}
	return ref + "@" + hash[:10]
}

var errNoRender = errors.New("no revision has been built yet: the first pass has not fetched and rendered the branch")
