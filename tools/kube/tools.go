//go:build tools

// Package tools pins the Kubernetes control-plane binaries the test
// environment runs. It is its own module, outside go.work, so the huge
// dependency graph of k8s.io/kubernetes never mixes with Driftless's own.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
