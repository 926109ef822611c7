"""SQLite audit store: WAL, synchronous=FULL, one group-committing writer thread.

Why a thread: sqlite3 blocks, and an fsync per decision on the event loop would stall every
admission. The writer drains everything queued while the previous transaction was committing and
writes it in ONE transaction (group commit): one fsync for many decisions. Each caller's future is
resolved only after COMMIT returned, so an acknowledged decision survives kill -9.

Several processes may share the file (two webhook processes, or the CLI): ``BEGIN IMMEDIATE``
takes SQLite's single write lock before the chain head is read, so the chain stays linear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from .errors import AuditStoreError, CorruptRecord
from .record import GENESIS_HASH, AuditRecord, StoredRecord, format_time
from .rows import (
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

T = TypeVar("T")

BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's write lock
MAX_BATCH = 500  # records per group-commit transaction
ITER_BATCH = 500

# Indexes and append-only triggers, created with the table (1) and again on its rebuild (2).
_INDEXES_AND_TRIGGERS = [
    f"CREATE INDEX {TABLE}_time ON {TABLE} (time)",
    f"CREATE INDEX {TABLE}_namespace ON {TABLE} (namespace, seq)",
    f"CREATE INDEX {TABLE}_agent ON {TABLE} (agent, seq)",
    f"CREATE INDEX {TABLE}_user ON {TABLE} (user_name, seq)",
    f"CREATE INDEX {TABLE}_allowed ON {TABLE} (allowed, seq)",
    # Append-only against accidents (a stray UPDATE in a maintenance session). Someone who drops
    # the triggers is what the hash chain and ``verify`` are for.
    f"""CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
    f"""CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END""",
]
_REBUILT = f"{TABLE}_strict"
ERR_SQLITE_TOO_OLD = "the audit store needs SQLite 3.37 or newer (STRICT tables); this is {version}"
ERR_LEGACY_TYPE = (
    "cannot migrate the audit database to typed (STRICT) columns: row id {id} (seq {seq}) "
    "stores {column} as {found}, not {expected}, so it was edited outside kube-intent; "
    "the database is left unchanged"
)


