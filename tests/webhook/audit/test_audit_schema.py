"""Schema 2 and the stored column types, tested as someone holding the database would tamper.

Schema 1 (SQLite) did not type its columns: the text 'false' in ``allowed`` or a blob in ``agent``
read back as the hashed values, so ``verify`` passed while ``audit list --denied`` / ``--agent``
no longer matched the row. Schema 2 makes the SQLite table STRICT, its migration refuses rows of
the wrong type instead of coercing them, and every read checks each column's type and encoding
whatever the table allows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.audit import Backend, full_record
from tests.support.cli import run_cli
from webhook.audit import (
    GENESIS_HASH,
    AuditStore,
    AuditStoreError,
    StoredRecord,
    open_store,
    verify_store,
)
from webhook.audit.postgres import MIGRATIONS as PG_MIGRATIONS
from webhook.audit.rows import COLUMNS, Dialect, record_params
from webhook.audit.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

POD = "0b5e1e34-8d3f-4f7e-9c1a-5d2f3e4a5b6c"
# As each backend's _migrate created it.
SCHEMA_VERSION_TABLE = {
    "sqlite": "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    "postgres": "CREATE TABLE schema_version "
    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
}
SCHEMA_2_INDEXES = {
    "audit_record_time",
    "audit_record_namespace",
    "audit_record_agent",
    "audit_record_user",
    "audit_record_allowed",
    "audit_record_pod_uid",
}


def old_chain(*inputs: dict[str, Any] | None) -> list[StoredRecord]:
    """Rows as kube-intent hashed them before schema 2: no pod UID, not authenticated, and the
    input kept as it came (normalisation did not exist), denied, chained from the genesis."""
    rows: list[StoredRecord] = []
    prev_hash = GENESIS_HASH
    for seq, value in enumerate(inputs, start=1):
        data = full_record(name=f"old-{seq}", pod_uid=None, authenticated=False).model_dump()
        data.update(input=value, id=seq, seq=seq, prev_hash=prev_hash, hash=GENESIS_HASH)
        row = StoredRecord.model_validate(data)  # a StoredRecord is taken as it is
        row = row.model_copy(update={"hash": row.recompute_hash()})
        rows.append(row)
        prev_hash = row.hash
    return rows


def create_schema_1(backend: Backend, rows: list[StoredRecord]) -> None:
    """The database as kube-intent created and filled it before schema 2."""
    dialect: Dialect = "sqlite" if backend.name == "sqlite" else "postgres"
    migrations = SQLITE_MIGRATIONS if dialect == "sqlite" else PG_MIGRATIONS
    backend.execute(SCHEMA_VERSION_TABLE[dialect])
    for statement in migrations[0][1]:
        assert isinstance(statement, str)
        backend.execute(statement)
    backend.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (1, {p})",
        ("2025-01-01T00:00:00.000000Z",),
    )
    for row in rows:
        values = dict(zip(COLUMNS, record_params(row, dialect=dialect), strict=True))
        # The columns schemas 2 and 3 added.
        del values["pod_uid"], values["authenticated"], values["policy_load"]
        columns, marks = ", ".join(values), ", ".join(["{p}"] * len(values))
        backend.execute(
            f"INSERT INTO audit_record ({columns}) VALUES ({marks})",  # noqa: S608
            list(values.values()),
        )


def versions(backend: Backend) -> list[int]:
    return [v for (v,) in backend.execute("SELECT version FROM schema_version ORDER BY version")]


def sqlite_backend(tmp_path: Path) -> Backend:
    return Backend("sqlite", str(tmp_path / "audit.db"))


def is_strict(backend: Backend) -> bool:
    rows = backend.execute("SELECT strict FROM pragma_table_list WHERE name = 'audit_record'")
    return rows == [(1,)]


# -- migrating schema 1 -------------------------------------------------------------------


async def test_schema_1_database_is_migrated(backend: Backend) -> None:
    # One input as it could be hashed then, not as normalisation would now make it.
    rows = old_chain({"n": 1}, {"big": 2**64}, None)
    create_schema_1(backend, rows)
    store = await open_store(backend.db)
    try:
        assert [r async for r in store.iter_all()] == rows
        assert (await verify_store(store)).ok
        new = await store.append(full_record(allowed=True, violations=[], pod_uid=POD))
        assert (new.seq, new.id) == (4, 4)
        assert await store.admitted(POD) == new
        result = await verify_store(store)
        assert (result.ok, result.checked) == (True, 4)
    finally:
        await store.close()
    assert versions(backend) == [1, 2, 3]
    old = backend.execute(
        "SELECT pod_uid, authenticated, policy_load FROM audit_record WHERE seq <= 3"
    )
    assert old == [(None, 0 if backend.name == "sqlite" else False, None)] * 3
    with pytest.raises(Exception, match="append-only"):
        backend.execute("DELETE FROM audit_record")


async def test_sqlite_table_is_rebuilt_strict_with_its_indexes(tmp_path: Path) -> None:
    backend = sqlite_backend(tmp_path)
    create_schema_1(backend, old_chain({"n": 1}))
    assert not is_strict(backend)
    await (await open_store(backend.db)).close()
    assert is_strict(backend)
    indexes = backend.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_record' "
        "AND name NOT LIKE 'sqlite_autoindex_%'"
    )
    assert {name for (name,) in indexes} == SCHEMA_2_INDEXES
    assert backend.execute("SELECT name FROM sqlite_master WHERE name LIKE '%_strict'") == []


# Values of the wrong type, in SQL: name -> (column, value, the type SQLite stores it as).
# ``CAST(x AS BLOB)`` keeps the very bytes, so the row still parses to the hashed values.
WRONG_TYPES: dict[str, tuple[str, str, str]] = {
    "allowed-as-text": ("allowed", "'false'", "text"),
    "agent-as-blob": ("agent", "CAST(agent AS BLOB)", "blob"),
    "groups-as-blob": ("user_groups", "CAST(user_groups AS BLOB)", "blob"),
    "latency-as-text": ("latency_ms", "'fast'", "text"),
    "authenticated-as-text": ("authenticated", "'true'", "text"),
    "seq-as-real": ("seq", "2.5", "real"),
}
# Schema 1 has no ``authenticated`` column.
SCHEMA_1_WRONG_TYPES = [case for case in WRONG_TYPES if case != "authenticated-as-text"]


@pytest.mark.parametrize("case", SCHEMA_1_WRONG_TYPES, ids=SCHEMA_1_WRONG_TYPES)
async def test_migration_refuses_rows_of_the_wrong_type(tmp_path: Path, case: str) -> None:
    backend = sqlite_backend(tmp_path)
    create_schema_1(backend, old_chain({"n": 1}, {"n": 2}, {"n": 3}))
    column, value, stored = WRONG_TYPES[case]
    backend.tamper(f"UPDATE audit_record SET {column} = {value} WHERE id = 2")  # noqa: S608
    with pytest.raises(AuditStoreError, match=rf"row id 2 \(seq [0-9.]+\) stores {column} as"):
        await open_store(backend.db)
    # Nothing was coerced: the database is as it was.
    assert versions(backend) == [1]
    assert not is_strict(backend)
    found = backend.execute(f"SELECT typeof({column}) FROM audit_record WHERE id = 2")  # noqa: S608
    assert found == [(stored,)]


def test_verify_names_the_row_that_stops_the_migration(tmp_path: Path) -> None:
    backend = sqlite_backend(tmp_path)
    create_schema_1(backend, old_chain({"n": 1}, {"n": 2}))
    backend.tamper("UPDATE audit_record SET allowed = 'false' WHERE id = 2")
    result = run_cli("audit", "verify", "--db", backend.db)
    assert result.returncode == 1
    assert "row id 2 (seq 2) stores allowed as text" in result.stderr


# Right type, wrong encoding: copied by the migration, then reported by verify.
# name -> (column, value in SQL, what the reason names)
WRONG_ENCODINGS: dict[str, tuple[str, str, str]] = {
    "allowed-as-2": ("allowed", "2", "allowed"),
    "violations-with-spaces": (
        "violations",
        "replace(violations, '\":\"', '\": \"')",
        "violations",
    ),
    "intent-with-spaces": ("intent", "replace(intent, ',', ', ')", "intent"),
    "time-with-offset": ("time", "replace(time, 'Z', '+00:00')", "time"),
}


@pytest.mark.parametrize("case", list(WRONG_ENCODINGS), ids=list(WRONG_ENCODINGS))
async def test_migrated_row_stored_differently_fails_verify(tmp_path: Path, case: str) -> None:
    backend = sqlite_backend(tmp_path)
    rows = old_chain({"n": 1}, {"n": 2}, {"n": 3})
    create_schema_1(backend, rows)
    column, value, named = WRONG_ENCODINGS[case]
    backend.tamper(f"UPDATE audit_record SET {column} = {value} WHERE id = 2")  # noqa: S608
    store = await open_store(backend.db)
    try:
        result = await verify_store(store)
    finally:
        await store.close()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 2, 2)
    assert result.reason is not None
    assert result.reason.startswith("row id 2:")
    assert named in result.reason


# -- the STRICT table ---------------------------------------------------------------------


async def seeded(backend: Backend) -> AuditStore:
    store = await open_store(backend.db)
    for i in range(3):
        await store.append(full_record(name=f"pod-{i}"))
    return store


@pytest.mark.parametrize("case", list(WRONG_TYPES), ids=list(WRONG_TYPES))
async def test_strict_table_refuses_the_wrong_type(tmp_path: Path, case: str) -> None:
    backend = sqlite_backend(tmp_path)
    await (await seeded(backend)).close()
    column, value, stored = WRONG_TYPES[case]
    with pytest.raises(sqlite3.IntegrityError, match=f"cannot store {stored.upper()} value"):
        backend.tamper(f"UPDATE audit_record SET {column} = {value} WHERE seq = 2")  # noqa: S608


# PostgreSQL's boolean columns cannot hold 2 at all.
FLAGS = ["allowed", "authenticated"]


@pytest.mark.parametrize("column", FLAGS, ids=[f"{c}-as-2" for c in FLAGS])
async def test_flag_out_of_range_fails_verify(tmp_path: Path, column: str) -> None:
    backend = sqlite_backend(tmp_path)
    store = await seeded(backend)
    try:
        backend.tamper(f"UPDATE audit_record SET {column} = 2 WHERE seq = 2")  # noqa: S608
        result = await verify_store(store)
    finally:
        await store.close()
    assert (result.ok, result.first_bad_seq, result.first_bad_id) == (False, 2, 2)
    assert result.reason is not None
    assert result.reason.startswith("row id 2:")
    assert column in result.reason


# -- a table without STRICT at schema 2 (rebuilt by someone holding the file) ----------------


def create_untyped_schema_2(backend: Backend) -> None:
    """Schema 2's columns in schema 1's untyped table: only verify's own checks are left."""
    create_schema_1(backend, [])
    backend.execute("ALTER TABLE audit_record ADD COLUMN pod_uid TEXT")
    backend.execute("ALTER TABLE audit_record ADD COLUMN authenticated INTEGER NOT NULL DEFAULT 0")
    backend.execute("INSERT INTO schema_version (version, applied_at) VALUES (2, 'now')")


@pytest.mark.parametrize("case", list(WRONG_TYPES), ids=list(WRONG_TYPES))
async def test_verify_checks_stored_types_without_strict(tmp_path: Path, case: str) -> None:
    backend = sqlite_backend(tmp_path)
    create_untyped_schema_2(backend)
    store = await seeded(backend)
    try:
        column, value, stored = WRONG_TYPES[case]
        backend.tamper(f"UPDATE audit_record SET {column} = {value} WHERE id = 2")  # noqa: S608
        found = backend.execute(f"SELECT typeof({column}) FROM audit_record WHERE id = 2")  # noqa: S608
        assert found == [(stored,)]  # the table took it
        result = await verify_store(store)
    finally:
        await store.close()
    assert (result.ok, result.first_bad_id) == (False, 2)
    assert result.reason is not None
    assert result.reason.startswith("row id 2:")
    assert column in result.reason
