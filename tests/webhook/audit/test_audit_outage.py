"""``AuditLog`` while the store is down (PostgreSQL stopped with pg_ctl) or hung (lock held).

The server these tests stop is the session's own (or a private one when
``KUBE_INTENT_TEST_PG_DSN`` points elsewhere); it is always restarted before the test ends.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import pytest_asyncio

from tests.support.audit import Backend, PgCluster, full_record, stopped
from webhook.audit import (
    AUDIT_UNAVAILABLE_RULE,
    AuditBufferFull,
    AuditLog,
    AuditUnavailable,
    StoredRecord,
    open_store,
    verify_store,
)
from webhook.audit.postgres import CHAIN_LOCK_KEY


@pytest_asyncio.fixture
async def pg_log(pg_control_dsn: str) -> AsyncIterator[tuple[AuditLog, AuditLog]]:
    """(required, non-required) logs over two stores on the same controllable server."""
    logs = (
        AuditLog(await open_store(pg_control_dsn), required=True, retry_max=0.3),
        AuditLog(await open_store(pg_control_dsn), required=False, retry_max=0.3),
    )
    yield logs
    for log in logs:
        await log.close(max_wait=10)


async def chain(log: AuditLog) -> list[StoredRecord]:
    return [r async for r in log.store.iter_all()]


async def test_store_up_records_synchronously(pg_log: tuple[AuditLog, AuditLog]) -> None:
    for log in pg_log:
        stored = await log.record(full_record())
        assert isinstance(stored, StoredRecord)
        c = log.counters()
        assert (c.written_total, c.queue_depth, c.write_failures, c.store_up) == (1, 0, 0, True)


async def test_required_mode_refuses_fast_while_postgres_is_stopped(
    pg_control: PgCluster, pg_log: tuple[AuditLog, AuditLog]
) -> None:
    log, _ = pg_log
    first = await log.record(full_record(name="before"))
    assert first is not None

    with stopped(pg_control):
        t0 = time.monotonic()
        with pytest.raises(AuditUnavailable) as err:
            await log.record(full_record(name="during-1", allowed=True))
        assert time.monotonic() - t0 < 1.0  # connection refused, not a timeout
        assert err.value.buffered
        # The circuit is open now: no round trip at all.
        t0 = time.monotonic()
        with pytest.raises(AuditUnavailable):
            await log.record(full_record(name="during-2", allowed=True))
        assert time.monotonic() - t0 < 0.05
        c = log.counters()
        assert not c.store_up
        assert c.write_failures >= 1
        assert c.queue_depth == 2  # the two refusals, waiting to be written
        assert not await log.store.healthy()

    assert await log.flush(max_wait=30)
    c = log.counters()
    assert c.queue_depth == 0
    assert c.store_up
    after = await log.record(full_record(name="after"))
    assert after is not None

    rows = await chain(log)
    assert [r.name for r in rows] == ["before", "during-1", "during-2", "after"]
    for refused in rows[1:3]:
        # What the trail shows is what happened: the request was refused, no grant handed out.
        assert not refused.allowed
        assert refused.grant_jti is None
        assert refused.violations[-1].rule == AUDIT_UNAVAILABLE_RULE
    assert (await verify_store(log.store)).ok


async def test_non_required_mode_buffers_and_writes_after_restart(
    pg_control: PgCluster, pg_log: tuple[AuditLog, AuditLog]
) -> None:
    _, log = pg_log
    await log.record(full_record(name="before"))

    with stopped(pg_control):
        t0 = time.monotonic()
        for i in range(5):
            assert await log.record(full_record(name=f"during-{i}")) is None  # buffered
        assert time.monotonic() - t0 < 1.0
        c = log.counters()
        assert c.queue_depth == 5
        assert c.buffered_total == 5
        assert c.write_failures >= 1
        assert not c.store_up
        assert c.dropped == 0

    assert await log.flush(max_wait=30)
    c = log.counters()
    assert (c.queue_depth, c.buffered_total, c.written_total, c.store_up) == (0, 5, 6, True)
    rows = await chain(log)
    # Written once the server is back, as they were (allowed, grant kept), in order.
    assert [r.name for r in rows] == ["before", *(f"during-{i}" for i in range(5))]
    assert all(r.grant_jti is not None for r in rows)
    assert (await verify_store(log.store)).ok


async def test_non_required_buffer_is_bounded_and_counts_drops(
    pg_control: PgCluster, pg_control_dsn: str
) -> None:
    log = AuditLog(await open_store(pg_control_dsn), required=False, max_buffer=2)
    try:
        with stopped(pg_control):
            assert await log.record(full_record(name="a")) is None
            assert await log.record(full_record(name="b")) is None
            with pytest.raises(AuditBufferFull):
                await log.record(full_record(name="c"))
            c = log.counters()
            assert (c.queue_depth, c.dropped) == (2, 1)
        assert await log.flush(max_wait=30)
        assert [r.name for r in await chain(log)] == ["a", "b"]
    finally:
        await log.close()


async def test_close_while_down_counts_what_is_lost(
    pg_control: PgCluster, pg_control_dsn: str
) -> None:
    log = AuditLog(await open_store(pg_control_dsn), required=False)
    with stopped(pg_control):
        assert await log.record(full_record(name="a")) is None
        log.enqueue(full_record(name="b"))
        await log.close(max_wait=0.3)
        c = log.counters()
        assert (c.queue_depth, c.dropped) == (0, 2)  # logged and counted, not silent
    with pytest.raises(AuditUnavailable):
        await log.record(full_record())


async def test_store_opened_lazily_while_postgres_is_stopped(
    pg_control: PgCluster, pg_control_dsn: str
) -> None:
    with stopped(pg_control):
        store = await open_store(pg_control_dsn, lazy=True)
        log = AuditLog(store, required=False)
        assert await log.record(full_record(name="buffered")) is None
    try:
        assert await log.flush(max_wait=30)  # migrates the empty schema, then writes
        assert [r.name for r in await chain(log)] == ["buffered"]
    finally:
        await log.close()


@contextlib.contextmanager
def write_lock_held(backend: Backend) -> Iterator[None]:
    """Another session holds the chain's write lock: the store hangs instead of failing."""
    if backend.name == "sqlite":
        with contextlib.closing(sqlite3.connect(backend.db, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")
    else:
        with psycopg.connect(backend.db, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (CHAIN_LOCK_KEY,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (CHAIN_LOCK_KEY,))


async def test_required_mode_times_out_when_the_store_hangs(backend: Backend) -> None:
    log = AuditLog(await open_store(backend.db), required=True, write_timeout=0.5, retry_max=0.2)
    try:
        await log.record(full_record(name="before"))
        with write_lock_held(backend):
            t0 = time.monotonic()
            with pytest.raises(AuditUnavailable):
                await log.record(full_record(name="hung", allowed=True))
            assert time.monotonic() - t0 < 1.5
        assert await log.flush(max_wait=30)
        rows = await chain(log)
        # The timed-out write was abandoned before it took the lock, so only the refusal is
        # written: the trail does not claim an admission that the caller refused.
        assert [(r.name, r.allowed) for r in rows] == [("before", False), ("hung", False)]
        assert rows[1].violations[-1].rule == AUDIT_UNAVAILABLE_RULE
        assert (await verify_store(log.store)).ok
    finally:
        await log.close()
