"""YAML manifests: the examples' documents, fresh copies of their pods."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import EXAMPLES


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def example_pod(name: str) -> dict[str, Any]:
    """The Pod document of examples/pods/<name>.yaml (a fresh copy each call)."""
    pods = [d for d in load_yaml(EXAMPLES / "pods" / f"{name}.yaml") if d["kind"] == "Pod"]
    return copy.deepcopy(pods[0])


# The namespaces and ServiceAccounts that examples/agents.yaml and examples/pods use.
SERVICE_ACCOUNTS = {
    "ml-serving": ["support-bot", "batch-eval"],
    "ml-research": ["research-agent"],
}
