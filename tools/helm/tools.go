//go:build tools

// Package tools pins the helm CLI (helm.sh/helm/v3/cmd/helm) so `go mod tidy`
// records its full dependency graph in go.sum and scripts/tools.sh can build
// it from here. The `tools` build tag keeps this file out of every real build.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
