//go:build tools

// Package tools pins promtool (github.com/prometheus/prometheus/cmd/promtool) so
// `go mod tidy` records its full dependency graph in go.sum and scripts/tools.sh can
// build it from here. tests/charts/test_chart_monitoring.py runs `promtool check rules`
// on the chart's PrometheusRule and on the dashboard's queries. The `tools` build tag
// keeps this file out of every real build.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
