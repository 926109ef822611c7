"""POST /mutate, /validate and /validate-claims: an AdmissionReview in, an AdmissionReview out.

Every answer is a well-formed review (an in-band denial where the request has a uid), never a
stack trace: the handlers turn their own errors into audited denials, and this layer is the
last resort for a bug between the bytes and the handler.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from identity import jsonio
from webhook import admission
from webhook.admission import ReviewParseError, parse_review
from webhook.capacity import Capacity
from webhook.claim_guard import CLAIMS_PATH
from webhook.deps import CallerDep, ReviewHandler, Services, ServicesDep, StateDep
from webhook.incidents import SEE_LOG, report
from webhook.mutate import handle_mutate
from webhook.routes.body import BodyTooLarge, read_body
from webhook.validate import handle_validate

log = logging.getLogger("kube_intent.app")

ERR_CLIENT_CERT = (
    "admission reviews are accepted only from the API server: present a client certificate "
    "signed by the configured client CA (--client-ca; see the README's mutual TLS section)"
)
ERR_INTERNAL = "kube-intent could not evaluate this pod; it was denied to fail safe: " + SEE_LOG

# Parsed, a body takes many times its size in Python objects (3 MB of small JSON objects are
# ~70 MB), and a parsed review stays alive while OPA and the audit store are awaited. Large
# bodies are therefore handled one at a time: a burst of them must not multiply that by the
# number of connections. Real pods are nearly all far below the threshold and never wait.
LARGE_BODY_BYTES = 256 * 1024
LARGE_BODIES_AT_ONCE = 1

ERR_AT_CAPACITY = (
    "kube-intent is at capacity ({inflight} admission reviews in progress): this one was refused "
    "at once rather than queued past the API server's timeout; the pod's controller retries it. "
    'Operators: add CPU or replicas (see kube_intent_admission_requests_total{{decision="shed"}})'
)
# A pod already through /mutate is finished first: /validate sheds only at this multiple.
VALIDATE_SHARE = 2
# The API server's webhook timeout is at most 30 s (the chart sets 3 s): a body still arriving
# after this comes from no API server.
BODY_READ_SECONDS = 10.0
ERR_BODY_TIMEOUT = "the admission review body did not arrive within {seconds:g} s"

router = APIRouter()


class AdmissionJSON(Response):
    """JSON through jsonio.dumps, which cannot fail: an answer is always written."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsonio.dumps(content)


@router.post("/mutate")
async def mutate(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    if caller.refused:
        return caller_refused(request)
    handler = partial(handle_mutate, authenticated=caller.authenticated)
    return await _within_capacity(request, services, handler, "mutate", share=1)


@router.post("/validate")
async def validate(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
    if caller.refused:
        return caller_refused(request)
    handler = partial(handle_validate, authenticated=caller.authenticated)
    return await _within_capacity(request, services, handler, "validate", share=VALIDATE_SHARE)


@router.post(CLAIMS_PATH)
async def validate_claims(request: Request, state: StateDep, caller: CallerDep) -> Response:
    # DRA claims and templates: an accelerator class only for pods admitted to hold it.
    if caller.refused:
        return caller_refused(request)
    handler = state.claim_review
    return await _within_capacity(request, state.admission, handler, "claims", share=VALIDATE_SHARE)


def caller_refused(request: Request) -> Response:
    client = request.scope.get("client")
    log.warning(
        "admission review refused: no client certificate", extra={"fields": {"peer": client}}
    )
    return JSONResponse({"error": ERR_CLIENT_CERT}, status_code=401)


async def _within_capacity(
    request: Request, services: Services, handler: ReviewHandler, webhook: str, *, share: int
) -> Response:
    # The body first, within a deadline: a slot is taken only by a review being decided, so a
    # peer that opens connections and stalls holds no slot (and is cut off at the deadline).
    limit = services.settings.max_body_bytes
    try:
        async with asyncio.timeout(BODY_READ_SECONDS):
            body = await read_body(request, limit)
    except BodyTooLarge:
        return AdmissionJSON({"error": admission.ERR_TOO_LARGE.format(limit=limit)}, 413)
    except TimeoutError:
        return AdmissionJSON({"error": ERR_BODY_TIMEOUT.format(seconds=BODY_READ_SECONDS)}, 408)
    except ClientDisconnect:
        # Nobody is left to read an answer; not an error of ours (nor worth a traceback).
        log.info("client disconnected before sending the whole admission review")
        return Response(status_code=400)
    capacity: Capacity = request.app.state.kube_intent.capacity
    if capacity.full(share):
        capacity.refuse()
        services.metrics.shed(webhook)
        message = ERR_AT_CAPACITY.format(inflight=capacity.in_flight)
        return JSONResponse({"error": message}, status_code=429, headers={"Retry-After": "1"})
    capacity.admit()
    try:
        if len(body) <= LARGE_BODY_BYTES:
            return await _answer(body, services, handler)
        async with _large_bodies(request):
            return await _answer(body, services, handler)
    finally:
        capacity.done()


def _large_bodies(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    if getattr(state, "large_bodies", None) is None:
        state.large_bodies = asyncio.Semaphore(LARGE_BODIES_AT_ONCE)
    semaphore: asyncio.Semaphore = state.large_bodies
    return semaphore


async def _answer(body: bytes, services: Services, handler: ReviewHandler) -> Response:
    try:
        admission_request = parse_review(body)
    except ReviewParseError as exc:
        if exc.uid:
            # The API server can show an in-band answer to the user; an HTTP error it cannot.
            answer = admission.deny(exc.uid, exc.message, code=400, reason="BadRequest")
            return AdmissionJSON(answer)
        return AdmissionJSON({"error": exc.message}, exc.status_code)
    try:
        answer = await handler(admission_request, services)
    except Exception as exc:
        # Last resort only: admit() turns errors into audited denials itself. The detail goes
        # to the log under an id; the answer names the id, never the exception.
        ref = report(log, "admission handler failed", exc=exc, uid=admission_request.uid)
        answer = admission.deny(admission_request.uid, ERR_INTERNAL.format(ref=ref))
    return AdmissionJSON(answer)
