// Package e2e holds the end-to-end tests: they build the real automator and
// synchronizer binaries and run them against the real test environment
// (driftless.dev/shared/testenv).
package e2e
