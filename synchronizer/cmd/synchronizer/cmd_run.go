package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/leader"
	"driftless.dev/shared/logging"
	"driftless.dev/shared/serve"
	"driftless.dev/shared/version"
	"driftless.dev/shared/webauth"
	"driftless.dev/synchronizer/internal/apply"
	"driftless.dev/synchronizer/internal/build"
	"driftless.dev/synchronizer/internal/hook"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/metrics"
	"driftless.dev/synchronizer/internal/reconcile"
	"driftless.dev/synchronizer/internal/recorder"
	"driftless.dev/synchronizer/internal/source"
)

func runCommand() *cobra.Command {
	var cl clusterFlags
	var src sourceFlags
	var rc reconcile.Config
	var opts apply.Options
	var listen, secretFile, identity, logFormat, logLevel string
	var elect, once, ui bool
	var rf recordFlags
	var buildTimeout time.Duration
	var tenantsFile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Follow the repository and keep the cluster matching it; serve status, metrics, health and the Git webhook",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := validateRun(cmd.Flags(), &src, &cl, rc, opts, buildTimeout); err != nil {
				return err
			}
			if tenantsFile != "" {
				if src.url != "" || cl.tenant != "" || once || rf.record {
					return errors.New("--tenants runs the tenants its file lists: --repo-url, --namespace, --once and --record belong to a single synchronizer")
				}
				if rc.Interval < time.Second {
					return fmt.Errorf("--interval %s: at least 1s", rc.Interval)
				}
				return runTenants(ctx, tenantsFile, cl, rc, opts, buildTimeout, listen, identity, src.checkoutDir, logFormat, logLevel, elect)
			}
			scfg, err := src.config()
			if err != nil {
				return err
			}
			if src.checkoutDir == "" {
				// A clone in the temp dir is this process's scratch: a
				// synchronizer run by hand or by a test would otherwise
				// leave a whole clone behind each time.
				defer os.RemoveAll(scfg.Dir)
			}
			rc.Path = src.path
			if err := rf.validate(); err != nil {
				return err
			}
			if rc.Interval < time.Second {
				return fmt.Errorf("--interval %s: at least 1s", rc.Interval)
			}
			var secret []byte
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("--webhook-secret-file: %w", err)
				}
				if secret = []byte(strings.TrimSpace(string(b))); len(secret) == 0 {
					// An empty secret would turn authentication off without a word.
					return fmt.Errorf("--webhook-secret-file %s is empty: put the webhook secret in it, or leave the flag out to accept unauthenticated pushes", secretFile)
				}
			}
			log, err := logging.New(logFormat, logLevel)
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck
			var l net.Listener
			if !once {
				// Bind first: a taken port is a start-up error, not a log line.
				if l, err = net.Listen("tcp", listen); err != nil {
					return fmt.Errorf("--listen %s: %w", listen, err)
				}
				defer l.Close()
			}
			cfg, err := cl.config()
			if err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			parent := cl.parent()
			lease := leaseName(parent)
			opts.SetID, opts.Tenant, opts.FieldManager = parent.ID(), cl.tenant, apply.FieldManagerFor(parent.Namespace, parent.Name)
			opts.Reserved = []apply.Key{
				{Kind: "ConfigMap", Namespace: parent.Namespace, Name: parent.Name},
				{Group: "coordination.k8s.io", Kind: "Lease", Namespace: parent.Namespace, Name: lease},
			}
			applyCfg, err := cl.applyConfig(cfg)
			if err != nil {
				return err
			}
			eng, err := apply.New(applyCfg, opts, log.Named("apply"))
			if err != nil {
				return err
			}
			s, err := source.New(scfg, source.WithLog(log.Named("source")))
			if err != nil {
				return err
			}
			store := inventory.NewStore(dyn, parent, "driftless/"+version.Version, opts.FieldManager)
			events := newEvents(dyn, parent, log.Named("events"))
			defer events.stop()
			reg := serve.NewRegistry()
			m := metrics.New(reg)
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "driftless_synchronizer_watched_resources",
				Help: "Resources whose objects are watched for drift, their first list done."}, func() float64 { return float64(eng.Tracker().Listed()) }))
			buildFunc := func(ctx context.Context, root, path string) ([]*unstructured.Unstructured, error) {
				return build.Build(ctx, root, path, build.WithTimeout(buildTimeout))
			}
			recs, err := rf.recorder(scfg, m, log.Named("records"))
			if err != nil {
				return err
			}
			var recsDone sync.WaitGroup
			if recs != nil {
				rc.Observer = recs
				rctx, stop := context.WithCancel(ctx)
				recsDone.Go(func() { recs.Run(rctx) })
				// On the way out the recorder writes what is queued
				// (briefly), then the process ends.
				defer recsDone.Wait()
				defer stop()
			}
			rec := reconcile.New(rc, s, buildFunc, eng, store, events, m, log.Named("reconcile"))
			if once {
				res := rec.Pass(ctx)
				if res.Err != nil {
					return res.Err
				}
				st := rec.Status()
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s) %s; %d changed, %d unchanged, %d pruned\n", st.Revision, st.Phase, st.Reason, st.Message,
					res.Changes.Changed(), res.Changes.Count(apply.Unchanged), res.Pruned.Count())
				return nil
			}

			var el *leader.Elector
			if elect {
				if identity == "" {
					identity, _ = os.Hostname()
				}
				if el, err = leader.New(cfg, parent.Namespace, lease, identity, leader.Timing{}, log.Named("leader")); err != nil {
					return err
				}
			}
			leading := func() bool { return el == nil || el.Leading() }
			mux := serve.Mux(reg, func() error {
				if leading() && rec.Passes() == 0 {
					return errors.New("first pass not done")
				}
				return nil
			}, serve.WithLiveness(rec.Live))
			ref := "refs/heads/" + scfg.Branch
			if scfg.Tag != "" {
				ref = "refs/tags/" + scfg.Tag
			}
			mux.Handle("POST /hooks/git", &hook.Handler{Secret: secret, Ref: ref, Trigger: rec.Trigger, Leading: leading, Log: log.Named("hook")})
			mux.Handle("GET /status", statusHandler(webauth.New(dyn), parent, rec, eng, recs, leading))
			if err := mountUI(ui, mux, dyn, parent, rec, eng, store, scfg.URL, rc, leading, log.Named("web")); err != nil {
				return err
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				if err := serve.Serve(ctx, l, mux); err != nil {
					log.Error("http server", zap.Error(err))
				}
			})
			log.Info("synchronizer started", zap.String("listen", l.Addr().String()), zap.String("repository", gitrepo.Redact(scfg.URL)),
				zap.String("ref", ref), zap.String("path", rc.Path), zap.String("tenant", cl.tenant), zap.String("parent", parent.Namespace+"/"+parent.Name))
			if el != nil {
				el.Run(ctx, rec.Run)
			} else {
				rec.Run(ctx)
			}
			wg.Wait()
			return nil
		},
	}
	fs := cmd.Flags()
	cl.flags(fs)
	src.flags(fs)
	fs.DurationVar(&rc.Interval, "interval", time.Minute, "how often to fetch when no webhook arrives")
	fs.DurationVar(&rc.Resync, "resync", 30*time.Minute, "how often to re-apply every object regardless of what the watches say (0: never)")
	fs.DurationVar(&rc.HealthTimeout, "health-timeout", 5*time.Minute, "how long objects may take to become healthy after an apply before the status says Stalled")
	fs.DurationVar(&buildTimeout, "build-timeout", build.DefaultTimeout, "how long rendering the path may take")
	fs.DurationVar(&rc.PassTimeout, "pass-timeout", 10*time.Minute, "how long one pass may take; /healthz fails when a pass overruns it")
	fs.BoolVar(&opts.AllowEmpty, "allow-empty", false, "let a render with no objects prune everything the synchronizer applied")
	fs.IntVar(&opts.Concurrency, "concurrency", 16, "API requests in flight while applying")
	fs.IntVar(&opts.MaxPrune, "max-prune", 100, "refuse a pass that would delete more objects than this (0: no limit)")
	fs.BoolVar(&opts.AllowPruneProtected, "prune-protected", false, "let Namespaces, CRDs and PersistentVolumeClaims be pruned without their own driftless.dev/prune: enabled")
	fs.BoolVar(&opts.Recreate, "recreate", false, "delete and re-create any object whose change hits an immutable field (default: only objects annotated driftless.dev/recreate: enabled)")
	fs.StringVar(&opts.DefaultNamespace, "default-namespace", "default", "namespace for namespaced objects without one, outside tenant mode")
	fs.StringVar(&listen, "listen", ":8080", "address for /metrics, /healthz, /readyz, /status and /hooks/git")
	fs.StringVar(&secretFile, "webhook-secret-file", "", "file holding the Git webhook secret (HMAC key; GitLab's token)")
	fs.BoolVar(&elect, "leader-elect", false, "apply only while holding a Lease, so replicas never both apply")
	fs.StringVar(&identity, "identity", "", "this replica's name in the Lease (default: the host name, the Pod's name)")
	fs.BoolVar(&once, "once", false, "do one pass and exit (non-zero if it failed)")
	fs.BoolVar(&ui, "ui", true, "serve the web UI (/ui/) and its API (/api/v1/), authorized by the cluster's RBAC (see docs/ui.md)")
	rf.flags(fs)
	fs.StringVar(&tenantsFile, "tenants", "", "serve the tenants this YAML file lists from one process, each confined to its namespace and applying as its ServiceAccount (see docs/synchronizer.md, Many tenants in one process)")
	fs.StringVar(&logFormat, "log-format", "json", "json or console")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// events records Kubernetes Events on the ApplySet parent ConfigMap, where
