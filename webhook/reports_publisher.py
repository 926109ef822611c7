"""Writes the reports of `reports.py` off the request path: tails the audit store, writes the
objects of the report kinds the API server serves (docs/reports.md).

Best effort, never on the admission path: the admission handler writes the audit row and
answers; this task reads rows after they are committed. After a restart the reports are rebuilt
from the store (the newest rows of the look-back window), so a report never says what the
store does not. A report object this task did not create (no managed-by label) is never
changed, and nothing is ever deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter

from webhook.audit.record import StoredRecord
from webhook.audit.store import AuditFilter, AuditStore, encode_cursor, matching
from webhook.reports import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    REPORT_NAME,
    ReportBook,
    ReportKind,
    report_kinds,
)
from webhook.reports_owners import OwnerResolver

log = logging.getLogger("kube_intent.reports")

# After a restart: rows of the last day, at most this many per allowed result. Older decisions
# are in the store (`kube-intent audit list`); the report shows what is current.
# Rows read per query: each holds a whole pod (up to the pod-limits size), so pages stay small.
PAGE = 16
LOOKBACK = timedelta(hours=24)
LOOKBACK_RECORDS_PER_RESULT = 4
DISCOVERY_INTERVAL_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 5.0
WRITE_ATTEMPTS = 3

ERR_NOT_OURS = (
    "%s %s/%s exists but was not created by kube-intent (no label %s=%s): it is left alone; "
    "delete it or rename ours away to let kube-intent publish there"
)
MSG_NOT_SERVED = (
    "%s (%s) is not served by the API server: no %s reports until its CRD is installed "
    "(docs/reports.md)"
)


class ReportFeed:
    """Audit rows into a ReportBook: the look-back window after a start, then new rows by `seq`."""

    def __init__(self, store: AuditStore, owners: OwnerResolver, book: ReportBook) -> None:
        self._store = store
        self._owners = owners
        self.book = book
        self._last_seq = 0

    async def rebuild(self) -> None:
        """The reports as the newest rows of the look-back window say (after a restart)."""
        head = await self._store.query(AuditFilter(), limit=1, order="desc")
        if not head.records:
            return
        self._last_seq = head.records[0].seq
        since = datetime.now(UTC) - LOOKBACK
        wanted = self.book.max_results * LOOKBACK_RECORDS_PER_RESULT
        window = matching(
            self._store,
            AuditFilter(kind="admission", since=since),
            limit=wanted,
            order="desc",
            cursor=encode_cursor("desc", self._last_seq + 1),
            page=PAGE,
        )
        newest_first = [_slim(record) async for record in window]
        await self._take(reversed(newest_first))

    async def tail(self) -> set[str]:
        """Take the rows committed since the last look; the namespaces whose report changed."""
        changed: set[str] = set()
        since_last = matching(
            self._store,
            AuditFilter(kind="admission"),
            order="asc",
            cursor=encode_cursor("asc", self._last_seq),
            page=PAGE,
        )
        async for record in since_last:
            changed |= await self._take((record,))
        return changed

    async def _take(self, records: Iterable[StoredRecord]) -> set[str]:
        changed: set[str] = set()
        for record in records:
            self._last_seq = max(self._last_seq, record.seq)
            # Only admission decisions are reported; token and policy-load rows (and kinds
            # added later) are skipped.
            if record.kind != "admission" or not record.namespace:
                continue
            pod = (record.input or {}).get("pod")
            subject = await self._owners.workload(
                record.namespace,
                pod if isinstance(pod, Mapping) else None,
                record.name,
                record.pod_uid,
            )
            if self.book.add(record, subject):
                changed.add(record.namespace)
        return changed


def _slim(record: StoredRecord) -> StoredRecord:
    """The record with only what a report reads of its input (the pod's metadata, for its
    owner): a row holds the whole pod, and the look-back keeps thousands of rows at once."""
    pod = (record.input or {}).get("pod")
    metadata = pod.get("metadata") if isinstance(pod, Mapping) else None
    slim = {"pod": {"metadata": metadata}} if isinstance(metadata, Mapping) else None
    return record.model_copy(update={"input": slim})


class ReportPublisher:
    """The background task: discover the report APIs, rebuild, then tail the store."""

    def __init__(
        self,
        api: client.ApiClient,
        store: AuditStore,
        kinds: tuple[ReportKind, ...],
        *,
        every_kind: bool = False,
        max_results: int,
        interval_seconds: float,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._api = api
        self._objects = client.CustomObjectsApi(api)
        self._wanted = kinds
        self._every_kind = every_kind
        self._interval = interval_seconds
        self.feed = ReportFeed(store, OwnerResolver(api), ReportBook(max_results))
        self.kinds: tuple[ReportKind, ...] = ()
        self._dirty: set[str] = set()
        self._reported_absent: set[str] = set()
        self._failures = Counter(
            "kube_intent_report_write_failures",
            "Report objects that could not be written (the audit store still has every decision)",
            ["kind"],
            registry=registry,
        )

    async def run(self) -> None:
        while not self.kinds:
            self.kinds = await asyncio.to_thread(self._served)
            if not self.kinds:
                await asyncio.sleep(DISCOVERY_INTERVAL_SECONDS)
        log.info("publishing %s reports", ", ".join(k.kind for k in self.kinds))
        # Tailing starts where the rebuild stopped: never from the store's first row, which
        # would read the whole history of a busy cluster.
        rebuilt = False
        while not rebuilt:
            rebuilt = await self._step(self.rebuild)
            if not rebuilt:
                await asyncio.sleep(self._interval)
        while True:
            await self._step(self.flush)
            await asyncio.sleep(self._interval)
            await self._step(self.tail)

    async def rebuild(self) -> None:
        await self.feed.rebuild()
        # What was there before the restart is replaced, even if no row changed it since.
        self._dirty.update(self.feed.book.namespaces())

    async def tail(self) -> None:
        self._dirty.update(await self.feed.tail())

    async def _step(self, job: Callable[[], Awaitable[None]]) -> bool:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # best effort: the next tick tries again
            log.warning("report publishing: %s", exc)
            return False
        return True

    def _served(self) -> tuple[ReportKind, ...]:
        """The wanted kinds whose group/version the API server serves (discovery)."""
        try:
            groups = client.ApisApi(self._api).get_api_versions(
                _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except Exception as exc:
            log.warning("API discovery failed, reports wait for the next try: %s", exc)
            return ()
        served = {v.group_version for g in groups.groups or [] for v in g.versions or []}
        found = tuple(k for k in self._wanted if k.api_version in served)
        for kind in self._wanted:
            if kind not in found and kind.setting not in self._reported_absent:
                self._reported_absent.add(kind.setting)
                level = logging.INFO if self._every_kind else logging.WARNING
                log.log(level, MSG_NOT_SERVED, kind.kind, kind.api_version, kind.setting)
        return found

    async def flush(self) -> None:
        """Write the reports of the namespaces that changed since the last flush."""
        dirty, self._dirty = self._dirty, set()
        for namespace in sorted(dirty):
            for kind in self.kinds:
                body = self.feed.book.report(namespace, kind)
                try:
                    await asyncio.to_thread(self._write, kind, namespace, body)
                except Exception as exc:
                    if isinstance(exc, ApiException) and exc.status == 404:
                        # The namespace is gone (or the API was removed): nothing to report to.
                        log.info("no %s in %s: namespace or API gone", kind.kind, namespace)
                        self.feed.book.forget(namespace)
                        break
                    self._failures.labels(kind.setting).inc()
                    if _transient(exc):
                        self._dirty.add(namespace)  # the next tick tries again
                    status = exc.status if isinstance(exc, ApiException) else ""
                    reason = exc.reason if isinstance(exc, ApiException) else exc
                    log.warning(
                        "could not write %s %s/%s: %s %s",
                        kind.kind,
                        namespace,
                        REPORT_NAME,
                        status,
                        reason,
                    )

    def _write(self, kind: ReportKind, namespace: str, body: dict[str, Any]) -> None:
        """Create the report, or replace ours at the resourceVersion read (again on 409)."""
        args = (kind.group, kind.version, namespace, kind.plural)
        for attempt in range(WRITE_ATTEMPTS):
            current: Any
            try:
                current = self._objects.get_namespaced_custom_object(
                    *args, REPORT_NAME, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                current = None
            try:
                if current is None:
                    self._objects.create_namespaced_custom_object(
                        *args, body, _request_timeout=REQUEST_TIMEOUT_SECONDS
                    )
                    return
                metadata = current.get("metadata") or {}
                if (metadata.get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
                    log.warning(
                        ERR_NOT_OURS,
                        kind.kind,
                        namespace,
                        REPORT_NAME,
                        MANAGED_BY_LABEL,
                        MANAGED_BY,
                    )
                    return
                replacement = {
                    **body,
                    "metadata": {
                        **body["metadata"],
                        "resourceVersion": metadata["resourceVersion"],
                    },
                }
                self._objects.replace_namespaced_custom_object(
                    *args, REPORT_NAME, replacement, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
                return
            except ApiException as exc:
                # 409: someone wrote between our read and write (another replica): read again.
                if exc.status != 409 or attempt == WRITE_ATTEMPTS - 1:
                    raise


def _transient(exc: Exception) -> bool:
    # A conflict that outlived the retries, throttling, a server or network error: worth another
    # try. A missing namespace or a refusal (RBAC) would fail the same way every tick.
    if isinstance(exc, ApiException):
        return exc.status in (409, 429) or (exc.status or 0) >= 500
    return True


def report_publisher(
    reports: str,
    api: client.ApiClient | None,
    store: AuditStore,
    *,
    max_results: int,
    interval_seconds: float,
    registry: CollectorRegistry | None = None,
) -> ReportPublisher | None:
    """The publisher `serve` runs, or None when reports are off or there is no cluster.

    Raises SystemExit with the fix for a `reports` value it cannot read.
    """
    try:
        wanted = report_kinds(reports)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if wanted is None:
        return None
    if api is None:
        log.warning("reports are configured but there is no cluster (--kubeconfig): none written")
        return None
    kinds, every_kind = wanted
    return ReportPublisher(
        api,
        store,
        kinds,
        every_kind=every_kind,
        max_results=max_results,
        interval_seconds=interval_seconds,
        registry=registry,
    )
