package main

import (
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"driftless.dev/automator/internal/ecr/ecrtest"
)

// TestECRCredentialsFromTheSDKChain: pushing to an ECR host takes a token
// through the AWS SDK's default chain (here: environment credentials, and
// the ECR endpoint pointed at the local stand-in for the ECR API, the only
// stand-in allowed); any other host never asks AWS.
func TestECRCredentialsFromTheSDKChain(t *testing.T) {
	standIn := &ecrtest.StandIn{Password: "ecr-t0ken", TTL: time.Hour, AccessKeyID: "AKIDIMAGES"}
	api := httptest.NewServer(standIn)
	defer api.Close()
	home := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDIMAGES", "AWS_SECRET_ACCESS_KEY": "not-a-secret", "AWS_ENDPOINT_URL_ECR": api.URL,
		"AWS_CONFIG_FILE": filepath.Join(home, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "DOCKER_CONFIG": home,
	} {
		t.Setenv(k, v)
	}
	reg, _ := name.NewRegistry("111122223333.dkr.ecr.eu-west-1.amazonaws.com")
	auth, err := authFor(t.Context(), reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := auth.Authorization()
	if err != nil || cfg.Username != "AWS" || cfg.Password != "ecr-t0ken" {
		t.Fatalf("ECR credentials: %+v (%v)", cfg, err)
	}
	if standIn.Calls() != 1 {
		t.Fatalf("stand-in: %d GetAuthorizationToken calls, want 1", standIn.Calls())
	}
	other, _ := name.NewRegistry("registry.example.com")
	auth, err = authFor(t.Context(), other)
	if err != nil || auth != authn.Anonymous || standIn.Calls() != 1 {
		t.Fatalf("another registry: %v (%v), %d ECR calls", auth, err, standIn.Calls())
	}
}

// TestFlagsNameWhatIsWrong: every bad flag is reported, by name, at once.
func TestFlagsNameWhatIsWrong(t *testing.T) {
	_, err := parse([]string{"--created", "yesterday", "--platforms", "linux", "--registry", "bad host/x"}, io.Discard)
	for _, want := range []string{`--created "yesterday"`, `--platforms: "linux" is not os/arch`, `--registry "bad host/x"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v should say %q", err, want)
		}
	}
	if _, err := parse([]string{"--created", "0", "--release", "out"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--release needs --registry") {
		t.Errorf("--release without --registry: %v", err)
	}
	c, err := parse([]string{"--created", "1795669693", "--platforms", "linux/amd64,linux/arm64"}, io.Discard)
	if err != nil || len(c.platforms) != 2 || c.created.Unix() != 1795669693 {
		t.Fatalf("good flags: %+v, %v", c, err)
	}
}

// TestReleasePinsDigests: each overlay's release kustomization points at
// the overlay and replaces both upstream image names with the pushed
// repositories, by digest.
func TestReleasePinsDigests(t *testing.T) {
	root := t.TempDir()
	for _, o := range overlays {
		os.MkdirAll(filepath.Join(root, "manifests", o.path), 0o755)
	}
	d1, _ := v1.NewHash("sha256:" + strings.Repeat("a", 64))
	d2, _ := v1.NewHash("sha256:" + strings.Repeat("b", 64))
	c := config{root: root, release: filepath.Join(root, "bin", "release"), version: "v1"}
	all := []built{
		{program: "automator", digest: d1, pushed: "reg.example/driftless/automator@" + d1.String()},
		{program: "synchronizer", digest: d2, pushed: "reg.example/driftless/synchronizer@" + d2.String()},
	}
	if err := writeRelease(c, all, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.release, "eks", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"resources: [../../../manifests/examples/eks]",
		"- name: ghcr.io/driftless-dev/automator\n    newName: reg.example/driftless/automator\n    digest: " + d1.String(),
		"- name: ghcr.io/driftless-dev/synchronizer\n    newName: reg.example/driftless/synchronizer\n    digest: " + d2.String(),
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("release kustomization lacks %q:\n%s", want, b)
		}
	}
}
