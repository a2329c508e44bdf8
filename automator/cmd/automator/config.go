package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"driftless.dev/automator/internal/automate"
	"driftless.dev/automator/internal/ecr"
	"driftless.dev/automator/internal/promote"
	"driftless.dev/automator/internal/registry"
	"driftless.dev/shared/gitrepo"
	"driftless.dev/shared/logging"
	"driftless.dev/shared/records"
)

// passConfig is what run and plan share: where Git is, where policies and
// manifests live, how to reach registries.
type passConfig struct {
	gitURL, branch, pushBranch  string
	gitUser, gitPasswordFile    string
	gitPassword                 string
	sshKey, knownHosts          string
	workdir                     string
	policyPath, manifestPath    string
	policyFiles                 []string
	authorName, authorEmail     string
	signingKey, signingPassFile string
	verifyKeyring, verifyAnchor string
	messageFile                 string
	dockerConfigDir             string
	aws                         bool
	ecrEndpoint                 string
	awsAccounts, awsRoles       []string
	insecureRegistries          []string
	registryCA                  string
	registryRPS                 float64
	registryBurst               int
	logFormat, logLevel         string
	promotionTargets            []string
	promotionMinSoak            time.Duration
	revert, notes               string
	recordKeyring               string
	// cloneLater: a clone that fails at start is the first pass's error
	// (run), not the program's (plan, --once).
	cloneLater bool
	// gatesTimeout bounds each evaluation of the gates (run's
	// --pass-timeout); 0 for promote's default.
	gatesTimeout time.Duration
}

func (c *passConfig) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.gitURL, "git-url", "", "repository to read policies from and write bumps to (https://, http:// or ssh://) (required)")
	fs.StringVar(&c.branch, "git-branch", "main", "branch to follow")
	fs.StringVar(&c.pushBranch, "git-push-branch", "", "branch to push to; default the followed branch (set another for a pull-request flow)")
	fs.StringVar(&c.gitUser, "git-username", "", "HTTP user name (default \"git\" when only a token is given)")
	fs.StringVar(&c.gitPassword, "git-password", "", "HTTP password or token; prefer DRIFTLESS_GIT_PASSWORD or --git-password-file")
	fs.StringVar(&c.gitPasswordFile, "git-password-file", "", "file holding the HTTP password or token")
	fs.StringVar(&c.sshKey, "git-ssh-key", "", "SSH private key file, for ssh:// URLs")
	fs.StringVar(&c.knownHosts, "git-known-hosts", "", "known_hosts file to check the SSH server against")
	fs.StringVar(&c.workdir, "workdir", os.TempDir()+"/driftless-automator", "where the warm clone lives")
	fs.StringVar(&c.policyPath, "policy-path", ".", "folder in the repository searched for ImagePolicy documents (\"\" for none)")
	fs.StringSliceVar(&c.policyFiles, "policy-file", nil, "policy files outside the repository (repeatable)")
	fs.StringVar(&c.manifestPath, "manifest-path", "", "folder in the repository whose markers are updated (default: all of it)")
	fs.StringVar(&c.authorName, "author-name", "Driftless Automator", "commit author name")
	fs.StringVar(&c.authorEmail, "author-email", "automator@driftless.dev", "commit author email")
	fs.StringVar(&c.signingKey, "signing-key", "", "armored OpenPGP private key file to sign commits with")
	fs.StringVar(&c.signingPassFile, "signing-passphrase-file", "", "file holding the signing key's passphrase")
	fs.StringVar(&c.verifyKeyring, "verify-keyring", "", "armored OpenPGP public keyring file: build only on a head whose every commit since the last verified one is signed by one of its keys (unsigned merges pass only if they add nothing of their own)")
	fs.StringVar(&c.verifyAnchor, "verify-anchor", "", "full commit hash trusted without a signature: with --verify-keyring, every commit after it is verified, on a first start too (default: the head only until a commit was verified)")
	fs.StringVar(&c.messageFile, "message-template", "", "file with a Go text/template for commit messages (default: the built-in one)")
	fs.StringVar(&c.dockerConfigDir, "docker-config-dir", "/var/run/secrets/driftless/registry", "folder for relative spec.auth.dockerConfig paths (mounted pull secrets)")
	fs.BoolVar(&c.aws, "aws", false, "enable ECR credentials through the AWS SDK (environment, IRSA, EKS Pod Identity)")
	fs.StringVar(&c.ecrEndpoint, "ecr-endpoint", "", "ECR API endpoint override (a VPC endpoint)")
	fs.StringSliceVar(&c.awsAccounts, "aws-allowed-accounts", nil, "AWS account ids whose ECR registries may receive the automator's ECR token (default: the account of its own credentials)")
	fs.StringSliceVar(&c.awsRoles, "aws-allowed-roles", nil, "IAM role ARNs a policy's spec.auth.roleARN may name (default: none)")
	fs.StringSliceVar(&c.insecureRegistries, "insecure-registries", nil, "registries (host[:port]) that may be reached over plain HTTP (default: none, HTTPS only)")
	fs.StringVar(&c.registryCA, "registry-ca-file", "", "PEM file of extra CAs to trust for registries")
	fs.Float64Var(&c.registryRPS, "registry-rps", 200, "request budget per registry host, per second (0: unlimited)")
	fs.IntVar(&c.registryBurst, "registry-burst", 400, "burst of the per-registry budget")
	fs.StringSliceVar(&c.promotionTargets, "promotion-targets", nil, "branches Promotion documents may promote to (default: none, promotions are refused)")
	fs.DurationVar(&c.promotionMinSoak, "promotion-min-soak", 0, "the least soak time of every Promotion, whatever its document says")
	fs.StringVar(&c.revert, "revert", string(promote.RevertBumps), "which head commit recorded degraded with a revert asked for (synchronizer --revert-on-failure) is reverted: bumps (the automator's own), all, or off")
	fs.StringVar(&c.notes, "record-notes", records.DefaultNotes, "the notes ref deployment records are read from and written to: refs/notes/<name>")
	fs.StringVar(&c.recordKeyring, "record-keyring", "", "armored OpenPGP public keyring file: only records that a notes commit signed by one of its keys added count for gates and reverts (the synchronizers' --record-signing-key)")
	fs.StringVar(&c.logFormat, "log-format", "console", "json or console")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
}

