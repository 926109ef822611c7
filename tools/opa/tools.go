//go:build tools

// Package tools pins the OPA CLI as a dependency of this wrapper module so
// that `go mod tidy` records the full dependency graph in go.sum and
// scripts/tools.sh can `go build github.com/open-policy-agent/opa` from here.
// The `tools` build tag keeps this file out of every real build.
package tools

import _ "github.com/open-policy-agent/opa"
