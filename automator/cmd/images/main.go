// Command images builds the automator and synchronizer images (the
// programs compiled static for each platform, one layer on an empty base,
// see driftless.dev/shared/imagebuild), writes them to an OCI layout,
// optionally pushes them, and writes the release kustomizations that pin
// them by digest. `make images` and `make release` run it.
//
// It lives in the automator's module to reuse the automator's ECR token
// code: pushing to Amazon ECR takes credentials from the AWS SDK's default
// chain (environment, profile, IRSA, EKS Pod Identity), other registries
// from the Docker config (~/.docker/config.json).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"driftless.dev/automator/internal/ecr"
	"driftless.dev/shared/imagebuild"
)

// programs are the images built, each from <root>/<name>/cmd/<name>.
var programs = []string{"automator", "synchronizer"}

// upstream is the image name the manifests carry for a program; release
// kustomizations replace it.
func upstream(program string) string { return "ghcr.io/driftless-dev/" + program }

// overlays get one release kustomization each: its name, and its folder
// under manifests/.
var overlays = []struct{ name, path string }{
	{"dev", "overlays/dev"}, {"prod", "overlays/prod"}, {"tenant", "overlays/tenant"}, {"eks", "examples/eks"},
}

type config struct {
	root, out, registry, release, caBundle string
	version, revision, source              string
	created                                time.Time
	platforms                              []v1.Platform
	insecure                               bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := parse(os.Args[1:], os.Stderr)
	if err == nil {
		err = run(ctx, cfg, os.Stdout)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	var created, platforms string
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.root, "root", ".", "the repository's root")
	fs.StringVar(&c.out, "out", "bin/images", "the OCI layout to write (replaced)")
	fs.StringVar(&c.registry, "registry", "", "push to <registry>/<program>:<version>, e.g. 111122223333.dkr.ecr.eu-west-1.amazonaws.com/driftless")
	fs.BoolVar(&c.insecure, "insecure", false, "reach the registry over plain HTTP (a local test registry)")
	fs.StringVar(&c.release, "release", "", "with --registry: write <release>/<overlay>/kustomization.yaml pinning the pushed digests")
	fs.StringVar(&c.caBundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA certificates put in the images (Debian's ca-certificates)")
	fs.StringVar(&c.version, "version", "dev", "the version stamped in the programs and the labels")
	fs.StringVar(&c.revision, "revision", "", "the source revision (commit hash) for the labels")
	fs.StringVar(&c.source, "source", "https://github.com/driftless-dev/driftless", "the source repository for the labels")
	fs.StringVar(&created, "created", "", "the image time, Unix seconds or RFC 3339: the commit's time keeps builds reproducible (required)")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "os/arch list")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if secs, err := strconv.ParseInt(created, 10, 64); err == nil {
		c.created = time.Unix(secs, 0).UTC()
	} else if t, err := time.Parse(time.RFC3339, created); err == nil {
		c.created = t.UTC()
	} else {
		errs = append(errs, fmt.Errorf("--created %q: want Unix seconds or RFC 3339 (make passes the commit's time)", created))
	}
	for _, p := range strings.Split(platforms, ",") {
		pl, err := v1.ParsePlatform(strings.TrimSpace(p))
		if err != nil || pl.OS == "" || pl.Architecture == "" {
			errs = append(errs, fmt.Errorf("--platforms: %q is not os/arch", p))
			continue
		}
		c.platforms = append(c.platforms, *pl)
	}
	if c.release != "" && c.registry == "" {
		errs = append(errs, errors.New("--release needs --registry: a release pins pushed digests"))
	}
	if c.registry != "" {
		if _, err := name.NewRepository(c.registry + "/automator"); err != nil {
			errs = append(errs, fmt.Errorf("--registry %q: %w", c.registry, err))
		}
	}
	return c, errors.Join(errs...)
}

// built is one program's image index, and where it was pushed.
type built struct {
	program string
	index   v1.ImageIndex
	digest  v1.Hash
	pushed  string // <registry>/<program>@<digest>, when pushed
}

func run(ctx context.Context, c config, stdout io.Writer) error {
	ca, err := os.ReadFile(c.caBundle)
	if err != nil {
		return fmt.Errorf("--ca-bundle: %w (install Debian's ca-certificates)", err)
	}
	tmp, err := os.MkdirTemp("", "driftless-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var all []built
	for _, prog := range programs {
		spec := imagebuild.Spec{Name: prog, CABundle: ca, Version: c.version, Revision: c.revision, Source: c.source, Created: c.created}
		for _, p := range c.platforms {
			out := filepath.Join(tmp, prog+"-"+strings.ReplaceAll(p.String(), "/", "-"))
			if err := imagebuild.GoBuild(ctx, filepath.Join(c.root, prog), "./cmd/"+prog, p, out,
				"-X driftless.dev/shared/version.Version="+c.version); err != nil {
				return err
			}
			spec.Binaries = append(spec.Binaries, imagebuild.Binary{Platform: p, Path: out})
		}
		idx, err := imagebuild.Index(spec)
		if err != nil {
			return err
		}
		d, err := idx.Digest()
		if err != nil {
			return fmt.Errorf("digest of %s: %w", prog, err)
		}
		all = append(all, built{program: prog, index: idx, digest: d})
	}

	if err := writeLayout(c.out, c.version, all); err != nil {
		return err
	}
	if c.registry != "" {
		for i := range all {
			if all[i].pushed, err = push(ctx, c, all[i]); err != nil {
				return err
			}
		}
	}
	for _, b := range all {
		sizes, err := layerSizes(b.index)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-13s %s  %s\n", b.program, b.digest, sizes)
		if b.pushed != "" {
			fmt.Fprintf(stdout, "%-13s pushed %s\n", "", b.pushed)
		}
	}
	fmt.Fprintf(stdout, "OCI layout: %s\n", c.out)
	if c.release != "" {
		return writeRelease(c, all, stdout)
	}
	return nil
}

func writeLayout(dir, version string, all []built) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("replace %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}
	for _, b := range all {
		if err := p.AppendIndex(b.index, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": b.program + ":" + version,
		})); err != nil {
			return fmt.Errorf("write %s to %s: %w", b.program, dir, err)
		}
	}
	return nil
}

