"""The store contract, against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.audit import BASE_TIME, HOSTILE_JSON, Backend, full_record
from webhook.audit import (
    AuditFilter,
    AuditRecord,
    AuditStore,
    AuditStoreError,
    CorruptRecord,
    StoredRecord,
    open_store,
    verify_store,
)
from webhook.audit.rows import schema_is_current

CHAIN_FIELDS = {"id", "seq", "prev_hash", "hash"}


def content(record: AuditRecord) -> dict[str, Any]:
    return record.model_dump(exclude=CHAIN_FIELDS)


async def test_every_field_round_trips(store: AuditStore) -> None:
    record = full_record()
    stored = await store.append(record)
    assert stored.seq == 1
    assert stored.hash == stored.recompute_hash()

    got = await store.get(stored.id)
    assert got == stored
    assert got is not None
    assert content(got) == content(record)
    assert got.time == BASE_TIME  # microseconds and time zone kept
    assert got.input is not None
    assert got.input["workload"]["big"] == 2**63 - 1
    assert got.intent is not None
    assert got.intent["purpose"] == "résumé des tickets — 要約"

    page = await store.query(AuditFilter())
    assert page.records == [stored]


async def test_minimal_record_round_trips(store: AuditStore) -> None:
    record = AuditRecord(kind="token", allowed=True)
    stored = await store.append(record)
    assert content(stored) == content(record)
    assert await store.get(stored.id) == stored


async def test_get_unknown_id(store: AuditStore) -> None:
    assert await store.get(424242) is None


async def test_chain_links_and_iter_all(store: AuditStore, records: list[AuditRecord]) -> None:
    stored = await store.append_many(records[:5])
    stored += [await store.append(r) for r in records[5:]]
    assert [s.seq for s in stored] == list(range(1, 21))
    assert stored[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
    assert [r async for r in store.iter_all()] == stored
    result = await verify_store(store)
    assert result.ok
    assert result.checked == 20
    assert result.head_hash == stored[-1].hash


@pytest.mark.parametrize("case", list(HOSTILE_JSON), ids=list(HOSTILE_JSON))
async def test_hostile_input_is_recorded_and_verifies(store: AuditStore, case: str) -> None:
    value, expected = HOSTILE_JSON[case]
    stored = await store.append(full_record(allowed=False, input={"pod": value}))
    assert stored.input == {"pod": expected}
    assert await store.get(stored.id) == stored
    assert (await verify_store(store)).ok


# -- admitted: may this pod get tokens? ----------------------------------------------------

POD = "0b5e1e34-8d3f-4f7e-9c1a-5d2f3e4a5b6c"
GRANT = "01HQ0000000000000000000000"


def admission(name: str = "pod", **overrides: Any) -> AuditRecord:
    fields = {"allowed": True, "violations": [], "pod_uid": POD, "grant_jti": GRANT, **overrides}
    return full_record(name=name, **fields)


# name -> (records written, pod_uid asked, grant_jti asked, index of the row found or None)
ADMITTED: dict[str, tuple[list[AuditRecord], str, str | None, int | None]] = {
    "allowed-admission": ([admission()], POD, None, 0),
    "newest-allowed-row": ([admission("a"), admission("b")], POD, None, 1),
    "denied-row-does-not-count": ([admission(allowed=False)], POD, None, None),
    "later-denial-leaves-the-allowed-row": (
        [admission("a"), admission("b", allowed=False)],
        POD,
        None,
        0,
    ),
    "token-row-does-not-count": ([admission(kind="token")], POD, None, None),
    "other-pod-does-not-count": ([admission(pod_uid="other")], POD, None, None),
    "row-without-pod-uid-does-not-count": ([admission(pod_uid=None)], POD, None, None),
    "same-grant": ([admission()], POD, GRANT, 0),
    "other-grant-does-not-count": ([admission(grant_jti="other")], POD, GRANT, None),
    "no-grant-does-not-count-when-asked": ([admission(grant_jti=None)], POD, GRANT, None),
    "newest-row-of-that-grant": (
        [admission("a"), admission("b", grant_jti="other")],
        POD,
        GRANT,
        0,
    ),
    "any-grant-when-not-asked": ([admission(grant_jti=None)], POD, None, 0),
    "empty-pod-uid-names-no-pod": ([admission(pod_uid="")], "", None, None),
}


@pytest.mark.parametrize("case", list(ADMITTED), ids=list(ADMITTED))
async def test_admitted(store: AuditStore, case: str) -> None:
    records, pod_uid, grant_jti, expected = ADMITTED[case]
    noise = full_record(name="noise", pod_uid="noise", allowed=True)
    stored = await store.append_many([noise, *records, noise])
    found = await store.admitted(pod_uid, grant_jti=grant_jti)
    assert found == (None if expected is None else stored[1 + expected])


# name -> (allowed when written, the edit, its parameter, what the error says)
TAMPERED_ADMISSIONS: dict[str, tuple[bool, str, Any, str]] = {
    # The same values in other JSON text: the row still hashes the same.
    "re-encoded": (
        True,
        "UPDATE audit_record SET user_groups = {p}",
        json.dumps(full_record().groups),
        "column user_groups",
    ),
    "denial-edited-into-admission": (
        False,
        "UPDATE audit_record SET allowed = {p}",
        True,
        "hash does not match",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERED_ADMISSIONS), ids=list(TAMPERED_ADMISSIONS))
async def test_admitted_refuses_a_tampered_row(
    store: AuditStore, backend: Backend, case: str
) -> None:
    allowed, sql, value, error = TAMPERED_ADMISSIONS[case]
    await store.append(admission(allowed=allowed))
    backend.tamper(sql, (value,))
    with pytest.raises(CorruptRecord, match=error):
        await store.admitted(POD)


def _expected(records: list[AuditRecord], f: AuditFilter) -> list[str]:
    def keep(r: AuditRecord) -> bool:
        return (
            (f.allowed is None or r.allowed == f.allowed)
            and (f.kind is None or r.kind == f.kind)
            and (f.namespace is None or r.namespace == f.namespace)
            and (f.agent is None or r.agent == f.agent)
            and (f.user is None or r.user == f.user)
            and (f.since is None or r.time >= f.since)
            and (f.until is None or r.time < f.until)
            and (f.rule is None or any(v.rule == f.rule for v in r.violations))
        )

    return [r.name for r in reversed(records) if keep(r)]


FILTERS = {
    "no-filter": AuditFilter(),
    "denied": AuditFilter(allowed=False),
    "allowed": AuditFilter(allowed=True),
    "since": AuditFilter(since=BASE_TIME + timedelta(hours=5)),
    "until": AuditFilter(until=BASE_TIME + timedelta(hours=5)),
    "since-until": AuditFilter(
        since=BASE_TIME + timedelta(hours=3), until=BASE_TIME + timedelta(hours=9)
    ),
    "namespace": AuditFilter(namespace="team-a"),
    "agent": AuditFilter(agent="coder"),
    "user": AuditFilter(user="bob"),
    "rule-deny": AuditFilter(rule="image-registry"),
    "rule-warn": AuditFilter(rule="ttl"),
    "rule-unknown": AuditFilter(rule="nope"),
    "kind": AuditFilter(kind="token"),
    "combined": AuditFilter(allowed=False, namespace="team-b", user="alice"),
}


@pytest.mark.parametrize("name", list(FILTERS), ids=list(FILTERS))
async def test_filter(store: AuditStore, records: list[AuditRecord], name: str) -> None:
    await store.append_many(records)
    f = FILTERS[name]
    page = await store.query(f, limit=100)
    assert [r.name for r in page.records] == _expected(records, f)
    assert page.next_cursor is None
    if name not in ("no-filter", "rule-unknown"):
        assert 0 < len(page.records) < len(records)  # the filter actually filters


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("f", [AuditFilter(), AuditFilter(allowed=False)], ids=["all", "denied"])
async def test_cursor_pagination(store: AuditStore, order: Any, f: AuditFilter) -> None:
    many = [full_record(name=f"p{i}", allowed=i % 4 != 0) for i in range(57)]
    for chunk in range(0, 57, 10):
        await store.append_many(many[chunk : chunk + 10])
    expected = [r.name for r in many if f.allowed is None or r.allowed == f.allowed]
    if order == "desc":
        expected.reverse()

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.query(f, cursor, limit=5, order=order)
        pages += 1
        seen += [r.name for r in page.records]
        if page.next_cursor is None:
            break
        # Rows appended while paging never shift the pages already handed out.
        await store.append(full_record(name="late", allowed=False))
        cursor = page.next_cursor
    if order == "desc":
        assert seen == expected  # no duplicates, no holes
    else:
        assert seen[: len(expected)] == expected
        assert set(seen[len(expected) :]) <= {"late"}
    assert pages >= len(expected) // 5


async def test_bad_cursor_and_limit(store: AuditStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.query(AuditFilter(), "garbage")
    with pytest.raises(ValueError, match="cursor"):
        await store.query(AuditFilter(), "desc:5", order="asc")
    with pytest.raises(ValueError, match="limit"):
        await store.query(AuditFilter(), limit=0)


async def test_group_commit_batches_concurrent_appends(store: AuditStore) -> None:
    n = 64
    stored = await asyncio.gather(*(store.append(full_record(name=f"p{i}")) for i in range(n)))
    counters = store.counters()
    assert counters.records == n
    assert counters.transactions < n // 2, counters  # many appends per transaction
    assert counters.largest_batch > 1
    assert sorted(s.seq for s in stored) == list(range(1, n + 1))
    assert (await verify_store(store)).ok


async def test_rows_are_append_only(store: AuditStore, backend: Backend) -> None:
    await store.append(full_record())
    with pytest.raises(Exception, match="append-only"):
        backend.execute("UPDATE audit_record SET allowed = {p}", (True,))
    with pytest.raises(Exception, match="append-only"):
        backend.execute("DELETE FROM audit_record")


async def test_schema_version_and_reopen(store: AuditStore, backend: Backend) -> None:
    await store.append(full_record())
    applied = [(1,), (2,), (3,)]
    assert backend.execute("SELECT version FROM schema_version ORDER BY version") == applied
    again = await open_store(backend.db)  # migrations already applied: a no-op
    try:
        assert len([r async for r in again.iter_all()]) == 1
    finally:
        await again.close()
    assert backend.execute("SELECT version FROM schema_version ORDER BY version") == applied


async def test_refuses_a_newer_schema(store: AuditStore, backend: Backend) -> None:
    backend.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (99, {p})",
        ("2025-01-01T00:00:00Z",),
    )
    with pytest.raises(AuditStoreError, match="newer"):
        await open_store(backend.db)


async def test_healthy_and_close(store: AuditStore) -> None:
    assert await store.healthy()
    await store.close()
    assert not await store.healthy()
    with pytest.raises(AuditStoreError, match="closed"):
        await store.append(full_record())


async def test_appends_from_many_tasks_keep_one_chain(store: AuditStore) -> None:
    async def writer(w: int) -> list[StoredRecord]:
        return [await store.append(full_record(name=f"w{w}-{i}")) for i in range(10)]

    results = await asyncio.gather(*(writer(w) for w in range(8)))
    assert sum(len(r) for r in results) == 80
    result = await verify_store(store)
    assert result.ok
    assert result.checked == 80


# -- open_store ----------------------------------------------------------------------------


async def test_open_sqlite_url_and_permissions(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///sub/audit.db")  # SQLAlchemy style: relative path
    try:
        await store.append(full_record())
    finally:
        await store.close()
    path = tmp_path / "sub" / "audit.db"
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # the trail is not world-readable
    absolute = await open_store(f"sqlite:///{path}")  # sqlite:////abs/path
    try:
        assert len((await absolute.query(AuditFilter())).records) == 1
    finally:
        await absolute.close()


async def test_open_missing_sqlite_without_create(tmp_path: Path) -> None:
    with pytest.raises(AuditStoreError, match="no audit database"):
        await open_store(str(tmp_path / "typo.db"), create=False)
    assert not (tmp_path / "typo.db").exists()


async def test_open_refuses_memory_database_and_odd_urls() -> None:
    with pytest.raises(ValueError, match="file path"):
        await open_store(":memory:")
    with pytest.raises(ValueError, match="sqlite:///"):
        await open_store("sqlite://audit.db")


async def test_open_postgres_down_fails_unless_lazy() -> None:
    dsn = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    with pytest.raises(AuditStoreError, match="cannot open"):
        await open_store(dsn)
    lazy = await open_store(dsn, lazy=True)
    try:
        assert not await lazy.healthy()
        with pytest.raises(AuditStoreError):
            await lazy.append(full_record())
    finally:
        await lazy.close()


@pytest.mark.parametrize(
    ("current", "migrate"), [(0, True), (1, True), (2, False)], ids=["empty", "older", "current"]
)
def test_schema_version_decides_whether_to_migrate(current: int, migrate: bool) -> None:
    assert schema_is_current(current, 2) is not migrate


def test_a_database_from_a_newer_kube_intent_is_refused() -> None:
    with pytest.raises(AuditStoreError, match="schema version 3 is newer than this kube-intent"):
        schema_is_current(3, 2)
