#!/usr/bin/env bash
# scripts/sync-chart-policies.sh — copy the Rego bundle into the Helm chart.
#
# The chart's policies ConfigMap is built with .Files.Glob from charts/kube-intent/policies/
# (Helm can only read files inside the chart). This copies policies/**/*.rego (without the
# *_test.rego unit tests) and data.json there, keeping the directory layout, and deletes files
# that no longer exist upstream. Run it after changing policies/; tests/charts checks that the
# two stay in sync.
#
# Usage: scripts/sync-chart-policies.sh [--check]   (--check: exit 1 if out of sync, change nothing)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${REPO_ROOT}/policies"
DST="${REPO_ROOT}/charts/kube-intent/policies"

stage="$(mktemp -d)"
trap 'rm -rf "${stage}"' EXIT

(cd "${SRC}" && find . -type f \( -name '*.rego' -o -name 'data.json' \) ! -name '*_test.rego' -print0) |
  while IFS= read -r -d '' file; do
    mkdir -p "${stage}/$(dirname "${file}")"
    cp "${SRC}/${file}" "${stage}/${file}"
  done

if [[ "${1:-}" == "--check" ]]; then
  if diff -r "${stage}" "${DST}" >/dev/null 2>&1; then
    echo "chart policies are in sync"
    exit 0
  fi
  echo "charts/kube-intent/policies is out of sync with policies/: run scripts/sync-chart-policies.sh" >&2
  diff -r "${stage}" "${DST}" >&2 || true
  exit 1
fi

rm -rf "${DST}"
mkdir -p "${DST}"
cp -R "${stage}/." "${DST}/"
echo "synced $(find "${DST}" -type f | wc -l) files into ${DST#"${REPO_ROOT}"/}"
