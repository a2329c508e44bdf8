package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersionAndHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "synchronizer dev\n" {
		t.Fatalf("--version printed %q", got)
	}
	out.Reset()
	if err := run(t.Context(), []string{"--help"}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "build") {
		t.Fatalf("--help printed %q", out.String())
	}
	if err := run(t.Context(), []string{"--no-such-flag"}, noEnv, &out, &out); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("unknown flag: got %v, want an error naming it", err)
	}
}

func TestBuildPrintsTheRenderedObjects(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "dev"), 0o755)
	os.WriteFile(filepath.Join(dir, "dev", "kustomization.yaml"), []byte("namespace: dev\nresources: [cm.yaml]\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "dev", "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"), 0o644)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"build", "--dir", dir, "--path", "dev"}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Count(got, "namespace: dev") != 2 || strings.Count(got, "\n---\n") != 1 || !strings.Contains(got, "name: b") {
		t.Fatalf("build printed:\n%s", got)
	}
	out.Reset()
	err := run(t.Context(), []string{"build", "--dir", dir, "--path", "../.."}, noEnv, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "escapes the checkout") {
		t.Fatalf("escaping path: got %v", err)
	}
}

func noEnv(string) (string, bool) { return "", false }

// `synchronizer build` prints kustomize build's order by default (so the
// two can be diffed), declaration order on request, and refuses a path
// that renders nothing unless told that is intended.
func TestBuildOrderAndEmptyRender(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "app"), 0o755)
	os.WriteFile(filepath.Join(dir, "app", "all.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "jsonnet"), 0o755)
	os.WriteFile(filepath.Join(dir, "jsonnet", "main.jsonnet"), []byte("{}\n"), 0o644)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"build", "--dir", dir, "--path", "app"}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Index(got, "kind: Namespace") > strings.Index(got, "kind: ConfigMap") {
		t.Fatalf("default order is not kustomize's:\n%s", got)
	}
	out.Reset()
	if err := run(t.Context(), []string{"build", "--dir", dir, "--path", "app", "--order", "declaration"}, noEnv, &out, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Index(got, "kind: Namespace") < strings.Index(got, "kind: ConfigMap") {
		t.Fatalf("declaration order:\n%s", got)
	}
	out.Reset()
	err := run(t.Context(), []string{"build", "--dir", dir, "--path", "jsonnet"}, noEnv, &out, &out)
	if err == nil || !strings.Contains(err.Error(), `path "jsonnet" renders no objects`) || exitCode(err) == 0 {
		t.Fatalf("empty render: got %v", err)
	}
	out.Reset()
	if err := run(t.Context(), []string{"build", "--dir", dir, "--path", "jsonnet", "--allow-empty"}, noEnv, &out, &out); err != nil || !strings.Contains(out.String(), "renders no objects") {
		t.Fatalf("--allow-empty: %v %q", err, out.String())
	}
}

// Record flags that cannot work are start-up errors naming the flag,
// before anything is fetched or applied.
func TestRecordFlagsAreChecked(t *testing.T) {
	notAKey := filepath.Join(t.TempDir(), "key.asc")
	os.WriteFile(notAKey, []byte("not a key"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--record"}, "--record needs --cluster-name"},
		{[]string{"--record", "--cluster-name", "Prod EU"}, `--cluster-name "Prod EU": want lower-case letters`},
		{[]string{"--revert-on-failure", "--cluster-name", "dev"}, "--revert-on-failure needs --record"},
		{[]string{"--record", "--cluster-name", "dev", "--record-notes", "a/b"}, `--record-notes "a/b"`},
		{[]string{"--record-signing-key", "key.asc"}, "--record-signing-key needs --record"},
		{[]string{"--record", "--cluster-name", "dev", "--record-signing-key", notAKey}, "--record-signing-key " + notAKey + ": not an armored OpenPGP key"},
	} {
		var out bytes.Buffer
		args := append([]string{"run", "--repo-url", "http://127.0.0.1:1/x.git", "--once"}, c.args...)
		if err := run(t.Context(), args, noEnv, &out, &out); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
}

// An empty or blank webhook secret file would turn authentication off
// without a word: the synchronizer refuses to start, naming the flag.
func TestEmptyWebhookSecretRefusesToStart(t *testing.T) {
	for _, content := range []string{"", "  \n\t\n"} {
		f := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(f, []byte(content), 0o600)
		var out bytes.Buffer
		err := run(t.Context(), []string{"run", "--repo-url", "http://127.0.0.1:1/x.git", "--webhook-secret-file", f, "--listen", "127.0.0.1:0"}, noEnv, &out, &out)
		if err == nil || !strings.Contains(err.Error(), "--webhook-secret-file") || !strings.Contains(err.Error(), "is empty") {
			t.Fatalf("secret %q: got %v", content, err)
		}
	}
}
