#!/usr/bin/env bash
# The whole test suite on a fresh machine: tools, Python env, PostgreSQL binaries, lint,
# type checks, Rego tests, then pytest (unit, integration against real OPA, e2e against a
# real kube-apiserver + etcd). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The pinned tools (OPA, helm, kube-apiserver, ...) built by scripts/tools.sh.
export PATH="${PWD}/.tools/bin:${PATH}"

step() { printf '\n==> %s\n' "$*"; }

step "tools (pinned OPA, etcd, kube-apiserver, kube-controller-manager, helm)"
scripts/tools.sh

step "python environment"
scripts/bootstrap.sh

debian_install() {
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  step "PostgreSQL server binaries (Debian package; tests start their own throwaway cluster)"
  debian_install postgresql
fi

if ! command -v podman >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1; then
  step "podman, runc, mmdebstrap, skopeo (Debian packages; tests/image builds and runs the images)"
  debian_install podman runc mmdebstrap skopeo
fi

step "lint and types"
.venv/bin/ruff check webhook identity tests bench
.venv/bin/ruff format --check webhook identity tests bench
.venv/bin/mypy
# Dependencies point one way (contracts in pyproject.toml [tool.importlinter]).
.venv/bin/lint-imports

step "policies (opa check --strict, opa test)"
.venv/bin/kube-intent policy test webhook/policies

step "pytest"
.venv/bin/pytest "$@"
