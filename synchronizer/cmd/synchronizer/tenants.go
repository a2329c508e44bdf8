package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

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
	"driftless.dev/synchronizer/internal/source"
)

// tenantSpec is one tenant of a --tenants file: what a tenant
// synchronizer's flags would say.
type tenantSpec struct {
	// Name names the tenant in routes and metrics; default its namespace.
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace"`
	RepoURL   string `json:"repoURL"`
	Branch    string `json:"branch,omitempty"`
	Tag       string `json:"tag,omitempty"`
	Path      string `json:"path,omitempty"`
	// ServiceAccount, in the tenant's namespace, is who applies: the
	// tenant's Role decides what its commits can do.
	ServiceAccount    string `json:"serviceAccount"`
	GitUsername       string `json:"gitUsername,omitempty"`
	GitPasswordFile   string `json:"gitPasswordFile,omitempty"`
	GitSSHKey         string `json:"gitSSHKey,omitempty"`
	GitKnownHosts     string `json:"gitKnownHosts,omitempty"`
	VerifyKeyring     string `json:"verifyKeyring,omitempty"`
	WebhookSecretFile string `json:"webhookSecretFile,omitempty"`
}

type tenantsFile struct {
	Tenants []tenantSpec `json:"tenants"`
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// readTenants reads and checks a --tenants file, naming the file, the
// tenant and the field of every problem.
func readTenants(path string) ([]tenantSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tenants: %w", err)
	}
	var f tenantsFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("--tenants %s: %w", path, err)
	}
	if len(f.Tenants) == 0 {
		return nil, fmt.Errorf("--tenants %s: tenants: want at least one tenant", path)
	}
	var errs []error
	names, namespaces := map[string]bool{}, map[string]bool{}
	for i := range f.Tenants {
		t := &f.Tenants[i]
		at := fmt.Sprintf("%s: tenants[%d]", path, i)
		if t.Name == "" {
			t.Name = t.Namespace
		}
		if t.Branch == "" && t.Tag == "" {
			t.Branch = "main"
		}
		if t.Path == "" {
			t.Path = "."
		}
		switch {
		case t.Namespace == "":
			errs = append(errs, fmt.Errorf("%s.namespace: required", at))
		case !dnsLabel.MatchString(t.Namespace):
			errs = append(errs, fmt.Errorf("%s.namespace %q: want a namespace name", at, t.Namespace))
		case namespaces[t.Namespace]:
			errs = append(errs, fmt.Errorf("%s.namespace %q: another tenant has it", at, t.Namespace))
		}
		namespaces[t.Namespace] = true
		if t.Name != "" && (!dnsLabel.MatchString(t.Name) || names[t.Name]) {
			errs = append(errs, fmt.Errorf("%s.name %q: want a unique DNS label", at, t.Name))
		}
		names[t.Name] = true
		if t.RepoURL == "" {
			errs = append(errs, fmt.Errorf("%s.repoURL: required", at))
		}
		if t.Branch != "" && t.Tag != "" {
			errs = append(errs, fmt.Errorf("%s: set branch or tag, not both", at))
		}
		if t.ServiceAccount == "" || strings.Contains(t.ServiceAccount, "/") {
			errs = append(errs, fmt.Errorf("%s.serviceAccount: required, a ServiceAccount of the tenant's namespace: the tenant's commits are applied with its rights", at))
		}
		if t.GitSSHKey != "" && t.GitKnownHosts == "" {
			errs = append(errs, fmt.Errorf("%s.gitSSHKey needs gitKnownHosts: the server's key is never accepted blindly", at))
		}
	}
	return f.Tenants, errors.Join(errs...)
}

// tenant is one tenant's synchronizer inside the shared process.
type tenant struct {
	spec   tenantSpec
	parent inventory.Parent
	ref    string
	rec    *reconcile.Reconciler
	eng    *apply.Engine
	events *events
	hook   *hook.Handler
}

