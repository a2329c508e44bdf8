// Package web serves the automator's pages (/ui/) and their JSON
// (/api/v1/): per policy the tags seen, the one chosen and why, every tag
// passed over and why, the last commit it made and the errors per
// registry; the fleet as Git holds it (each branch the automator knows,
// with the image versions it declares); the history of passes; and the
// action "plan now". Every answer comes from the pass's own code: the
// automate.Result of the loop's passes (kept by Record), automate's Plan,
// update.Scan over a branch's tree, the trailers of the automator's
// commits. Who may see and act is the cluster's RBAC on the automator's
// Lease, through shared/webui.
package web

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/shared/webauth"
	"driftless.dev/shared/webui"
)

// Planner runs the pass's attempt without pushing (*automate.Automator):
// the same Plan as `automator plan`.
type Planner interface {
	Plan(ctx context.Context, only []string) (automate.Result, error)
}

var _ Planner = (*automate.Automator)(nil)

// Records is the seam where deployment records and promotion gates plug
// in (Gates, over the promote package): the branches Promotion documents
// name, and per branch tip where that commit is applied and healthy and
// which gates stand before the next branch. Nil: the fleet page shows the
// branches the automator follows and pushes to, and what each declares,
// from Git alone.
type Records interface {
	// Branches are more branches to show, each with its role
	// ("promotes to prod", "promoted from dev").
	Branches(ctx context.Context) ([]BranchRole, error)
	// Evidence is what the records say of commit, the tip of branch.
	Evidence(ctx context.Context, branch, commit string) (Evidence, error)
}

// BranchRole is a branch and why the fleet shows it.
type BranchRole struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Evidence is what deployment records and gates say of a branch's tip.
type Evidence struct {
	// Clusters: the clusters that follow the branch or recorded the
	// commit, and what their records say of it.
	Clusters []ClusterRecord `json:"clusters,omitempty"`
	// Gates: the promotions from this branch and where each stands.
	Gates []Gate `json:"gates,omitempty"`
	// EvaluatedAt is when the gates were evaluated; DryRun says the
	// evaluation was made for a view (as plan makes it), not by the gate
	// loop of this replica.
	EvaluatedAt time.Time `json:"evaluatedAt,omitzero"`
	DryRun      bool      `json:"dryRun,omitempty"`
	// Problems are the Promotion documents of this commit that were
	// skipped, each naming its file and line.
	Problems []string `json:"problems,omitempty"`
	// Error says why the records could not be read (the rest of the
	// page stands).
	Error string `json:"error,omitempty"`
}

// ClusterRecord is one cluster's record of a commit.
type ClusterRecord struct {
	Cluster string `json:"cluster"`
	// State is pending (no record of the commit yet), applied, healthy,
	// superseded (healthy, then it applied another commit before the
	// soak was over) or degraded.
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Message says it as plan does ("healthy since …, soaking until …").
	Message string `json:"message,omitempty"`
	// Runs is the commit the cluster last recorded applied, when not
	// this one.
	Runs string `json:"runs,omitempty"`
}

