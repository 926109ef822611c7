//go:build tools

// Package tools pins the kube-apiserver and kube-controller-manager main
// packages so `go mod tidy` records their full dependency graph in go.sum.
// The `tools` build tag keeps this file out of every real build.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
