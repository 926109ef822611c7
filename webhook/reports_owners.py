"""The workload a pod belongs to: its controller, followed up to the object a person manages.

A Deployment whose ReplicaSet cannot create pods is what a person looks at, so a pod's result
is attached to the top of its controller chain: pod -> ReplicaSet -> Deployment, pod -> Job ->
CronJob, pod -> StatefulSet -> LeaderWorkerSet (a worker: through its leader pod); a DaemonSet
(or any controller of a kind not followed here) is taken as it is. The intermediate objects
are read from the API server; when one cannot be read (deleted, not allowed, no cluster) the
chain stops at the last known link.
A pod with no controller is its own workload; a record with no pod name (a denied pod created
with generateName) falls back to its namespace.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("kube_intent.reports")

# Controllers whose own controller is looked up: (API group, kind) -> plural. A Pod owning a
# StatefulSet is a LeaderWorkerSet's leader (its workers' StatefulSet hangs off it).
FOLLOWED: dict[tuple[str, str], str] = {
    ("apps", "ReplicaSet"): "replicasets",
    ("batch", "Job"): "jobs",
    ("apps", "StatefulSet"): "statefulsets",
    ("", "Pod"): "pods",
}
# A LeaderWorkerSet worker is the longest chain followed: pod -> StatefulSet -> leader pod ->
# StatefulSet -> LeaderWorkerSet. The bound stops a loop of ownerReferences (which the API
# server does not forbid) from spinning.
MAX_DEPTH = 4
CACHE_SIZE = 4096
REQUEST_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A namespaced object, as a report's `resources` entry names it."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def key(self) -> tuple[str, str, str]:
        # The uid is left out: a Deployment deleted and re-created under its name is the same
        # workload to the person reading the report.
        return (self.group, self.kind, self.name)

    def to_reference(self) -> dict[str, str]:
        ref = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
        }
        if self.uid:
            ref["uid"] = self.uid
        return ref


def namespace_ref(namespace: str) -> ObjectRef:
    return ObjectRef("v1", "Namespace", namespace, namespace)


def controller_of(namespace: str, obj: Mapping[str, Any] | None) -> ObjectRef | None:
    """The object's controller (the ownerReference with `controller: true`), if it names one."""
    metadata = (obj or {}).get("metadata")
    owners = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    for owner in owners if isinstance(owners, list) else []:
        if not isinstance(owner, Mapping) or owner.get("controller") is not True:
            continue
        api_version, kind, name = owner.get("apiVersion"), owner.get("kind"), owner.get("name")
        if isinstance(api_version, str) and isinstance(kind, str) and isinstance(name, str):
            uid = owner.get("uid")
            return ObjectRef(
                api_version, kind, name, namespace, uid if isinstance(uid, str) else ""
            )
    return None


def pod_ref(namespace: str, name: str, uid: str | None) -> ObjectRef:
    """The pod itself, or its namespace when the request carried no name."""
    return ObjectRef("v1", "Pod", name, namespace, uid or "") if name else namespace_ref(namespace)


class OwnerResolver:
    """Follows controller chains with reads of the API server (none without a cluster).

    Answers are cached (bounded, least recently used first out): a ReplicaSet that keeps
    failing to create pods is looked up once, not once per denial.
    """

    def __init__(self, api: client.ApiClient | None, cache_size: int = CACHE_SIZE) -> None:
        self._clients = (
            (client.CustomObjectsApi(api), client.CoreV1Api(api)) if api is not None else None
        )
        self._cache: OrderedDict[tuple[str, str, str, str], ObjectRef] = OrderedDict()
        self._cache_size = cache_size

    async def workload(
        self, namespace: str, pod: Mapping[str, Any] | None, name: str, uid: str | None
    ) -> ObjectRef:
        """The workload to report `pod` against (`name`, `uid`: the request's, the pod's)."""
        ref = controller_of(namespace, pod)
        if ref is None:
            return pod_ref(namespace, name, uid)
        for _ in range(MAX_DEPTH):
            parent = await self._controller(ref)
            if parent is None:
                break
            ref = parent
        return ref

    async def _controller(self, ref: ObjectRef) -> ObjectRef | None:
        plural = FOLLOWED.get((ref.group, ref.kind))
        if plural is None or self._clients is None:
            return None
        key = (ref.namespace, ref.group, ref.kind, ref.name)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        obj = await asyncio.to_thread(self._read, self._clients, ref, plural)
        if obj is None:
            return None
        parent = controller_of(ref.namespace, obj)
        if parent is None:
            return None
        self._cache[key] = parent
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return parent

    @staticmethod
    def _read(
        clients: tuple[client.CustomObjectsApi, client.CoreV1Api], ref: ObjectRef, plural: str
    ) -> Mapping[str, Any] | None:
        objects, core = clients
        group, _, version = ref.api_version.rpartition("/")
        try:
            if not group:  # a Pod: the core group is not under /apis
                pod = core.read_namespaced_pod(
                    ref.name, ref.namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
                obj: Any = core.api_client.sanitize_for_serialization(pod)
            else:
                # CustomObjectsApi reads any object of a named API group (apps, batch, ...).
                obj = objects.get_namespaced_custom_object(
                    group,
                    version,
                    ref.namespace,
                    plural,
                    ref.name,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
        except ApiException as exc:
            if exc.status != 404:  # gone is normal (a rolled-out ReplicaSet); anything else not
                log.warning(
                    "cannot read %s %s/%s to find its owner: %s %s",
                    ref.kind,
                    ref.namespace,
                    ref.name,
                    exc.status,
                    exc.reason,
                )
            return None
        except Exception as exc:  # network trouble: report against the link we have
            log.warning("cannot read %s %s/%s: %s", ref.kind, ref.namespace, ref.name, exc)
            return None
        return obj if isinstance(obj, Mapping) else None
