"""Fixtures for the audit tests: a real SQLite file and a real PostgreSQL server.

PostgreSQL: ``KUBE_INTENT_TEST_PG_DSN`` if set; otherwise a throwaway cluster is initdb'ed in a
temporary directory and started with ``pg_ctl`` on 127.0.0.1 and a free port (Debian's
``postgresql`` package provides the binaries). Without binaries the PostgreSQL tests are skipped,
except under ``CI=true`` where that is a failure: CI must not silently test one backend.

Each test gets its own schema (``search_path`` in the DSN), so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.audit import (
    Backend,
    PgCluster,
    dataset,
    find_pg_bindir,
    no_binaries,
    schema_dsn,
    spawn_child,
)
from webhook.audit import AuditRecord, AuditStore, open_store


@contextlib.contextmanager
def own_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster from Debian's binaries (skip, or fail in CI, without)."""
    bindir = find_pg_bindir()
    if bindir is None:
        no_binaries()
    assert bindir is not None
    cluster = PgCluster.create(bindir)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    external = os.environ.get("KUBE_INTENT_TEST_PG_DSN")
    if external:
        yield PgCluster(dsn=external)
        return
    with own_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_control(pg_cluster: PgCluster) -> Iterator[PgCluster]:
    """A server the tests may stop and start (outage tests): ours, even with an external DSN."""
    if pg_cluster.controllable:
        yield pg_cluster
        return
    with own_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> Iterator[str]:
    """DSN of an empty schema of its own on the session's PostgreSQL server."""
    yield from schema_dsn(pg_cluster.dsn)


@pytest.fixture
def pg_control_dsn(pg_control: PgCluster) -> Iterator[str]:
    yield from schema_dsn(pg_control.dsn)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "audit.db"))
    return Backend("postgres", request.getfixturevalue("pg_dsn"))


@pytest_asyncio.fixture
async def store(backend: Backend) -> AsyncIterator[AuditStore]:
    s = await open_store(backend.db)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def records() -> list[AuditRecord]:
    return dataset()


@pytest.fixture
def spawn() -> Callable[..., subprocess.Popen[str]]:
    return spawn_child
