package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/hook"
	"driftless.dev/automator/internal/loop"
	"driftless.dev/automator/internal/metrics"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/automator/internal/web"
	"driftless.dev/shared/leader"
	"driftless.dev/shared/serve"
)

func runCommand() *cobra.Command {
	var c passConfig
	var listen, secret, secretFile, leaseNS, leaseName, kubeconfig, identity string
	var refresh, gateInterval, passTimeout time.Duration
	var elect, once, ui bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Scan and commit continuously; serve metrics, health and the registry webhook",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if secret != "" && secretFile != "" {
				return errors.New("--webhook-secret and --webhook-secret-file: set one")
			}
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("--webhook-secret-file: %w", err)
				}
				secret = strings.TrimSpace(string(b))
				// An empty secret would turn authentication off without a
				// word: a mount that went wrong must not open the webhook.
				if secret == "" {
					return fmt.Errorf("--webhook-secret-file %s is empty: the webhook would accept anyone; fix the file, or drop the flag to run without a secret", secretFile)
				}
			} else if (secret != "" || cmd.Flags().Changed("webhook-secret")) && strings.TrimSpace(secret) == "" {
				return errors.New("--webhook-secret is empty: the webhook would accept anyone; give a secret, or drop the flag to run without one")
			}
			if refresh < time.Second {
				return fmt.Errorf("--refresh %s: at least 1s", refresh)
			}
			if passTimeout < time.Second {
				return fmt.Errorf("--pass-timeout %s: at least 1s", passTimeout)
			}
			if once {
				return runOnce(ctx, &c)
			}
			// Bind first: a taken port is a start-up error, not a log line.
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			// Git away at start is a failed pass, retried, not an exit.
			c.cloneLater = true
			c.gatesTimeout = passTimeout
			b, err := c.build(ctx)
			if err != nil {
				l.Close()
				return err
			}
			log := b.log
			defer log.Sync() //nolint:errcheck
			reg := serve.NewRegistry()
			m := metrics.New(reg)
			var rec *web.Record
			var gv *web.Gates
			if ui {
				// The fleet page shows the gates' own evaluations; a
				// view makes a dry run (as plan) when none is recent.
				rec, gv = web.NewRecord(), web.NewGates(b.gates, gateInterval+10*time.Second)
			}
			gates := b.gates
			// Each pass may have moved the branch a gate reads: evaluate
			// the gates after it.
			obs := observe(m.Observe, rec)
			lp := loop.New(b.auto, log.Named("loop"), func(res automate.Result, err error, secs float64) {
				obs(res, err, secs)
				gates.Trigger()
			}, loop.WithPassTimeout(passTimeout))
			observeGates := func(res promote.Result, err error) {
				m.ObserveGates(res, err)
				reportGates(log.Named("gates"), res, err)
				if gv != nil {
					gv.Observe(res, err)
				}
			}

			var el *leader.Elector
			if elect {
				cfg, err := kubeConfig(kubeconfig)
				if err != nil {
					return err
				}
				if identity == "" {
					identity, _ = os.Hostname()
				}
				if el, err = leader.New(cfg, leaseNS, leaseName, identity, leader.Timing{}, log.Named("leader")); err != nil {
					return err
				}
			}
			mux := serve.Mux(reg, func() error { return nil })
			h := &hook.Handler{Secret: secret, Target: lp, Log: log.Named("hook")}
			gh := &hook.GitHandler{Secret: []byte(secret), Trigger: gates.Trigger, Log: log.Named("hook")}
			if el != nil {
				h.Leading, gh.Leading = el.Leading, el.Leading
			}
			mux.Handle("POST /hooks/registry", h)
			mux.Handle("POST /hooks/git", gh)
			u := uiConfig{on: ui, kubeconfig: kubeconfig, leaseNS: leaseNS, leaseName: leaseName}
			if el != nil {
				u.leading = el.Leading
			}
			uiOn, err := mountUI(u, mux, &c, b, rec, gv, log.Named("web"))
			if err != nil {
				return err
			}

			var wg sync.WaitGroup
			wg.Go(func() {
				if err := serve.Serve(ctx, l, mux); err != nil {
					log.Error("http server", zap.Error(err))
				}
			})
			log.Info("automator started", zap.String("listen", l.Addr().String()), zap.String("branch", c.branch), zap.Bool("leaderElection", elect), zap.Bool("ui", uiOn))
			lead := func(ctx context.Context) {
				var both sync.WaitGroup
				both.Go(func() { gates.Run(ctx, gateInterval, observeGates) })
				_ = lp.Run(ctx, refresh)
				both.Wait()
			}
			if el != nil {
				el.Run(ctx, lead)
			} else {
				lead(ctx)
			}
			wg.Wait()
			return nil
		},
	}
	c.flags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", ":8080", "address for /metrics, /healthz, /readyz, /hooks/registry, /hooks/git and the web UI (/ui/, /api/v1/)")
	fs.StringVar(&secret, "webhook-secret", "", "shared secret the registry webhook must present; prefer DRIFTLESS_WEBHOOK_SECRET or --webhook-secret-file")
	fs.StringVar(&secretFile, "webhook-secret-file", "", "file holding the webhook secret (an empty file is an error)")
	fs.DurationVar(&refresh, "refresh", time.Minute, "how often to look for new policies in Git when no scan is due")
	fs.DurationVar(&gateInterval, "promotion-interval", 30*time.Second, "how often the promotion gates and the revert rule read Git when no pass, push webhook (/hooks/git) or soak end comes first")
	fs.DurationVar(&passTimeout, "pass-timeout", loop.DefaultPassTimeout, "bound on one pass: a registry or Git server that never answers fails the pass, which is retried")
	fs.BoolVar(&once, "once", false, "do one pass (and one evaluation of the gates) and exit (non-zero if it failed): for a CronJob or CI")
	fs.BoolVar(&elect, "leader-elect", false, "run only while holding a Lease, so replicas never both commit")
	fs.StringVar(&leaseNS, "lease-namespace", "driftless-system", "namespace of the Lease (set POD_NAMESPACE through DRIFTLESS_LEASE_NAMESPACE)")
	fs.StringVar(&leaseName, "lease-name", "driftless-automator", "name of the Lease")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for leader election and the web UI outside a cluster (default: in-cluster)")
	fs.BoolVar(&ui, "ui", true, "serve the web UI (/ui/) and its API (/api/v1/), authorized by the cluster's RBAC on the Lease (see docs/ui.md); needs a cluster (--kubeconfig or in a Pod)")
	fs.StringVar(&identity, "identity", "", "this replica's name in the Lease (default: the host name, the Pod's name)")
	return cmd
}

