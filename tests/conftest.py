"""Shared fixtures: a real OPA loading the bundled policies, the example agents, an app client."""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from identity.keys import KeySet
from identity.registry import AgentRegistry, load_registry_file
from webhook.app import create_app
from webhook.deps import DecisionRecorder, GrantMinter
from webhook.metrics import Metrics
from webhook.opa_process import find_opa, policy_engine
from webhook.policy import OpaPolicyEngine, PolicyEngine
from webhook.settings import BUNDLED_POLICIES, Settings

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
EXAMPLES = REPO / "examples"

# The webhook finds OPA only through --opa-bin, KUBE_INTENT_OPA_BIN or PATH; in a checkout the
# pinned tools are in .tools/bin (scripts/tools.sh), which the tests (and their subprocesses)
# therefore get on PATH, as scripts/test.sh and scripts/dev.sh do.
if (REPO / ".tools" / "bin").is_dir():
    os.environ["PATH"] = f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def example_pod(name: str) -> dict[str, Any]:
    """The Pod document of examples/pods/<name>.yaml (a fresh copy each call)."""
    pods = [d for d in load_yaml(EXAMPLES / "pods" / f"{name}.yaml") if d["kind"] == "Pod"]
    return copy.deepcopy(pods[0])


def review(
    pod: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    dry_run: bool = False,
    kind: dict[str, str] | None = None,
    sub_resource: str = "",
) -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for a pod."""
    metadata = (pod or old or {}).get("metadata", {})
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind or {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": sub_resource,
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "name": metadata.get("name", ""),
            "namespace": metadata.get("namespace", "default"),
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:agents:orchestrator",
                "groups": ["system:serviceaccounts"],
            },
            "object": pod,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


@pytest.fixture(scope="session")
def opa_bin() -> str:
    try:
        return find_opa(os.environ.get("KUBE_INTENT_OPA_BIN"))
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def agents() -> AgentRegistry:
    return load_registry_file(EXAMPLES / "agents.yaml")


@pytest_asyncio.fixture(scope="session")
async def opa(opa_bin: str, agents: AgentRegistry) -> AsyncIterator[OpaPolicyEngine]:
    """One real OPA server for the session, loading the bundled policies."""
    async with policy_engine(None, BUNDLED_POLICIES, opa_bin=opa_bin) as engine:
        await engine.put_agents(agents.to_data())
        yield engine


AppClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
def make_client(opa: OpaPolicyEngine, agents: AgentRegistry) -> AppClient:
    """Build an app around the real OPA (or another engine) and return an HTTP client for it."""

    def build(
        *,
        policy: PolicyEngine | None = None,
        metrics: Metrics | None = None,
        recorder: DecisionRecorder | None = None,
        grants: GrantMinter | None = None,
        keys: Callable[[], KeySet] | None = None,
        **settings: Any,
    ) -> httpx.AsyncClient:
        app = create_app(
            Settings(**settings),
            policy=policy or opa,
            registry=lambda: agents,
            metrics=metrics,
            recorder=recorder,
            grants=grants,
            keys=keys,
        )
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhook")

    return build
