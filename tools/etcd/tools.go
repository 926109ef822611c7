//go:build tools

// Package tools pins the etcd server binary (go.etcd.io/etcd/server/v3, whose
// root package is `main` calling etcdmain.Main(os.Args)) so `go mod tidy`
// records its full dependency graph in go.sum and scripts/tools.sh can build
// it from here. The `tools` build tag keeps this file out of every real build.
package tools

import _ "go.etcd.io/etcd/server/v3"
