"""Helpers shared by the audit tests: the PostgreSQL test server, raw SQL access, records."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.support.admission import AppClient, post, review
from tests.support.paths import REPO
from webhook.audit import AcceleratorSummary, AuditLog, AuditRecord, open_store
from webhook.audit.record import JSON_TOO_DEEP, MAX_JSON_DEPTH
from webhook.metrics import Metrics
from webhook.recorder import AuditRecorder
from webhook.violations import Violation

# Run as a script by spawn_child: a separate process writing to the same store.
CHILD_SCRIPT = REPO / "tests" / "webhook" / "audit" / "audit_child.py"
IN_CI = os.environ.get("CI", "").lower() == "true"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# -- PostgreSQL server ------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        parts = Path(path).parts[-3].split(".")
        return tuple(int(p) for p in parts if p.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    """A PostgreSQL server for the tests; ``stop``/``start`` only when this session owns it."""

    dsn: str  # the test database, as a superuser
    bindir: Path | None = None
    datadir: Path | None = None
    port: int = 0
    sockdir: Path | None = None
    tmpdir: Path | None = None
    owned_schemas: list[str] = field(default_factory=list)

    @property
    def controllable(self) -> bool:
        return self.bindir is not None

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        assert self.datadir is not None
        assert self.sockdir is not None
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockdir}"
        log = str(self.datadir.parent / "server.log")
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-l", log, "-o", opts, "-w", "start")
        except subprocess.CalledProcessError as exc:
            server_log = Path(log).read_text() if Path(log).exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr}\n{server_log}") from exc

    def stop(self) -> None:
        assert self.datadir is not None
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    @classmethod
    def create(cls, bindir: Path) -> PgCluster:
        tmp = Path(tempfile.mkdtemp(prefix="kube-intent-pg-"))
        cluster = cls(dsn="", bindir=bindir, datadir=tmp / "data", sockdir=tmp, tmpdir=tmp)
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres", "postgres")
        cluster._run(
            "initdb",
            "-D",
            str(cluster.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",  # the cluster is thrown away; the server itself still fsyncs commits
        )
        for attempt in range(3):  # the free port may be taken between probe and bind
            cluster.port = _free_port()
            try:
                cluster.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        admin = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE kube_intent_test")
        cluster.dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/kube_intent_test"
        return cluster

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


def no_binaries() -> None:
    reason = (
        "PostgreSQL binaries not found (no /usr/lib/postgresql/*/bin/initdb or initdb on PATH) "
        "and KUBE_INTENT_TEST_PG_DSN is not set; install Debian's 'postgresql' package"
    )
    if IN_CI:
        pytest.fail(reason + " (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


def schema_dsn(base: str) -> Iterator[str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(base, options=f"-c search_path={schema}")
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# -- backends ---------------------------------------------------------------------------------


@dataclass
class Backend:
    """One store location plus raw SQL access to it (for tampering like an attacker would)."""

    name: str
    db: str

    @property
    def ph(self) -> str:
        return "?" if self.name == "sqlite" else "%s"

    def _sql(self, sql: str) -> str:
        return sql.replace("{p}", self.ph)

    def tamper(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run ``sql`` ({p} = placeholder) with the append-only triggers out of the way."""
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(self.db, isolation_level=None)) as conn:
                conn.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
                conn.execute("DROP TRIGGER IF EXISTS audit_record_no_delete")
                conn.execute(self._sql(sql), params)
        else:
            with psycopg.connect(self.db, autocommit=True) as pconn:
                pconn.execute("ALTER TABLE audit_record DISABLE TRIGGER USER")
                pconn.execute(self._sql(sql), params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Plain SQL, triggers in place."""
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(self.db, isolation_level=None)) as conn:
                return conn.execute(self._sql(sql), params).fetchall()
        with psycopg.connect(self.db, autocommit=True) as pconn:
            cur = pconn.execute(self._sql(sql), params)
            return cur.fetchall() if cur.description else []


# -- records ----------------------------------------------------------------------------------

BASE_TIME = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def full_record(**overrides: Any) -> AuditRecord:
    """A record with every field set to something non-default."""
    data: dict[str, Any] = {
        "time": BASE_TIME,
        "kind": "admission",
        "uid": "6f1c1a56-1c55-4e0e-9a47-3d0f6b0b2b11",
        "operation": "CREATE",
        "namespace": "team-a",
        "name": "llm-7b-xk2p",
        "user": "system:serviceaccount:kube-system:replicaset-controller",
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "agent": "summarizer",
        "service_account": "summarizer",
        "spiffe_id": "spiffe://cluster.local/ns/team-a/sa/summarizer",
        "intent": {
            "purpose": "résumé des tickets — 要約",
            "models": ["llama-3-8b"],
            "accelerators": {"count": 2, "resource": "nvidia.com/gpu"},
            "ttlSeconds": 900,
            "temperature": 0.1,
            "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
        },
        "intent_digest": "sha256:" + "ab" * 32,
        "accelerators": AcceleratorSummary(
            total=3, resources={"nvidia.com/gpu": 2, "nvidia.com/mig-1g.10gb": 1}, claims=1
        ),
        "allowed": False,
        "violations": [
            Violation(
                rule="image-registry",
                message="image docker.io/x is not from an allowed registry",
                enforcement="deny",
                field="spec.containers[0].image",
            ),
            Violation(rule="ttl", message="ttl above 1h", enforcement="warn", field="intent.ttl"),
            Violation(rule="egress", message="would deny", enforcement="dryrun", field="intent"),
        ],
        "policy_revision": "bundle-2025-03-01.1",
        "grant_jti": "01HQ0000000000000000000000",
        "latency_ms": 12.345678,
        "input": {
            "request": {"uid": "6f1c", "dryRun": False, "userInfo": {"username": "u"}},
            "pod": {"metadata": {"name": "llm", "labels": {"kube-intent.io/agent": "summarizer"}}},
            "workload": {"total": 3, "big": 2**63 - 1, "ratio": 1e-7},  # the largest int kept
        },
        "message": "denied: image-registry: image docker.io/x is not from an allowed registry",
        "pod_uid": "0b5e1e34-8d3f-4f7e-9c1a-5d2f3e4a5b6c",
        "authenticated": True,
    }
    data.update(overrides)
    return AuditRecord(**data)


def nested(levels: int, bottom: Any = "bottom") -> Any:
    """``levels`` dicts inside each other (built in a loop: any depth, no recursion)."""
    value = bottom
    for _ in range(levels):
        value = {"d": value}
    return value


# What a lenient parser makes of a hostile pod, and what the record keeps of it as the value of a
# key of ``input`` (or ``intent``): name -> (value, normalised value).
HOSTILE_JSON: dict[str, tuple[Any, Any]] = {
    "nan": (float("nan"), "NaN"),
    "infinity": (float("inf"), "Infinity"),
    "minus-infinity": (float("-inf"), "-Infinity"),
    "int64-max-kept": (2**63 - 1, 2**63 - 1),
    "int64-min-kept": (-(2**63), -(2**63)),
    "int-above-int64": (2**63, "9223372036854775808"),
    "int-below-int64": (-(2**63) - 1, "-9223372036854775809"),
    # Beyond Python's 4,300-digit limit on printing integers in decimal: hex instead.
    "int-of-4301-digits": (10**4300, hex(10**4300)),
    "lone-surrogate-value": ("a\ud800b", "a?b"),
    "lone-surrogate-key": ({"k\udfff": 1}, {"k?": 1}),
    "nul-in-value": ("a\x00b", "a\ufffdb"),
    "non-string-key": ({1: "x"}, {"1": "x"}),
    "tuple": ((1, 2.5), [1, 2.5]),
    # ``input`` is the first of the MAX_JSON_DEPTH levels kept; this value starts at the second.
    "nested-100000-deep": (nested(100_000), nested(MAX_JSON_DEPTH - 1, JSON_TOO_DEEP)),
}


def dataset() -> list[AuditRecord]:
    """20 varied records for filter and pagination tests, one per hour from BASE_TIME."""
    records = []
    for i in range(20):
        denied = i % 3 == 0
        violations = []
        if denied:
            violations.append(Violation(rule="image-registry" if i % 2 else "model-allowed"))
        if i % 4 == 1:
            violations.append(Violation(rule="ttl", enforcement="warn"))
        records.append(
            AuditRecord(
                time=BASE_TIME + timedelta(hours=i),
                kind="token" if i % 5 == 4 else "admission",
                namespace="team-a" if i % 2 else "team-b",
                name=f"pod-{i:02d}",
                user="alice" if i < 10 else "bob",
                agent=None if i == 7 else ("summarizer" if i % 3 else "coder"),
                allowed=not denied,
                violations=violations,
            )
        )
    return records


def spawn_child(db: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD_SCRIPT), db, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


@contextlib.contextmanager
def stopped(cluster: PgCluster) -> Iterator[None]:
    cluster.stop()
    try:
        yield
    finally:
        cluster.start()


async def write_trail(
    make_client: AppClient, db: Path, admissions: Iterable[tuple[str, dict[str, Any]]]
) -> Path:
    """An audit database at `db` written by the webhook (the real app around the real OPA) for
    these (webhook path, pod) admissions, in order."""
    log = AuditLog(await open_store(str(db)), required=True)
    async with make_client(recorder=AuditRecorder(log, Metrics(), lambda: "rev-1")) as client:
        for webhook, pod in admissions:
            await post(client, webhook, review(pod))
    await log.close()
    return db