// `kubectl describe configmap` shows them. They are written with the
// dynamic client, as client-go's recorder would need the typed clientset
// and its many megabytes of code; the loop only emits on transitions, so
// there is nothing to aggregate.
type events struct {
	ri     dynamic.ResourceInterface
	parent inventory.Parent
	host   string
	log    *zap.Logger
	wg     sync.WaitGroup
}

func newEvents(dyn dynamic.Interface, p inventory.Parent, log *zap.Logger) *events {
	host, _ := os.Hostname()
	ri := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "events"}).Namespace(p.Namespace)
	return &events{ri: ri, parent: p, host: host, log: log}
}

func (e *events) Event(warning bool, reason, message string) {
	t := "Normal"
	if warning {
		t = "Warning"
	}
	if len(message) > 1024 {
		message = message[:1021] + "..."
	}
	now := time.Now().UTC().Format(time.RFC3339)
	ev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"name": fmt.Sprintf("%s.%x", e.parent.Name, time.Now().UnixNano()), "namespace": e.parent.Namespace},
		"involvedObject": map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "namespace": e.parent.Namespace, "name": e.parent.Name},
		"reason":         reason, "message": message, "type": t, "count": int64(1),
		"firstTimestamp": now, "lastTimestamp": now,
		"source":             map[string]any{"component": "driftless-synchronizer", "host": e.host},
		"reportingComponent": "driftless-synchronizer", "reportingInstance": e.host,
	}}
	// Off the loop: an Event is worth less than a pass.
	e.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := e.ri.Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			e.log.Debug("record event", zap.String("reason", reason), zap.Error(err))
		}
	})
}

