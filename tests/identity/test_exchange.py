"""Token exchange checks that happen before the API server is asked (form, audience, the
shape of both tokens), a server without a cluster, the discovery document, and TokenReview
statuses the real server cannot be made to return."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import pytest

from identity.exchange import (
    ERR_DESCRIPTIONS,
    ERR_NO_CLUSTER,
    GRANT_TYPE_TOKEN_EXCHANGE,
    NO_STORE_HEADERS,
    POD_NAME_EXTRA,
    POD_UID_EXTRA,
    TOKEN_TYPE_GRANT,
    TOKEN_TYPE_JWT,
    NoCluster,
    PodIdentity,
    Refusal,
    TokenExchange,
    openid_configuration,
    parse_form,
    pod_identity,
)
from identity.grants import GRANT_TYP
from identity.keys import KeySet
from identity.registry import AgentRegistry
from tests.support.grants import ISSUER, TOKEN_ENDPOINT


class NeverAsked:
    """A KubeAuth for requests that must be refused before the API server is consulted."""

    async def token_review(self, token: str, audiences: Sequence[str]) -> dict[str, Any]:
        raise AssertionError("the API server was asked")

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise AssertionError("the API server was asked")


def segment(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def compact(header: object, claims: object = None, signature: str = "c2lnbmF0dXJl") -> str:
    """A compact JWS of this shape (the signature is never checked before TokenReview)."""
    return f"{segment(header)}.{segment({'sub': 'x'} if claims is None else claims)}.{signature}"


# Shaped like what the API server issues (RS256, a kid, no typ) and what /mutate mints.
SUBJECT = compact({"alg": "RS256", "kid": "k8s-key"})
GRANT = compact({"alg": "ES256", "kid": "our-key", "typ": GRANT_TYP})

GOOD = {
    "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
    "subject_token": SUBJECT,
    "subject_token_type": TOKEN_TYPE_JWT,
    "actor_token": GRANT,
    "actor_token_type": TOKEN_TYPE_GRANT,
    "audience": "inference-gateway",
}


async def never_asked(*_: object) -> bool:
    raise AssertionError("these requests are refused before the pod is looked at")


@pytest.fixture
def events() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def exchange(keyset: KeySet, events: list[tuple[str, dict[str, Any]]]) -> TokenExchange:
    return TokenExchange(
        lambda: keyset,
        ISSUER,
        NeverAsked(),
        AgentRegistry,
        admitted=never_asked,
        governed=never_asked,
        on_event=lambda result, details: events.append((result, details)),
        audiences=lambda: frozenset({"inference-gateway", "vector-db"}),
    )


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k != name}


@pytest.mark.parametrize(
    ("request_form", "error", "reason"),
    [
        pytest.param(
            {**GOOD, "grant_type": "client_credentials"},
            "unsupported_grant_type",
            "grant_type",
            id="other-grant-type",
        ),
        pytest.param(
            without("grant_type"), "invalid_request", "missing:grant_type", id="no-grant-type"
        ),
        pytest.param(
            without("subject_token"),
            "invalid_request",
            "missing:subject_token",
            id="no-subject-token",
        ),
        pytest.param(
            without("actor_token"), "invalid_request", "missing:actor_token", id="no-grant"
        ),
        pytest.param(
            {**GOOD, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
            "invalid_request",
            "subject_token_type",
            id="subject-token-type",
        ),
        pytest.param(
            {**GOOD, "actor_token_type": TOKEN_TYPE_JWT},
            "invalid_request",
            "actor_token_type",
            id="grant-as-plain-jwt",
        ),
        pytest.param(
            {**GOOD, "requested_token_type": TOKEN_TYPE_JWT},
            "invalid_request",
            "requested_token_type",
            id="requested-token-type",
        ),
        pytest.param(without("audience"), "invalid_request", "missing:audience", id="no-audience"),
        pytest.param(
            {**GOOD, "audience": "a b"}, "invalid_request", "audience", id="two-audiences-in-one"
        ),
        pytest.param(
            {**GOOD, "audience": "x" * 300}, "invalid_request", "audience", id="audience-too-long"
        ),
        pytest.param({**GOOD, "scope": 'tool:"x"'}, "invalid_request", "scope", id="bad-scope"),
        pytest.param(
            {**GOOD, "resource": "https://x"}, "invalid_target", "resource", id="resource-parameter"
        ),
        pytest.param(
            {**GOOD, "audience": ISSUER},
            "invalid_target",
            "audience:self",
            id="audience-is-the-issuer",
        ),
        pytest.param(
            {**GOOD, "audience": TOKEN_ENDPOINT},
            "invalid_target",
            "audience:self",
            id="audience-is-the-token-endpoint",
        ),
        pytest.param(
            {**GOOD, "audience": ISSUER.upper() + "/"},
            "invalid_target",
            "audience:self",
            id="audience-is-the-issuer-spelled-differently",
        ),
        pytest.param(
            {**GOOD, "audience": "payments"},
            "invalid_target",
            "audience:not-allowed",
            id="audience-not-allowed",
        ),
    ],
)
async def test_refused_before_the_api_server_is_asked(
    exchange: TokenExchange,
    events: list[tuple[str, dict[str, Any]]],
    request_form: dict[str, str],
    error: str,
    reason: str,
) -> None:
    status, body = await exchange.exchange(request_form)
    assert (status, body["error"]) == (400, error)
    assert set(body) == {"error", "error_description"}
    [(result, details)] = events
    assert (result, details["error"], details["reason"]) == ("refused", error, reason)
    assert SUBJECT not in repr(details)
    assert GRANT not in repr(details)


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        pytest.param("application/json", b"{}", "content-type", id="json"),
        pytest.param(
            "application/x-www-form-urlencoded",
            (urlencode(GOOD) + "&audience=other").encode(),
            "repeated",
            id="repeated-parameter",
        ),
        pytest.param("application/x-www-form-urlencoded", b"a=%ff", "encoding", id="not-utf8"),
        pytest.param(
            "application/x-www-form-urlencoded", b"a=" + b"x" * 70_000, "too-large", id="too-large"
        ),
        pytest.param(
            "application/x-www-form-urlencoded",
            "&".join(f"p{i}=1" for i in range(40)).encode(),
            "encoding",
            id="too-many-fields",
        ),
    ],
)
async def test_unparseable_forms(
    exchange: TokenExchange, content_type: str, body: bytes, reason: str
) -> None:
    with pytest.raises(Refusal) as refused:
        parse_form(content_type, body)
    assert (refused.value.error, refused.value.reason) == ("invalid_request", reason)
    status, answer = await exchange.exchange_body(content_type, body)
    assert (status, answer["error"]) == (400, "invalid_request")


async def test_a_repeated_unknown_parameter_is_not_echoed(exchange: TokenExchange) -> None:
    status, body = await exchange.exchange_body(
        "application/x-www-form-urlencoded", b"x%22%5C%E2%98%83=1&x%22%5C%E2%98%83=2"
    )
    assert status == 400
    assert body["error_description"] == "the request is malformed: parameter (unknown) is repeated"
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in body["error_description"])


def test_a_well_formed_form_parses_with_charset_and_blank_values_omitted() -> None:
    body = (urlencode(GOOD) + "&scope=").encode()
    form = parse_form("application/x-www-form-urlencoded; charset=UTF-8", body)
    assert form == GOOD


def test_invalid_request_names_the_parameter_other_errors_say_only_the_category() -> None:
    assert (
        "audience"
        in Refusal("invalid_request", "x", detail="parameter audience is required").body()[
            "error_description"
        ]
    )
    for error in ("invalid_grant", "unauthorized_client", "invalid_scope", "invalid_target"):
        assert Refusal(error, "grant:signature").body() == {
            "error": error,
            "error_description": ERR_DESCRIPTIONS[error],
        }


def test_no_store_headers() -> None:
    assert NO_STORE_HEADERS == {"Cache-Control": "no-store", "Pragma": "no-cache"}


def test_openid_configuration() -> None:
    document = openid_configuration(ISSUER)
    assert document["issuer"] == ISSUER
    assert document["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert document["token_endpoint"] == TOKEN_ENDPOINT
    assert document["grant_types_supported"] == [GRANT_TYPE_TOKEN_EXCHANGE]
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]


def _status(**user: Any) -> dict[str, Any]:
    return {
        "authenticated": True,
        "audiences": [ISSUER],
        "user": {
            "username": "system:serviceaccount:ml-serving:support-bot",
            "uid": "5b8c",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:ml-serving"],
            "extra": {POD_NAME_EXTRA: ["vllm-0"], POD_UID_EXTRA: ["9f1e"]},
            **user,
        },
    }


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        pytest.param(
            {**_status(), "audiences": []},
            "subject-token:audience",
            id="recorded-authenticated-without-our-audience",
        ),
        pytest.param(
            _status(username="alice"),
            "subject-token:not-service-account",
            id="recorded-a-user-not-a-service-account",
        ),
        pytest.param(
            _status(username="system:serviceaccount:ml-serving"),
            "subject-token:not-service-account",
            id="recorded-truncated-username",
        ),
        pytest.param(
            _status(extra={POD_NAME_EXTRA: ["a", "b"], POD_UID_EXTRA: ["1", "2"]}),
            "subject-token:not-pod-bound",
            id="recorded-two-pods",
        ),
        pytest.param(
            {"authenticated": False, "error": "token expired"},
            "subject-token:unauthenticated",
            id="recorded-unauthenticated",
        ),
    ],
)
def test_recorded_tokenreview_statuses_the_real_server_does_not_produce(
    status: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Refusal) as refused:
        pod_identity(status, ISSUER)
    assert (refused.value.error, refused.value.reason) == ("invalid_grant", reason)


def test_recorded_tokenreview_status_of_a_pod_token() -> None:
    assert pod_identity(_status(), ISSUER) == PodIdentity(
        "ml-serving", "support-bot", "vllm-0", "9f1e"
    )


class FakeKubeWithABug:
    """A failure the real client cannot be made to produce: an unexpected exception type."""

    async def token_review(self, token: str, audiences: Sequence[str]) -> dict[str, Any]:
        raise RuntimeError("bug")

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise RuntimeError("bug")


async def test_fake_kube_with_a_bug_gives_server_error_not_a_traceback(
    keyset: KeySet, events: list[tuple[str, dict[str, Any]]]
) -> None:
    exchange = TokenExchange(
        lambda: keyset,
        ISSUER,
        FakeKubeWithABug(),
        AgentRegistry,
        admitted=never_asked,
        governed=never_asked,
        on_event=lambda result, details: events.append((result, details)),
    )
    status, body = await exchange.exchange(GOOD)
    assert (status, body["error"]) == (500, "server_error")
    assert events == [
        (
            "error",
            {
                "audience": "inference-gateway",
                "error": "server_error",
                "reason": "internal:RuntimeError",
            },
        )
    ]


# -- malformed tokens: a 400 at once, the API server never asked

RS256 = {"alg": "RS256", "kid": "k8s-key"}


@pytest.mark.parametrize(
    ("subject_token", "reason"),
    [
        pytest.param("garbage", "malformed", id="not-a-jwt"),
        pytest.param("a.b", "malformed", id="two-segments"),
        pytest.param(SUBJECT + ".x.y", "malformed", id="five-segments-jwe"),
        pytest.param(f"{segment(RS256)}.!!!.c2ln", "malformed", id="claims-not-base64url"),
        pytest.param(f"{segment(RS256)}.{segment({'a': 1})}=.c2ln", "malformed", id="padding"),
        pytest.param(f"{segment(b'not json')}.{segment({})}.c2ln", "malformed", id="header-text"),
        pytest.param(compact(["RS256"]), "malformed", id="header-an-array"),
        pytest.param(compact(RS256, b"{"), "malformed", id="claims-not-json"),
        pytest.param(compact(RS256, [1]), "malformed", id="claims-an-array"),
        pytest.param(compact(RS256, signature=""), "malformed", id="no-signature"),
        pytest.param(compact({"alg": "none"}, signature=""), "malformed", id="alg-none-unsigned"),
        pytest.param(compact({"alg": "none"}), "algorithm", id="alg-none"),
        pytest.param(compact({"alg": "HS256"}), "algorithm", id="alg-hmac"),
        pytest.param(compact({"kid": "k"}), "algorithm", id="no-alg"),
        pytest.param(compact({**RS256, "typ": "at+jwt"}), "type", id="typ-access-token"),
        pytest.param(compact({**RS256, "typ": GRANT_TYP}), "type", id="typ-grant"),
        pytest.param(compact({**RS256, "typ": 1}), "type", id="typ-not-a-string"),
    ],
)
async def test_a_malformed_subject_token_is_refused_before_the_api_server_is_asked(
    exchange: TokenExchange,
    events: list[tuple[str, dict[str, Any]]],
    subject_token: str,
    reason: str,
) -> None:
    status, body = await exchange.exchange({**GOOD, "subject_token": subject_token})
    assert (status, body) == (400, Refusal("invalid_grant", "x").body())
    [(result, details)] = events
    assert (result, details["reason"]) == ("refused", f"subject-token:{reason}")
    assert subject_token not in repr(details)


@pytest.mark.parametrize(
    ("grant", "reason"),
    [
        pytest.param("x", "malformed", id="not-a-jwt"),
        pytest.param(f"{segment(b'{')}.{segment({})}.c2ln", "malformed", id="header-not-json"),
        pytest.param(
            compact({"alg": "ES256", "typ": GRANT_TYP}, signature="%%"),
            "malformed",
            id="signature-not-base64url",
        ),
        pytest.param(compact({"alg": "none", "typ": GRANT_TYP}), "algorithm", id="alg-none"),
        pytest.param(compact({"alg": "HS256", "typ": GRANT_TYP}), "algorithm", id="alg-hmac"),
        pytest.param(compact({"alg": "ES256", "typ": "at+jwt"}), "type", id="an-access-token"),
        pytest.param(SUBJECT, "algorithm", id="the-subject-token-twice"),
    ],
)
async def test_a_malformed_grant_is_refused_before_the_api_server_is_asked(
    exchange: TokenExchange, events: list[tuple[str, dict[str, Any]]], grant: str, reason: str
) -> None:
    status, body = await exchange.exchange({**GOOD, "actor_token": grant})
    assert (status, body["error"]) == (400, "invalid_grant")
    [(result, details)] = events
    assert (result, details["reason"]) == ("refused", f"grant:{reason}")


@pytest.mark.parametrize(
    "subject_token",
    [
        pytest.param(SUBJECT, id="no-typ-as-kubernetes-issues"),
        pytest.param(compact({**RS256, "typ": "JWT"}), id="typ-JWT"),
        pytest.param(compact({**RS256, "typ": "jwt"}), id="typ-jwt-lowercase"),
        pytest.param(compact({"alg": "ES384", "kid": "k"}), id="ecdsa-signing-key"),
        pytest.param(compact({"alg": "PS256", "kid": "k"}), id="rsa-pss"),
    ],
)
async def test_without_a_cluster_a_well_formed_exchange_says_tokenreview_needs_one(
    keyset: KeySet, events: list[tuple[str, dict[str, Any]]], subject_token: str
) -> None:
    exchange = TokenExchange(
        lambda: keyset,
        ISSUER,
        NoCluster(),
        AgentRegistry,
        admitted=never_asked,
        governed=never_asked,
        on_event=lambda result, details: events.append((result, details)),
    )
    status, body = await exchange.exchange({**GOOD, "subject_token": subject_token})
    assert (status, body) == (
        503,
        {"error": "temporarily_unavailable", "error_description": ERR_NO_CLUSTER},
    )
    assert "--kubeconfig" in ERR_NO_CLUSTER
    # RFC 6749 §5.2: error_description is restricted ASCII.
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in ERR_NO_CLUSTER)
    [(result, details)] = events
    assert (result, details["error"], details["reason"]) == (
        "refused",
        "temporarily_unavailable",
        "tokenreview:no-cluster",
    )
