"""Policy rows (kind "policy") in both backends: stored, read back exactly, filtered by kind,
and covered by `verify` like every other row."""

from __future__ import annotations

import pytest

from tests.support.audit import Backend, full_record
from webhook.audit import AuditFilter, AuditRecord, AuditStore, verify_store
from webhook.audit.record import PolicyDirInfo, PolicyFileDigest, PolicyLoadInfo


def policy_row(outcome: str = "loaded", error: str | None = None) -> AuditRecord:
    return AuditRecord(
        kind="policy",
        operation="POLICY_LOAD",
        name="0123456789ab",
        allowed=outcome == "loaded",
        policy_revision="0123456789ab",
        message="policies loaded (change)",
        policy_load=PolicyLoadInfo(
            outcome=outcome,  # type: ignore[arg-type]
            reason="change",
            revision="0123456789ab",
            previous="ba9876543210",
            dirs=[PolicyDirInfo(label="extra", path="/etc/kube-intent/policies", version="..x")],
            opa_url="http://127.0.0.1:8181",
            files=[PolicyFileDigest(source="extra", path="data.json", sha256="cd" * 32)],
            error=error,
            image_digest="sha256:" + "ef" * 32,
        ),
    )


async def test_policy_rows_are_stored_read_back_and_filtered(store: AuditStore) -> None:
    written = await store.append_many(
        [full_record(), policy_row(), policy_row("rejected", "x.rego:3: rego_parse_error")]
    )
    assert [r async for r in store.iter_all()] == written
    page = await store.query(AuditFilter(kind="policy"), order="asc")
    assert [r.policy_load.outcome for r in page.records if r.policy_load] == ["loaded", "rejected"]
    admissions = await store.query(AuditFilter(kind="admission"))
    assert [r.policy_load for r in admissions.records] == [None]
    result = await verify_store(store)
    assert (result.ok, result.checked) == (True, 3)


# The load's details, edited in place: each must break the chain at that row.
EDITS = {
    "revision-swapped": ('"0123456789ab"', '"ffffffffffff"'),
    "file-digest-swapped": ("cd" * 32, "00" * 32),
    "outcome-flipped": ('"loaded"', '"rejected"'),
}


@pytest.mark.parametrize("case", list(EDITS), ids=list(EDITS))
async def test_verify_catches_an_edited_policy_row(
    store: AuditStore, backend: Backend, case: str
) -> None:
    await store.append_many([full_record(), policy_row(), full_record()])
    old, new = EDITS[case]
    backend.tamper(
        "UPDATE audit_record SET policy_load = replace(policy_load, {p}, {p}) WHERE seq = 2",
        (old, new),
    )
    result = await verify_store(store)
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 2, 1)
