"""The fuzz target: the real app around the session's real OPA, auditing to a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from identity.registry import AgentRegistry
from webhook.app import create_app
from webhook.audit import AuditLog, StoredRecord, open_store
from webhook.audit.store import AuditFilter, encode_cursor
from webhook.detect import AcceleratorDetector
from webhook.metrics import Metrics
from webhook.policy import OpaPolicyEngine
from webhook.recorder import AuditRecorder
from webhook.settings import Settings


@dataclass
class Target:
    client: httpx.AsyncClient
    audit: AuditLog
    opa: OpaPolicyEngine
    metrics: Metrics
    detector: AcceleratorDetector = field(default_factory=AcceleratorDetector)
    seen: int = 0

    async def new_rows(self) -> list[StoredRecord]:
        """Audit rows written since the last call (requests are sent one at a time)."""
        rows: list[StoredRecord] = []
        cursor = encode_cursor("asc", self.seen) if self.seen else None
        while True:
            page = await self.audit.store.query(AuditFilter(), cursor, 500, order="asc")
            rows += page.records
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if rows:
            self.seen = rows[-1].seq
        return rows


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
