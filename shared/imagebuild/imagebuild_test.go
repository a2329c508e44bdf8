package imagebuild_test

import (
	"archive/tar"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"driftless.dev/shared/imagebuild"
)

// caBundle is the build machine's Debian CA bundle, what `make images`
// puts in the images.
func caBundle(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatalf("read the CA bundle (Debian's ca-certificates package; `make tools` installs it): %v", err)
	}
	return b
}

// buildPause compiles a real program of this module for every release
// platform into dir, as `make images` compiles the two programs.
func buildPause(t testing.TB, dir string) []imagebuild.Binary {
	t.Helper()
	var bins []imagebuild.Binary
	for _, p := range imagebuild.Platforms {
		out := filepath.Join(dir, "pause-"+p.Architecture)
		if err := imagebuild.GoBuild(t.Context(), "..", "./cmd/pause", p, out, "-X main.unused=x"); err != nil {
			t.Fatal(err)
		}
		bins = append(bins, imagebuild.Binary{Platform: p, Path: out})
	}
	return bins
}

func spec(t testing.TB, bins []imagebuild.Binary) imagebuild.Spec {
	return imagebuild.Spec{
		Name: "pause", Binaries: bins, CABundle: caBundle(t),
		Version: "v0.1.0", Revision: "0123456789abcdef0123456789abcdef01234567", Source: "https://github.com/driftless-dev/driftless",
		Created: time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC),
	}
}

// TestSameSourceSameDigest: two builds of the same source, compiled into
// different folders at different times, give the same index digest; a
// different revision gives a different one.
func TestSameSourceSameDigest(t *testing.T) {
	one, err := imagebuild.Index(spec(t, buildPause(t, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	two, err := imagebuild.Index(spec(t, buildPause(t, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := one.Digest()
	d2, _ := two.Digest()
	if d1 != d2 {
		t.Fatalf("same source built twice: %s and %s", d1, d2)
	}
	s := spec(t, buildPause(t, t.TempDir()))
	s.Revision = strings.Repeat("f", 40)
	three, err := imagebuild.Index(s)
	if err != nil {
		t.Fatal(err)
	}
	if d3, _ := three.Digest(); d3 == d1 {
		t.Fatalf("another revision has the same digest %s", d3)
	}
}

// TestImageShape: a multi-platform OCI index; each image one layer that
// holds the program, the CA bundle and passwd/group and nothing else (no
// shell), runs as 65532 and carries the OCI labels.
func TestImageShape(t *testing.T) {
	s := spec(t, buildPause(t, t.TempDir()))
	idx, err := imagebuild.Index(s)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index: media type %s with %d manifests, want an OCI index of 2", im.MediaType, len(im.Manifests))
	}
	if im.Annotations[imagebuild.LabelRevision] != s.Revision || im.Annotations[imagebuild.LabelVersion] != "v0.1.0" {
		t.Fatalf("index annotations %v", im.Annotations)
	}
	for i, desc := range im.Manifests {
		want := imagebuild.Platforms[i]
		if desc.Platform == nil || desc.Platform.Architecture != want.Architecture || desc.Platform.OS != "linux" {
			t.Fatalf("manifest %d: platform %v, want %v", i, desc.Platform, want)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != want.Architecture || cfg.Config.User != "65532:65532" ||
			!slices.Equal(cfg.Config.Entrypoint, []string{"/pause"}) ||
			cfg.Config.Labels[imagebuild.LabelRevision] != s.Revision || cfg.Config.Labels[imagebuild.LabelSource] != s.Source ||
			!cfg.Created.Equal(s.Created) {
			t.Fatalf("%s config: %+v", want.Architecture, cfg)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers (%v), want 1", want.Architecture, len(layers), err)
		}
		files := map[string]*tar.Header{}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var bin []byte
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = h
			if h.Name == "pause" {
				bin, _ = io.ReadAll(tr)
			}
		}
		rc.Close()
		var names []string
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		wantNames := []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", imagebuild.CAPath, "home/", "home/nonroot/", "pause", "tmp/"}
		if !slices.Equal(names, wantNames) {
			t.Fatalf("%s layer holds %v, want exactly %v", want.Architecture, names, wantNames)
		}
		if h := files["pause"]; h.Mode != 0o755 || h.Uid != 0 || !h.ModTime.Equal(s.Created) {
			t.Fatalf("/pause: mode %o uid %d time %s", h.Mode, h.Uid, h.ModTime)
		}
		// The right architecture's ELF: e_machine 0x3e is x86-64, 0xb7 AArch64.
		machine := map[string]byte{"amd64": 0x3e, "arm64": 0xb7}[want.Architecture]
		if len(bin) < 20 || string(bin[1:4]) != "ELF" || bin[18] != machine {
			t.Fatalf("/pause for %s is not an ELF for that machine", want.Architecture)
		}
	}
}

// TestCABundleReachesAWSAndGitHub: the bundle an image carries holds the
// roots that ECR, STS and GitHub chain to, so the programs verify TLS to
// them (the image has no other trust store).
func TestCABundleReachesAWSAndGitHub(t *testing.T) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle(t)) {
		t.Fatal("no certificate in the bundle")
	}
	var subjects []string
	rest := caBundle(t)
	for len(rest) > 0 {
		var c *x509.Certificate
		c, rest = nextCert(rest)
		if c == nil {
			break
		}
		subjects = append(subjects, c.Subject.CommonName)
	}
	for _, root := range []string{
		"Amazon Root CA 1", "Starfield Services Root Certificate Authority - G2", // ECR and STS
		"USERTrust ECC Certification Authority", "DigiCert Global Root G2", // GitHub
	} {
		if !slices.Contains(subjects, root) {
			t.Errorf("the CA bundle lacks %q", root)
		}
	}
}

func TestSpecErrorsNameWhatIsMissing(t *testing.T) {
	_, err := imagebuild.Index(imagebuild.Spec{Name: "a/b"})
	for _, want := range []string{`name "a/b"`, "no binaries", "CA bundle", "created time"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v should say %q", err, want)
		}
	}
}

func nextCert(b []byte) (*x509.Certificate, []byte) {
	for {
		blk, rest := pem.Decode(b)
		if blk == nil {
			return nil, nil
		}
		b = rest
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			return c, b
		}
	}
}
