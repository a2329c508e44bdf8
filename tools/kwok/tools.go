//go:build tools

// Package tools pins kwok, which simulates nodes and kubelets so that
// Deployments roll out and Pods go Running without a container runtime.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
