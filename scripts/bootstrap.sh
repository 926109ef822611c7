#!/usr/bin/env bash
# Create .venv and install kube-intent with its dev dependencies (idempotent).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the declared dependencies changed: a warm run takes a second.
stamp=".venv/.kube-intent-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  rm -f .venv/.kube-intent-* && touch "$stamp"
fi
