#!/usr/bin/env bash
# The whole test suite on a fresh machine: tools, Python env, PostgreSQL binaries, lint,
# type checks, Rego tests, then pytest (unit, integration against real OPA, e2e against a
# real kube-apiserver + etcd). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools (pinned OPA, etcd, kube-apiserver, kube-controller-manager, helm)"
scripts/tools.sh

step "python environment"
scripts/bootstrap.sh

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  step "PostgreSQL server binaries (Debian package; tests start their own throwaway cluster)"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi

step "lint and types"
.venv/bin/ruff check webhook identity tests bench
.venv/bin/ruff format --check webhook identity tests bench
.venv/bin/mypy

step "policies (opa check --strict, opa test)"
.venv/bin/kube-intent policy test policies

step "pytest"
.venv/bin/pytest "$@"
