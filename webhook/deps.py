"""What the routes depend on: built once by the app factory, handed out by FastAPI.

Each route asks for the few things it uses (`SettingsDep`, `KeysDep`, `AdmissionDep`, ...),
never for the whole app: the factory (webhook/app.py) is the only place that sees everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from identity.exchange import TokenExchange
from identity.keys import KeySet
from webhook.admission import AdmissionRequest
from webhook.audit.store import AuditStore
from webhook.audit_api import AccessReviewer
from webhook.capacity import Capacity
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
    """JSONPatch operations that attach a grant to an allowed pod (webhook/grants.py)."""

    def patch(
        self, pod: dict[str, Any], request: RequestInfo, verdict: Verdict
    ) -> list[dict[str, Any]]: ...


Keys = Callable[[], KeySet]
"""The current key set (reloaded from the mounted Secret); called per use, never cached."""


@dataclass(frozen=True, slots=True)
class Services:
    """What deciding an admission review needs: /mutate, /validate and /validate-claims."""

    settings: Settings
    decider: Decider
    metrics: Metrics
    recorder: DecisionRecorder | None = None
    events: EventSink | None = None
    claims: ClaimLookup | None = None
    grants: GrantMinter | None = None
    keys: Keys | None = None


ReviewHandler = Callable[[AdmissionRequest, Services], Awaitable[dict[str, Any]]]
"""Decides one parsed AdmissionReview (webhook/mutate.py, validate.py, claim_guard.py)."""


@dataclass(frozen=True, slots=True)
class AppState:
    """Everything the factory wired, kept on `app.state.kube_intent`; routes read it through
    the dependencies below, one field each."""

    admission: Services
    # /validate-claims: the claim guard's review (webhook/claim_guard.py).
    claim_review: ReviewHandler
    # When a review is refused at once rather than queued (webhook/capacity.py).
    capacity: Capacity
    tokens: TokenExchange | None = None
    audit_store: AuditStore | None = None
    audit_access: AccessReviewer | None = None
    # Extra readiness conditions (e.g. the first Agent list from the cluster has been applied).
    ready_checks: tuple[Callable[[], bool], ...] = ()
    # Verified TLS client certificates per connection (mTLS from the API server), if enabled.
    client_certificates: ClientCertificates | None = None


# async on purpose: FastAPI runs sync dependencies in a thread pool, a hop per request.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.kube_intent
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_services(state: StateDep) -> Services:
    return state.admission


async def get_settings(state: StateDep) -> Settings:
    return state.admission.settings


async def get_metrics(state: StateDep) -> Metrics:
    return state.admission.metrics


async def get_policy(state: StateDep) -> PolicyEngine:
    return state.admission.decider.policy


async def get_keys(state: StateDep) -> Keys | None:
    return state.admission.keys


async def get_tokens(state: StateDep) -> TokenExchange | None:
    return state.tokens


@dataclass(frozen=True, slots=True)
class Caller:
    """Whether the caller of an admission route proved it is the API server."""

    authenticated: bool
    # A client CA is configured and this caller presented no certificate it verified.
    refused: bool


async def get_caller(request: Request, state: StateDep) -> Caller:
    certificates = state.client_certificates
    required = state.admission.settings.client_ca is not None
    authenticated = certificates is not None and certificates.authenticated(
        request.scope.get("client")
    )
    return Caller(authenticated=authenticated, refused=required and not authenticated)


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PolicyDep = Annotated[PolicyEngine, Depends(get_policy)]
KeysDep = Annotated[Keys | None, Depends(get_keys)]
TokensDep = Annotated[TokenExchange | None, Depends(get_tokens)]
CallerDep = Annotated[Caller, Depends(get_caller)]
