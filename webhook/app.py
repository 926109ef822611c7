"""The FastAPI app factory: every dependency is passed in, nothing is global."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from identity import jsonio
from identity.exchange import (
    DETAIL_TOO_LARGE,
    JWKS_PATH,
    MAX_FORM_BYTES,
    NO_STORE_HEADERS,
    OPENID_CONFIGURATION_PATH,
    Refusal,
    TokenExchange,
    openid_configuration,
)
from identity.keys import KeySet
from identity.registry import AgentRegistry
from webhook import admission
from webhook.admission import AdmissionRequest, ReviewParseError, parse_review
from webhook.audit.store import AuditStore
from webhook.audit_api import AccessReviewer, list_decisions
from webhook.claim_guard import CLAIMS_PATH, ClaimGuard, claims_handler
from webhook.client_auth import ClientCertificates
from webhook.decision import Decider
from webhook.deps import (
    CallerDep,
    ClaimLookup,
    DecisionRecorder,
    EventSink,
    GrantMinter,
    Services,
    ServicesDep,
)
from webhook.incidents import SEE_LOG, report
from webhook.metrics import Metrics
from webhook.mutate import handle_mutate
from webhook.policy import PolicyEngine
from webhook.settings import Settings
from webhook.validate import handle_validate

log = logging.getLogger("kube_intent.app")

ERR_NO_KEYS = "no signing keys configured (--keys-dir)"
ERR_CLIENT_CERT = (
    "admission reviews are accepted only from the API server: present a client certificate "
    "signed by the configured client CA (--client-ca; see the README's mutual TLS section)"
)
ERR_INTERNAL = "kube-intent could not evaluate this pod; it was denied to fail safe: " + SEE_LOG

Handler = Callable[[AdmissionRequest, Services], Awaitable[dict[str, Any]]]


class BodyTooLarge(Exception):
    pass


class AdmissionJSON(Response):
    """JSON through jsonio.dumps, which cannot fail: an answer is always written."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsonio.dumps(content)


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes: a huge body is refused before it is buffered whole."""
    declared = request.headers.get("content-length")
    # ASCII digits only ("²" is a digit to str.isdigit), and no int() of thousands of them.
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > limit)
    ):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


# Parsed, a body takes many times its size in Python objects (3 MB of small JSON objects are
# ~70 MB), and a parsed review stays alive while OPA and the audit store are awaited. Large
# bodies are therefore handled one at a time: a burst of them must not multiply that by the
# number of connections. Real pods are nearly all far below the threshold and never wait.
LARGE_BODY_BYTES = 256 * 1024
LARGE_BODIES_AT_ONCE = 1


def _large_bodies(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    if getattr(state, "large_bodies", None) is None:
        state.large_bodies = asyncio.Semaphore(LARGE_BODIES_AT_ONCE)
    semaphore: asyncio.Semaphore = state.large_bodies
    return semaphore


async def _review(request: Request, services: Services, handler: Handler) -> Response:
    limit = services.settings.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return AdmissionJSON({"error": admission.ERR_TOO_LARGE.format(limit=limit)}, 413)
    except ClientDisconnect:
        # Nobody is left to read an answer; not an error of ours (nor worth a traceback).
        log.info("client disconnected before sending the whole admission review")
        return Response(status_code=400)
    if len(body) <= LARGE_BODY_BYTES:
        return await _answer(body, services, handler)
    async with _large_bodies(request):
        return await _answer(body, services, handler)


async def _answer(body: bytes, services: Services, handler: Handler) -> Response:
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


def caller_refused(request: Request) -> Response:
    client = request.scope.get("client")
    log.warning(
        "admission review refused: no client certificate", extra={"fields": {"peer": client}}
    )
    return JSONResponse({"error": ERR_CLIENT_CERT}, status_code=401)


def create_app(
    settings: Settings,
    *,
    policy: PolicyEngine,
    registry: Callable[[], AgentRegistry],
    metrics: Metrics | None = None,
    recorder: DecisionRecorder | None = None,
    events: EventSink | None = None,
    audit_store: AuditStore | None = None,
    audit_access: AccessReviewer | None = None,
    claims: ClaimLookup | None = None,
    grants: GrantMinter | None = None,
    ready_checks: tuple[Callable[[], bool], ...] = (),
    keys: Callable[[], KeySet] | None = None,
    tokens: TokenExchange | None = None,
    client_certificates: ClientCertificates | None = None,
    claim_guard: ClaimGuard | None = None,
) -> FastAPI:
    decider = Decider(
        detector=settings.accelerator_detector,
        registry=registry,
        policy=policy,
        trust_domain=settings.trust_domain,
        enforcement=settings.enforcement,
        fail_open=settings.fail_open,
    )
    services = Services(
        settings=settings,
        decider=decider,
        policy=policy,
        metrics=metrics or Metrics(),
        recorder=recorder,
        events=events,
        audit_store=audit_store,
        audit_access=audit_access,
        claims=claims,
        grants=grants,
        ready_checks=ready_checks,
        keys=keys,
        tokens=tokens,
        client_certificates=client_certificates,
    )
    app = FastAPI(title="kube-intent", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services

    @app.post("/mutate")
    async def mutate(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
        if caller.refused:
            return caller_refused(request)
        handler = partial(handle_mutate, authenticated=caller.authenticated)
        return await _review(request, services, handler)

    @app.post("/validate")
    async def validate(request: Request, services: ServicesDep, caller: CallerDep) -> Response:
        if caller.refused:
            return caller_refused(request)
        handler = partial(handle_validate, authenticated=caller.authenticated)
        return await _review(request, services, handler)

    # DRA claims and templates: an accelerator class only for pods admitted to hold it.
    review_claim = claims_handler(claim_guard)

    @app.post(CLAIMS_PATH)
    async def validate_claims(
        request: Request, services: ServicesDep, caller: CallerDep
    ) -> Response:
        if caller.refused:
            return caller_refused(request)
        return await _review(request, services, review_claim)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz")
    async def readyz(services: ServicesDep) -> PlainTextResponse:
        if not await services.policy.ready():
            return PlainTextResponse("policy engine not ready", status_code=503)
        if not all(check() for check in services.ready_checks):
            return PlainTextResponse("agent registrations not synced yet", status_code=503)
        return PlainTextResponse("ok")

    @app.get(JWKS_PATH)
    async def jwks(services: ServicesDep) -> Response:
        if services.keys is None:
            return JSONResponse({"error": ERR_NO_KEYS}, status_code=404)
        # Verifiers may cache it: a key is published (as next) long before it signs.
        return JSONResponse(services.keys().jwks(), headers={"Cache-Control": "max-age=300"})

    @app.get(OPENID_CONFIGURATION_PATH)
    async def discovery(services: ServicesDep) -> Response:
        settings = services.settings
        return JSONResponse(openid_configuration(settings.issuer, settings.token_endpoint))

    @app.post("/token")
    async def token(request: Request, services: ServicesDep) -> Response:
        if services.tokens is None:
            refusal = Refusal("temporarily_unavailable", "disabled", status=503)
            return JSONResponse(refusal.body(), status_code=503, headers=NO_STORE_HEADERS)
        try:
            body = await read_body(request, MAX_FORM_BYTES)
        except BodyTooLarge:
            refusal = Refusal("invalid_request", "too-large", detail=DETAIL_TOO_LARGE)
            return JSONResponse(refusal.body(), status_code=400, headers=NO_STORE_HEADERS)
        except ClientDisconnect:
            log.info("client disconnected before sending the whole token request")
            return Response(status_code=400)
        status, payload = await services.tokens.exchange_body(
            request.headers.get("content-type", ""), body
        )
        return JSONResponse(payload, status_code=status, headers=NO_STORE_HEADERS)

    @app.get("/audit/decisions")
    async def audit_decisions(request: Request, services: ServicesDep) -> Response:
        return await list_decisions(request, services.audit_store, services.audit_access)

    @app.get("/metrics")
    async def metrics_route(services: ServicesDep) -> Response:
        return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
