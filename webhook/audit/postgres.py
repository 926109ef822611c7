"""PostgreSQL audit store (psycopg 3, asyncio) for several webhook replicas.

Same write path as SQLite: one writer task per process group-commits whatever queued up while the
previous transaction was committing. Inside each transaction the writer takes a transaction-level
advisory lock before reading the chain head, so writers in other processes and on other replicas
queue behind it and the chain stays linear; the lock is released by COMMIT.

``synchronous_commit`` is forced on for the writer session: the store promises that an
acknowledged decision is durable, whatever the database default says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from .errors import AuditStoreError
from .record import GENESIS_HASH, AuditRecord, StoredRecord
from .rows import (
    COLUMNS,
    INSERT_COLUMNS,
    TABLE,
    SqlStoreBase,
    record_params,
    schema_is_current,
)
from .store import (
    StoreCounters,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3  # fail fast when the server is unreachable: callers wait on us
MAX_BATCH = 500  # records per transaction (27 parameters each, well under PostgreSQL's 65535)
ITER_BATCH = 1000
# Advisory lock keys: arbitrary constants ("kiaudit" + 1/2) shared by every kube-intent process.
CHAIN_LOCK_KEY = int.from_bytes(b"kiaudit\x01", "big")
MIGRATION_LOCK_KEY = int.from_bytes(b"kiaudit\x02", "big")

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            f"""CREATE TABLE {TABLE} (
                id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                seq             bigint NOT NULL UNIQUE,
                time            timestamptz NOT NULL,
                kind            text NOT NULL,
                uid             text NOT NULL,
                operation       text NOT NULL,
                namespace       text NOT NULL,
                name            text NOT NULL,
                user_name       text NOT NULL,
                user_groups     text NOT NULL,
                agent           text,
                service_account text NOT NULL,
                spiffe_id       text,
                intent          text,
                intent_digest   text,
                accelerators    text NOT NULL,
                allowed         boolean NOT NULL,
                violations      text NOT NULL,
                policy_revision text NOT NULL,
                grant_jti       text,
                latency_ms      double precision NOT NULL,
                input           text,
                message         text NOT NULL,
                prev_hash       text NOT NULL,
                hash            text NOT NULL
            )""",
            f"CREATE INDEX {TABLE}_time ON {TABLE} (time)",
            f"CREATE INDEX {TABLE}_namespace ON {TABLE} (namespace, seq)",
            f"CREATE INDEX {TABLE}_agent ON {TABLE} (agent, seq)",
            f"CREATE INDEX {TABLE}_user ON {TABLE} (user_name, seq)",
            f"CREATE INDEX {TABLE}_allowed ON {TABLE} (allowed, seq)",
            # The --rule filter: violations are stored as exact text (see rows.py) and indexed
            # as jsonb.
            f"CREATE INDEX {TABLE}_rules ON {TABLE} USING gin ((violations::jsonb) jsonb_path_ops)",
            # Append-only against accidents; the hash chain is what catches the deliberate.
            f"""CREATE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'audit records are append-only'; END $$""",
            f"""CREATE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE}
                FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()""",
            f"""CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
                FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()""",
        ],
    ),
    (
        # What the token endpoint needs. Existing rows get NULL and false: the values that
        # ``record.py`` leaves out of the hash, so their hashes do not change.
        2,
        [
            f"""ALTER TABLE {TABLE} ADD COLUMN pod_uid text,
                ADD COLUMN authenticated boolean NOT NULL DEFAULT false""",
            # ``admitted``: the newest allowed admission of one pod.
            f"CREATE INDEX {TABLE}_pod_uid ON {TABLE} (pod_uid, seq)",
        ],
    ),
    (
        # Policy loads on the record (kind "policy"). Existing rows get NULL, which
        # ``record.py`` leaves out of the hash.
        3,
        [f"ALTER TABLE {TABLE} ADD COLUMN policy_load text"],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Constant SQL: only table and column names are interpolated.
_HEAD = f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1"  # noqa: S608
_ROW_PLACEHOLDERS = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"


def _insert_sql(rows: int) -> str:
    values = ", ".join([_ROW_PLACEHOLDERS] * rows)
    return f"INSERT INTO {TABLE} ({INSERT_COLUMNS}) VALUES {values} RETURNING seq, id"  # noqa: S608


async def _schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    cur = await conn.execute("SELECT MAX(version) FROM schema_version")
    row = await cur.fetchone()
    return int(row[0] or 0) if row else 0


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    current = await _schema_version(conn)
    if schema_is_current(current, SCHEMA_VERSION):
        return  # nothing to write: a read-only role can open an up-to-date database
    async with conn.transaction():
        # Replicas starting together: one migrates, the others wait and then see it done.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await _schema_version(conn)
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            log.info("audit database migrated to schema version %d", version)


@dataclass
class _WriteRequest:
    records: list[AuditRecord]
    future: asyncio.Future[list[StoredRecord]]


class PostgresStore(SqlStoreBase):
    """``AuditStore`` over PostgreSQL. Create it with ``await PostgresStore.open(dsn)``."""

    dialect = "postgres"
    iter_batch = ITER_BATCH

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._queue: asyncio.Queue[_WriteRequest | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None  # the writer's session
        self._schema_ready = False
        self._closed = False
        self._counters = StoreCounters()

    @classmethod
    async def open(cls, dsn: str, *, lazy: bool = False) -> PostgresStore:
        store = cls(dsn)
        try:
            async with await store._connect() as conn:
                await _migrate(conn)
            store._schema_ready = True
        except psycopg.Error as exc:
            if not lazy:
                raise AuditStoreError(f"cannot open the PostgreSQL audit store: {exc}") from exc
            log.warning("PostgreSQL audit store unreachable at start (will retry): %s", exc)
        return store

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="kube-intent-audit",
        )

    # -- write path -------------------------------------------------------------------------

    async def append_many(self, records: Sequence[AuditRecord]) -> list[StoredRecord]:
        if not records:
            return []
        if self._closed:
            raise AuditStoreError("audit store is closed")
        if self._writer is None:  # started here so that it runs on the caller's event loop
            self._writer = asyncio.create_task(self._writer_main(), name="kube-intent-audit")
        request = _WriteRequest(list(records), asyncio.get_running_loop().create_future())
        self._queue.put_nowait(request)
        return await request.future

    async def _writer_main(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            size = len(first.records)
            # Group commit: take everything that queued up while the last commit was running.
            while size < MAX_BATCH and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
                size += len(nxt.records)
            try:
                await self._write_batch(batch)
            except Exception as exc:
                log.warning("audit write of %d record(s) failed: %s", size, exc)
                c = self._counters
                self._counters = StoreCounters(
                    c.transactions, c.records, c.failed_transactions + 1, c.largest_batch
                )
                error = AuditStoreError(f"audit write failed: {exc}")
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                await self._drop_connection()

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def _write_batch(self, batch: list[_WriteRequest]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
            await self._conn.execute("SET synchronous_commit = on")
        conn = self._conn
        if not self._schema_ready:  # opened lazily while the server was down
            await _migrate(conn)
            self._schema_ready = True
        results: list[tuple[_WriteRequest, list[StoredRecord]]] = []
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK_KEY,))
            # Checked under the lock: a caller that gave up (timeout) is not written behind its
            # back. One that gives up from here on is written (the audit trail is at-least-once).
            live = [r for r in batch if not r.future.done()]
            if not live:
                return
            cur = await conn.execute(_HEAD)
            head = await cur.fetchone()
            seq, prev_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH)
            params: list[Any] = []
            for request in live:
                placed: list[StoredRecord] = []
                for record in request.records:
                    seq += 1
                    stored = record.chained(record_id=0, seq=seq, prev_hash=prev_hash)
                    params.extend(record_params(stored, dialect="postgres"))
                    placed.append(stored)
                    prev_hash = stored.hash
                results.append((request, placed))
            count = sum(len(p) for _, p in results)
            cur = await conn.execute(_insert_sql(count), params)
            ids = {int(s): int(i) for s, i in await cur.fetchall()}
        # Committed (the transaction block exited without error): now acknowledge.
        c = self._counters
        self._counters = StoreCounters(
            transactions=c.transactions + 1,
            records=c.records + count,
            failed_transactions=c.failed_transactions,
            largest_batch=max(c.largest_batch, count),
        )
        for request, placed in results:
            if not request.future.done():
                request.future.set_result([s.model_copy(update={"id": ids[s.seq]}) for s in placed])

    # -- read path: a short-lived connection per call ------------------------------------------

    async def _fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with await self._connect() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise AuditStoreError(f"audit read failed: {exc}") from exc

    async def healthy(self) -> bool:
        if self._closed or (self._writer is not None and self._writer.done()):
            return False
        try:
            await self._fetchall("SELECT MAX(version) FROM schema_version", ())
        except AuditStoreError:
            return False
        return True

    def counters(self) -> StoreCounters:
        return self._counters

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put_nowait(None)  # after the queued requests: they are written first
            await self._writer
        await self._drop_connection()
