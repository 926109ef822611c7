#!/usr/bin/env bash
# Run the webhook on its embedded defaults: a supervised local OPA loading policies/,
# the example agents, SQLite in .kube-intent/, and a self-signed CA (its path is printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/tools.sh opa
scripts/bootstrap.sh
exec .venv/bin/kube-intent serve --dev --agents examples/agents.yaml "$@"
