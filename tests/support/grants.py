"""Grants in tests: the issuer, verdicts from real pods, forged and tampered tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from identity.binding import bind
from identity.intent import INTENT_ANNOTATION, parse_intent
from identity.registry import AgentRegistry
from tests.support.paths import DATA
from webhook.decision import Verdict
from webhook.detect import DEFAULT_DEVICE_CLASSES, DEFAULT_RESOURCE_PATTERNS, AcceleratorDetector
from webhook.policy import PolicyDecision

IDENTITY_DATA = DATA / "identity"

ISSUER = "https://kube-intent.kube-intent.svc"
TOKEN_ENDPOINT = ISSUER + "/token"
TRUST_DOMAIN = "prod.example.com"
SCOPES = (
    "data:internal:read",
    "egress:api.support.example.com:443",
    "model:meta-llama/Llama-3.1-8B-Instruct:infer",
    "tool:kb-search:invoke",
)


# A fixed time for claims built by hand (not the clock: tests pass `now=` where it matters).
CLAIMS_NOW = 1_760_000_000


def grant_claims(**changes: Any) -> dict[str, Any]:
    """The claims GrantIssuer mints (identity/grants.py GrantClaims), with `changes` applied."""
    return {
        "iss": ISSUER,
        "sub": "spiffe://prod.example.com/ns/ml-serving/sa/support-bot",
        "aud": TOKEN_ENDPOINT,
        "iat": CLAIMS_NOW,
        "nbf": CLAIMS_NOW,
        "exp": 2**31,
        "jti": "5f0f3b7e-0000-4000-8000-000000000000",
        "scope": "model:meta-llama/Llama-3.1-8B-Instruct:infer tool:kb-search:invoke",
        "intent_digest": "sha256:" + "0" * 64,
        "agent": "support-bot",
        "policy_rev": "0123456789ab",
        "ns": "ml-serving",
        "sa": "support-bot",
        **changes,
    }


def admission_pod() -> dict[str, Any]:
    """tests/data/identity/admission-pod.json (a fresh copy)."""
    pod: dict[str, Any] = json.loads((IDENTITY_DATA / "admission-pod.json").read_text())["pod"]
    return pod


# -- RFC 6902


# -- verdicts


def verdict_for(
    pod: dict[str, Any],
    registry: AgentRegistry,
    *,
    namespace: str = "ml-serving",
    scopes: tuple[str, ...] = SCOPES,
    grant_ttl: int = 900,
    allowed: bool = True,
    fail_open: bool = False,
) -> Verdict:
    """The verdict the decision path gives this pod, with a policy decision we choose."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    workload = AcceleratorDetector(DEFAULT_RESOURCE_PATTERNS, DEFAULT_DEVICE_CLASSES).detect(pod)
    decision = None
    if not fail_open:
        decision = PolicyDecision(allowed=allowed, scopes=list(scopes), grant_ttl_seconds=grant_ttl)
    return Verdict(
        allowed=allowed,
        workload=workload,
        intent=parse_intent(annotations.get(INTENT_ANNOTATION)),
        identity=bind(pod, namespace, registry, TRUST_DOMAIN),
        decision=decision,
        fail_open=fail_open,
    )


# -- forged tokens


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload))


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """`alg: none`: header.payload. with an empty signature."""
    return (
        f"{b64(json.dumps({**header, 'alg': 'none'}).encode())}.{b64(json.dumps(claims).encode())}."
    )


def hs256_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """The classic confusion: HMAC-SHA256 keyed with the verifier's *public* key bytes."""
    signing_input = (
        f"{b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def with_payload(token: str, claims: dict[str, Any]) -> str:
    """The same header and signature over an edited payload (tampering)."""
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


JWT_PATTERN = re.compile(r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")


def looks_like_jwt(text: str) -> bool:
    return JWT_PATTERN.fullmatch(text) is not None


# -- a real HTTPS server on loopback
