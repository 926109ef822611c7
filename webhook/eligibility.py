"""Which pods the token endpoint may serve: the admission's facts, not the pod's say-so.

A pod's annotations and labels are written by its author; only two facts come from elsewhere:
the same accelerator detection that decides whether the webhooks see a pod at all (with its
DRA claims resolved from the cluster), and the audit trail's allowed row for that pod's UID
and grant, written by validating admission from an authenticated caller.
"""

from __future__ import annotations

import logging
from typing import Any

from identity.exchange import Admitted, Governed, LedgerUnavailable
from webhook.audit.store import AuditStore
from webhook.deps import ClaimLookup
from webhook.detect import AcceleratorDetector, DetectError

log = logging.getLogger("kube_intent.eligibility")


def governed_by(detector: AcceleratorDetector, claims: ClaimLookup | None) -> Governed:
    """Did both webhooks review this pod? Only accelerator pods are sent to them."""

    async def governed(pod: dict[str, Any]) -> bool:
        metadata = pod.get("metadata")
        namespace = str(metadata.get("namespace") or "") if isinstance(metadata, dict) else ""
        # Resolved as admission resolves them: without the claim objects every claim would
        # count as an accelerator, and a NIC-only pod (never reviewed) would pass as governed.
        resolver = await claims.resolver_for(namespace, pod) if claims is not None else None
        try:
            return detector.detect(pod, resolver, namespace=namespace).gpu
        except DetectError:
            return False

    return governed


def recorded_admissions(store: AuditStore, *, trust_unauthenticated: bool = False) -> Admitted:
    """Was this pod admitted with this grant, allowed and recorded?

    A row written for a caller that did not authenticate as the API server (no client
    certificate from the configured CA) proves nothing: anyone who reaches the port can send a
    review. Such rows count only when the operator opted out (`trust_unauthenticated`).
    """

    async def admitted(pod_uid: str, grant_jti: str) -> bool:
        try:
            record = await store.admitted(pod_uid, grant_jti=grant_jti)
        except Exception as exc:  # any store failure: "cannot tell", never "yes"
            log.warning("audit store lookup failed: %s", type(exc).__name__)
            raise LedgerUnavailable("audit-store") from None
        if record is None:
            return False
        return record.authenticated or trust_unauthenticated

    return admitted
