package build

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The files a fuzzed kustomization can name: a Secret holding the canary,
// objects, a base and a component.
func fuzzTree(t *testing.T, file, body string) string {
	return tree(t, map[string]string{
		file:                      body,
		"k/s.yaml":                "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: " + canary + "}\ndata: {token: " + canary + "}\n",
		"k/cm.yaml":               cm,
		"k/deploy.yaml":           deploy,
		"k/patch.yaml":            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: " + canary + "-2}\n",
		"base/kustomization.yaml": "resources: [cm.yaml]\n",
		"base/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: base, annotations: {a: " + canary + "}}\n",
		"comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [cm.yaml]\n",
		"comp/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: comp}\n",
	})
}

// checkFuzzed holds for any input: no panic (a panic fails the fuzz run),
// an error is a render error, never quotes a value, never a machine path.
func checkFuzzed(t *testing.T, root string, objs int, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if !errors.Is(err, ErrBuild) {
		t.Fatalf("error is not a render error: %v", err)
	}
	if msg := err.Error(); strings.Contains(msg, "CANARY") || strings.Contains(msg, root) {
		t.Fatalf("error shows a value or a machine path:\n%s", msg)
	}
}

// FuzzKustomization builds a fuzzed kustomization.yaml: the fast path and
// krusty must agree (same objects, or both fail), and no error shows a
// value. Seeds: testdata/fuzz/FuzzKustomization.
func FuzzKustomization(f *testing.F) {
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Contains(body, "CANARY") || strings.ContainsRune(body, 0) {
			return // the canary must come from the Secret, not the input
		}
		root := fuzzTree(t, "k/kustomization.yaml", body)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		got, err := Build(ctx, root, "k", WithTimeout(20*time.Second))
		checkFuzzed(t, root, len(got), err)
		if !fastPathTaken(t, root, "k") {
			return // Build was krusty
		}
		// The fast path took it, so it names only local files: krusty
		// may run in this process.
		ref, refErr := krustyInProcess(t, root, "k", DeclarationOrder)
		if fmt.Sprint(err) != fmt.Sprint(refErr) || dump(t, got) != dump(t, ref) {
			t.Fatalf("fast path and krusty disagree:\nBuild:  %v\n%s\nkrusty: %v\n%s", err, dump(t, got), refErr, dump(t, ref))
		}
	})
}

// FuzzPlainFolder builds a plain folder holding a fuzzed YAML file next to
// a Secret: no panic, no value in an error, and what the fast path renders
// krusty renders too. Seeds: testdata/fuzz/FuzzPlainFolder.
func FuzzPlainFolder(f *testing.F) {
	f.Fuzz(func(t *testing.T, body string) {
		if strings.Contains(body, "CANARY") || strings.ContainsRune(body, 0) {
			return
		}
		root := fuzzTree(t, "k/x.yaml", body)
		got, err := Build(t.Context(), root, "k", WithTimeout(20*time.Second))
		checkFuzzed(t, root, len(got), err)
		if !fastPathTaken(t, root, "k") {
			return
		}
		ref, refErr := krustyInProcess(t, root, "k", DeclarationOrder)
		if fmt.Sprint(err) != fmt.Sprint(refErr) || dump(t, got) != dump(t, ref) {
			t.Fatalf("fast path: %v\n%s\n----\nkrusty: %v\n%s", err, dump(t, got), refErr, dump(t, ref))
		}
	})
}
