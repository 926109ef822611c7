"""Token exchange against a real kube-apiserver: TokenRequest-issued pod tokens, TokenReview, pods.

Uses the shared control plane (`api`, `core` from tests/e2e/conftest.py); the identity pieces
(keys, grants, exchange) run in-process, so no webhook or chart is needed here.

Pods are created in the API server carrying the grant and volumes that GrantIssuer.patch gives
them (so the server also validates the patched pod); their ServiceAccount tokens come from the
TokenRequest API, bound to the pod, exactly like the kubelet's projected volume gets them.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from identity.exchange import (
    ERR_DESCRIPTIONS,
    GRANT_TYPE_TOKEN_EXCHANGE,
    NO_STORE_HEADERS,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_GRANT,
    TOKEN_TYPE_JWT,
    KubernetesAuth,
    LedgerUnavailable,
    TokenExchange,
)
from identity.fetch import FetchSettings, run
from identity.grants import GRANT_ANNOTATION, GRANT_TYP, GrantIssuer
from identity.intent import INTENT_ANNOTATION
from identity.keys import KeySet, generate_keys, new_private_key, private_pem
from identity.registry import AgentRegistration, AgentRegistry
from identity.verify import ACCESS_TOKEN_TYP, verify_access_token
from tests.support.admission import apply_patch
from tests.support.grants import (
    ISSUER,
    SCOPES,
    TOKEN_ENDPOINT,
    admission_pod,
    segments,
    unsigned,
    verdict_for,
)
from tests.support.kube import ensure_namespace, ensure_service_account
from webhook.decision import RequestInfo
from webhook.grants import VerdictGrants

pytestmark = pytest.mark.e2e

AUDIENCE = "inference-gateway.ml-serving"
REQUEST = RequestInfo(uid="e2e", operation="CREATE", namespace="", name="")


def agent(name: str, namespace: str, service_account: str, **spec: Any) -> AgentRegistration:
    return AgentRegistration.from_object(
        {
            "apiVersion": "kube-intent.io/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"serviceAccounts": [service_account], **spec},
        }
    )


@dataclass
class World:
    api: Any
    core: Any
    namespace: str
    keyset: KeySet
    registry: AgentRegistry
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    clock_offset: float = 0.0
    # (pod UID, grant jti) of the pods whose admission validating admission recorded.
    recorded: set[tuple[str, str]] = field(default_factory=set)

    def agents(self) -> AgentRegistry:
        return self.registry

    def issuer(self, *, at: float | None = None) -> GrantIssuer:
        return GrantIssuer(
            lambda: self.keyset,
            ISSUER,
            TOKEN_ENDPOINT,
            policy_revision=lambda: "e2e",
            clock=(lambda: at) if at is not None else time.time,
        )

    def exchange(self, kube: Any = None) -> TokenExchange:
        async def record(result: str, details: dict[str, Any]) -> None:
            self.events.append((result, details))

        async def admitted(pod_uid: str, grant_jti: str) -> bool:
            return (pod_uid, grant_jti) in self.recorded

        async def governed(pod: dict[str, Any]) -> bool:
            return True  # every pod here requests nvidia.com/gpu (admission_pod)

        return TokenExchange(
            lambda: self.keyset,
            ISSUER,
            kube or KubernetesAuth(self.api),
            self.agents,
            admitted=admitted,
            governed=governed,
            on_event=record,
        )

    def create_pod(
        self,
        name: str,
        *,
        service_account: str = "support-bot",
        agent_label: str = "support-bot",
        grant: str | None = None,
        issuer: GrantIssuer | None = None,
        recorded: bool = True,
    ) -> dict[str, Any]:
        """Admit the pod as the mutating webhook would (grant + volumes), then create it.

        `recorded`: validating admission recorded the admission (pod UID, grant jti), as the
        audit trail does for every allowed pod.
        """
        pod = admission_pod()
        metadata = pod["metadata"]
        metadata.pop("generateName")
        metadata.update(name=name, namespace=self.namespace)
        metadata["labels"]["kube-intent.io/agent"] = agent_label
        pod["spec"]["serviceAccountName"] = pod["spec"]["serviceAccount"] = service_account
        verdict = verdict_for(pod, self.registry, namespace=self.namespace)
        pod = apply_patch(pod, VerdictGrants(issuer or self.issuer()).patch(pod, REQUEST, verdict))
        if grant is not None:
            pod["metadata"]["annotations"][GRANT_ANNOTATION] = grant
        created = self.core.create_namespaced_pod(self.namespace, pod)
        result: dict[str, Any] = self.api.sanitize_for_serialization(created)
        token = result["metadata"]["annotations"].get(GRANT_ANNOTATION)
        if recorded and isinstance(token, str):
            jti = jwt.decode(token, options={"verify_signature": False})["jti"]
            self.recorded.add((result["metadata"]["uid"], jti))
        return result

    def delete_pod(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.core.read_namespaced_pod(name, self.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.1)
        raise AssertionError(f"pod {name} was not deleted")

    def sa_token(
        self,
        pod: dict[str, Any] | None,
        *,
        service_account: str = "support-bot",
        audiences: tuple[str, ...] = (ISSUER,),
    ) -> str:
        """A ServiceAccount token from the TokenRequest API, bound to `pod` when given."""
        bound = None
        if pod is not None:
            bound = client.V1BoundObjectReference(
                kind="Pod",
                api_version="v1",
                name=pod["metadata"]["name"],
                uid=pod["metadata"]["uid"],
            )
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=list(audiences), expiration_seconds=600, bound_object_ref=bound
            )
        )
        response = self.core.create_namespaced_service_account_token(
            service_account, self.namespace, request
        )
        token: str = response.status.token
        return token


def form(subject: str, grant: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": TOKEN_TYPE_JWT,
        "actor_token": grant,
        "actor_token_type": TOKEN_TYPE_GRANT,
        "audience": AUDIENCE,
        **extra,
    }


@pytest.fixture(scope="module")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def world(api: client.ApiClient, core: client.CoreV1Api, keyset: KeySet) -> Iterator[World]:
    # A namespace of our own: other modules share the control plane.
    namespace = f"token-exchange-{secrets.token_hex(3)}"
    ensure_namespace(api, namespace)
    for service_account in ("support-bot", "batch-eval"):
        ensure_service_account(api, namespace, service_account)
    registry = AgentRegistry(
        [
            agent("support-bot", namespace, "support-bot"),
            agent("batch-eval", namespace, "batch-eval", suspended=True),
        ]
    )
    yield World(api, core, namespace, keyset, registry)
    core.delete_namespace(namespace)


@pytest.fixture
def pod_name() -> str:
    return f"agent-{secrets.token_hex(4)}"


# -- the patched pod in a real API server


def test_the_api_server_accepts_the_patched_pod_and_reinvocation_adds_nothing(
    world: World, pod_name: str
) -> None:
    pod = world.create_pod(pod_name)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    token_source = volumes["kube-intent-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token_source == {"audience": ISSUER, "expirationSeconds": 600, "path": "token"}
    assert volumes["kube-intent-grant"]["downwardAPI"]["items"][0]["fieldRef"] == {
        "apiVersion": "v1",  # defaulted by the API server
        "fieldPath": "metadata.annotations['kube-intent.io/grant']",
    }
    # The object as a reinvoked webhook would see it: defaulted by the server.
    verdict = verdict_for(pod, world.registry, namespace=world.namespace)
    assert VerdictGrants(world.issuer()).patch(pod, REQUEST, verdict) == []


# -- success


async def test_exchange_issues_an_rfc9068_access_token(world: World, pod_name: str) -> None:
    pod = world.create_pod(pod_name)
    grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
    world.events.clear()
    status, body = await world.exchange().exchange(form(world.sa_token(pod), grant))
    assert status == 200, body
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == TOKEN_TYPE_ACCESS_TOKEN
    assert body["token_type"] == "Bearer"
    assert 295 <= body["expires_in"] <= 300
    assert body["scope"] == " ".join(SCOPES)

    header, _ = segments(body["access_token"])
    assert header == {"alg": "ES256", "kid": world.keyset.signing_kid, "typ": ACCESS_TOKEN_TYP}
    claims = verify_access_token(
        body["access_token"], world.keyset.jwks(), issuer=ISSUER, audience=AUDIENCE
    ).claims
    spiffe = f"spiffe://prod.example.com/ns/{world.namespace}/sa/support-bot"
    _, grant_claims = segments(grant)
    assert claims == {
        "iss": ISSUER,
        "sub": spiffe,
        "aud": AUDIENCE,
        "exp": claims["iat"] + 300,
        "iat": claims["iat"],
        "nbf": claims["iat"],
        "jti": claims["jti"],
        "client_id": spiffe,
        "scope": " ".join(SCOPES),
        "act": {
            "sub": f"spiffe://prod.example.com/ns/{world.namespace}/agent/support-bot",
            "pod": pod_name,
            "pod_uid": pod["metadata"]["uid"],
        },
        "agent": "support-bot",
        "grant_jti": grant_claims["jti"],
    }
    assert claims["exp"] <= grant_claims["exp"]
    [(result, details)] = world.events
    assert result == "issued"
    assert details["jti"] == claims["jti"]
    assert details["grant_jti"] == grant_claims["jti"]
    assert (details["pod"], details["namespace"]) == (pod_name, world.namespace)


async def test_requested_scope_narrows_the_token(world: World, pod_name: str) -> None:
    pod = world.create_pod(pod_name)
    grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
    status, body = await world.exchange().exchange(
        form(world.sa_token(pod), grant, scope="tool:kb-search:invoke")
    )
    assert status == 200, body
    assert body["scope"] == "tool:kb-search:invoke"


async def test_access_token_lives_no_longer_than_the_grant(world: World, pod_name: str) -> None:
    # A grant with 100 s left yields an access token with at most 100 s.
    issuer = world.issuer(at=time.time() - 800)
    pod = world.create_pod(pod_name, issuer=issuer)
    grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
    status, body = await world.exchange().exchange(form(world.sa_token(pod), grant))
    assert status == 200, body
    assert body["expires_in"] <= 100
    assert segments(body["access_token"])[1]["exp"] == segments(grant)[1]["exp"]


# -- refusals

Case = Callable[[World, str], Awaitable[tuple[dict[str, str], TokenExchange | None]]]


async def wrong_audience(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name)
    token = world.sa_token(pod, audiences=("https://some-other-service",))
    return form(token, pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def garbage_token(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name)
    return form("not.a.token", pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def token_not_bound_to_a_pod(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name)
    return form(world.sa_token(None), pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def pod_gone(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name)
    token = world.sa_token(pod)
    world.delete_pod(name)
    return form(token, pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def pod_replaced(world: World, name: str) -> tuple[dict[str, str], None]:
    """Same name, new uid: the old pod's token must not work for the new pod's grant."""
    old = world.create_pod(name)
    token = world.sa_token(old)
    world.delete_pod(name)
    new = world.create_pod(name)
    return form(token, new["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def finished_pod(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name)
    world.core.patch_namespaced_pod_status(name, world.namespace, {"status": {"phase": "Failed"}})
    return form(world.sa_token(pod), pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def grant_of_another_pod(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name)
    other = world.create_pod(name + "-b")
    return form(world.sa_token(pod), other["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def suspended_agent(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name, service_account="batch-eval", agent_label="batch-eval")
    token = world.sa_token(pod, service_account="batch-eval")
    return form(token, pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def unregistered_agent(world: World, name: str) -> tuple[dict[str, str], TokenExchange]:
    pod = world.create_pod(name)
    gone = World(world.api, world.core, world.namespace, world.keyset, AgentRegistry())
    gone.events, gone.recorded = world.events, world.recorded
    return form(world.sa_token(pod), pod["metadata"]["annotations"][GRANT_ANNOTATION]), (
        gone.exchange()
    )


async def scope_escalation(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name)
    grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
    return form(world.sa_token(pod), grant, scope="tool:kb-search:invoke tool:shell:invoke"), None


async def expired_grant(world: World, name: str) -> tuple[dict[str, str], None]:
    pod = world.create_pod(name, issuer=world.issuer(at=time.time() - 3600))
    return form(world.sa_token(pod), pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def forged_signature(world: World, name: str) -> tuple[dict[str, str], None]:
    """The pod carries (and presents) a grant signed by another key under our kid."""
    genuine = world.create_pod(name + "-src")
    header, claims = segments(genuine["metadata"]["annotations"][GRANT_ANNOTATION])
    forged = jwt.encode(
        {**claims, "scope": "tool:shell:invoke"},
        new_private_key(),
        algorithm="ES256",
        headers={"kid": header["kid"], "typ": GRANT_TYP},
    )
    pod = world.create_pod(name, grant=forged)
    return form(world.sa_token(pod), forged), None


async def alg_none_grant(world: World, name: str) -> tuple[dict[str, str], None]:
    genuine = world.create_pod(name + "-src")
    header, claims = segments(genuine["metadata"]["annotations"][GRANT_ANNOTATION])
    forged = unsigned(header, claims)
    pod = world.create_pod(name, grant=forged)
    return form(world.sa_token(pod), forged), None


async def key_not_in_the_set(world: World, name: str) -> tuple[dict[str, str], None]:
    stranger = KeySet.from_pems({"active.pem": private_pem(new_private_key())})
    genuine = world.create_pod(name + "-src")
    _, claims = segments(genuine["metadata"]["annotations"][GRANT_ANNOTATION])
    forged = stranger.sign(claims, GRANT_TYP)
    pod = world.create_pod(name, grant=forged)
    return form(world.sa_token(pod), forged), None


async def intent_changed_after_the_grant(world: World, name: str) -> tuple[dict[str, str], None]:
    genuine = world.create_pod(name + "-src")
    grant = genuine["metadata"]["annotations"][GRANT_ANNOTATION]
    pod = admission_pod()
    intent = json.loads(pod["metadata"]["annotations"][INTENT_ANNOTATION])
    changed = json.dumps({**intent, "tools": ["kb-search", "ticket-lookup"]})
    created = world.core.create_namespaced_pod(
        world.namespace,
        {
            **genuine,
            "metadata": {
                "name": name,
                "labels": genuine["metadata"]["labels"],
                "annotations": {INTENT_ANNOTATION: changed, GRANT_ANNOTATION: grant},
            },
            "status": None,
        },
    )
    created_pod = world.api.sanitize_for_serialization(created)
    return form(world.sa_token(created_pod), grant), None


async def api_server_unreachable(world: World, name: str) -> tuple[dict[str, str], TokenExchange]:
    pod = world.create_pod(name)
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # discard port: connection refused
    configuration.retries = 0
    unreachable = client.ApiClient(configuration)
    return form(world.sa_token(pod), pod["metadata"]["annotations"][GRANT_ANNOTATION]), (
        world.exchange(KubernetesAuth(unreachable, timeout=2))
    )


async def admission_never_recorded(world: World, name: str) -> tuple[dict[str, str], None]:
    """A genuine grant on a live pod whose admission no webhook recorded (a dry run's grant,
    a grant copied onto a pod the webhooks never saw, or a forged review's)."""
    pod = world.create_pod(name, recorded=False)
    return form(world.sa_token(pod), pod["metadata"]["annotations"][GRANT_ANNOTATION]), None


async def copied_grant_of_a_recorded_pod(world: World, name: str) -> tuple[dict[str, str], None]:
    """The source pod was admitted; its grant copied onto a second pod buys the second nothing."""
    source = world.create_pod(name + "-src")
    grant = source["metadata"]["annotations"][GRANT_ANNOTATION]
    pod = world.create_pod(name, grant=grant, recorded=False)
    return form(world.sa_token(pod), grant), None


async def ledger_unreadable(world: World, name: str) -> tuple[dict[str, str], TokenExchange]:
    pod = world.create_pod(name)
    exchange = world.exchange()

    async def down(pod_uid: str, grant_jti: str) -> bool:
        raise LedgerUnavailable("audit store down")

    exchange.admitted = down
    return form(world.sa_token(pod), pod["metadata"]["annotations"][GRANT_ANNOTATION]), exchange


REFUSALS = [
    pytest.param(admission_never_recorded, 400, "invalid_grant", "pod:not-admitted"),
    pytest.param(copied_grant_of_a_recorded_pod, 400, "invalid_grant", "pod:not-admitted"),
    pytest.param(ledger_unreadable, 503, "temporarily_unavailable", "ledger:"),
    pytest.param(wrong_audience, 400, "invalid_grant", "subject-token:unauthenticated"),
    pytest.param(garbage_token, 400, "invalid_grant", "subject-token:malformed"),
    pytest.param(token_not_bound_to_a_pod, 400, "invalid_grant", "subject-token:not-pod-bound"),
    pytest.param(pod_gone, 400, "invalid_grant", "subject-token:unauthenticated"),
    pytest.param(pod_replaced, 400, "invalid_grant", "subject-token:unauthenticated"),
    pytest.param(finished_pod, 400, "invalid_grant", "pod:finished"),
    pytest.param(grant_of_another_pod, 400, "invalid_grant", "grant:not-the-pods"),
    pytest.param(suspended_agent, 400, "unauthorized_client", "agent:suspended"),
    pytest.param(unregistered_agent, 400, "unauthorized_client", "agent:unregistered"),
    pytest.param(scope_escalation, 400, "invalid_scope", "scope-escalation"),
    pytest.param(expired_grant, 400, "invalid_grant", "grant:expired"),
    pytest.param(forged_signature, 400, "invalid_grant", "grant:signature"),
    pytest.param(alg_none_grant, 400, "invalid_grant", "grant:algorithm"),
    pytest.param(key_not_in_the_set, 400, "invalid_grant", "grant:unknown-kid"),
    pytest.param(intent_changed_after_the_grant, 400, "invalid_grant", "grant:intent-digest"),
    pytest.param(api_server_unreachable, 503, "temporarily_unavailable", "tokenreview:"),
]


@pytest.mark.parametrize(
    ("case", "status", "error", "reason"),
    REFUSALS,
    ids=[p.values[0].__name__.replace("_", "-") for p in REFUSALS],  # type: ignore[union-attr]
)
async def test_exchange_refusals(
    world: World, pod_name: str, case: Case, status: int, error: str, reason: str
) -> None:
    request, exchange = await case(world, pod_name)
    world.events.clear()
    got_status, body = await (exchange or world.exchange()).exchange(request)
    assert (got_status, body["error"]) == (status, error), body
    assert set(body) == {"error", "error_description"}
    # The client learns the category only (one fixed text each); the audit trail learns the check.
    assert body["error_description"] == ERR_DESCRIPTIONS[error]
    [(result, details)] = world.events
    assert result == "refused"
    assert details["error"] == error
    assert details["reason"].startswith(reason)
    for value in details.values():
        assert str(value) not in (request["subject_token"], request["actor_token"])


# -- no credential in pods or logs


def token_app(exchange: TokenExchange) -> Starlette:
    """What the webhook's POST /token route does (see the wiring notes in identity/exchange.py)."""

    async def token(request: Request) -> JSONResponse:
        body = await request.body()
        status, payload = await exchange.exchange_body(
            request.headers.get("content-type", ""), body
        )
        return JSONResponse(payload, status_code=status, headers=NO_STORE_HEADERS)

    return Starlette(routes=[Route("/token", token, methods=["POST"])])


async def test_fetch_through_http_and_no_token_in_pod_logs_or_events(
    world: World, pod_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pod = world.create_pod(pod_name)
    subject = world.sa_token(pod)
    (tmp_path / "token").write_text(subject)
    (tmp_path / "grant").write_text(pod["metadata"]["annotations"][GRANT_ANNOTATION])
    settings = FetchSettings(
        endpoint="http://kube-intent/token",
        token_file=tmp_path / "token",
        grant_file=tmp_path / "grant",
        audience=AUDIENCE,
        out=tmp_path / "access-token",
    )
    world.events.clear()
    transport = httpx.ASGITransport(app=token_app(world.exchange()))
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.post(
            "http://kube-intent/token", data=form(subject, "x"), headers={"Accept": "*/*"}
        )
        assert response.headers["cache-control"] == "no-store"
        assert response.status_code == 400
        await run(settings, once=True, client=http)
    access = settings.out.read_text() if settings.out else ""
    verify_access_token(access, world.keyset.jwks(), issuer=ISSUER, audience=AUDIENCE)

    stored = world.api.sanitize_for_serialization(
        world.core.read_namespaced_pod(pod_name, world.namespace)
    )
    haystacks = {
        "pod": json.dumps(stored),
        "logs": caplog.text + json.dumps([r.__dict__.get("fields") for r in caplog.records]),
        "events": json.dumps(world.events),
    }
    assert "token exchange issued" in caplog.text
    for where, text in haystacks.items():
        assert access not in text, f"access token found in {where}"
        assert subject not in text, f"ServiceAccount token found in {where}"


async def test_an_issuance_the_audit_hook_did_not_take_is_withheld(
    world: World, pod_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    pod = world.create_pod(pod_name)

    def broken(result: str, details: dict[str, Any]) -> None:
        raise OSError("audit store down")

    exchange = world.exchange()
    exchange.on_event = broken
    request = form(world.sa_token(pod), pod["metadata"]["annotations"][GRANT_ANNOTATION])
    status, body = await exchange.exchange(request)
    assert (status, body["error"]) == (500, "server_error")
    assert "access_token" not in body
    # A refusal still goes out when the hook fails (and says nothing more).
    status, body = await exchange.exchange({**request, "scope": "tool:shell:invoke"})
    assert (status, body["error"]) == (400, "invalid_scope")