// runTenants serves many tenants from one process: each with its own
// repository, checkout, status ConfigMap and engine, confined to its
// namespace (tenant mode) and applying as its own ServiceAccount
// (impersonation), so each is as confined as a synchronizer of its own.
// What they share is what costs memory: the binary's pages, one
// discovery table, one HTTP server, one Lease. Fifty tenant processes
// would each hold the binary's resident pages (about 37 MiB).
func runTenants(ctx context.Context, file string, cl clusterFlags, rc reconcile.Config, opts apply.Options, buildTimeout time.Duration,
	listen, identity, checkoutBase, logFormat, logLevel string, elect bool) error {
	specs, err := readTenants(file)
	if err != nil {
		return err
	}
	log, err := logging.New(logFormat, logLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", listen, err)
	}
	defer l.Close()
	cfg, err := cl.config()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	mapper, err := apply.NewMapper(cfg)
	if err != nil {
		return err
	}
	if checkoutBase == "" {
		checkoutBase = filepath.Join(os.TempDir(), fmt.Sprintf("driftless-tenants-%d", os.Getpid()))
		defer os.RemoveAll(checkoutBase) // scratch, as a single synchronizer's
	}
	reg := serve.NewRegistry()
	auth := webauth.New(dyn)
	buildFunc := func(ctx context.Context, root, path string) ([]*unstructured.Unstructured, error) {
		return build.Build(ctx, root, path, build.WithTimeout(buildTimeout))
	}
	var tenants []*tenant
	for _, spec := range specs {
		t, err := newTenant(spec, cfg, dyn, mapper, opts, rc, checkoutBase, buildFunc, reg, log.With(zap.String("tenant", spec.Name)))
		if err != nil {
			return err
		}
		defer t.events.stop()
		tenants = append(tenants, t)
	}

	var el *leader.Elector
	if elect {
		if identity == "" {
			identity, _ = os.Hostname()
		}
		if el, err = leader.New(cfg, cl.system, "driftless-synchronizer-tenants-"+cl.name, identity, leader.Timing{}, log.Named("leader")); err != nil {
			return err
		}
	}
	leading := func() bool { return el == nil || el.Leading() }
	mux := serve.Mux(reg, func() error {
		if !leading() {
			return nil
		}
		for _, t := range tenants {
			if t.rec.Passes() == 0 {
				return fmt.Errorf("tenant %s: first pass not done", t.spec.Name)
			}
		}
		return nil
	}, serve.WithLiveness(func() error {
		for _, t := range tenants {
			if err := t.rec.Live(); err != nil {
				return fmt.Errorf("tenant %s: %w", t.spec.Name, err)
			}
		}
		return nil
	}))
	for _, t := range tenants {
		t.hook.Leading = leading
		mux.Handle("POST /hooks/git/"+t.spec.Name, t.hook)
		mux.Handle("GET /status/"+t.spec.Name, statusHandler(auth, t.parent, t.rec, t.eng, nil, leading))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := serve.Serve(ctx, l, mux); err != nil {
			log.Error("http server", zap.Error(err))
		}
	})
	log.Info("synchronizer started for tenants", zap.String("listen", l.Addr().String()), zap.Int("tenants", len(tenants)))
	runAll := func(ctx context.Context) {
		var all sync.WaitGroup
		for _, t := range tenants {
			all.Go(func() { t.rec.Run(ctx) })
		}
		all.Wait()
	}
	if el != nil {
		el.Run(ctx, runAll)
	} else {
		runAll(ctx)
	}
	wg.Wait()
	return nil
}

func newTenant(spec tenantSpec, cfg *rest.Config, dyn dynamic.Interface, mapper apply.Mapper, opts apply.Options, rc reconcile.Config,
	checkoutBase string, buildFunc reconcile.Builder, reg prometheus.Registerer, log *zap.Logger) (*tenant, error) {
	at := "tenant " + spec.Name
	scfg := source.Config{URL: spec.RepoURL, Branch: spec.Branch, Tag: spec.Tag, Dir: filepath.Join(checkoutBase, spec.Name),
		Auth: gitrepo.Auth{Username: spec.GitUsername, SSHKeyFile: spec.GitSSHKey, SSHKnownHosts: spec.GitKnownHosts}}
	if spec.GitPasswordFile != "" {
		b, err := os.ReadFile(spec.GitPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%s: gitPasswordFile: %w", at, err)
		}
		scfg.Auth.Password = string(bytes.TrimSpace(b))
	}
	if spec.VerifyKeyring != "" {
		b, err := os.ReadFile(spec.VerifyKeyring)
		if err != nil {
			return nil, fmt.Errorf("%s: verifyKeyring: %w", at, err)
		}
		scfg.Keyring = string(b)
	}
	var secret []byte
	if spec.WebhookSecretFile != "" {
		b, err := os.ReadFile(spec.WebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("%s: webhookSecretFile: %w", at, err)
		}
		if secret = bytes.TrimSpace(b); len(secret) == 0 {
			return nil, fmt.Errorf("%s: webhookSecretFile %s is empty", at, spec.WebhookSecretFile)
		}
	}
	parent := inventory.Parent{Namespace: spec.Namespace, Name: "driftless"}
	opts.SetID, opts.Tenant, opts.FieldManager, opts.Mapper = parent.ID(), spec.Namespace, apply.FieldManagerFor(parent.Namespace, parent.Name), mapper
	opts.Reserved = []apply.Key{{Kind: "ConfigMap", Namespace: parent.Namespace, Name: parent.Name}}
	ac := rest.CopyConfig(cfg)
	ac.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + spec.Namespace + ":" + spec.ServiceAccount}
	eng, err := apply.New(ac, opts, log.Named("apply"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	src, err := source.New(scfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	store := inventory.NewStore(dyn, parent, "driftless/"+version.Version, opts.FieldManager)
	ev := newEvents(dyn, parent, log.Named("events"))
	m := metrics.New(prometheus.WrapRegistererWith(prometheus.Labels{"tenant": spec.Name}, reg))
	rc.Path = spec.Path
	rec := reconcile.New(rc, src, buildFunc, eng, store, ev, m, log.Named("reconcile"))
	ref := "refs/heads/" + spec.Branch
	if spec.Tag != "" {
		ref = "refs/tags/" + spec.Tag
	}
	return &tenant{spec: spec, parent: parent, ref: ref, rec: rec, eng: eng, events: ev,
		hook: &hook.Handler{Secret: secret, Ref: ref, Trigger: rec.Trigger, Log: log.Named("hook")}}, nil
}
