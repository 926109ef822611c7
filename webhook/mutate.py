"""POST /mutate: decide, then attach the identity and (via the grant seam) the grant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.binding import SPIFFE_ID_ANNOTATION
from identity.intent import INTENT_DIGEST_ANNOTATION
from webhook import admission
from webhook.admission import AdmissionRequest
from webhook.admit import admit, respond_denial
from webhook.decision import RequestInfo, Verdict
from webhook.deps import Services


def escape_pointer(token: str) -> str:
    """RFC 6901: '~' and '/' inside a JSON Pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def annotation_patch(pod: Mapping[str, Any], wanted: Mapping[str, str]) -> list[dict[str, Any]]:
    """Operations that make the pod's annotations include `wanted`; empty when they already do.

    Comparing first is what makes the webhook idempotent under reinvocation.
    """
    current = (pod.get("metadata") or {}).get("annotations")
    if not isinstance(current, Mapping):
        return [{"op": "add", "path": "/metadata/annotations", "value": dict(wanted)}]
    return [
        {"op": "add", "path": f"/metadata/annotations/{escape_pointer(key)}", "value": value}
        for key, value in wanted.items()
        if current.get(key) != value
    ]


def identity_annotations(verdict: Verdict) -> dict[str, str]:
    wanted: dict[str, str] = {}
    if verdict.identity is not None:
        wanted[SPIFFE_ID_ANNOTATION] = verdict.identity.spiffe_id
    if verdict.intent.digest is not None:
        wanted[INTENT_DIGEST_ANNOTATION] = verdict.intent.digest
    return wanted


async def handle_mutate(
    req: AdmissionRequest, services: Services, *, authenticated: bool = False
) -> dict[str, Any]:
    def respond(req: AdmissionRequest, info: RequestInfo, verdict: Verdict) -> dict[str, Any]:
        if not verdict.allowed:
            return respond_denial(req, info, verdict)
        pod = req.object or {}
        patch = annotation_patch(pod, identity_annotations(verdict))
        if services.grants is not None:
            patch += services.grants.patch(pod, info, verdict)
        return admission.allow(req.uid, patch=patch, warnings=verdict.warnings or None)

    if req.operation != "CREATE":
        # Pods are minted once; UPDATEs are checked by /validate (immutable governed fields).
        return admission.allow(req.uid)
    return await admit("mutate", req, services, respond=respond, authenticated=authenticated)
