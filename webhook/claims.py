"""Resolve a pod's DRA claims (ResourceClaims, ResourceClaimTemplates) with cluster reads."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from webhook.detect import ClaimKind, StaticClaimResolver, claim_references

log = logging.getLogger("kube_intent.claims")

GROUP = "resource.k8s.io"
# Newest first: the API server serves the same objects under every enabled version.
VERSIONS = ("v1", "v1beta2", "v1beta1")
PLURALS: dict[ClaimKind, str] = {
    "ResourceClaim": "resourceclaims",
    "ResourceClaimTemplate": "resourceclaimtemplates",
}
REQUEST_TIMEOUT_SECONDS = 1.0


class KubeClaimLookup:
    """Fetch the claim objects a pod references; unknown ones stay unresolved (fail closed).

    Only DRA pods pay for the reads. Nothing is cached: a template deleted and re-created with
    an accelerator class must be seen by the next pod that references it.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self._objects = client.CustomObjectsApi(api)

    async def resolver_for(self, namespace: str, pod: dict[str, Any]) -> StaticClaimResolver | None:
        refs = claim_references(pod)
        if not refs:
            return None
        found = await asyncio.gather(
            *(asyncio.to_thread(self._read, namespace, kind, name) for kind, name in refs)
        )
        return StaticClaimResolver(
            [obj for obj in found if obj is not None], default_namespace=namespace
        )

    def _read(self, namespace: str, kind: ClaimKind, name: str) -> dict[str, Any] | None:
        for version in VERSIONS:
            try:
                obj = self._objects.get_namespaced_custom_object(
                    GROUP,
                    version,
                    namespace,
                    PLURALS[kind],
                    name,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
            except ApiException as exc:
                if exc.status == 404 and '"reason":"NotFound"' not in str(exc.body):
                    continue  # this API version is not served; try an older one
                if exc.status != 404:
                    log.warning("cannot read %s %s/%s: %s", kind, namespace, name, exc.reason)
                return None
            except Exception as exc:  # network trouble: the claim stays unresolved
                log.warning("cannot read %s %s/%s: %s", kind, namespace, name, exc)
                return None
            if not isinstance(obj, dict):
                return None
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", f"{GROUP}/{version}")
            return obj
        return None
