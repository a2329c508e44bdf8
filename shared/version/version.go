// Package version holds the release version, set at link time by the
// Makefile (-X driftless.dev/shared/version.Version=...).
package version

// Version is the version of the running program; "dev" for a plain go build.
var Version = "dev"