// validate names every bad field at once.
func (c *passConfig) validate() error {
	var errs []error
	if c.gitURL == "" {
		errs = append(errs, errors.New("--git-url (DRIFTLESS_GIT_URL) is required"))
	} else if u := c.gitURL; !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "ssh://") &&
		(strings.Contains(u, "://") || !strings.Contains(u, "@")) {
		errs = append(errs, fmt.Errorf("--git-url %q: want an https://, http:// or ssh:// URL", gitrepo.Redact(c.gitURL)))
	}
	if c.branch == "" {
		errs = append(errs, errors.New("--git-branch must not be empty"))
	}
	if c.gitPassword != "" && c.gitPasswordFile != "" {
		errs = append(errs, errors.New("--git-password and --git-password-file: set one"))
	}
	if c.sshKey != "" && c.knownHosts == "" {
		errs = append(errs, errors.New("--git-ssh-key needs --git-known-hosts: host keys are never accepted blindly"))
	}
	if c.verifyAnchor != "" && !plumbing.IsHash(c.verifyAnchor) {
		errs = append(errs, fmt.Errorf("--verify-anchor %q: want a full 40-character commit hash", c.verifyAnchor))
	}
	if c.verifyAnchor != "" && c.verifyKeyring == "" {
		errs = append(errs, errors.New("--verify-anchor needs --verify-keyring"))
	}
	for _, a := range c.awsAccounts {
		if len(a) != 12 || strings.Trim(a, "0123456789") != "" {
			errs = append(errs, fmt.Errorf("--aws-allowed-accounts %q: want a 12-digit AWS account id", a))
		}
	}
	for _, r := range c.awsRoles {
		if !strings.HasPrefix(r, "arn:") || !strings.Contains(r, ":role/") {
			errs = append(errs, fmt.Errorf("--aws-allowed-roles %q: want a role ARN, arn:aws:iam::<account>:role/<name>", r))
		}
	}
	if !c.aws && (len(c.awsAccounts) > 0 || len(c.awsRoles) > 0) {
		errs = append(errs, errors.New("--aws-allowed-accounts and --aws-allowed-roles need --aws"))
	}
	if c.registryRPS < 0 {
		errs = append(errs, errors.New("--registry-rps must not be negative"))
	}
	switch promote.Scope(c.revert) {
	case promote.RevertBumps, promote.RevertAll, promote.RevertOff:
	default:
		errs = append(errs, fmt.Errorf("--revert %q: want bumps, all or off", c.revert))
	}
	for _, b := range c.promotionTargets {
		if b == "" || strings.ContainsAny(b, " :~^?*[\\") || strings.HasPrefix(b, "refs/") {
			errs = append(errs, fmt.Errorf("--promotion-targets %q: want a branch's short name, such as prod", b))
		}
		if b == c.branch {
			errs = append(errs, fmt.Errorf("--promotion-targets %q is the followed branch (--git-branch): promote to another one", b))
		}
	}
	if c.promotionMinSoak < 0 {
		errs = append(errs, errors.New("--promotion-min-soak must not be negative"))
	}
	if !records.ValidName(c.notes) {
		errs = append(errs, fmt.Errorf("--record-notes %q: want a short name such as %q", c.notes, records.DefaultNotes))
	}
	return errors.Join(errs...)
}

// built is everything a pass needs, made from passConfig.
type built struct {
	log   *zap.Logger
	auto  *automate.Automator
	gates *promote.Runner
	// mirror is the gates' mirror folder.
	mirror string
	ecr    *ecr.Tokens
}

