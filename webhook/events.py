"""Kubernetes Events for denials: on the owning object (ReplicaSet, Job, ...) or the namespace.

Best effort and bounded: the admission handler only enqueues (never waits for the API
server); a small worker sends them; a per-object rate limit keeps a crash-looping controller
from flooding etcd; a full queue drops and counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.decision import RequestInfo, Verdict

log = logging.getLogger("kube_intent.events")

REASON = "AdmissionDenied"
COMPONENT = "kube-intent"
MAX_MESSAGE = 1024
QUEUE_SIZE = 256
SAME_OBJECT_INTERVAL_SECONDS = 60.0
# Objects remembered for the interval above (each entry is ~200 bytes).
MAX_REMEMBERED = 10_000
REQUEST_TIMEOUT_SECONDS = 2.0


def involved_object(namespace: str, pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod's controller (who keeps retrying) when it has one, else its namespace."""
    for owner in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(owner, Mapping) and owner.get("controller"):
            return {
                "apiVersion": owner.get("apiVersion"),
                "kind": owner.get("kind"),
                "name": owner.get("name"),
                "uid": owner.get("uid"),
                "namespace": namespace,
            }
    # The API server requires involvedObject.namespace to match the Event's namespace.
    return {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "namespace": namespace}


class DenialEvents:
    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._last_sent: dict[tuple[str, str, str], float] = {}

    def denied(self, request: RequestInfo, pod: Mapping[str, Any], verdict: Verdict) -> None:
        """Called on the admission path: never blocks, never raises."""
        if request.dry_run or verdict.allowed:
            return
        target = involved_object(request.namespace, pod)
        key = (request.namespace, str(target["kind"]), str(target["name"]))
        now = time.monotonic()
        if now - self._last_sent.get(key, float("-inf")) < SAME_OBJECT_INTERVAL_SECONDS:
            return  # the controller retries: one Event per object per interval says enough
        if len(self._last_sent) >= MAX_REMEMBERED:
            # Bounded memory under a stream of distinct names: forget what is past its interval.
            self._last_sent = {
                k: t for k, t in self._last_sent.items() if now - t < SAME_OBJECT_INTERVAL_SECONDS
            }
        self._last_sent[key] = now
        message = verdict.denial_message(f"{request.namespace}/{request.name}")[:MAX_MESSAGE]
        timestamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"kube-intent.{uuid.uuid4().hex[:16]}",
                "namespace": request.namespace,
            },
            "involvedObject": target,
            "reason": REASON,
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "count": 1,
        }
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Best effort under a burst of denials: the audit trail has every one of them.
            log.warning("denial event dropped: the event queue is full")

    async def run(self) -> None:
        while True:
            event = await self._queue.get()
            body: Any = event  # the client accepts a plain dict for any body
            try:
                await asyncio.wait_for(
                    asyncio.to_thread(
                        self._core.create_namespaced_event,
                        event["metadata"]["namespace"],
                        body,
                        _request_timeout=REQUEST_TIMEOUT_SECONDS,
                    ),
                    REQUEST_TIMEOUT_SECONDS + 1,
                )
            except ApiException as exc:  # best effort: a lost Event never matters to a verdict
                log.warning("could not record denial event: %s %s", exc.status, exc.reason)
            except Exception as exc:
                log.warning("could not record denial event: %s", exc)
