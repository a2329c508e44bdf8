//go:build tools

// Package tools pins the Kubernetes binaries the test environment runs:
// the control plane, and the kubelet and kube-proxy of its real node. It is its own module, outside go.work, so the huge
// dependency graph of k8s.io/kubernetes never mixes with Driftless's own.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
