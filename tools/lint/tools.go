//go:build tools

// Package lint pins the linters `make lint` runs, outside the workspace so
// their dependencies never mix with the programs'.
package lint

import _ "honnef.co/go/tools/cmd/staticcheck"
