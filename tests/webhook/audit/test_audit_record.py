"""The record model and its canonical, hash-chained form (no database)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from tests.support.audit import BASE_TIME, HOSTILE_JSON, full_record
from webhook.audit import GENESIS_HASH, AcceleratorSummary, AuditRecord, StoredRecord
from webhook.audit.record import (
    PolicyDirInfo,
    PolicyFileDigest,
    PolicyLoadInfo,
    normalise_json,
)

# Frozen on purpose: if this changes, every existing audit trail stops verifying.
GOLDEN_CANONICAL = (
    '{"accelerators":{"claims":0,"resources":{},"total":0},"agent":null,"allowed":true,'
    '"grant_jti":null,"groups":[],"input":null,"intent":null,"intent_digest":null,"kind":'
    '"admission","latency_ms":1.5,"message":"","name":"p\\u00e9","namespace":"ns",'
    '"operation":"CREATE","policy_revision":"","prev_hash":"'
    + GENESIS_HASH
    + '","seq":1,"service_account":"","spiffe_id":null,"time":"2025-03-01T12:00:00.123456Z",'
    '"uid":"","user":"","violations":[]}'
)


def test_canonical_form_is_frozen() -> None:
    record = AuditRecord(
        time=BASE_TIME, namespace="ns", name="pé", operation="CREATE", allowed=True, latency_ms=1.5
    )
    canonical = record.canonical_bytes(seq=1, prev_hash=GENESIS_HASH)
    assert canonical.decode() == GOLDEN_CANONICAL
    assert record.compute_hash(seq=1, prev_hash=GENESIS_HASH) == (
        hashlib.sha256(GOLDEN_CANONICAL.encode()).hexdigest()
    )


NEW_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "pod-uid": ({"pod_uid": "0b5e1e34"}, '"pod_uid":"0b5e1e34"'),
    "empty-pod-uid": ({"pod_uid": ""}, '"pod_uid":""'),
    "authenticated": ({"authenticated": True}, '"authenticated":true'),
}


@pytest.mark.parametrize("case", list(NEW_FIELDS), ids=list(NEW_FIELDS))
def test_fields_added_later_are_hashed_only_when_set(case: str) -> None:
    # At their defaults they are left out (test_canonical_form_is_frozen): rows written before
    # they existed keep their hash.
    fields, fragment = NEW_FIELDS[case]
    record = AuditRecord(
        time=BASE_TIME, namespace="ns", name="pé", operation="CREATE", allowed=True, latency_ms=1.5
    )
    canonical = record.model_copy(update=fields).canonical_bytes(seq=1, prev_hash=GENESIS_HASH)
    assert fragment in canonical.decode()
    assert fragment not in GOLDEN_CANONICAL


def test_hash_excludes_id_and_hash_but_covers_chain_position() -> None:
    record = full_record()
    a = record.chained(record_id=1, seq=5, prev_hash=GENESIS_HASH)
    b = record.chained(record_id=99, seq=5, prev_hash=GENESIS_HASH)
    assert a.hash == b.hash  # the id is assigned by the database, not hashed
    assert a.recompute_hash() == a.hash
    assert record.compute_hash(seq=6, prev_hash=GENESIS_HASH) != a.hash
    assert record.compute_hash(seq=5, prev_hash="1" * 64) != a.hash


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("time", BASE_TIME + timedelta(microseconds=1)),
        ("kind", "token"),
        ("uid", "other"),
        ("operation", "UPDATE"),
        ("namespace", "team-z"),
        ("name", "other"),
        ("user", "mallory"),
        ("groups", ["system:masters"]),
        ("agent", None),
        ("service_account", "default"),
        ("spiffe_id", None),
        ("intent", {"purpose": "other"}),
        ("intent_digest", None),
        ("accelerators", AcceleratorSummary(total=8)),
        ("allowed", True),
        ("violations", []),
        ("policy_revision", "rev-2"),
        ("grant_jti", None),
        ("latency_ms", 1.0),
        ("input", None),
        ("message", "edited"),
        ("pod_uid", None),
        ("pod_uid", ""),
        ("authenticated", False),
    ],
)
def test_every_field_is_hashed(field: str, value: Any) -> None:
    original = full_record()
    changed = full_record(**{field: value})
    assert changed.compute_hash(seq=1, prev_hash=GENESIS_HASH) != original.compute_hash(
        seq=1, prev_hash=GENESIS_HASH
    )


def test_time_is_normalised_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    aware = AuditRecord(time=datetime(2025, 3, 1, 13, 0, tzinfo=cet), allowed=True)
    naive = AuditRecord(time=datetime(2025, 3, 1, 12, 0), allowed=True)
    assert aware.time == naive.time == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert aware.time.tzinfo is UTC


def test_text_the_databases_would_refuse_is_replaced() -> None:
    record = AuditRecord(name="a\x00b", message="x\ud800y", groups=["g\x00"], allowed=True)
    assert record.name == "a\ufffdb"
    assert record.message == "x?y"
    assert record.groups == ["g\ufffd"]
    record.canonical_bytes(seq=1, prev_hash=GENESIS_HASH)  # encodable


def test_unserialisable_record_fails_at_construction() -> None:
    with pytest.raises(ValidationError):
        AuditRecord(allowed=True, latency_ms=float("inf"))


@pytest.mark.parametrize("case", list(HOSTILE_JSON), ids=list(HOSTILE_JSON))
def test_hostile_json_is_normalised_before_hashing(case: str) -> None:
    # A pod that cannot be recorded as it is must still leave a row: its denial is the point.
    value, expected = HOSTILE_JSON[case]
    record = AuditRecord(allowed=False, intent={"v": value}, input={"v": value})
    assert record.input == {"v": expected}
    assert record.intent == {"v": expected}
    stored = record.chained(record_id=1, seq=1, prev_hash=GENESIS_HASH)
    assert stored.input == record.input
    assert stored.recompute_hash() == stored.hash
    assert normalise_json(record.input) == record.input  # normalising again changes nothing


def test_stored_rows_are_not_normalised() -> None:
    # Rows hashed before normalisation existed may hold what it would now change; read back,
    # they must still hash as they were written.
    row = full_record(input={"big": 2**63 - 1}).chained(record_id=1, seq=1, prev_hash=GENESIS_HASH)
    data = {**row.model_dump(), "input": {"big": 2**64}}
    old = StoredRecord.model_validate(data)
    assert old.input == {"big": 2**64}
    assert b'"big":18446744073709551616}' in old.canonical_bytes(seq=1, prev_hash=GENESIS_HASH)


def test_negative_zero_latency_is_normalised() -> None:
    assert repr(AuditRecord(allowed=True, latency_ms=-0.0).latency_ms) == "0.0"


def test_accelerator_summary_from_policy_input_workload() -> None:
    workload = {
        "accelerators": [
            {"container": "a", "resource": "nvidia.com/gpu", "count": 2},
            {"container": "b", "resource": "nvidia.com/gpu", "count": 1},
            {"container": "b", "resource": "amd.com/gpu", "count": 1},
        ],
        "claims": [{"name": "c1"}],
        "total": 5,
    }
    summary = AcceleratorSummary.from_workload(workload)
    assert summary == AcceleratorSummary(
        total=5, resources={"nvidia.com/gpu": 3, "amd.com/gpu": 1}, claims=1
    )


def test_stored_record_requires_chain_fields() -> None:
    with pytest.raises(ValidationError):
        StoredRecord(allowed=True)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        full_record(hash="not-hex")


def test_denied_rules() -> None:
    assert full_record().denied_rules == ["image-registry"]


# -- policy rows (kind "policy") -----------------------------------------------------------------

POLICY_LOAD = PolicyLoadInfo(
    outcome="loaded",
    reason="change",
    revision="0123456789ab",
    previous="ba9876543210",
    dirs=[PolicyDirInfo(label="extra", path="/etc/kube-intent/policies", version="..2026_01_01")],
    opa_url="http://127.0.0.1:8181",
    files=[PolicyFileDigest(source="extra", path="data.json", sha256="cd" * 32)],
    image_digest="sha256:" + "ef" * 32,
)
# Frozen like GOLDEN_CANONICAL: a policy row's hash must not move either.
GOLDEN_POLICY_LOAD = (
    '"policy_load":{"dirs":[{"label":"extra","path":"/etc/kube-intent/policies",'
    '"version":"..2026_01_01"}],"error":null,"files":[{"path":"data.json","sha256":"'
    + "cd" * 32
    + '","source":"extra"}],"image_digest":"sha256:'
    + "ef" * 32
    + '","opa_url":"http://127.0.0.1:8181","outcome":"loaded","previous":"ba9876543210",'
    '"reason":"change","revision":"0123456789ab"}'
)


def test_a_policy_row_hashes_its_load_and_admission_rows_keep_their_form() -> None:
    row = AuditRecord(
        time=BASE_TIME, kind="policy", allowed=True, latency_ms=1.5, policy_load=POLICY_LOAD
    )
    canonical = row.canonical_bytes(seq=1, prev_hash=GENESIS_HASH).decode()
    assert GOLDEN_POLICY_LOAD in canonical
    assert '"kind":"policy"' in canonical
    # The rest is the admission row's form, field for field: the load is only added.
    admission = row.model_copy(update={"kind": "admission", "policy_load": None})
    assert admission.canonical_bytes(seq=1, prev_hash=GENESIS_HASH).decode() == (
        canonical.replace("," + GOLDEN_POLICY_LOAD, "").replace('"policy"', '"admission"')
    )
    # Dumps of admission rows do not grow a policy_load key (exports keep their form).
    assert "policy_load" not in full_record().model_dump(mode="json")
    assert row.model_dump(mode="json")["policy_load"]["revision"] == "0123456789ab"


def test_every_field_of_the_load_is_hashed() -> None:
    row = AuditRecord(kind="policy", allowed=True, policy_load=POLICY_LOAD)
    for update in ({"outcome": "rejected"}, {"previous": None}, {"image_digest": None}):
        changed = row.model_copy(update={"policy_load": POLICY_LOAD.model_copy(update=update)})
        assert changed.compute_hash(seq=1, prev_hash=GENESIS_HASH) != row.compute_hash(
            seq=1, prev_hash=GENESIS_HASH
        )


@pytest.mark.parametrize(
    ("kind", "load"),
    [
        pytest.param("policy", None, id="policy-without-load"),
        pytest.param("admission", POLICY_LOAD, id="admission-with-load"),
    ],
)
def test_the_load_belongs_to_policy_rows_only(kind: str, load: PolicyLoadInfo | None) -> None:
    with pytest.raises(ValidationError, match="policy_load is set on kind=policy records"):
        AuditRecord.model_validate({"kind": kind, "allowed": True, "policy_load": load})
