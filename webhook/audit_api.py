"""The audit trail over HTTP, authorised by the cluster's RBAC (routes: webhook/routes/audit.py).

- `GET /audit/decisions`: a page of records; the filters of `kube-intent audit list`, plus
  `cursor`, `limit` and `order` (`desc`, newest first, or `asc`, chain order: what an export
  and a client-side `verify` read).
- `GET /audit/decisions/{id}`: one record.

The kube-rbac-proxy pattern: the caller's bearer token is checked with a TokenReview, then a
SubjectAccessReview asks whether that user may `get` `decisions.audit.kube-intent.io` (the
chart's `kube-intent-auditor` ClusterRole grants exactly that). `kube-intent audit --server`
is the client (`webhook/audit_client.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from kubernetes import client

from identity.exchange import KubernetesAuth
from webhook.audit import AuditStore, filter_from
from webhook.audit.errors import AuditStoreError, CorruptRecord
from webhook.audit.export import record_to_json
from webhook.audit.store import Order

log = logging.getLogger("kube_intent.audit.api")

AUDIT_GROUP = "audit.kube-intent.io"
AUDIT_RESOURCE = "decisions"
ERR_NO_TOKEN = "a bearer token is required"  # noqa: S105 - a message, not a secret
ERR_BAD_TOKEN = "the bearer token is not valid"  # noqa: S105
AUDITOR_ROLE = "kube-intent-auditor"
ERR_FORBIDDEN = (
    'user "{user}" may not get decisions.audit.kube-intent.io: bind the chart\'s auditor '
    f"ClusterRole to this user ({AUDITOR_ROLE} for a release named kube-intent, else "
    "<release>-kube-intent-auditor)"
)
ERR_NO_CLUSTER = (
    "the audit API needs a cluster to authorise callers (this webhook runs without one); "
    "read the store directly with `kube-intent audit list --db`"
)
ERR_REVIEW = "cannot check the caller's access with the API server; retry shortly"
ERR_QUERY = "bad query: {detail}"
ERR_ORDER = "order must be desc (newest first) or asc (chain order)"
ERR_NOT_FOUND = "no decision with id {record_id}"
ERR_STORE = "the audit store cannot be read right now; retry shortly"
DEFAULT_LIMIT = "100"
ORDERS: tuple[Order, ...] = ("desc", "asc")
REQUEST_TIMEOUT_SECONDS = 2.0
# Access answers per token digest: short, so that a revoked binding or token stops working soon.
ANSWER_TTL_SECONDS = 10.0
MAX_ANSWERS = 1024
REVIEWS_AT_ONCE = 4
ERR_BUSY = "too many audit API callers at once; retry shortly"


@dataclass(frozen=True, slots=True)
class AccessDecision:
    status: int  # 200, 401, 403 or 429
    message: str = ""


class AccessReviewer:
    """Who is calling (a TokenReview, through identity's one TokenReview client) and whether
    they may read the trail (a SubjectAccessReview).

    Anyone who reaches the port can make the webhook ask the API server, on the worker threads
    the admission path also uses, and against its API priority quota. So, as kube-rbac-proxy
    does, answers are remembered briefly per token (by digest) and few reviews run at once;
    beyond that a caller is told to retry.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self._authn = KubernetesAuth(api, timeout=REQUEST_TIMEOUT_SECONDS)
        self._authz = client.AuthorizationV1Api(api)
        self._answers: OrderedDict[str, tuple[float, AccessDecision]] = OrderedDict()
        self._reviews = asyncio.Semaphore(REVIEWS_AT_ONCE)
        self.reviews = 0  # TokenReviews sent: what the cache saves is visible

    async def review(self, authorization: str | None) -> AccessDecision:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return AccessDecision(401, ERR_NO_TOKEN)
        key = hashlib.sha256(token.strip().encode()).hexdigest()
        now = time.monotonic()
        remembered = self._answers.get(key)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        if self._reviews.locked():
            return AccessDecision(429, ERR_BUSY)
        async with self._reviews:
            decision = await self._review(token.strip())
        self._answers[key] = (now + ANSWER_TTL_SECONDS, decision)
        self._answers.move_to_end(key)
        while len(self._answers) > MAX_ANSWERS:
            self._answers.popitem(last=False)
        return decision

    async def _review(self, token: str) -> AccessDecision:
        self.reviews += 1
        # No audiences: the API server's own, which is what a kubeconfig's token is for.
        status = await self._authn.token_review(token, ())
        user = status.get("user")
        if not status.get("authenticated") or not isinstance(user, dict):
            return AccessDecision(401, ERR_BAD_TOKEN)
        if not await asyncio.to_thread(self._authorize, user):
            return AccessDecision(403, ERR_FORBIDDEN.format(user=user.get("username", "")))
        return AccessDecision(200)

    def _authorize(self, user: dict[str, Any]) -> bool:
        body: Any = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.get("username", ""),
                "uid": user.get("uid", ""),
                "groups": user.get("groups") or [],
                "extra": user.get("extra") or {},
                "resourceAttributes": {
                    "group": AUDIT_GROUP,
                    "resource": AUDIT_RESOURCE,
                    "verb": "get",
                },
            },
        }
        review = self._authz.create_subject_access_review(
            body, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        return bool(review.status and review.status.allowed)


async def authorise(
    request: Request, store: AuditStore | None, access: AccessReviewer | None
) -> JSONResponse | None:
    """The refusal to send, or None when the caller may read the trail."""
    if store is None or access is None:
        return JSONResponse({"error": ERR_NO_CLUSTER}, status_code=404)
    try:
        decision = await access.review(request.headers.get("authorization"))
    except Exception as exc:  # the API server is unreachable: neither allow nor blame the caller
        log.warning("audit API access review failed: %s", exc)
        return JSONResponse({"error": ERR_REVIEW}, status_code=503)
    if decision.status != 200:
        headers = {"WWW-Authenticate": "Bearer"} if decision.status == 401 else None
        return JSONResponse(
            {"error": decision.message}, status_code=decision.status, headers=headers
        )
    return None


def _order(value: str | None) -> Order:
    for order in ORDERS:
        if value in (None, order):
            return order
    raise ValueError(ERR_ORDER)


async def list_decisions(
    request: Request, store: AuditStore | None, access: AccessReviewer | None
) -> JSONResponse:
    """Filters as `kube-intent audit list`; `cursor`, `limit` and `order` page through."""
    refused = await authorise(request, store, access)
    if refused is not None or store is None:
        return refused or JSONResponse({"error": ERR_NO_CLUSTER}, status_code=404)
    params = dict(request.query_params)
    try:
        page = await store.query(
            filter_from(params),
            params.get("cursor"),
            int(params.get("limit", DEFAULT_LIMIT)),
            order=_order(params.get("order")),
        )
    except ValueError as exc:
        return JSONResponse({"error": ERR_QUERY.format(detail=exc)}, status_code=400)
    except AuditStoreError as exc:
        return store_failure(exc)
    return JSONResponse(
        {"items": [record_to_json(r) for r in page.records], "nextCursor": page.next_cursor}
    )


def store_failure(exc: AuditStoreError) -> JSONResponse:
    """A row that does not read back as written is a finding the auditor must see, with its
    position (a client-side `verify` reports it as a broken chain); anything else is an outage."""
    if isinstance(exc, CorruptRecord):
        corrupt = {"seq": exc.seq, "id": exc.record_id, "reason": exc.reason}
        return JSONResponse({"error": str(exc), "corrupt": corrupt}, status_code=500)
    log.warning("audit API read failed: %s", exc)
    return JSONResponse({"error": ERR_STORE}, status_code=503)


async def get_decision(
    request: Request, record_id: int, store: AuditStore | None, access: AccessReviewer | None
) -> JSONResponse:
    refused = await authorise(request, store, access)
    if refused is not None or store is None:
        return refused or JSONResponse({"error": ERR_NO_CLUSTER}, status_code=404)
    try:
        record = await store.get(record_id)
    except AuditStoreError as exc:
        return store_failure(exc)
    if record is None:
        return JSONResponse({"error": ERR_NOT_FOUND.format(record_id=record_id)}, status_code=404)
    return JSONResponse(record_to_json(record))
