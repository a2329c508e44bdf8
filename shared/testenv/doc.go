// Package testenv starts the real components Driftless is tested against:
// a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, and kwok for simulated nodes), the CNCF distribution OCI
// registry, and a Git server over smart HTTP (`git http-backend`).
//
// The binaries come from `make tools` (see tools/ at the repository root).
// Every component listens on free loopback ports and keeps its log in its
// own folder, so two environments can run side by side. Start* functions
// return the running component or an error that names the component, shows
// the tail of its log and says what to try; New* helpers do the same for
// one test and clean up after it.
package testenv
