package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"driftless.dev/shared/testenv"
)

func noEnv(string) (string, bool) { return "", false }

func TestVersionAndHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "automator dev\n" {
		t.Fatalf("--version printed %q", got)
	}
	out.Reset()
	if err := run(t.Context(), []string{"--help"}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Usage:", "run", "plan", "validate"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("--help lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(t.Context(), []string{"--no-such-flag"}, noEnv, &out, &out); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("unknown flag: got %v, want an error naming it", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"plan", "--git-ssh-key", "k"}, noEnv, &out, &out)
	for _, want := range []string{"--git-url (DRIFTLESS_GIT_URL) is required", "--git-ssh-key needs --git-known-hosts"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	env := func(k string) (string, bool) {
		if k == "DRIFTLESS_LOG_LEVEL" {
			return "loud", true
		}
		if k == "DRIFTLESS_GIT_URL" {
			return "http://127.0.0.1:1/x.git", true
		}
		return "", false
	}
	if err := run(t.Context(), []string{"plan"}, env, &out, &out); err == nil || !strings.Contains(err.Error(), `--log-level: "loud"`) {
		t.Fatalf("environment fallback: got %v, want the bad level from DRIFTLESS_LOG_LEVEL named", err)
	}
}

func TestValidateListsEveryFinding(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755)
		os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644)
	}
	write("policies/good.yaml", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: web, namespace: apps}\nspec:\n  image: ghcr.io/org/web\n  policy: {semver: {range: '^1'}}\n")
	write("policies/bad.yaml", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: api}\nspec:\n  image: ghcr.io/org/api\n  policy: {semver: {range: 'one'}}\n")
	write("apps/web.yaml", "image: ghcr.io/org/web:1.0.0 # {\"$imagepolicy\": \"apps:web\"}\n")
	write("apps/api.yaml", "a: 1\nimage: ghcr.io/org/api:1.0.0 # {\"$imagepolicy\": \"api\"}\nb: x # {\"$imagepolicy\": \"a:b:c:d\"}\nc: x:1 # {\"$imagepolicy\": \"nowhere\"}\n")
	var out bytes.Buffer
	err := run(t.Context(), []string{"validate", "--dir", dir}, noEnv, &out, &out)
	if err == nil || exitCode(err) != 2 {
		t.Fatalf("got %v, want exit code 2", err)
	}
	for _, want := range []string{
		"policies/bad.yaml:6: spec.policy.semver.range",
		`apps/api.yaml:4: marker refers to policy "nowhere", which no ImagePolicy defines`,
		"apps/api.yaml:3: marker",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// One finding per problem: the marker naming the bad policy is not
	// reported again.
	if strings.Contains(out.String(), "apps/web.yaml") || strings.Contains(out.String(), `policy "api"`) {
		t.Errorf("a valid marker, or the bad policy a second time, was reported:\n%s", out.String())
	}
	// Fixed, it passes.
	write("policies/bad.yaml", "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: api}\nspec:\n  image: ghcr.io/org/api\n  policy: {semver: {range: '^1'}}\n")
	write("apps/api.yaml", "a: 1\nimage: ghcr.io/org/api:1.0.0 # {\"$imagepolicy\": \"api\"}\n")
	out.Reset()
	if err := run(t.Context(), []string{"validate", "--dir", dir}, noEnv, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

func TestPlanShowsChoiceAndExactDiffAndPushesNothing(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.RegistryOptions{})
	git := testenv.NewGitServer(t, testenv.GitServerOptions{Auth: &testenv.BasicAuth{Username: "bot", Password: "s3cret-token"}})
	if _, err := reg.PushImages(t.Context(), "team/web", "1.0.0", "1.4.0", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "apps"), 0o755)
	os.WriteFile(filepath.Join(src, "policy.yaml"), fmt.Appendf(nil, "apiVersion: driftless.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {name: web}\nspec:\n  image: %s/team/web\n  policy: {semver: {range: '^1'}}\n", reg.Host), 0o644)
	os.WriteFile(filepath.Join(src, "apps/web.yaml"), fmt.Appendf(nil, "image: %s/team/web:1.0.0 # {\"$imagepolicy\": \"web\"}\n", reg.Host), 0o644)
	head, err := git.Seed(t.Context(), "fleet", "main", src, "seed")
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"DRIFTLESS_GIT_PASSWORD": "s3cret-token", "DRIFTLESS_GIT_USERNAME": "bot"}[k]
		return v, ok
	}
	var out bytes.Buffer
	err = run(t.Context(), []string{"plan", "--git-url", git.RepoURL("fleet"), "--workdir", filepath.Join(t.TempDir(), "w"), "--insecure-registries", reg.Host}, env, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		"policy web (" + reg.Host + "/team/web)",
		"chosen: 1.4.0",
		`passed over 2.0.0: outside range "^1"`,
		"-image: " + reg.Host + "/team/web:1.0.0 #",
		"+image: " + reg.Host + "/team/web:1.4.0 #",
		"Update " + reg.Host + "/team/web to 1.4.0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "s3cret-token") {
		t.Fatal("plan output shows the Git token")
	}
	if now, _ := git.Head(t.Context(), "fleet", "main"); now != head {
		t.Fatal("plan pushed a commit")
	}
}

