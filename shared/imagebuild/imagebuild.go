// Package imagebuild makes OCI images of static Go programs without Docker
// and without a base image, the way ko does: one layer holding the binary,
// a CA bundle and the passwd and group entries of user 65532, on an empty
// base. The same inputs always give the same digest: every timestamp is the
// one given (the commit's time), files are written in a fixed order with
// fixed owners and modes, and nothing of the build machine leaks in.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// User is the uid and gid every image runs as: distroless's "nonroot".
const User = 65532

// CAPath is where the CA bundle sits in an image: the first place Go's
// crypto/x509 looks on Linux.
const CAPath = "etc/ssl/certs/ca-certificates.crt"

// Platforms the release images are built for: EKS on x86 and on Graviton.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// OCI annotation and label keys the images carry.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
)

// Binary is a program compiled for one platform.
type Binary struct {
	Platform v1.Platform
	// Path is the static executable (CGO_ENABLED=0).
	Path string
}

// Spec describes one program's image.
type Spec struct {
	// Name is the program: the executable is /<Name> and the entrypoint.
	Name string
	// Binaries, one per platform, in the order the index lists them.
	Binaries []Binary
	// CABundle is PEM: the certificates the program trusts for TLS.
	CABundle []byte
	// Version, Revision and Source become OCI labels and annotations.
	Version, Revision, Source string
	// Created is the time written into the config and on every file: the
	// commit's time, so a rebuild of the same commit is the same image.
	Created time.Time
}

// Validate says what is missing from s.
func (s Spec) Validate() error {
	var errs []error
	if s.Name == "" || strings.ContainsAny(s.Name, "/ ") {
		errs = append(errs, fmt.Errorf("image spec: name %q: want a plain program name", s.Name))
	}
	if len(s.Binaries) == 0 {
		errs = append(errs, fmt.Errorf("image spec %s: no binaries", s.Name))
	}
	if n, err := countCerts(s.CABundle); err != nil || n == 0 {
		errs = append(errs, fmt.Errorf("image spec %s: CA bundle: want PEM certificates (%d found): %v", s.Name, n, err))
	}
	if s.Created.IsZero() {
		errs = append(errs, fmt.Errorf("image spec %s: created time not set (use the commit's time)", s.Name))
	}
	return errors.Join(errs...)
}

// Index builds the image of every binary in s and returns them as one
// multi-platform OCI image index.
func Index(s Spec) (v1.ImageIndex, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var adds []mutate.IndexAddendum
	for _, b := range s.Binaries {
		img, err := Image(s, b)
		if err != nil {
			return nil, err
		}
		p := b.Platform
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, s.labels()).(v1.ImageIndex), nil
}

// Image builds the image of one binary of s.
func Image(s Spec, b Binary) (v1.Image, error) {
	bin, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: read binary: %w", s.Name, b.Platform, err)
	}
	layerTar, err := s.layer(bin)
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: %w", s.Name, b.Platform, err)
	}
	// Compressed once here, with no name or time in the gzip header, so the
	// layer's digest depends on its content alone.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layerTar); err != nil {
		return nil, fmt.Errorf("image %s for %s: compress: %w", s.Name, b.Platform, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("image %s for %s: compress: %w", s.Name, b.Platform, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: layer: %w", s.Name, b.Platform, err)
	}
	created := v1.Time{Time: s.Created.UTC()}
	cfg := &v1.ConfigFile{
		Architecture: b.Platform.Architecture,
		OS:           b.Platform.OS,
		Variant:      b.Platform.Variant,
		Created:      created,
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", User, User),
			Entrypoint: []string{"/" + s.Name},
			WorkingDir: "/",
			Env:        []string{"PATH=/", "SSL_CERT_FILE=/" + CAPath},
			Labels:     s.labels(),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), cfg)
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: config: %w", s.Name, b.Platform, err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "driftless imagebuild: /" + s.Name + ", CA bundle, passwd", Comment: s.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: append layer: %w", s.Name, b.Platform, err)
	}
	return mutate.Annotations(img, s.labels()).(v1.Image), nil
}

func (s Spec) labels() map[string]string {
	l := map[string]string{
		LabelTitle:   s.Name,
		LabelCreated: s.Created.UTC().Format(time.RFC3339),
	}
	for k, v := range map[string]string{LabelVersion: s.Version, LabelRevision: s.Revision, LabelSource: s.Source} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

// layer returns the uncompressed tar of the image's only layer: the
// folders, passwd and group (so the user has a name), the CA bundle and
// the program. No shell, no package manager, nothing else.
func (s Spec) layer(bin []byte) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", User, User)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", User)
	entries := []struct {
		name string
		mode int64
		uid  int
		body []byte
		dir  bool
	}{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: CAPath, mode: 0o644, body: s.CABundle},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: User, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: s.Name, mode: 0o755, body: bin},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: s.Created.UTC(),
			Typeflag: tar.TypeReg, Size: int64(len(e.body)), Format: tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("tar %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}

func countCerts(pemData []byte) (int, error) {
	n := 0
	for rest := pemData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return n, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return n, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
}

// GoBuild compiles the main package pkg of the module in dir for p into
// out: static (CGO off), stripped, without the build machine's paths or VCS
// state, with ldflags added (version stamps). Go's builds are reproducible,
// so the same source gives the same bytes.
func GoBuild(ctx context.Context, dir, pkg string, p v1.Platform, out, ldflags string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", strings.TrimSpace("-s -w -buildid= " + ldflags), "-o", out, pkg}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	env := []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Architecture, "GOWORK=off", "GOFLAGS=-mod=readonly"}
	if p.Architecture == "arm" && p.Variant != "" {
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", path.Join(dir, pkg), p, err, b)
	}
	return nil
}
