"""What the routes depend on, built once by the app factory and handed out by FastAPI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from identity.exchange import TokenExchange
from identity.keys import KeySet
from webhook.audit.store import AuditStore
from webhook.audit_api import AccessReviewer
from webhook.client_auth import ClientCertificates
from webhook.decision import Decider, RequestInfo, Verdict
from webhook.detect import ClaimResolver
from webhook.metrics import Metrics
from webhook.policy import PolicyEngine
from webhook.settings import Settings


class DecisionRecorder(Protocol):
    """Durably records a decision before the response is sent (see webhook/audit)."""

    async def record(
        self, webhook: str, request: RequestInfo, verdict: Verdict, latency_ms: float
    ) -> None: ...


class ClaimLookup(Protocol):
    """Fetches the ResourceClaims/Templates a pod references (a cluster read, never a write)."""

    async def resolver_for(self, namespace: str, pod: dict[str, Any]) -> ClaimResolver | None: ...


class EventSink(Protocol):
    """Best-effort denial Events; must return at once (it only enqueues)."""

    def denied(self, request: RequestInfo, pod: dict[str, Any], verdict: Verdict) -> None: ...


class GrantMinter(Protocol):
    """Seam for the identity issue: JSONPatch operations that attach a grant to an allowed pod."""

    def patch(
        self, pod: dict[str, Any], request: RequestInfo, verdict: Verdict
    ) -> list[dict[str, Any]]: ...


@dataclass(slots=True)
class Services:
    settings: Settings
    decider: Decider
    policy: PolicyEngine
    metrics: Metrics
    recorder: DecisionRecorder | None = None
    events: EventSink | None = None
    audit_store: AuditStore | None = None
    audit_access: AccessReviewer | None = None
    claims: ClaimLookup | None = None
    grants: GrantMinter | None = None
    keys: Callable[[], KeySet] | None = None
    tokens: TokenExchange | None = None
    # Extra readiness conditions (e.g. the first Agent list from the cluster has been applied).
    ready_checks: tuple[Callable[[], bool], ...] = ()
    # Verified TLS client certificates per connection (mTLS from the API server), if enabled.
    client_certificates: ClientCertificates | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Whether the caller of an admission route proved it is the API server."""

    authenticated: bool
    # A client CA is configured and this caller presented no certificate it verified.
    refused: bool


async def get_caller(request: Request) -> Caller:
    services: Services = request.app.state.services
    certificates = services.client_certificates
    required = services.settings.client_ca is not None
    authenticated = certificates is not None and certificates.authenticated(
        request.scope.get("client")
    )
    return Caller(authenticated=authenticated, refused=required and not authenticated)


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
CallerDep = Annotated[Caller, Depends(get_caller)]
