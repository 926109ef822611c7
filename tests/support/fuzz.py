"""The fuzz target: the real app, its audit log and OPA, and the rows written since last time."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from webhook.audit import AuditLog, StoredRecord
from webhook.audit.store import AuditFilter, encode_cursor
from webhook.detect import AcceleratorDetector
from webhook.metrics import Metrics
from webhook.policy import OpaPolicyEngine


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
