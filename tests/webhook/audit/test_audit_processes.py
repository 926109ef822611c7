"""Several writer processes, and a writer killed with SIGKILL, on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable

from tests.support.audit import Backend
from webhook.audit import AuditStore, StoredRecord, open_store, verify_store

Spawn = Callable[..., subprocess.Popen[str]]


def acked_ids(output: str) -> list[int]:
    """Ids the child printed after ``append`` returned (a line cut by SIGKILL is ignored)."""
    ids = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack" and parts[2].isdigit():
            ids.append(int(parts[1]))
    return ids


async def read_chain(db: str) -> tuple[list[StoredRecord], AuditStore]:
    store = await open_store(db)
    return [r async for r in store.iter_all()], store


async def test_two_processes_append_to_one_chain(backend: Backend, spawn: Spawn) -> None:
    count = 200
    start_at = f"{time.time() + 1.5:.3f}"  # both start writing together, after interpreter start
    procs = {
        label: spawn(
            backend.db,
            "--count",
            str(count),
            "--concurrency",
            "6",
            "--label",
            label,
            "--start-at",
            start_at,
            # Webhook-like traffic rather than a saturating loop: SQLite's lock is not fair, and
            # one process writing flat out may hold it until the other is done (still correct,
            # but then the test would not show the writers interleaving).
            "--pause",
            "0.005",
        )
        for label in ("proc-a", "proc-b")
    }
    acks: dict[str, list[int]] = {}
    for label, proc in procs.items():
        out, err = await asyncio.to_thread(proc.communicate, timeout=180)
        assert proc.returncode == 0, err
        acks[label] = acked_ids(out)
        assert len(acks[label]) == count

    chain, store = await read_chain(backend.db)
    try:
        result = await verify_store(store)
    finally:
        await store.close()
    assert result.ok, result
    assert result.checked == 2 * count
    assert [r.seq for r in chain] == list(range(1, 2 * count + 1))
    assert {r.id for r in chain} == set(acks["proc-a"]) | set(acks["proc-b"])
    for label in procs:
        assert sorted(r.name for r in chain if r.namespace == label) == sorted(
            f"{label}-{n}" for n in range(count)
        )
    # The writers really overlapped: the chain alternates between them more than once.
    switches = sum(1 for a, b in itertools.pairwise(chain) if a.namespace != b.namespace)
    assert switches > 2


async def test_sigkill_under_load_loses_no_acknowledged_record(
    backend: Backend, spawn: Spawn
) -> None:
    proc = spawn(backend.db, "--count", "0", "--concurrency", "16", "--label", "victim")
    assert proc.stdout is not None
    early: list[str] = []

    def read_some(n: int) -> None:
        assert proc.stdout is not None
        while sum(line.startswith("ack ") for line in early) < n:
            line = proc.stdout.readline()
            if not line:
                return
            early.append(line)

    try:
        await asyncio.wait_for(asyncio.to_thread(read_some, 300), timeout=120)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-flight: transactions are in progress
        rest, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    acked = acked_ids("".join(early) + rest)
    assert len(acked) >= 300

    chain, store = await read_chain(backend.db)
    try:
        stored_ids = {r.id for r in chain}
        assert set(acked) - stored_ids == set(), "acknowledged records lost"
        result = await verify_store(store)
        assert result.ok, result
        # The store carries on from the surviving head.
        nxt = await store.append(chain[-1].model_copy(update={"name": "after-kill"}))
        assert nxt.seq == chain[-1].seq + 1
        assert nxt.prev_hash == chain[-1].hash
    finally:
        await store.close()
