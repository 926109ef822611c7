"""Policy loads on the record: a real OPA loads, reloads and refuses; a real SQLite store keeps
one `policy` row per load in the same hash chain as the decisions, and `audit verify` holds."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.audit import full_record
from tests.support.opa import bundle_copy, engine_for, set_data, write
from tests.support.servers import start, stop, wait_until
from webhook.audit import AuditFilter, AuditLog, StoredRecord, open_store, verify_store
from webhook.audit.record import PolicyLoadInfo
from webhook.opa_process import OpaProcess
from webhook.policy import OpaPolicyEngine, PolicyLoadError
from webhook.policy_audit import IMAGE_DIGEST_ENV, record_policy_loads
from webhook.policy_source import PolicySource

DIGEST = "sha256:" + "ab" * 32
STAMP = "..2026_11_29_22_58_12.123456789"
SYNTAX_ERROR = "package kube_intent.admission\n\nviolation contains v if {\n"


@dataclass
class Loaded:
    engine: OpaPolicyEngine
    audit: AuditLog
    policies: Path
    extra: Path

    async def rows(self) -> list[StoredRecord]:
        assert await self.audit.flush(10.0)
        page = await self.audit.store.query(AuditFilter(kind="policy"), order="asc")
        return page.records


def configmap_volume(root: Path, files: dict[str, str]) -> Path:
    """A directory laid out as the kubelet projects a ConfigMap: timestamped dir, ..data link."""
    root.mkdir(parents=True)
    for name, text in files.items():
        write(root / STAMP / name, text)
        (root / name).symlink_to(f"..data/{name}")
    (root / "..data").symlink_to(STAMP)
    return root


@pytest_asyncio.fixture
async def loaded(
    opa_server: OpaProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Loaded]:
    """The webhook's start: the policies loaded into OPA, then the audit store opened and the
    loads recorded (serve.py's order)."""
    monkeypatch.setenv(IMAGE_DIGEST_ENV, DIGEST)
    policies = bundle_copy(tmp_path)
    extra = configmap_volume(tmp_path / "extra", {"data.json": '{"team": {"gpus": 4}}'})
    audit = AuditLog(await open_store(str(tmp_path / "audit.db")), required=True)
    async with engine_for(opa_server.url, PolicySource.of(policies, extra)) as engine:
        await engine.load("startup")
        record_policy_loads(engine, audit)
        yield Loaded(engine, audit, policies, extra)
    await audit.close()


async def test_the_startup_load_is_recorded_with_what_made_it(loaded: Loaded) -> None:
    [row] = await loaded.rows()
    load = row.policy_load
    assert load is not None
    assert (row.kind, row.allowed, row.policy_revision) == ("policy", True, loaded.engine.revision)
    assert (load.outcome, load.reason, load.revision, load.previous) == (
        "loaded",
        "startup",
        loaded.engine.revision,
        None,
    )
    assert load.opa_url == loaded.engine.url
    assert load.image_digest == DIGEST
    assert [(d.label, d.path, d.version) for d in load.dirs] == [
        ("policies", str(loaded.policies), None),
        ("extra", str(loaded.extra), STAMP),
    ]
    files = {(f.source, f.path): f.sha256 for f in load.files}
    data = (loaded.policies / "data.json").read_bytes()
    assert files[("policies", "data.json")] == hashlib.sha256(data).hexdigest()
    assert ("extra", "data.json") in files


def enforcement_override(loaded: Loaded) -> None:
    set_data(loaded.policies, lambda d: d["kube_intent"]["config"]["enforcement"].update(x="warn"))


def syntax_error(loaded: Loaded) -> None:
    write(loaded.policies / "broken.rego", SYNTAX_ERROR)


def data_not_an_object(loaded: Loaded) -> None:
    write(loaded.policies / "team" / "data.json", "[1]")


# name -> (the change, outcome, whether the candidate had a revision, what the error names)
RELOADS: dict[str, tuple[Callable[[Loaded], None], str, bool, str | None]] = {
    "data-change-loaded": (enforcement_override, "loaded", True, None),
    "syntax-error-rejected": (syntax_error, "rejected", True, "broken.rego:"),
    "unbuildable-data-rejected": (data_not_an_object, "rejected", False, "must hold an object"),
}


@pytest.mark.parametrize("case", list(RELOADS), ids=list(RELOADS))
async def test_a_reload_is_a_policy_row_in_the_verified_chain(loaded: Loaded, case: str) -> None:
    change, outcome, has_revision, error = RELOADS[case]
    good = loaded.engine.revision
    # A decision between the two loads: policy rows share the chain with admissions.
    await loaded.audit.record(full_record(policy_revision=good))
    change(loaded)
    if outcome == "loaded":
        await loaded.engine.load("change")
        serving = loaded.engine.revision
        assert serving != good
    else:
        with pytest.raises(PolicyLoadError):
            await loaded.engine.load("change")
        serving = good
        assert loaded.engine.revision == good  # the last good set keeps serving
        # OPA still answers with the good set: an empty input is denied, not an error.
        assert not (await loaded.engine.evaluate({})).allowed

    startup, reload = await loaded.rows()
    load = reload.policy_load
    assert load is not None
    assert (load.outcome, load.reason, load.previous) == (outcome, "change", good)
    assert reload.allowed is (outcome == "loaded")
    assert reload.policy_revision == serving
    assert (load.revision is not None) is has_revision
    if error is None:
        assert load.error is None
        assert load.revision == serving
    else:
        assert load.error is not None
        assert error in load.error
        assert error in reload.message
    assert reload.seq == startup.seq + 2  # after the admission row
    result = await verify_store(loaded.audit.store)
    assert (result.ok, result.checked) == (True, 3)


# -- kube-intent serve: the wiring ---------------------------------------------------------------


async def policy_rows(db: Path) -> tuple[list[PolicyLoadInfo], bool]:
    """The policy loads a stopped server recorded, and whether its chain verifies."""
    store = await open_store(str(db), create=False)
    try:
        page = await store.query(AuditFilter(kind="policy"), order="asc")
        loads = [r.policy_load for r in page.records if r.policy_load is not None]
        return loads, (await verify_store(store)).ok
    finally:
        await store.close()


def test_serve_records_every_load_in_its_audit_trail(tmp_path: Path, opa_bin: str) -> None:
    policies = bundle_copy(tmp_path)
    server = start(
        tmp_path,
        opa_bin,
        "--dev",
        "--policies",
        str(policies),
        KUBE_INTENT_POLICY_RELOAD_SECONDS="0.2",
        **{IMAGE_DIGEST_ENV: DIGEST},
    )

    def logged(message: str) -> bool:
        return any(line.get("msg") == message for line in server.log_lines())

    try:
        with server.client() as client:
            wait_until(lambda: client.get("/readyz").status_code == 200)
        set_data(policies, lambda d: d["kube_intent"]["config"]["enforcement"].update(x="warn"))
        wait_until(
            lambda: sum(line.get("msg") == "policies loaded" for line in server.log_lines()) == 2
        )
        write(policies / "broken.rego", SYNTAX_ERROR)
        wait_until(lambda: logged("policies refused"))
    finally:
        assert stop(server) == 0
    loads, verified = asyncio.run(policy_rows(tmp_path / "state" / "audit.db"))
    assert [(p.outcome, p.reason) for p in loads] == [
        ("loaded", "startup"),
        ("loaded", "change"),
        ("rejected", "change"),
    ]
    assert [p.image_digest for p in loads] == [DIGEST] * 3
    assert verified
