"""The audit store interface, its query types, and ``open_store``.

Two backends implement ``AuditStore``: SQLite (the default, one file) and PostgreSQL (several
replicas). Both write through a single group-committing writer per process and take a database
lock around "read the chain head, insert, commit", so that the hash chain stays linear even with
several processes writing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from .record import AuditRecord, Kind, StoredRecord, to_utc

Order = Literal["desc", "asc"]
"""``desc``: newest first (the default for people); ``asc``: chain order (for tools)."""

MAX_PAGE = 1000

# A libpq "key=value" connection string starts with one of these (a file name hardly does).
_LIBPQ_KEYWORDS = re.compile(r"^\s*(host|hostaddr|port|dbname|user|password|service|options)\s*=")


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
    if prefix != order or not seq.isdigit():
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


async def open_store(db: str, *, create: bool = True, lazy: bool = False) -> AuditStore:
    """Open (and migrate) the store that ``db`` names.

    - ``postgresql://...`` / ``postgres://...``, or a libpq ``key=value`` string
      (``host=... dbname=...``): PostgreSQL.
    - ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (SQLAlchemy's convention) or a plain
      path: SQLite. With ``create=False`` a missing file is an error instead of a new, empty
      audit trail (what read-only CLI commands want).

    ``lazy`` (PostgreSQL only): do not fail when the server is down at open time; the schema is
    then checked before the first write. A webhook in non-required mode wants this so that it can
    start, and buffer, while the database is unreachable.
    """
    if db.startswith(("postgresql://", "postgres://")) or _LIBPQ_KEYWORDS.match(db):
        from .postgres import PostgresStore

        return await PostgresStore.open(db, lazy=lazy)

    from .sqlite import SQLiteStore

    if db.startswith("sqlite:") and not db.startswith("sqlite:///"):
        raise ValueError(f"expected sqlite:///relative.db or sqlite:////absolute.db, got {db!r}")
    path = db.removeprefix("sqlite:///")
    return await SQLiteStore.open(path, create=create)


_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
ERR_TIME = "{value!r} is neither a duration (30m, 12h, 7d) nor an ISO 8601 time"


def parse_when(value: str | None, now: datetime | None = None) -> datetime | None:
    """`7d` means seven days ago; anything else must be an ISO 8601 time (UTC if naive)."""
    if value is None:
        return None
    match = _RELATIVE.fullmatch(value)
    if match:
        amount, unit = match.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(ERR_TIME.format(value=value)) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def filter_from(params: Mapping[str, str | None]) -> AuditFilter:
    """The filters of `kube-intent audit` and `GET /audit/decisions`, from their text form.

    Keys: decision (allowed|denied), since, until, namespace, agent, user, rule, kind.
    Raises ValueError, with a message for a person, on a value it cannot read.
    """
    decision = params.get("decision")
    if decision not in (None, "allowed", "denied"):
        raise ValueError("decision must be allowed or denied")
    kind = params.get("kind")
    if kind not in (None, "admission", "token"):
        raise ValueError("kind must be admission or token")
    return AuditFilter.model_validate(
        {
            "allowed": None if decision is None else decision == "allowed",
            "since": parse_when(params.get("since")),
            "until": parse_when(params.get("until")),
            "namespace": params.get("namespace"),
            "agent": params.get("agent"),
            "user": params.get("user"),
            "rule": params.get("rule"),
            "kind": kind,
        }
    )