// runOnce does one pass, logs it as the loop would, and fails if the pass
// or any policy failed.
func runOnce(ctx context.Context, c *passConfig) error {
	b, err := c.build(ctx)
	if err != nil {
		return err
	}
	defer b.log.Sync() //nolint:errcheck
	res, err := b.auto.Run(ctx, nil)
	if err != nil {
		return err
	}
	var failed []string
	for _, pr := range res.Policies {
		if pr.Err != nil {
			b.log.Error("scan failed", zap.String("policy", pr.Policy.Key()), zap.Error(pr.Err))
			failed = append(failed, pr.Policy.Key())
		}
	}
	if res.Commit != "" {
		b.log.Info("pushed image update", zap.String("revision", res.Commit), zap.Int("changes", len(res.Changes)))
	}
	gres, gerr := b.gates.Pass(ctx, false)
	reportGates(b.log.Named("gates"), gres, gerr)
	if gerr != nil {
		return gerr
	}
	for _, g := range gres.Gates {
		if g.State == promote.Failed {
			failed = append(failed, "promotion "+g.Name)
		}
	}
	if res.PolicyErrs != nil {
		return fmt.Errorf("some policies were skipped:\n%w", res.PolicyErrs)
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func kubeConfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("leader election needs a cluster: --kubeconfig, or run in a Pod: %w", err)
	}
	return cfg, nil
}