// Gate is one promotion from a branch, as the gate's evaluation left it.
type Gate struct {
	Name string `json:"name"`
	To   string `json:"to"`
	Mode string `json:"mode,omitempty"`
	// State is the gate's (promote.State): UpToDate, Waiting, Ready,
	// Promoted, Proposed, InReview, Refused, Failed.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Candidate is the commit the gate is about; Since when its wait
	// began; Until the earliest it can pass; Commit what was pushed.
	Candidate string    `json:"candidate,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Until     time.Time `json:"until,omitzero"`
	Commit    string    `json:"commit,omitempty"`
}

// Config describes the automator the pages are about.
type Config struct {
	// Repository is the repository's URL, credentials redacted.
	Repository string
	// Branch is the followed branch; PushBranch where bumps go (empty:
	// the followed branch).
	Branch, PushBranch string
	// Clone is the warm clone's folder (--workdir); ManifestPath where
	// markers are read (--manifest-path).
	Clone, ManifestPath string
	// LeaseNamespace and LeaseName name the Lease whose RBAC decides who
	// may view (get) and act (update).
	LeaseNamespace, LeaseName string
	// Leading says whether this replica runs passes (nil: always).
	Leading func() bool
	// Records, when set, adds deployment records and promotion gates to
	// the fleet page.
	Records Records
	// Mirror is the gates' bare mirror (<--workdir>.mirror): the fleet
	// reads there the branches the clone does not hold.
	Mirror string
}

// Handler serves the pages and the API.
type Handler struct {
	plan  Planner
	rec   *Record
	cfg   Config
	clone *clone
	ui    *webui.UI
	log   *zap.Logger
}

//go:embed pages/*.html
var pagesFS embed.FS

// New returns the automator's UI over rec (the loop's passes) and plan,
// authorized by auth (the cluster's TokenReview and SubjectAccessReview):
// viewing needs get on the automator's Lease, acting needs update on it.
func New(auth webui.Checker, plan Planner, rec *Record, cfg Config, log *zap.Logger) (*Handler, error) {
	if cfg.Leading == nil {
		cfg.Leading = func() bool { return true }
	}
	if cfg.PushBranch == "" {
		cfg.PushBranch = cfg.Branch
	}
	lease := webauth.Attributes{Group: "coordination.k8s.io", Resource: "leases", Namespace: cfg.LeaseNamespace, Name: cfg.LeaseName}
	view, act := lease, lease
	view.Verb, act.Verb = "get", "update"
	ui, err := webui.New(auth, webui.Options{
		Title: "Driftless automator",
		View:  view, Act: act,
		Nav: []webui.Link{{Label: "Policies", Href: "/ui/"}, {Label: "Fleet", Href: "/ui/fleet"}, {Label: "History", Href: "/ui/history"}},
		Funcs: template.FuncMap{"shortHash": shortHash, "badge": badge, "scope": scope, "pathEscape": url.PathEscape,
			"sub": func(a, b int) int { return a - b }, "inc": func(a int) int { return a + 1 },
			"firstChanges": func(cs []Change) []Change { return cs[:min(len(cs), 10)] }},
	}, log, pagesFS, "pages/*.html")
	if err != nil {
		return nil, err
	}
	return &Handler{plan: plan, rec: rec, cfg: cfg, clone: newClone(cfg.Clone, cfg.ManifestPath, cfg.Mirror), ui: ui, log: log}, nil
}

// Mount adds the pages, the API and the login routes to mux.
func (h *Handler) Mount(mux *http.ServeMux) {
	h.ui.Mount(mux)
	for _, v := range []struct {
		page, api, ui string
		view          webui.View
	}{
		{"policies", "/api/v1/policies", "/ui/{$}", h.policies},
		{"policy", "/api/v1/policies/{key}", "/ui/policies/{key}", h.policy},
		{"fleet", "/api/v1/fleet", "/ui/fleet", h.fleet},
		{"history", "/api/v1/history", "/ui/history", h.history},
	} {
		mux.Handle("GET "+v.api, h.ui.API(v.view))
		mux.Handle("GET "+v.ui, h.ui.Page(v.page, v.view))
	}
	mux.Handle("POST /api/v1/plan", h.ui.Action(h.planNow))
}

func shortHash(s string) string {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// badge is the stylesheet's class for a result or state: green for done
// and healthy, amber for pending, red for failed.
func badge(result string) string {
	switch result {
	case "committed", "promoted", "Promoted", "Proposed":
		return "applied"
	case "unchanged", "healthy", "UpToDate":
		return "Current"
	case "planned", "waiting", "applied", "superseded", "Waiting", "Ready", "InReview":
		return "InProgress"
	case "failed", "untrusted", "stuck", "degraded", "refused", "Refused", "Failed":
		return "failed"
	}
	return ""
}

// scope says which policies a pass covered.
func scope(only []string) string {
	if len(only) == 1 && only[0] == discover {
		return "read Git for new policies"
	}
	if len(only) > 5 {
		return "only " + strings.Join(only[:5], ", ") + fmt.Sprintf(" and %d more", len(only)-5)
	}
	return "only " + strings.Join(only, ", ")
}