// TestPlanSaysTheHeadIsUntrusted: with --verify-keyring, plan on an
// unsigned head says it refuses it, and why, and fails.
func TestPlanSaysTheHeadIsUntrusted(t *testing.T) {
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "app.yaml"), []byte("image: ghcr.io/org/web:1.0.0 # {\"$imagepolicy\": \"web\"}\n"), 0o644)
	head, err := git.Seed(t.Context(), "fleet", "main", src, "seed")
	if err != nil {
		t.Fatal(err)
	}
	key, err := openpgp.NewEntity("Automator", "", "a@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	key.Serialize(w)
	w.Close()
	keyring := filepath.Join(t.TempDir(), "keyring.asc")
	os.WriteFile(keyring, pub.Bytes(), 0o644)
	var out bytes.Buffer
	err = run(t.Context(), []string{"plan", "--git-url", git.RepoURL("fleet"), "--workdir", filepath.Join(t.TempDir(), "w"), "--verify-keyring", keyring}, noEnv, &out, &out)
	want := "refused: commit " + head + " is not signed"
	if err == nil || !strings.Contains(out.String(), want) || !strings.Contains(err.Error(), head+" is not signed") {
		t.Fatalf("err %v, output:\n%s\nwant %q", err, out.String(), want)
	}
	err = run(t.Context(), []string{"plan", "--git-url", git.RepoURL("fleet"), "--verify-anchor", "abc"}, noEnv, &out, &out)
	for _, want := range []string{`--verify-anchor "abc": want a full 40-character commit hash`, "--verify-anchor needs --verify-keyring"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

// TestEmptyWebhookSecretRefusesToStart: an empty or blank secret file
// would silently turn the webhook's authentication off.
func TestEmptyWebhookSecretRefusesToStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	for _, content := range []string{"", " \n\t\n"} {
		os.WriteFile(file, []byte(content), 0o600)
		var out bytes.Buffer
		err := run(t.Context(), []string{"run", "--git-url", "http://127.0.0.1:1/x.git", "--listen", "127.0.0.1:0", "--webhook-secret-file", file}, noEnv, &out, &out)
		if err == nil || !strings.Contains(err.Error(), "--webhook-secret-file "+file+" is empty") {
			t.Fatalf("secret file %q: got %v, want a refusal naming the flag", content, err)
		}
	}
	var out bytes.Buffer
	env := func(k string) (string, bool) {
		if k == "DRIFTLESS_WEBHOOK_SECRET" {
			return "  ", true
		}
		return "", false
	}
	if err := run(t.Context(), []string{"run", "--git-url", "http://127.0.0.1:1/x.git", "--listen", "127.0.0.1:0"}, env, &out, &out); err == nil || !strings.Contains(err.Error(), "--webhook-secret is empty") {
		t.Fatalf("blank DRIFTLESS_WEBHOOK_SECRET: got %v", err)
	}
}

// TestValidateFluxRepository: a Flux repository is valid as it is; a
// misspelt Flux field is one finding in words, not a decoder's error
// followed by every marker again; Flux fields without effect are warnings.
func TestValidateFluxRepository(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755)
		os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644)
	}
	write("clusters/dev/repo.yaml", "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata: {name: web, namespace: flux-system}\nspec:\n  image: ghcr.io/org/web\n  interval: 5m\n  insecure: true\n")
	write("clusters/dev/policy.yaml", "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata: {name: web, namespace: flux-system}\nspec:\n  imageRepositoryRef: {name: web}\n  policy: {semver: {range: 1.x}}\n")
	write("apps/web.yaml", "a: ghcr.io/org/web:1.0.0 # {\"$imagepolicy\": \"flux-system:web\"}\nb: \"1.0.0\" # {\"$imagepolicy\": \"flux-system:web:tag\"}\n")
	write("apps/Kustomization", "images:\n- name: web\n  newTag: 1.0.0 # {\"$imagepolicy\": \"flux-system:web:tag\"}\n")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"validate", "--dir", dir}, noEnv, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "warning: clusters/dev/repo.yaml:7: spec.insecure of ImageRepository flux-system/web: no equivalent") {
		t.Fatalf("output lacks the warning:\n%s", out.String())
	}
	write("clusters/dev/policy.yaml", "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata: {name: web, namespace: flux-system}\nspec:\n  imageRepositoryRefs: {name: web}\n  policy: {semver: {range: 1.x}}\n")
	out.Reset()
	err := run(t.Context(), []string{"validate", "--dir", dir}, noEnv, &out, &out)
	if err == nil || err.Error() != "1 finding(s)" || !strings.Contains(out.String(), `clusters/dev/policy.yaml:1: ImagePolicy: unknown field "imageRepositoryRefs"`) {
		t.Fatalf("%v\n%s", err, out.String())
	}
}
