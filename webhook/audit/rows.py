"""Mapping between records and table rows, shared by the SQLite and PostgreSQL backends.

Structured fields (groups, intent, accelerators, violations, input) are stored as canonical JSON
*text* in both databases: reading the text back gives exactly the values that were hashed, where
PostgreSQL ``jsonb`` would reformat numbers and refuse some strings, and ``verify`` would then
report rows that nobody touched.

Reading is strict: a row must hold exactly what ``record_params`` writes for the record it parses
to. Parsing alone is lenient (the text 'false' or a blob 'coder' read back as the hashed values),
so a row edited that way would still verify while the filters, which compare the stored columns
(``allowed = 0``, ``agent = 'coder'``), no longer find it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from .errors import AuditStoreError, CorruptRecord
from .record import AuditRecord, StoredRecord, canonical_json, format_time, parse_time, to_utc
from .store import AuditFilter, AuditPage, Order, check_limit, decode_cursor, make_page

Dialect = Literal["sqlite", "postgres"]

TABLE = "audit_record"

# Column order of INSERTs and SELECTs (SELECTs put ``id`` first). ``user`` is reserved in SQL.
COLUMNS: tuple[str, ...] = (
    "seq",
    "time",
    "kind",
    "uid",
    "operation",
    "namespace",
    "name",
    "user_name",
    "user_groups",
    "agent",
    "service_account",
    "spiffe_id",
    "intent",
    "intent_digest",
    "accelerators",
    "allowed",
    "violations",
    "policy_revision",
    "grant_jti",
    "latency_ms",
    "input",
    "message",
    "pod_uid",
    "authenticated",
    "policy_load",
    "prev_hash",
    "hash",
)
SELECT_COLUMNS = "id, " + ", ".join(COLUMNS)
INSERT_COLUMNS = ", ".join(COLUMNS)

_JSON_COLUMNS = frozenset(
    {"user_groups", "intent", "accelerators", "violations", "input", "policy_load"}
)

ERR_UNREADABLE = "unreadable row: {detail}"
ERR_EDITED = "hash does not match the row's content (row edited)"
ERR_STORED_FORM = (
    "column {column} holds {found} where the hashed record is stored as {expected} (row edited)"
)
# Storage classes by the Python type the drivers return them as (SQLite's typeof names).
_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    int: "integer",
    float: "real",
    str: "text",
    bytes: "blob",
    bool: "boolean",
}


def record_params(record: StoredRecord, *, dialect: Dialect) -> list[Any]:
    """INSERT parameters, in ``COLUMNS`` order (the record is already placed in the chain)."""
    # SQLite has no timestamp or boolean type: the fixed-width text form sorts and compares
    # correctly, and flags are the integers 0 and 1.
    time: Any = format_time(record.time) if dialect == "sqlite" else record.time
    flag = int if dialect == "sqlite" else bool
    return [
        record.seq,
        time,
        record.kind,
        record.uid,
        record.operation,
        record.namespace,
        record.name,
        record.user,
        canonical_json(list(record.groups)),
        record.agent,
        record.service_account,
        record.spiffe_id,
        record.encoded_json("intent"),
        record.intent_digest,
        canonical_json(record.accelerators.model_dump()),
        flag(record.allowed),
        canonical_json([v.model_dump() for v in record.violations]),
        record.policy_revision,
        record.grant_jti,
        record.latency_ms,
        record.encoded_json("input"),
        record.message,
        record.pod_uid,
        flag(record.authenticated),
        None if record.policy_load is None else canonical_json(record.policy_load.model_dump()),
        record.prev_hash,
        record.hash,
    ]


def _describe(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} {text}"


def row_to_record(row: Sequence[Any], *, dialect: Dialect) -> StoredRecord:
    """Build a record from a ``SELECT_COLUMNS`` row.

    Raises ``CorruptRecord`` for a row that does not parse, and for one whose columns are not
    exactly (type and encoding) what the store writes for the record it parses to.
    """
    values = dict(zip(("id", *COLUMNS), row, strict=True))
    seq = values["seq"] if isinstance(values["seq"], int) else None
    record_id = values["id"]
    try:
        for column in _JSON_COLUMNS:
            if values[column] is not None:
                values[column] = json.loads(values[column])
        time = values["time"]
        values["time"] = to_utc(time) if isinstance(time, datetime) else parse_time(str(time))
        values["user"] = values.pop("user_name")
        values["groups"] = values.pop("user_groups")
        record = StoredRecord.model_validate(values)
    # RecursionError: JSON nested thousands deep, which the webhook never writes.
    except (ValueError, TypeError, RecursionError, ValidationError) as exc:
        detail = ERR_UNREADABLE.format(detail=exc)
        raise CorruptRecord(seq, detail, record_id=record_id) from exc
    written = record_params(record, dialect=dialect)
    for column, found, expected in zip(COLUMNS, row[1:], written, strict=True):
        if type(found) is not type(expected) or found != expected:
            detail = ERR_STORED_FORM.format(
                column=column, found=_describe(found), expected=_describe(expected)
            )
            raise CorruptRecord(seq, detail, record_id=record_id)
    return record


def build_query(
    filters: AuditFilter,
    *,
    after_seq: int | None,
    order: Order,
    limit: int,
    dialect: Dialect,
) -> tuple[str, list[Any]]:
    """SELECT for one page: ``limit`` rows after the cursor position ``after_seq``."""
    ph = "?" if dialect == "sqlite" else "%s"
    where: list[str] = []
    params: list[Any] = []

    def eq(column: str, value: Any) -> None:
        where.append(f"{column} = {ph}")
        params.append(value)

    if filters.allowed is not None:
        eq("allowed", filters.allowed)
    if filters.kind is not None:
        eq("kind", filters.kind)
    if filters.namespace is not None:
        eq("namespace", filters.namespace)
    if filters.agent is not None:
        eq("agent", filters.agent)
    if filters.user is not None:
        eq("user_name", filters.user)
    for op, bound in ((">=", filters.since), ("<", filters.until)):
        if bound is not None:
            where.append(f"time {op} {ph}")
            params.append(format_time(bound) if dialect == "sqlite" else bound)
    if filters.rule is not None:
        if dialect == "sqlite":
            where.append(
                f"EXISTS (SELECT 1 FROM json_each({TABLE}.violations) AS v "  # noqa: S608
                f"WHERE json_extract(v.value, '$.rule') = {ph})"
            )
            params.append(filters.rule)
        else:
            # Matches the expression index created by the PostgreSQL migration.
            where.append(f"violations::jsonb @> {ph}::jsonb")
            params.append(json.dumps([{"rule": filters.rule}]))
    if after_seq is not None:
        where.append(f"seq {'<' if order == 'desc' else '>'} {ph}")
        params.append(after_seq)

    # Only constant fragments are interpolated; every value is a bound parameter.
    sql = f"SELECT {SELECT_COLUMNS} FROM {TABLE}"  # noqa: S608
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY seq {'DESC' if order == 'desc' else 'ASC'} LIMIT {ph}"
    params.append(limit)
    return sql, params


def schema_is_current(current: int, latest: int) -> bool:
    """True when no migration is needed; refuses a database written by a newer kube-intent."""
    if current > latest:
        raise AuditStoreError(
            f"audit database schema version {current} is newer than this kube-intent "
            f"(knows up to {latest}); upgrade kube-intent"
        )
    return current == latest


class SqlStoreBase:
    """What both SQL stores share; a store supplies `_fetchall`, `append_many`, `dialect`,
    `iter_batch`."""

    dialect: Dialect
    iter_batch: int

    async def _fetchall(self, sql: str, params: Sequence[object]) -> list[Any]:
        raise NotImplementedError

    async def append_many(self, records: Sequence[AuditRecord]) -> list[StoredRecord]:
        raise NotImplementedError

    async def append(self, record: AuditRecord) -> StoredRecord:
        return (await self.append_many([record]))[0]

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else sql.replace("?", "%s")

    async def query(
        self,
        filters: AuditFilter,
        cursor: str | None = None,
        limit: int = 100,
        *,
        order: Order = "desc",
    ) -> AuditPage:
        check_limit(limit)
        sql, params = build_query(
            filters,
            after_seq=decode_cursor(cursor, order),
            order=order,
            limit=limit + 1,
            dialect=self.dialect,
        )
        rows = await self._fetchall(sql, params)
        return make_page([row_to_record(r, dialect=self.dialect) for r in rows], limit, order)

    async def get(self, record_id: int) -> StoredRecord | None:
        rows = await self._fetchall(self._sql(_GET), (record_id,))
        return row_to_record(rows[0], dialect=self.dialect) if rows else None

    async def admitted(self, pod_uid: str, *, grant_jti: str | None = None) -> StoredRecord | None:
        if not pod_uid:  # the uid is unknown at /mutate: an empty one names no pod
            return None
        sql, params = _ADMITTED, [pod_uid, True]
        if grant_jti is not None:
            sql += " AND grant_jti = ?"
            params.append(grant_jti)
        rows = await self._fetchall(self._sql(sql + " ORDER BY seq DESC LIMIT 1"), params)
        if not rows:
            return None
        record = row_to_record(rows[0], dialect=self.dialect)
        # Tokens rest on this row: one edited in place (a denial turned into an admission) must
        # not count. The chain around it is verify's to check.
        if record.recompute_hash() != record.hash:
            raise CorruptRecord(record.seq, ERR_EDITED, record_id=record.id)
        return record

    async def iter_all(self) -> AsyncIterator[StoredRecord]:
        # Up to the head as it is now: a busy chain must not make verify/export run forever.
        last = int((await self._fetchall(_MAX_SEQ, ()))[0][0] or 0)
        after = 0
        while True:
            rows = await self._fetchall(self._sql(_ITER), (after, last, self.iter_batch))
            for row in rows:
                record = row_to_record(row, dialect=self.dialect)
                yield record
                after = record.seq
            if len(rows) < self.iter_batch:
                return


_GET = f"SELECT {SELECT_COLUMNS} FROM {TABLE} WHERE id = ?"  # noqa: S608
_MAX_SEQ = f"SELECT MAX(seq) FROM {TABLE}"  # noqa: S608
# Served by the (pod_uid, seq) index.
_ADMITTED = (
    f"SELECT {SELECT_COLUMNS} FROM {TABLE} "  # noqa: S608
    "WHERE pod_uid = ? AND kind = 'admission' AND allowed = ?"
)
_ITER = (
    f"SELECT {SELECT_COLUMNS} FROM {TABLE} "  # noqa: S608
    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
