#!/usr/bin/env bash
# Run the webhook on its embedded defaults: a supervised local OPA into which it pushes the
# bundled policies (webhook/policies, reloaded when you edit them), the example agents, and in
# .kube-intent/ (kept across restarts, for this machine only): SQLite, a self-signed CA and the
# signing keys of grants and tokens (their paths are printed). The README's quick start uses it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/tools.sh opa
scripts/bootstrap.sh
# kube-intent finds OPA on PATH (or --opa-bin / KUBE_INTENT_OPA_BIN), never in .tools/bin itself.
export PATH="${PWD}/.tools/bin:${PATH}"
exec .venv/bin/kube-intent serve --dev --agents examples/agents.yaml "$@"
