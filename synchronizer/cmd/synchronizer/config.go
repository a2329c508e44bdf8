package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/version"
	"driftless.dev/synchronizer/internal/inventory"
	"driftless.dev/synchronizer/internal/source"
)

// clusterFlags say which cluster and which synchronizer (its ApplySet
// parent) a command works on.
type clusterFlags struct {
	kubeconfig string
	tenant     string
	system     string
	name       string
	qps        float32
	burst      int
	applyAs    string
}

func (c *clusterFlags) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig to use outside a cluster (default: in-cluster, then $KUBECONFIG)")
	fs.StringVar(&c.tenant, "namespace", "", "tenant mode: confine every object to this namespace, which also holds the status and Lease")
	fs.StringVar(&c.system, "system-namespace", "driftless-system", "namespace of the status ConfigMap and Lease outside tenant mode")
	// The bound on requests in flight (--concurrency) is the real throttle,
	// and the API server's priority and fairness protects it; client-go's
	// default of 5 per second would make 1,000 objects take minutes.
	fs.Float32Var(&c.qps, "kube-api-qps", 1000, "client-side limit of API requests per second")
	fs.IntVar(&c.burst, "kube-api-burst", 2000, "client-side burst of API requests")
	fs.StringVar(&c.applyAs, "service-account", "", "apply (dry run, apply, prune) as this ServiceAccount, \"name\" in the synchronizer's namespace or \"namespace/name\", by impersonation: a branch gets only the rights its RBAC grants (status, Events and the Lease stay the synchronizer's own)")
	fs.StringVar(&c.name, "name", "driftless", "name of this synchronizer: its status (ApplySet parent) ConfigMap and Lease are named after it")
}

func (c *clusterFlags) parent() inventory.Parent {
	ns := c.system
	if c.tenant != "" {
		ns = c.tenant
	}
	return inventory.Parent{Namespace: ns, Name: c.name}
}

func (c *clusterFlags) config() (*rest.Config, error) {
	cfg, err := c.load()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = c.qps, c.burst
	cfg.UserAgent = "driftless-synchronizer/" + version.Version
	return cfg, nil
}

// applyConfig is cfg, impersonating --service-account when it is set.
// The API server adds the ServiceAccount's groups itself.
func (c *clusterFlags) applyConfig(cfg *rest.Config) (*rest.Config, error) {
	if c.applyAs == "" {
		return cfg, nil
	}
	ns, name, ok := strings.Cut(c.applyAs, "/")
	if !ok {
		ns, name = c.parent().Namespace, c.applyAs
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("--service-account %q: want \"name\" or \"namespace/name\"", c.applyAs)
	}
	if c.tenant != "" && ns != c.tenant {
		return nil, fmt.Errorf("--service-account %q: in tenant mode the ServiceAccount must be in the tenant's namespace %q", c.applyAs, c.tenant)
	}
	ac := rest.CopyConfig(cfg)
	ac.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name}
	return ac, nil
}

func (c *clusterFlags) load() (*rest.Config, error) {
	if c.kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", c.kubeconfig, err)
		}
		return cfg, nil
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster: pass --kubeconfig, set KUBECONFIG, or run in a Pod: %w", err)
	}
	return cfg, nil
}

// sourceFlags say what to follow.
type sourceFlags struct {
	url, branch, tag, commit, path string
	user, password, passwordFile   string
	sshKey, knownHosts, keyring    string
	verifyAnchor                   string
	allowRewind                    bool
	checkoutDir                    string
}

func (s *sourceFlags) flags(fs *pflag.FlagSet) {
	fs.StringVar(&s.url, "repo-url", "", "Git repository to follow (https://, http:// or ssh://)")
	fs.StringVar(&s.branch, "branch", "main", "branch to follow")
	fs.StringVar(&s.tag, "tag", "", "tag to follow instead of a branch")
	fs.StringVar(&s.commit, "commit", "", "pin a full commit hash on --branch")
	fs.StringVar(&s.path, "path", ".", "folder inside the repository to build (a kustomization, or plain YAML)")
	fs.StringVar(&s.user, "git-username", "", "HTTP user name (default \"git\" with a token)")
	fs.StringVar(&s.password, "git-password", "", "HTTP password or token; prefer DRIFTLESS_GIT_PASSWORD or --git-password-file")
	fs.StringVar(&s.passwordFile, "git-password-file", "", "file holding the HTTP password or token (a mounted Secret)")
	fs.StringVar(&s.sshKey, "git-ssh-key", "", "private key file for ssh:// URLs")
	fs.StringVar(&s.knownHosts, "git-known-hosts", "", "known_hosts file the SSH server's key is checked against (required with --git-ssh-key)")
	fs.StringVar(&s.keyring, "verify-keyring", "", "armored OpenPGP public keyring file: apply a commit only if it and every commit since the last applied one are signed by one of its keys (unsigned merges pass only if they add nothing of their own)")
	fs.StringVar(&s.verifyAnchor, "verify-anchor", "", "full commit hash trusted without a signature: with --verify-keyring, every commit after it is verified, on a first start too (default: the tip only until something is applied)")
	fs.BoolVar(&s.allowRewind, "allow-rewind", false, "follow the branch or tag to a commit that does not descend from the last applied one (a force push back, a moved tag); refused by default")
	fs.StringVar(&s.checkoutDir, "checkout-dir", "", "where the clone lives (default: a folder under the temp dir)")
}

func (s *sourceFlags) config() (source.Config, error) {
	var errs []error
	if s.url == "" {
		errs = append(errs, errors.New("--repo-url (DRIFTLESS_REPO_URL) is required"))
	}
	if s.tag != "" {
		s.branch = ""
	}
	if s.password != "" && s.passwordFile != "" {
		errs = append(errs, errors.New("--git-password and --git-password-file: set one"))
	}
	if s.sshKey != "" && s.knownHosts == "" {
		errs = append(errs, errors.New("--git-ssh-key needs --git-known-hosts: the server's key is never accepted blindly"))
	}
	cfg := source.Config{URL: s.url, Branch: s.branch, Tag: s.tag, Commit: s.commit, Dir: s.checkoutDir,
		VerifyAnchor: s.verifyAnchor, AllowRewind: s.allowRewind,
		Auth: gitrepo.Auth{Username: s.user, Password: s.password, SSHKeyFile: s.sshKey, SSHKnownHosts: s.knownHosts}}
	if s.passwordFile != "" {
		b, err := os.ReadFile(s.passwordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--git-password-file: %w", err))
		}
		cfg.Auth.Password = strings.TrimSpace(string(b))
	}
	if s.keyring != "" {
		b, err := os.ReadFile(s.keyring)
		if err != nil {
			errs = append(errs, fmt.Errorf("--verify-keyring: %w", err))
		}
		cfg.Keyring = string(b)
	}
	if cfg.Dir == "" {
		cfg.Dir = fmt.Sprintf("%s/driftless-checkout-%d", os.TempDir(), os.Getpid())
	}
	return cfg, errors.Join(errs...)
}
