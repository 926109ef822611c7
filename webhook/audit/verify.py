"""``kube-intent audit verify``: walk the hash chain and report the first broken link.

Each row is checked four ways, in chain (``seq``) order:

- its ``seq`` is the next one (a gap means rows were deleted),
- its ``prev_hash`` is the previous row's ``hash`` (rows deleted, inserted or reordered, or the
  previous row edited and re-hashed),
- its ``hash`` is the hash of its content (the row was edited; ``seq`` is hashed, so a row moved
  to another position fails here too),
- and, before any of that, its columns hold exactly the stored form of the values it parses to:
  type and encoding (``allowed`` the integer 0 or 1 in SQLite, text columns text or NULL, JSON
  columns canonical JSON text). The store checks this as it reads the row (``rows.py``) and
  raises ``CorruptRecord``: a row edited only in type or encoding still hashes the same, but the
  filters of ``audit list``, which compare stored columns, would no longer find it.

What a chain cannot show: rows cut off at the end. Compare ``last_seq``/``head_hash`` with a value
kept elsewhere (a signed checkpoint, a SIEM export) for that.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from pydantic import BaseModel

from .errors import CorruptRecord
from .record import GENESIS_HASH, StoredRecord
from .store import AuditStore


class VerifyResult(BaseModel):
    ok: bool
    checked: int  # rows that verified before the first break (all of them when ok)
    first_bad_seq: int | None = None  # the chain position where it breaks
    first_bad_id: int | None = None  # the row found there (None for a missing row)
    reason: str | None = None
    last_seq: int = 0  # position and hash of the last good row: keep them to detect truncation
    head_hash: str = GENESIS_HASH


class ChainVerifier:
    """Incremental verifier: feed records in chain order, then read ``result()``."""

    def __init__(self) -> None:
        self._checked = 0
        self._expected_seq = 1
        self._prev_hash = GENESIS_HASH
        self._failure: VerifyResult | None = None

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def _fail(self, seq: int, record_id: int | None, reason: str) -> None:
        self._failure = VerifyResult(
            ok=False,
            checked=self._checked,
            first_bad_seq=seq,
            first_bad_id=record_id,
            reason=reason,
            last_seq=self._expected_seq - 1,
            head_hash=self._prev_hash,
        )

    def add(self, record: StoredRecord) -> bool:
        """Check the next record; False (and stop checking) at the first broken link."""
        if self._failure is not None:
            return False
        seq = self._expected_seq
        if record.seq != seq:
            if record.seq > seq:
                missing = f"{seq}" if record.seq == seq + 1 else f"{seq}..{record.seq - 1}"
                self._fail(
                    seq, None, f"row(s) seq {missing} missing (deleted); next is seq {record.seq}"
                )
            else:
                self._fail(
                    seq, record.id, f"row id {record.id} has seq {record.seq}, expected {seq}"
                )
            return False
        if record.prev_hash != self._prev_hash:
            self._fail(
                seq,
                record.id,
                f"prev_hash does not match the hash of seq {seq - 1} "
                "(rows deleted, inserted or reordered, or the previous row edited and re-hashed)",
            )
            return False
        if record.recompute_hash() != record.hash:
            self._fail(
                seq, record.id, "hash does not match the row's content (row edited or moved)"
            )
            return False
        self._checked += 1
        self._expected_seq += 1
        self._prev_hash = record.hash
        return True

    def corrupt(self, error: CorruptRecord) -> None:
        """Report a row that could not be read back as it was written."""
        if self._failure is None:
            reason = f"row id {error.record_id}: {error.reason}"
            self._fail(error.seq or self._expected_seq, error.record_id, reason)

    def result(self) -> VerifyResult:
        if self._failure is not None:
            return self._failure
        return VerifyResult(
            ok=True,
            checked=self._checked,
            last_seq=self._expected_seq - 1,
            head_hash=self._prev_hash,
        )


def verify_records(records: Iterable[StoredRecord]) -> VerifyResult:
    """Verify records given in chain order (e.g. an export read back)."""
    verifier = ChainVerifier()
    for record in records:
        if not verifier.add(record):
            break
    return verifier.result()


async def verify_chain(records: AsyncIterable[StoredRecord]) -> VerifyResult:
    verifier = ChainVerifier()
    try:
        async for record in records:
            if not verifier.add(record):
                break
    except CorruptRecord as exc:
        verifier.corrupt(exc)
    return verifier.result()


async def verify_store(store: AuditStore) -> VerifyResult:
    """Verify the whole chain of ``store`` (``kube-intent audit verify``)."""
    return await verify_chain(store.iter_all())
