"""The FastAPI app factory: every dependency is passed in, nothing is global.

It is the one place that sees every component: it wires them into `AppState` and mounts one
router per area (webhook/routes/, and the audit API's router); routes take what they use
through the dependencies in webhook/deps.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from identity.exchange import TokenExchange
from identity.registry import AgentRegistry
from webhook.audit.store import AuditStore
from webhook.audit_api import AccessReviewer
from webhook.capacity import Capacity
from webhook.claim_guard import ClaimGuard, claims_handler
from webhook.client_auth import ClientCertificates
from webhook.decision import Decider
from webhook.deps import (
    AppState,
    ClaimLookup,
    DecisionRecorder,
    EventSink,
    GrantMinter,
    Keys,
    Services,
)
from webhook.metrics import Metrics
from webhook.policy import PolicyEngine
from webhook.routes import admission, audit, health
from webhook.routes import tokens as token_routes
from webhook.settings import BUNDLED_POLICIES, Settings


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
    keys: Keys | None = None,
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
        # OPA is sent only the pod fields the bundled policies read (webhook/policy_view.py);
        # an operator's own Rego may read any field, so it gets the whole pod.
        lean_input=settings.policies == BUNDLED_POLICIES and settings.extra_policies is None,
    )
    state = AppState(
        admission=Services(
            settings=settings,
            decider=decider,
            metrics=metrics or Metrics(),
            recorder=recorder,
            events=events,
            claims=claims,
            grants=grants,
            keys=keys,
        ),
        claim_review=claims_handler(claim_guard),
        capacity=Capacity(settings.max_inflight_reviews, settings.max_queue_seconds),
        tokens=tokens,
        audit_store=audit_store,
        audit_access=audit_access,
        ready_checks=ready_checks,
        client_certificates=client_certificates,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watch = asyncio.create_task(state.capacity.watch())
        try:
            yield
        finally:
            watch.cancel()

    app = FastAPI(
        title="kube-intent", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.kube_intent = state
    for router in (admission.router, token_routes.router, health.router, audit.router):
        app.include_router(router)
    return app
