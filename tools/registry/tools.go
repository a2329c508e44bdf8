//go:build tools

// Package tools pins the reference OCI registry (CNCF distribution): tag-list
// pagination, htpasswd auth, TLS and push notifications, as real registries do.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
