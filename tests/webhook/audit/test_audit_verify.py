"""``verify`` against rows tampered with raw SQL, as someone with database access would."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.audit import Backend, full_record
from webhook.audit import AuditStore, StoredRecord, verify_records, verify_store


async def seed(store: AuditStore, n: int = 6) -> list[StoredRecord]:
    return [await store.append(full_record(name=f"pod-{i}", allowed=i % 2 == 0)) for i in range(n)]


async def test_untouched_chain_verifies(store: AuditStore) -> None:
    stored = await seed(store)
    result = await verify_store(store)
    assert result.ok
    assert result.checked == 6
    assert result.first_bad_seq is None
    assert result.last_seq == 6
    assert result.head_hash == stored[-1].hash


async def test_empty_chain_verifies(store: AuditStore) -> None:
    result = await verify_store(store)
    assert result.ok
    assert result.checked == 0


def _edit(b: Backend, rows: list[StoredRecord]) -> None:
    b.tamper("UPDATE audit_record SET allowed = NOT allowed WHERE seq = 3")


def _edit_json(b: Backend, rows: list[StoredRecord]) -> None:
    b.tamper(
        "UPDATE audit_record SET violations = {p} WHERE seq = 3",
        ('[{"enforcement":"warn","field":"","message":"","rule":"image-registry"}]',),
    )


def _edit_and_rehash(b: Backend, rows: list[StoredRecord]) -> None:
    # A careful attacker recomputes the edited row's hash; the next row's link then breaks.
    edited = rows[2].model_copy(update={"message": "nothing to see"})
    new_hash = edited.compute_hash(seq=3, prev_hash=rows[2].prev_hash)
    b.tamper(
        "UPDATE audit_record SET message = {p}, hash = {p} WHERE seq = 3",
        ("nothing to see", new_hash),
    )


def _delete(b: Backend, rows: list[StoredRecord]) -> None:
    b.tamper("DELETE FROM audit_record WHERE seq = 3")


def _delete_and_renumber(b: Backend, rows: list[StoredRecord]) -> None:
    b.tamper("DELETE FROM audit_record WHERE seq = 3")
    for seq in (4, 5, 6):
        b.tamper("UPDATE audit_record SET seq = {p} WHERE seq = {p}", (seq - 1, seq))


def _reorder(b: Backend, rows: list[StoredRecord]) -> None:
    b.tamper("UPDATE audit_record SET seq = -1 WHERE seq = 2")
    b.tamper("UPDATE audit_record SET seq = 2 WHERE seq = 4")
    b.tamper("UPDATE audit_record SET seq = 4 WHERE seq = -1")


def _corrupt(b: Backend, rows: list[StoredRecord]) -> None:
    b.tamper("UPDATE audit_record SET input = {p} WHERE seq = 3", ("{not json",))


def _forge_authenticated(b: Backend, rows: list[StoredRecord]) -> None:
    # What a token would rest on: the row claims the API server sent it.
    b.tamper("UPDATE audit_record SET authenticated = NOT authenticated WHERE seq = 3")


# Re-encoded JSON parses to the same values, so the hash still matches: only the exact stored
# form shows the edit (it matters where the text itself is compared, e.g. a --rule filter).
def _respace_groups(b: Backend, rows: list[StoredRecord]) -> None:
    groups = json.dumps(rows[2].groups)  # ", " between items
    b.tamper("UPDATE audit_record SET user_groups = {p} WHERE seq = 3", (groups,))


def _unescape_intent(b: Backend, rows: list[StoredRecord]) -> None:
    intent = json.dumps(rows[2].intent, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    b.tamper("UPDATE audit_record SET intent = {p} WHERE seq = 3", (intent,))


def _unsort_violations(b: Backend, rows: list[StoredRecord]) -> None:
    violations = json.dumps([dict(reversed(v.model_dump().items())) for v in rows[2].violations])
    b.tamper("UPDATE audit_record SET violations = {p} WHERE seq = 3", (violations,))


TAMPERING: dict[str, tuple[Callable[[Backend, list[StoredRecord]], None], int, str]] = {
    "edited-row": (_edit, 3, "hash does not match"),
    "edited-violations": (_edit_json, 3, "hash does not match"),
    "edited-and-rehashed": (_edit_and_rehash, 4, "prev_hash"),
    "deleted-row": (_delete, 3, "seq 3 missing"),
    "deleted-and-renumbered": (_delete_and_renumber, 3, "prev_hash"),
    "reordered-rows": (_reorder, 2, "prev_hash"),
    "unreadable-row": (_corrupt, 3, "unreadable"),
    "forged-authenticated": (_forge_authenticated, 3, "hash does not match"),
    "groups-re-encoded-with-spaces": (_respace_groups, 3, "column user_groups holds text"),
    "intent-re-encoded-unescaped": (_unescape_intent, 3, "column intent holds text"),
    "violations-keys-unsorted": (_unsort_violations, 3, "column violations holds text"),
}
# Rows that are there but not stored as written: verify names them.
NAMED_ROW = {
    "unreadable-row",
    "groups-re-encoded-with-spaces",
    "intent-re-encoded-unescaped",
    "violations-keys-unsorted",
}


@pytest.mark.parametrize("case", list(TAMPERING), ids=list(TAMPERING))
async def test_verify_reports_first_broken_link(
    store: AuditStore, backend: Backend, case: str
) -> None:
    rows = await seed(store)
    tamper, bad_seq, reason = TAMPERING[case]
    tamper(backend, rows)
    result = await verify_store(store)
    assert not result.ok
    assert result.first_bad_seq == bad_seq, result
    assert result.reason is not None
    assert reason in result.reason
    assert result.checked == bad_seq - 1
    assert result.last_seq == bad_seq - 1
    if case != "edited-and-rehashed":  # there the last good row is the re-hashed one
        assert result.head_hash == rows[bad_seq - 2].hash
    if case in NAMED_ROW:
        assert result.first_bad_id == rows[bad_seq - 1].id
        assert f"row id {result.first_bad_id}:" in result.reason


def test_verify_records_pure() -> None:
    first = full_record(name="a").chained(record_id=1, seq=1, prev_hash="0" * 64)
    second = full_record(name="b").chained(record_id=2, seq=2, prev_hash=first.hash)
    assert verify_records([first, second]).ok
    assert not verify_records([second]).ok  # starts at seq 2: the first row is missing
    swapped = verify_records([first.model_copy(update={"name": "x"}), second])
    assert swapped.first_bad_seq == 1
