//go:build tools

// Package kustomize pins the kustomize CLI for make bench.
package kustomize

import _ "sigs.k8s.io/kustomize/kustomize/v5"
