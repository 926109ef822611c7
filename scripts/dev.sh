#!/usr/bin/env bash
# Run the webhook on its embedded defaults: a supervised local OPA into which it pushes the
# bundled policies (webhook/policies, reloaded when you edit them), the example agents, SQLite in
# .kube-intent/, and a self-signed CA (its path is printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/tools.sh opa
scripts/bootstrap.sh
# kube-intent finds OPA on PATH (or --opa-bin / KUBE_INTENT_OPA_BIN), never in .tools/bin itself.
export PATH="${PWD}/.tools/bin:${PATH}"
exec .venv/bin/kube-intent serve --dev --agents examples/agents.yaml "$@"
