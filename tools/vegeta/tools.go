//go:build tools

// Package tools pins the vegeta HTTP load generator (github.com/tsenart/vegeta/v12,
// whose root package is `main`) so `go mod tidy` records its full dependency
// graph in go.sum and scripts/tools.sh can build it from here. bench/bench.py
// uses it to send requests at a constant arrival rate (open loop). The `tools`
// build tag keeps this file out of every real build.
package tools

import _ "github.com/tsenart/vegeta/v12"