func (e *events) stop() { e.wg.Wait() }

func leaseName(p inventory.Parent) string { return "driftless-synchronizer-" + p.Name }

// statusHandler serves /status: a summary to anyone (phase, reason,
// revisions and counts, what /metrics shows too), and the whole status
// (messages, unhealthy objects) to a user the cluster's RBAC lets get the
// status ConfigMap, as kubectl would read it.
func statusHandler(auth *webauth.Authorizer, parent inventory.Parent, rec *reconcile.Reconciler, eng *apply.Engine, recs *recorder.Recorder, leading func() bool) http.Handler {
	view := webauth.Attributes{Verb: "get", Resource: "configmaps", Namespace: parent.Namespace, Name: parent.Name}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := rec.Status()
		out := map[string]any{"leader": leading(), "passes": rec.Passes()}
		token := webauth.Token(r)
		var rs *recorder.Status
		if recs != nil {
			s := recs.Status()
			rs = &s
			out["records"] = rs
		}
		if token == "" {
			st.Message = ""
			if rs != nil {
				rs.LastError = ""
			}
			out["status"] = st
			out["detail"] = "send a bearer token allowed to get configmap " + parent.Namespace + "/" + parent.Name + " for messages and unhealthy objects"
		} else {
			if _, err := auth.Check(r.Context(), token, view); err != nil {
				http.Error(w, err.Error(), webauth.Status(err))
				return
			}
			_, not := eng.Tracker().Health(50)
			out["status"], out["unhealthy"], out["drifted"] = st, not, eng.Tracker().Drifted()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
	})
}
