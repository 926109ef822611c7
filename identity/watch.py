"""Keep the agent registry in step with the cluster's `Agent` objects (the kube-mgmt pattern).

List, then watch from the list's resourceVersion; on any error or an expired watch, list
again after a backoff. Not ready until the first list has been applied, so a fresh replica
never denies pods for want of registrations it simply has not read yet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from identity.registry import AgentRegistration, AgentRegistry

log = logging.getLogger("kube_intent.agents")

GROUP, VERSION, PLURAL = "kube-intent.io", "v1alpha1", "agents"
WATCH_TIMEOUT_SECONDS = 60
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)

OnChange = Callable[[AgentRegistry], Awaitable[None]]


class AgentWatcher:
    def __init__(self, api: client.ApiClient, on_change: OnChange | None = None) -> None:
        self._api = client.CustomObjectsApi(api)
        self._on_change = on_change
        self._objects: dict[tuple[str, str], AgentRegistration] = {}
        self.registry = AgentRegistry()
        self.synced = asyncio.Event()

    def __call__(self) -> AgentRegistry:
        return self.registry

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                resource_version = await asyncio.to_thread(self._list)
                await self._publish()
                self.synced.set()
                failures = 0
                await self._watch(resource_version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any API trouble: relist after a pause
                delay = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning("agent watch interrupted (%s); relisting in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    def _list(self) -> str:
        listing = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        assert isinstance(listing, dict)
        self._objects = {}
        for obj in listing.get("items") or []:
            self._apply("ADDED", obj)
        return str(listing["metadata"]["resourceVersion"])

    def _apply(self, event_type: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        key = (str(metadata.get("namespace")), str(metadata.get("name")))
        if event_type == "DELETED":
            self._objects.pop(key, None)
            return
        try:
            self._objects[key] = AgentRegistration.from_object(obj)
        except ValueError as exc:
            # The CRD schema should prevent this; an unreadable Agent registers nothing.
            self._objects.pop(key, None)
            log.warning("ignoring Agent %s/%s: %s", *key, exc)

    async def _publish(self) -> None:
        self.registry = AgentRegistry(self._objects.values())
        if self._on_change is not None:
            try:
                await self._on_change(self.registry)
            except Exception as exc:  # the periodic sync retries; never stop watching
                log.warning("agent change hook failed: %s", exc)

    async def _watch(self, resource_version: str) -> None:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        stream = watch.Watch()  # type: ignore[no-untyped-call]

        def pump() -> None:
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self._api.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    resource_version=resource_version,
                    timeout_seconds=WATCH_TIMEOUT_SECONDS,
                ):
                    loop.call_soon_threadsafe(events.put_nowait, event)
                loop.call_soon_threadsafe(events.put_nowait, None)
            except BaseException as exc:  # handed to the event loop, which decides
                loop.call_soon_threadsafe(events.put_nowait, exc)

        # A daemon thread: a blocked watch must never hold up process exit.
        threading.Thread(target=pump, name="agent-watch", daemon=True).start()
        try:
            while (event := await events.get()) is not None:
                if isinstance(event, BaseException):
                    raise event
                if event.get("type") == "ERROR":
                    raise ApiException(status=(event.get("object") or {}).get("code", 500))
                self._apply(str(event.get("type")), event.get("object") or {})
                await self._publish()
        finally:
            stream.stop()  # type: ignore[no-untyped-call]
