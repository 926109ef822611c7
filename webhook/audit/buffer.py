"""``AuditLog``: what the webhook calls, on top of a store, for store outages.

    try:
        await audit.record(rec)
    except AuditUnavailable:
        ...  # refuse the admission / token request

Behaviour while the store is down (a write fails or times out):

- ``required=True`` (the default, ``audit.required``): ``record`` raises ``AuditUnavailable``,
  immediately once the store is known to be down (the circuit stays open until a background probe
  succeeds), so GPU admissions are denied quickly instead of each waiting for a timeout. The
  decision the caller tried to record never takes effect, so it is not written as it was; a copy
  marked denied, with an ``audit-unavailable`` violation, is buffered instead so the trail shows
  the refusal once the store is back.
- ``required=False``: the record is buffered in memory and ``record`` returns ``None`` at once;
  a background task retries with exponential backoff and writes buffered records in their
  original order when the store returns. While the buffer is not empty, new records queue behind
  it (order is kept). The buffer is bounded; a record that does not fit is counted in
  ``dropped`` and ``AuditBufferFull`` is raised, so the loss is never silent.

When the store is up, ``record`` returns only after the row is durably committed in both modes:
killing the process never loses a decision the API server has seen.

A write that times out may still commit afterwards; the retried record is then written twice.
The trail is at-least-once: a duplicate row is preferred to a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from dataclasses import dataclass

from webhook.violations import Violation

from .errors import AuditBufferFull, AuditStoreError, AuditUnavailable
from .record import AuditRecord, StoredRecord
from .store import AuditStore

log = logging.getLogger(__name__)

AUDIT_UNAVAILABLE_RULE = "audit-unavailable"
FLUSH_BATCH = 500


@dataclass(frozen=True)
class AuditCounters:
    """Snapshot for metrics (``/metrics``: audit queue depth, audit write failures)."""

    queue_depth: int  # records buffered in memory, waiting for the store
    buffered_total: int  # records that ever went through the buffer
    written_total: int  # records this AuditLog wrote (directly or from the buffer)
    write_failures: int  # failed or timed-out write attempts, retries included
    dropped: int  # records lost: buffer full, or still buffered at close
    store_up: bool  # False while the circuit is open (the store is known to be down)


class AuditLog:
    """Records decisions in ``store``, buffering and retrying while it is down.

    Owns the store: ``close`` flushes the buffer, then closes the store.
    """

    def __init__(
        self,
        store: AuditStore,
        *,
        required: bool = True,
        max_buffer: int = 10_000,
        write_timeout: float = 2.0,
        retry_initial: float = 0.1,
        retry_max: float = 2.0,
    ) -> None:
        self._store = store
        self._required = required
        self._max_buffer = max_buffer
        self._write_timeout = write_timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._buffer: deque[AuditRecord] = deque()
        self._down = False
        self._closed = False
        self._retry_task: asyncio.Task[None] | None = None
        self._buffered_total = 0
        self._written_total = 0
        self._write_failures = 0
        self._dropped = 0

    @property
    def store(self) -> AuditStore:
        return self._store

    @property
    def required(self) -> bool:
        return self._required

    def counters(self) -> AuditCounters:
        return AuditCounters(
            queue_depth=len(self._buffer),
            buffered_total=self._buffered_total,
            written_total=self._written_total,
            write_failures=self._write_failures,
            dropped=self._dropped,
            store_up=not self._down,
        )

    async def record(self, record: AuditRecord) -> StoredRecord | None:
        """Record one decision.

        Returns the stored record once it is durably committed, or ``None`` when it was
        buffered (non-required mode, store down). Raises ``AuditUnavailable`` when the caller
        must refuse the request (required mode, store down; or ``AuditBufferFull``).
        """
        if self._closed:
            raise AuditUnavailable("the audit log is closed", buffered=False)
        if self._required and self._down:
            raise self._refuse(record, "the audit store is down")
        if not self._required and (self._down or self._buffer):
            self._buffer_record(record)
            return None
        try:
            stored = await asyncio.wait_for(self._store.append(record), self._write_timeout)
        except (AuditStoreError, TimeoutError) as exc:
            reason = str(exc) or "write timed out"
            log.warning("audit write failed: %s", reason)
            self._write_failures += 1
            self._mark_down()
            if self._required:
                raise self._refuse(record, reason) from exc
            self._buffer_record(record)
            return None
        self._written_total += 1
        return stored

    def enqueue(self, record: AuditRecord) -> None:
        """Buffer ``record`` to be written in the background, whatever the mode.

        For records that must not delay a response. Raises ``AuditBufferFull``.
        """
        self._buffer_record(record)

    async def flush(self, max_wait: float) -> bool:
        """Wait until the buffer is written; False if it is not empty after ``max_wait`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while self._buffer:
            if loop.time() >= deadline:
                return False
            self._ensure_retrying()
            await asyncio.sleep(0.05)
        return True

    async def close(self, max_wait: float = 5.0) -> None:
        """Write what is buffered (waiting up to ``max_wait`` s), then close the store."""
        if self._closed:
            return
        await self.flush(max_wait)
        self._closed = True
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
        if self._buffer:
            log.error(
                "%d audit record(s) could not be written before shutdown and are lost",
                len(self._buffer),
            )
            self._dropped += len(self._buffer)
            self._buffer.clear()
        await self._store.close()

    # -- internals ----------------------------------------------------------------------------

    def _refuse(self, record: AuditRecord, reason: str) -> AuditUnavailable:
        """The exception for the caller, after buffering the refusal that it will send."""
        denial = AuditRecord.model_validate(
            {
                **record.model_dump(),
                "allowed": False,
                "grant_jti": None,  # a grant minted for this request is never handed out
                "violations": [
                    *record.model_dump()["violations"],
                    Violation(
                        rule=AUDIT_UNAVAILABLE_RULE,
                        message="the audit store is unavailable and audit.required is true",
                        enforcement="deny",
                    ).model_dump(),
                ],
                "message": "denied: the audit store is unavailable",
            }
        )
        message = f"audit store unavailable ({reason}); refusing because audit.required is true"
        try:
            self._buffer_record(denial)
        except AuditBufferFull:
            return AuditUnavailable(message, buffered=False)
        return AuditUnavailable(message, buffered=True)

    def _buffer_record(self, record: AuditRecord) -> None:
        if self._closed:
            raise AuditBufferFull("the audit log is closed", buffered=False)
        if len(self._buffer) >= self._max_buffer:
            self._dropped += 1
            log.error(
                "audit buffer full (%d records): a decision was not recorded", len(self._buffer)
            )
            raise AuditBufferFull(
                f"the audit store is down and the buffer is full ({self._max_buffer} records)",
                buffered=False,
            )
        self._buffer.append(record)
        self._buffered_total += 1
        self._ensure_retrying()

    def _mark_down(self) -> None:
        if not self._down:
            log.error("audit store is down; %s", "refusing" if self._required else "buffering")
        self._down = True
        self._ensure_retrying()

    def _ensure_retrying(self) -> None:
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.create_task(
                self._retry_loop(), name="kube-intent-audit-retry"
            )

    async def _retry_loop(self) -> None:
        """Write the buffer in order and close the circuit once the store answers again."""
        delay = self._retry_initial
        while True:
            if not self._buffer:
                if not self._down:
                    return
                try:
                    up = await asyncio.wait_for(self._store.healthy(), self._write_timeout)
                except Exception:  # a probe that fails in any way means "still down"
                    up = False
                if up:
                    log.warning("audit store is back")
                    self._down = False
                    return
            else:
                batch = list(itertools.islice(self._buffer, FLUSH_BATCH))
                try:
                    written = await asyncio.wait_for(
                        self._store.append_many(batch), self._write_timeout
                    )
                except Exception as exc:  # whatever it is, keep the records and retry
                    self._write_failures += 1
                    self._down = True
                    log.debug("audit retry failed: %s", exc)
                else:
                    for _ in batch:  # record() only appends at the right end
                        self._buffer.popleft()
                    self._written_total += len(written)
                    if self._down:
                        log.warning("audit store is back; writing the buffered records")
                    self._down = False
                    delay = self._retry_initial
                    continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
