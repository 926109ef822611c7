"""Exceptions raised by the audit package.

Callers only need two of them: ``AuditUnavailable`` (the webhook must refuse the request because
the decision could not be recorded) and ``AuditStoreError`` (a store operation failed).
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every audit error."""


class AuditStoreError(AuditError):
    """A store operation failed (database unreachable, locked, disk full, ...).

    Backend exceptions (sqlite3, psycopg) are wrapped so that callers never depend on a driver.
    """


class CorruptRecord(AuditStoreError):
    """A stored row cannot be turned back into a record, or is not stored the way the store
    writes it (someone wrote garbage into it, or edited a column's type or encoding).

    Raised while reading so that ``verify`` can report the row instead of crashing.
    """

    def __init__(self, seq: int | None, reason: str, *, record_id: int | None = None) -> None:
        super().__init__(f"audit row seq={seq} id={record_id} is corrupt: {reason}")
        self.seq = seq
        self.record_id = record_id
        self.reason = reason


class AuditUnavailable(AuditError):
    """The decision could not be durably recorded; the caller must refuse the request.

    ``buffered`` tells whether the resulting refusal was queued to be written once the store
    comes back (False only when the in-memory buffer is full).
    """

    def __init__(self, message: str, *, buffered: bool) -> None:
        super().__init__(message)
        self.buffered = buffered


class AuditBufferFull(AuditUnavailable):
    """Non-required mode: the store is down and the in-memory buffer is full.

    The record is lost (and counted as ``dropped``); raising makes the loss visible to the caller
    instead of silent.
    """