func (c *passConfig) build(ctx context.Context, regOpts ...registry.Option) (*built, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	log, err := logging.New(c.logFormat, c.logLevel)
	if err != nil {
		return nil, err
	}
	auth := gitrepo.Auth{Username: c.gitUser, Password: c.gitPassword, SSHKeyFile: c.sshKey, SSHKnownHosts: c.knownHosts}
	if c.gitPasswordFile != "" {
		b, err := os.ReadFile(c.gitPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--git-password-file: %w", err)
		}
		auth.Password = strings.TrimSpace(string(b))
	}
	cfg := automate.Config{
		PolicyPath: c.policyPath, PolicyFiles: c.policyFiles, ManifestPath: c.manifestPath,
		PushBranch: c.pushBranch, Author: gitrepo.Signature{Name: c.authorName, Email: c.authorEmail},
	}
	if c.messageFile != "" {
		b, err := os.ReadFile(c.messageFile)
		if err != nil {
			return nil, fmt.Errorf("--message-template: %w", err)
		}
		cfg.Message = string(b)
	}
	if c.signingKey != "" {
		if cfg.SignKey, err = loadSigningKey(c.signingKey, c.signingPassFile); err != nil {
			return nil, err
		}
	}
	if c.verifyKeyring != "" {
		b, err := os.ReadFile(c.verifyKeyring)
		if err != nil {
			return nil, fmt.Errorf("--verify-keyring: %w", err)
		}
		if cfg.Keyring, err = gitrepo.ParseKeyring(string(b)); err != nil {
			return nil, fmt.Errorf("--verify-keyring %s: %w", c.verifyKeyring, err)
		}
		if c.verifyAnchor != "" {
			cfg.VerifyAnchor = plumbing.NewHash(c.verifyAnchor)
		}
	}
	if c.registryCA != "" {
		pem, err := os.ReadFile(c.registryCA)
		if err != nil {
			return nil, fmt.Errorf("--registry-ca-file: %w", err)
		}
		pool, _ := x509.SystemCertPool()
		if pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--registry-ca-file %s: no PEM certificate in it", c.registryCA)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		regOpts = append(regOpts, registry.WithTransport(tr))
	}
	regOpts = append(regOpts, registry.WithBudget(c.registryRPS, c.registryBurst), registry.WithInsecure(c.insecureRegistries...))
	creds := &registry.Credentials{DockerConfigDir: c.dockerConfigDir}
	b := &built{log: log}
	if c.aws {
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, fmt.Errorf("load AWS configuration: %w", err)
		}
		b.ecr = ecr.NewTokens(awsCfg, c.ecrEndpoint, ecr.WithAllowedAccounts(c.awsAccounts...), ecr.WithAllowedRoles(c.awsRoles...))
		creds.ECR = b.ecr
	}
	gitOpts := []gitrepo.Option{gitrepo.WithLog(log.Named("git"))}
	if c.cloneLater {
		gitOpts = append(gitOpts, gitrepo.CloneLater())
	}
	repo, err := gitrepo.Open(ctx, c.workdir, c.gitURL, c.branch, auth, gitOpts...)
	if err != nil {
		return nil, err
	}
	// The gates read and write through a bare mirror of their own, so a
	// promotion never waits for, or disturbs, the working clone.
	b.mirror = strings.TrimRight(c.workdir, "/") + ".mirror"
	mirror, err := gitrepo.OpenMirror(b.mirror, c.gitURL, auth)
	if err != nil {
		return nil, err
	}
	var recordKeyring *gitrepo.Keyring
	if c.recordKeyring != "" {
		b, err := os.ReadFile(c.recordKeyring)
		if err != nil {
			return nil, fmt.Errorf("--record-keyring: %w", err)
		}
		if recordKeyring, err = gitrepo.ParseKeyring(string(b)); err != nil {
			return nil, fmt.Errorf("--record-keyring %s: %w", c.recordKeyring, err)
		}
	}
	b.gates, err = promote.New(promote.Config{
		Branch: c.branch, PolicyPath: c.policyPath, Notes: c.notes, Targets: c.promotionTargets, MinSoak: c.promotionMinSoak,
		Revert: promote.Scope(c.revert), Author: cfg.Author, SignKey: cfg.SignKey, Keyring: cfg.Keyring, VerifyAnchor: cfg.VerifyAnchor,
		RecordKeyring: recordKeyring, PassTimeout: c.gatesTimeout,
	}, mirror, log.Named("gates"))
	if err != nil {
		return nil, err
	}
	cfg.Skip = b.gates
	b.auto, err = automate.New(cfg, repo, registry.New(regOpts...), creds, log)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func loadSigningKey(path, passFile string) (*openpgp.Entity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--signing-key: %w", err)
	}
	defer f.Close()
	ents, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil || len(ents) == 0 {
		return nil, fmt.Errorf("--signing-key %s: not an armored OpenPGP key", path)
	}
	e := ents[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("--signing-key %s: holds no private key", path)
	}
	if e.PrivateKey.Encrypted {
		if passFile == "" {
			return nil, fmt.Errorf("--signing-key %s is encrypted: give --signing-passphrase-file", path)
		}
		pass, err := os.ReadFile(passFile)
		if err != nil {
			return nil, fmt.Errorf("--signing-passphrase-file: %w", err)
		}
		if err := e.PrivateKey.Decrypt([]byte(strings.TrimSpace(string(pass)))); err != nil {
			return nil, fmt.Errorf("--signing-key %s: wrong passphrase", path)
		}
	}
	return e, nil
}
