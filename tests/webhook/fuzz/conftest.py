"""The fuzz target: the real app around the session's real OPA, auditing to a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from identity.registry import AgentRegistry
from tests.support.fuzz import Target
from webhook.app import create_app
from webhook.audit import AuditLog, open_store
from webhook.metrics import Metrics
from webhook.policy import OpaPolicyEngine
from webhook.recorder import AuditRecorder
from webhook.settings import Settings


@pytest_asyncio.fixture(scope="module")
async def target(
    opa: OpaPolicyEngine, agents: AgentRegistry, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    # Wired as `kube-intent serve` wires it (webhook/serve.py), minus TLS and the cluster.
    path: Path = tmp_path_factory.mktemp("fuzz") / "audit.db"
    audit = AuditLog(await open_store(str(path)), required=True)
    metrics = Metrics()
    recorder = AuditRecorder(audit, metrics, lambda: opa.revision)
    app = create_app(
        Settings(), policy=opa, registry=lambda: agents, metrics=metrics, recorder=recorder
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://webhook") as client:
        yield Target(client=client, audit=audit, opa=opa, metrics=metrics)
    await audit.close()