def _copy_into_strict(conn: sqlite3.Connection) -> None:
    """Copy the schema-1 rows into the STRICT table, refusing any of the wrong type.

    Schema 1 did not type its columns, so a row there may hold the text 'false' in ``allowed``
    or a blob in ``agent``. Copying would coerce some of those silently (a STRICT table converts
    what it can, the text '1' to the integer 1): the types are checked first, and the migration
    fails at the first row that is not stored as kube-intent writes it.
    """
    # Column types of the new table: a nullable column may also hold NULL.
    expected = {
        name: {decl.lower()} | ({"null"} if not notnull else set())
        for _, name, decl, notnull, _, _ in conn.execute(f"PRAGMA table_info({_REBUILT})")
    }
    old = [row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")]
    types = ", ".join(f"typeof({c})" for c in old)
    wrong = " OR ".join(
        f"typeof({c}) NOT IN ({', '.join(repr(t) for t in sorted(expected[c]))})" for c in old
    )
    # Constant SQL: only column names and type names are interpolated.
    bad = conn.execute(
        f"SELECT id, seq, {types} FROM {TABLE} WHERE {wrong} ORDER BY seq LIMIT 1"  # noqa: S608
    ).fetchone()
    if bad is not None:
        record_id, seq, *found = bad
        column, stored = next(
            (c, t) for c, t in zip(old, found, strict=True) if t not in expected[c]
        )
        raise CorruptRecord(  # a finding (`audit verify` exits 1), not an outage
            seq,
            ERR_LEGACY_TYPE.format(
                id=record_id,
                seq=seq,
                column=column,
                found=stored,
                expected=" or ".join(sorted(expected[column])),
            ),
            record_id=record_id,
        )
    columns = ", ".join(old)
    conn.execute(
        f"INSERT INTO {_REBUILT} ({columns}) SELECT {columns} FROM {TABLE}"  # noqa: S608
    )


Migration = list[str | Callable[[sqlite3.Connection], None]]

MIGRATIONS: list[tuple[int, Migration]] = [
    (
        1,
        [
            f"""CREATE TABLE {TABLE} (
                id              INTEGER PRIMARY KEY AUTOINCREMENT,
                seq             INTEGER NOT NULL UNIQUE,
                time            TEXT NOT NULL,
                kind            TEXT NOT NULL,
                uid             TEXT NOT NULL,
                operation       TEXT NOT NULL,
                namespace       TEXT NOT NULL,
                name            TEXT NOT NULL,
                user_name       TEXT NOT NULL,
                user_groups     TEXT NOT NULL,
                agent           TEXT,
                service_account TEXT NOT NULL,
                spiffe_id       TEXT,
                intent          TEXT,
                intent_digest   TEXT,
                accelerators    TEXT NOT NULL,
                allowed         INTEGER NOT NULL,
                violations      TEXT NOT NULL,
                policy_revision TEXT NOT NULL,
                grant_jti       TEXT,
                latency_ms      REAL NOT NULL,
                input           TEXT,
                message         TEXT NOT NULL,
                prev_hash       TEXT NOT NULL,
                hash            TEXT NOT NULL
            )""",
            *_INDEXES_AND_TRIGGERS,
        ],
    ),
    (
        # STRICT: the database itself refuses a value of the wrong type (the text 'false' in
        # ``allowed``, a blob in ``agent``), which the lenient parsing of a row would read back
        # as the hashed value. Plus the two columns the token endpoint needs; existing rows get
        # NULL and 0, the values record.py leaves out of the hash. SQLite cannot make a table
        # STRICT in place: the table is rebuilt and its rows copied.
        2,
        [
            f"""CREATE TABLE {_REBUILT} (
                id              INTEGER PRIMARY KEY AUTOINCREMENT,
                seq             INTEGER NOT NULL UNIQUE,
                time            TEXT NOT NULL,
                kind            TEXT NOT NULL,
                uid             TEXT NOT NULL,
                operation       TEXT NOT NULL,
                namespace       TEXT NOT NULL,
                name            TEXT NOT NULL,
                user_name       TEXT NOT NULL,
                user_groups     TEXT NOT NULL,
                agent           TEXT,
                service_account TEXT NOT NULL,
                spiffe_id       TEXT,
                intent          TEXT,
                intent_digest   TEXT,
                accelerators    TEXT NOT NULL,
                allowed         INTEGER NOT NULL,
                violations      TEXT NOT NULL,
                policy_revision TEXT NOT NULL,
                grant_jti       TEXT,
                latency_ms      REAL NOT NULL,
                input           TEXT,
                message         TEXT NOT NULL,
                pod_uid         TEXT,
                authenticated   INTEGER NOT NULL DEFAULT 0,
                prev_hash       TEXT NOT NULL,
                hash            TEXT NOT NULL
            ) STRICT""",
            _copy_into_strict,
            f"DROP TABLE {TABLE}",  # its indexes and triggers go with it
            f"ALTER TABLE {_REBUILT} RENAME TO {TABLE}",
            *_INDEXES_AND_TRIGGERS,
            # ``admitted``: the newest allowed admission of one pod.
            f"CREATE INDEX {TABLE}_pod_uid ON {TABLE} (pod_uid, seq)",
        ],
    ),
    (
        # Policy loads on the record (kind "policy"): what was loaded, from where, by what.
        # Existing rows get NULL, the value record.py leaves out of the hash.
        3,
        [f"ALTER TABLE {TABLE} ADD COLUMN policy_load TEXT"],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_INSERT = (
    f"INSERT INTO {TABLE} ({INSERT_COLUMNS}) "  # noqa: S608 (constant column list)
    f"VALUES ({', '.join('?' * len(INSERT_COLUMNS.split(', ')))})"
)
# Constant SQL: only table and column names are interpolated.
_HEAD = f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1"  # noqa: S608


@dataclass
class _WriteRequest:
    records: list[AuditRecord]
    future: asyncio.Future[list[StoredRecord]]
    loop: asyncio.AbstractEventLoop


_STOP = None  # queue sentinel: the writer exits after the requests queued before it


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; the writer issues BEGIN IMMEDIATE itself.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL at every commit
    return conn


def _enable_wal(conn: sqlite3.Connection, path: str) -> None:
    # Switching to WAL needs an exclusive lock and SQLite does not wait for it (no busy
    # handler): two processes opening a new file at once get "database is locked". Retry.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    if str(mode).lower() != "wal":
        raise AuditStoreError(f"cannot enable WAL on {path} (journal_mode={mode})")


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _migrate(conn: sqlite3.Connection) -> None:
    current = _schema_version(conn)
    if schema_is_current(current, SCHEMA_VERSION):
        return  # nothing to write: read-only users can open an up-to-date database
    if sqlite3.sqlite_version_info < (3, 37, 0):
        raise AuditStoreError(ERR_SQLITE_TOO_OLD.format(version=sqlite3.sqlite_version))
    conn.execute("BEGIN IMMEDIATE")  # serialises concurrent openers
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = _schema_version(conn)
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                if callable(statement):
                    statement(conn)
                else:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, format_time(datetime.now(UTC))),
            )
            log.info("audit database migrated to schema version %d", version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _settle(
    request: _WriteRequest,
    result: list[StoredRecord] | None,
    error: BaseException | None,
) -> None:
    """Resolve a caller's future from the writer thread."""

    def apply() -> None:
        if request.future.done():  # cancelled by the caller (timeout)
            return
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(result or [])

    # The loop may be closed if the caller went away; nobody is waiting any more then.
    with contextlib.suppress(RuntimeError):
        request.loop.call_soon_threadsafe(apply)


class SQLiteStore(SqlStoreBase):
    """``AuditStore`` over one SQLite file. Create it with ``await SQLiteStore.open(path)``."""

    dialect = "sqlite"
    iter_batch = ITER_BATCH

    def __init__(self, path: str) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_WriteRequest | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()  # guards the counters
        self._counters = StoreCounters()
        self._thread = threading.Thread(
            target=self._writer_main, name="kube-intent-audit-writer", daemon=True
        )

    @property
    def path(self) -> str:
        return self._path

    @classmethod
    async def open(cls, path: str, *, create: bool = True) -> SQLiteStore:
        if path in ("", ":memory:") or path.startswith("file:"):
            # Readers use their own connections, so the database must be a real file.
            raise ValueError(f"the SQLite audit store needs a file path, got {path!r}")
        store = cls(path)
        try:
            await asyncio.to_thread(store._initialise, create)
        except sqlite3.Error as exc:
            raise AuditStoreError(f"cannot open audit database {path}: {exc}") from exc
        store._thread.start()
        return store

    def _initialise(self, create: bool) -> None:
        if not create and not os.path.exists(self._path):
            raise AuditStoreError(f"no audit database at {self._path}")
        if create and not os.path.exists(self._path):
            # The trail names users and workloads: readable by its owner only. SQLite gives the
            # -wal and -shm files the same permissions.
            parent = os.path.dirname(self._path)
            if parent:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            os.close(os.open(self._path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = _connect(self._path)
        try:
            _enable_wal(conn, self._path)
            _migrate(conn)
        finally:
            conn.close()

    # -- write path -------------------------------------------------------------------------

    async def append_many(self, records: Sequence[AuditRecord]) -> list[StoredRecord]:
        if not records:
            return []
        if self._closed:
            raise AuditStoreError("audit store is closed")
        loop = asyncio.get_running_loop()
        request = _WriteRequest(list(records), loop.create_future(), loop)
        self._queue.put(request)
        return await request.future

    def _writer_main(self) -> None:
        conn: sqlite3.Connection | None = None
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            size = len(first.records)
            # Group commit: take everything that queued up while the last commit was running.
            while size < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
                size += len(nxt.records)
            try:
                if conn is None:
                    conn = _connect(self._path)
                self._write_batch(conn, batch)
            except Exception as exc:
                log.warning("audit write of %d record(s) failed: %s", size, exc)
                with self._lock:
                    c = self._counters
                    self._counters = StoreCounters(
                        c.transactions, c.records, c.failed_transactions + 1, c.largest_batch
                    )
                error = AuditStoreError(f"audit write failed: {exc}")
                for request in batch:
                    _settle(request, None, error)
                if conn is not None:  # start from a fresh connection next time
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    def _write_batch(self, conn: sqlite3.Connection, batch: list[_WriteRequest]) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the write lock, across processes, before the head
        try:
            # Checked under the lock: a caller that gave up (timeout) is not written behind its
            # back. One that gives up from here on is written (the audit trail is at-least-once).
            live = [r for r in batch if not r.future.cancelled()]
            head = conn.execute(_HEAD).fetchone()
            seq, prev_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH)
            results: list[list[StoredRecord]] = []
            for request in live:
                stored: list[StoredRecord] = []
                for record in request.records:
                    seq += 1
                    placed = record.chained(record_id=0, seq=seq, prev_hash=prev_hash)
                    cursor = conn.execute(_INSERT, record_params(placed, dialect="sqlite"))
                    stored.append(placed.model_copy(update={"id": cursor.lastrowid}))
                    prev_hash = placed.hash
                results.append(stored)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        written = sum(len(r) for r in results)
        if written == 0:  # every caller had given up: nothing was written
            return
        with self._lock:
            c = self._counters
            self._counters = StoreCounters(
                transactions=c.transactions + 1,
                records=c.records + written,
                failed_transactions=c.failed_transactions,
                largest_batch=max(c.largest_batch, written),
            )
        for request, stored in zip(live, results, strict=True):
            _settle(request, stored, None)

    # -- read path: a fresh connection per call, in a worker thread ---------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = _connect(self._path)
            try:
                conn.execute("PRAGMA query_only = ON")
                return fn(conn)
            finally:
                conn.close()

        try:
            return await asyncio.to_thread(run)
        except sqlite3.Error as exc:
            raise AuditStoreError(f"audit read failed: {exc}") from exc

    async def _fetchall(self, sql: str, params: Sequence[object]) -> list[Any]:
        return await self._read(lambda c: c.execute(sql, params).fetchall())

    async def healthy(self) -> bool:
        if self._closed or not self._thread.is_alive():
            return False
        try:
            await self._fetchall("SELECT MAX(version) FROM schema_version", ())
        except AuditStoreError:
            return False
        return True

    def counters(self) -> StoreCounters:
        with self._lock:
            return self._counters

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        # Requests that raced with close() (queued after the sentinel) are failed, not lost
        # silently.
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                _settle(request, None, AuditStoreError("audit store is closed"))
