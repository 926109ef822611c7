"""The audit store interface, its query types, and ``open_store``.

Two backends implement ``AuditStore``: SQLite (the default, one file) and PostgreSQL (several
replicas). Both write through a single group-committing writer per process and take a database
lock around "read the chain head, insert, commit", so that the hash chain stays linear even with
several processes writing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from .record import AuditRecord, Kind, StoredRecord, to_utc

Order = Literal["desc", "asc"]
"""``desc``: newest first (the default for people); ``asc``: chain order (for tools)."""

MAX_PAGE = 1000


# A libpq "key=value" connection string starts with one of these (a file name hardly does).
class AuditFilter(BaseModel):
    """Filters of ``query``; unset fields do not filter. ``since`` is inclusive, ``until`` not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    namespace: str | None = None
    agent: str | None = None
    user: str | None = None
    rule: str | None = None
    kind: Kind | None = None

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_utc(value)


class AuditPage(BaseModel):
    """One page of results; pass ``next_cursor`` back to get the next one (None: no more)."""

    records: list[StoredRecord]
    next_cursor: str | None = None


@dataclass(frozen=True)
class StoreCounters:
    """Write-path counters of one store object (this process only).

    ``records / transactions`` is the group-commit batching factor.
    """

    transactions: int = 0
    records: int = 0
    failed_transactions: int = 0
    largest_batch: int = 0


class AuditStore(Protocol):
    async def append(self, record: AuditRecord) -> StoredRecord:
        """Write one record; returns only once the row is durably committed.

        Concurrent calls are group-committed: the records queued while a transaction is in
        flight are written together in the next one. Raises ``AuditStoreError``.
        """
        ...

    async def append_many(self, records: Sequence[AuditRecord]) -> list[StoredRecord]:
        """Write several records, in order, in one transaction (all or nothing)."""
        ...

    async def query(
        self,
        filters: AuditFilter,
        cursor: str | None = None,
        limit: int = 100,
        *,
        order: Order = "desc",
    ) -> AuditPage:
        """One page of matching records. Raises ``ValueError`` for a bad cursor or limit."""
        ...

    async def get(self, record_id: int) -> StoredRecord | None: ...

    async def admitted(self, pod_uid: str, *, grant_jti: str | None = None) -> StoredRecord | None:
        """The most recent (highest ``seq``) allowed admission row for the pod ``pod_uid``.

        A pod is eligible for tokens only if its admission was allowed and recorded: the token
        endpoint and the ResourceClaim guard ask here. Only ``kind="admission"`` rows with
        ``allowed`` true count (not a denial, not a token row); with ``grant_jti``, only rows
        for that grant. None when there is none, or when ``pod_uid`` is empty. A record still
        buffered while the store is down is not recorded yet, so it does not count. Whether the
        row's caller authenticated as the API server is the caller's to check
        (``record.authenticated``). The row's own hash is checked, the chain is ``verify``'s.
        Raises ``AuditStoreError`` (``CorruptRecord`` for a row edited or stored otherwise
        than written): callers must treat that as "cannot tell", never as "yes".
        """
        ...

    def iter_all(self) -> AsyncIterator[StoredRecord]:
        """Every record in chain (``seq``) order, streamed in batches.

        Raises ``CorruptRecord`` at a row that cannot be parsed.
        """
        ...

    async def healthy(self) -> bool:
        """True when the database answers and the schema is in place."""
        ...

    def counters(self) -> StoreCounters: ...

    async def close(self) -> None:
        """Finish queued writes, then release connections and the writer."""
        ...


def encode_cursor(order: Order, seq: int) -> str:
    return f"{order}:{seq}"


def decode_cursor(cursor: str | None, order: Order) -> int | None:
    """The ``seq`` after which the next page starts. Cursors are tied to their order."""
    if cursor is None:
        return None
    prefix, _, seq = cursor.partition(":")
    # ASCII digits of a 64-bit row number: both backends store seq as a signed 64-bit integer.
    if (
        prefix != order
        or not (seq.isascii() and seq.isdigit())
        or len(seq) > 19
        or int(seq) >= 2**63
    ):
        raise ValueError(f"invalid cursor {cursor!r} for order {order!r}")
    return int(seq)


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")


def make_page(records: list[StoredRecord], limit: int, order: Order) -> AuditPage:
    """Build a page from up to ``limit + 1`` records (the extra one proves there is more)."""
    if len(records) > limit:
        records = records[:limit]
        return AuditPage(records=records, next_cursor=encode_cursor(order, records[-1].seq))
    return AuditPage(records=records)


async def matching(
    store: AuditStore,
    filters: AuditFilter,
    *,
    limit: int | None = None,
    order: Order = "desc",
    cursor: str | None = None,
    page: int = MAX_PAGE,
) -> AsyncIterator[StoredRecord]:
    """Matching records across pages, `page` rows per query (a row may hold a whole pod), up to
    `limit`, starting after `cursor` (a resumable read: ``encode_cursor(order, seq)``)."""
    seen = 0
    while limit is None or seen < limit:
        size = page if limit is None else min(page, limit - seen)
        result = await store.query(filters, cursor, size, order=order)
        for record in result.records:
            yield record
            seen += 1
        cursor = result.next_cursor
        if cursor is None:
            return