func push(ctx context.Context, c config, b built) (string, error) {
	var nopts []name.Option
	if c.insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.NewTag(c.registry+"/"+b.program+":"+c.version, nopts...)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", b.program, err)
	}
	auth, err := authFor(ctx, ref.Context().Registry)
	if err != nil {
		return "", fmt.Errorf("push %s: credentials for %s: %w", b.program, ref.RegistryStr(), err)
	}
	if err := remote.WriteIndex(ref, b.index, remote.WithContext(ctx), remote.WithAuth(auth)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.Context().String() + "@" + b.digest.String(), nil
}

// authFor returns ECR tokens through the AWS SDK for an ECR host, and the
// Docker config's credentials for any other.
func authFor(ctx context.Context, reg name.Registry) (authn.Authenticator, error) {
	r, ok := ecr.ParseHost(reg.RegistryStr())
	if !ok {
		return authn.DefaultKeychain.Resolve(reg)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	// The registry is the installer's own choice (a flag, not Git), so its
	// account is the one allowed to receive the token.
	return ecr.NewTokens(awsCfg, "", ecr.WithAllowedAccounts(r.Account)).Authenticator(ctx, ecr.Request{Host: r.Host})
}

// layerSizes says how big each platform's image is, compressed.
func layerSizes(idx v1.ImageIndex) (string, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return "", err
	}
	var parts []string
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return "", err
		}
		m, err := img.Manifest()
		if err != nil {
			return "", err
		}
		var n int64
		for _, l := range m.Layers {
			n += l.Size
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MiB", d.Platform.Architecture, float64(n)/(1<<20)))
	}
	return strings.Join(parts, ", "), nil
}

// writeRelease writes one kustomization per overlay that pins the pushed
// images by digest; `make release` renders each to install.yaml.
func writeRelease(c config, all []built, stdout io.Writer) error {
	var names []string
	for _, o := range overlays {
		names = append(names, o.name)
		dir := filepath.Join(c.release, o.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		absDir, _ := filepath.Abs(dir)
		absOverlay, _ := filepath.Abs(filepath.Join(c.root, "manifests", o.path))
		rel, err := filepath.Rel(absDir, absOverlay)
		if err != nil {
			return fmt.Errorf("release %s: %w", o.name, err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# manifests/%s with the images of version %s pinned by digest (written by make release).\n", o.path, c.version)
		fmt.Fprintf(&b, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\nimages:\n", filepath.ToSlash(rel))
		for _, bi := range all {
			repo, _, _ := strings.Cut(bi.pushed, "@")
			fmt.Fprintf(&b, "  - name: %s\n    newName: %s\n    digest: %s\n", upstream(bi.program), repo, bi.digest)
		}
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("release %s: %w", o.name, err)
		}
	}
	fmt.Fprintf(stdout, "release kustomizations: %s/{%s}\n", c.release, strings.Join(names, ","))
	return nil
}
