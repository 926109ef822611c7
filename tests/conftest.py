"""Shared fixtures: a real OPA loading the bundled policies, the example agents, an app client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from identity.keys import KeySet
from identity.registry import AgentRegistry, load_registry_file
from tests.support.admission import AppClient
from tests.support.paths import EXAMPLES, REPO
from webhook.app import create_app
from webhook.deps import DecisionRecorder, GrantMinter
from webhook.metrics import Metrics
from webhook.opa_process import find_opa, policy_engine
from webhook.policy import OpaPolicyEngine, PolicyEngine
from webhook.settings import BUNDLED_POLICIES, Settings

# The webhook finds OPA only through --opa-bin, KUBE_INTENT_OPA_BIN or PATH; in a checkout the
# pinned tools are in .tools/bin (scripts/tools.sh), which the tests (and their subprocesses)
# therefore get on PATH, as scripts/test.sh and scripts/dev.sh do.
if (REPO / ".tools" / "bin").is_dir():
    os.environ["PATH"] = f"{REPO / '.tools' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"


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
