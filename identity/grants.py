"""The grant: a signed, short-lived statement minted at admission, and the pod patch carrying it.

A grant is not a bearer credential. It says "policy revision R allowed agent A, running as
ns/sa, to hold these scopes for this intent until exp", and the token endpoint honours it only
together with the pod's own projected ServiceAccount token from the live pod that carries it.

The patch puts the grant in the annotation `kube-intent.io/grant` and exposes it, with a
projected ServiceAccount token for the issuer's audience, as files in every regular container.
Containers get file paths and the endpoint URL in their environment, never a token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from identity.keys import JwtRefused, KeySet, verify_signed

GRANT_ANNOTATION = "kube-intent.io/grant"
GRANT_PATH = "/metadata/annotations/kube-intent.io~1grant"
GRANT_TYP = "kube-intent-grant+jwt"

# Names and paths, not secrets (ruff S105 reads "TOKEN" in a name as a password).
TOKEN_VOLUME = "kube-intent-token"  # noqa: S105
GRANT_VOLUME = "kube-intent-grant"
TOKEN_DIR = "/var/run/kube-intent/token"  # noqa: S105
GRANT_DIR = "/var/run/kube-intent/grant"
TOKEN_FILE_NAME = "token"  # noqa: S105
GRANT_FILE_NAME = "grant"
TOKEN_FILE = f"{TOKEN_DIR}/{TOKEN_FILE_NAME}"
GRANT_FILE = f"{GRANT_DIR}/{GRANT_FILE_NAME}"
ENV_TOKEN_ENDPOINT = "KUBE_INTENT_TOKEN_ENDPOINT"  # noqa: S105
ENV_TOKEN_FILE = "KUBE_INTENT_TOKEN_FILE"  # noqa: S105
ENV_GRANT_FILE = "KUBE_INTENT_GRANT_FILE"
# The kubelet refreshes a projected token at 80% of its life; 10 minutes is the API server's
# minimum and keeps a token copied out of a pod useful for as short a time as possible.
SA_TOKEN_EXPIRATION_SECONDS = 600
# Tolerated clock difference between webhook replicas for nbf/iat. Expiry gets none: a grant
# is over at `exp` on every replica.
CLOCK_SKEW_SECONDS = 30

# Stable reasons for GrantError (beside the signature reasons from identity.keys).
REASON_CLAIMS = "claims"
REASON_ISSUER = "issuer"
REASON_AUDIENCE = "audience"
REASON_EXPIRED = "expired"
REASON_NOT_YET_VALID = "not-yet-valid"
REASON_NAMESPACE = "namespace"
REASON_SERVICE_ACCOUNT = "service-account"
REASON_INTENT_DIGEST = "intent-digest"

ERR_REASONS = {
    "malformed": "is not a well-formed signed token",
    "algorithm": "is not signed with ES256 (the only algorithm kube-intent accepts)",
    "type": f"is not a kube-intent grant (typ must be {GRANT_TYP})",
    "unknown-kid": "is signed by a key that is not in kube-intent's key set (retired or foreign)",
    "signature": "has an invalid signature (altered, or signed by another key)",
    REASON_CLAIMS: "lacks required claims",
    REASON_ISSUER: "was issued by another issuer",
    REASON_AUDIENCE: "is for another token endpoint",
    REASON_EXPIRED: "has expired",
    REASON_NOT_YET_VALID: "is not valid yet (clock skew between replicas?)",
    REASON_NAMESPACE: "was issued for another namespace",
    REASON_SERVICE_ACCOUNT: "was issued for another ServiceAccount",
    REASON_INTENT_DIGEST: "was issued for another intent (the intent changed after admission)",
}


class GrantError(JwtRefused):
    """The grant was refused; `reason` says which check failed (for audit, not for clients)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, f"grant {ERR_REASONS.get(reason, reason)}")


def token_endpoint_for(issuer: str) -> str:
    """Where the webhook serves RFC 8693 token exchange: the grant's audience."""
    return issuer.rstrip("/") + "/token"


@dataclass(frozen=True, slots=True)
class GrantClaims:
    iss: str
    sub: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str
    scopes: tuple[str, ...]
    intent_digest: str
    agent: str
    policy_rev: str
    ns: str
    sa: str

    def to_claims(self) -> dict[str, Any]:
        return {
            "iss": self.iss,
            "sub": self.sub,
            "aud": self.aud,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "jti": self.jti,
            "scope": " ".join(self.scopes),
            "intent_digest": self.intent_digest,
            "agent": self.agent,
            "policy_rev": self.policy_rev,
            "ns": self.ns,
            "sa": self.sa,
        }

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> GrantClaims:
        strings = ("iss", "sub", "aud", "jti", "scope", "intent_digest", "agent", "policy_rev")
        numbers = ("iat", "nbf", "exp")
        if not all(isinstance(claims.get(name), str) for name in (*strings, "ns", "sa")):
            raise GrantError(REASON_CLAIMS)
        # bool is an int in Python; a JSON `true` is not a time.
        if not all(
            isinstance(claims.get(name), int) and not isinstance(claims.get(name), bool)
            for name in numbers
        ):
            raise GrantError(REASON_CLAIMS)
        return cls(
            iss=claims["iss"],
            sub=claims["sub"],
            aud=claims["aud"],
            iat=claims["iat"],
            nbf=claims["nbf"],
            exp=claims["exp"],
            jti=claims["jti"],
            scopes=tuple(claims["scope"].split()),
            intent_digest=claims["intent_digest"],
            agent=claims["agent"],
            policy_rev=claims["policy_rev"],
            ns=claims["ns"],
            sa=claims["sa"],
        )


def verify_grant(
    token: str,
    keyset: KeySet,
    *,
    issuer: str,
    audience: str,
    namespace: str,
    service_account: str,
    intent_digest: str,
    now: float | None = None,
) -> GrantClaims:
    """Every check a grant must pass; raises GrantError with the first failing reason."""
    claims = verify_published_grant(
        token, keyset.public_key, issuer=issuer, audience=audience, now=now
    )
    if claims.ns != namespace:
        raise GrantError(REASON_NAMESPACE)
    if claims.sa != service_account:
        raise GrantError(REASON_SERVICE_ACCOUNT)
    if claims.intent_digest != intent_digest:
        raise GrantError(REASON_INTENT_DIGEST)
    return claims


def verify_published_grant(
    token: str,
    key_for: Callable[[str], ec.EllipticCurvePublicKey | None],
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
) -> GrantClaims:
    """What a published JWKS can tell of a grant (`kube-intent token verify --grant`):
    signature, type, issuer, audience (the token endpoint), lifetime. Which pod it belongs to
    (namespace, ServiceAccount, intent digest) takes the live pod: verify_grant, at /token."""
    try:
        raw = verify_signed(token, key_for, GRANT_TYP)
    except JwtRefused as exc:
        raise GrantError(exc.reason) from None
    claims = GrantClaims.from_claims(raw)
    now = time.time() if now is None else now
    if claims.iss != issuer:
        raise GrantError(REASON_ISSUER)
    if claims.aud != audience:
        raise GrantError(REASON_AUDIENCE)
    if now >= claims.exp:
        raise GrantError(REASON_EXPIRED)
    if now + CLOCK_SKEW_SECONDS < max(claims.nbf, claims.iat):
        raise GrantError(REASON_NOT_YET_VALID)
    return claims


# -- what an allowed admission entitles a pod to ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What the grant for an allowed admission must say (webhook/grants.py decides it)."""

    agent: str
    namespace: str
    service_account: str
    spiffe_id: str
    intent_digest: str
    scopes: tuple[str, ...]
    ttl_seconds: int


# -- minting and patching ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    token: str
    claims: GrantClaims


class GrantIssuer:
    """Mints grants for entitlements and builds the pod patch that carries them.

    `policy_revision` is read when a grant is minted (pass `lambda: policy.revision`), so the
    grant names the policy that was loaded when it was decided. `on_mint` sees the claims of
    every grant minted (dry runs mint none); it never sees the token.
    """

    def __init__(
        self,
        keys: Callable[[], KeySet],
        issuer: str,
        token_endpoint: str | None = None,
        *,
        policy_revision: Callable[[], str] = lambda: "unknown",
        on_mint: Callable[[GrantClaims], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.token_endpoint = token_endpoint or token_endpoint_for(issuer)
        self.policy_revision = policy_revision
        self.on_mint = on_mint
        self.clock = clock

    def mint(self, due: Entitlement) -> Grant:
        now = int(self.clock())
        claims = GrantClaims(
            iss=self.issuer,
            sub=due.spiffe_id,
            aud=self.token_endpoint,
            iat=now,
            nbf=now,
            exp=now + due.ttl_seconds,
            jti=str(uuid.uuid4()),
            scopes=due.scopes,
            intent_digest=due.intent_digest,
            agent=due.agent,
            policy_rev=self.policy_revision(),
            ns=due.namespace,
            sa=due.service_account,
        )
        return Grant(self.keys().sign(claims.to_claims(), GRANT_TYP), claims)

    def reusable(self, token: str, due: Entitlement) -> bool:
        """The pod's existing grant, if it is one we would mint now (reinvocation keeps it).

        Scopes must be equal and the lifetime within today's cap: an old grant copied from a
        pod admitted under a looser policy is replaced, not kept.
        """
        now = self.clock()
        try:
            claims = self.verify(token, due, now=now)
        except GrantError:
            return False
        return (
            claims.agent == due.agent
            and claims.sub == due.spiffe_id
            and set(claims.scopes) == set(due.scopes)
            and claims.exp <= now + due.ttl_seconds
        )

    def verify(self, token: str, due: Entitlement, *, now: float | None = None) -> GrantClaims:
        return verify_grant(
            token,
            self.keys(),
            issuer=self.issuer,
            audience=self.token_endpoint,
            namespace=due.namespace,
            service_account=due.service_account,
            intent_digest=due.intent_digest,
            now=self.clock() if now is None else now,
        )

    def patch(
        self, pod: Mapping[str, Any], due: Entitlement | None, *, dry_run: bool = False
    ) -> list[dict[str, Any]]:
        """JSONPatch operations that give the pod its grant, volumes, mounts and env."""
        annotations = (pod.get("metadata") or {}).get("annotations")
        # An entitled pod has an intent, so it has annotations (the caller's identity patch
        # adds to the same map; replacing the map here would drop its additions).
        if due is None or not isinstance(annotations, Mapping):
            return []
        ops: list[dict[str, Any]] = []
        existing = annotations.get(GRANT_ANNOTATION)
        if dry_run:
            # A dry run leaves no audit row, so nothing may be signed for it: the answer shows
            # the volumes and env a real request gets, and the grant's place stays empty.
            if existing is not None:
                ops.append({"op": "remove", "path": GRANT_PATH})
        elif not (isinstance(existing, str) and self.reusable(existing, due)):
            grant = self.mint(due)
            if self.on_mint is not None:
                self.on_mint(grant.claims)
            ops.append(
                {
                    "op": "add",
                    "path": GRANT_PATH,
                    "value": grant.token,
                }
            )
        return ops + pod_patch(pod, self.issuer, self.token_endpoint)


# -- the pod patch (pure JSON, no grant value) -------------------------------------------------


def grant_volumes(issuer: str) -> list[dict[str, Any]]:
    return [
        {
            "name": TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": issuer,
                            "expirationSeconds": SA_TOKEN_EXPIRATION_SECONDS,
                            "path": TOKEN_FILE_NAME,
                        }
                    }
                ]
            },
        },
        {
            "name": GRANT_VOLUME,
            "downwardAPI": {
                "items": [
                    {
                        "path": GRANT_FILE_NAME,
                        "fieldRef": {"fieldPath": f"metadata.annotations['{GRANT_ANNOTATION}']"},
                    }
                ]
            },
        },
    ]


def grant_mounts() -> list[dict[str, Any]]:
    return [
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
        {"name": GRANT_VOLUME, "mountPath": GRANT_DIR, "readOnly": True},
    ]


def grant_env(token_endpoint: str) -> list[dict[str, Any]]:
    return [
        {"name": ENV_TOKEN_ENDPOINT, "value": token_endpoint},
        {"name": ENV_TOKEN_FILE, "value": TOKEN_FILE},
        {"name": ENV_GRANT_FILE, "value": GRANT_FILE},
    ]


def covers(actual: Any, wanted: Any) -> bool:
    """`actual` says at least what `wanted` says.

    The API server defaults fields (defaultMode, fieldRef.apiVersion, ...) before a reinvoked
    webhook sees its own additions again; those extras must not count as a difference.
    """
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and covers(actual[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(covers(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


def owned_env(parent: str, current: Any, wanted: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ops that leave exactly one env entry of each of our names, with our value.

    The API server accepts duplicate env names and the container gets the last one, so a pod
    author's second `KUBE_INTENT_TOKEN_ENDPOINT` would win over ours: every entry using one of
    our names is removed (highest index first, so earlier indexes stay valid) before ours go
    in. Nothing changes when the pod already has exactly ours (reinvocation).
    """
    if not isinstance(current, list):
        return [{"op": "add", "path": parent, "value": list(wanted)}]
    names = {item["name"] for item in wanted}
    ours = [
        i
        for i, item in enumerate(current)
        if isinstance(item, Mapping) and item.get("name") in names
    ]
    if len(ours) == len(wanted) and all(
        any(covers(current[i], item) for i in ours) for item in wanted
    ):
        return []
    removals = [{"op": "remove", "path": f"{parent}/{i}"} for i in reversed(ours)]
    return removals + [{"op": "add", "path": f"{parent}/-", "value": item} for item in wanted]


def ensure_items(
    parent: str, current: Any, wanted: Sequence[dict[str, Any]], key: str
) -> list[dict[str, Any]]:
    """Ops that make the array at `parent` contain each wanted item, matched on `key`.

    Creates the array when absent, appends with `/-`, and replaces an item that uses our
    name (or mount path) for something else: a pod's author cannot pre-empt our volumes.
    """
    if not isinstance(current, list):
        return [{"op": "add", "path": parent, "value": list(wanted)}]
    ops: list[dict[str, Any]] = []
    for item in wanted:
        index = next(
            (
                i
                for i, existing in enumerate(current)
                if isinstance(existing, Mapping) and existing.get(key) == item[key]
            ),
            None,
        )
        if index is None:
            ops.append({"op": "add", "path": f"{parent}/-", "value": item})
        elif not covers(current[index], item):
            ops.append({"op": "replace", "path": f"{parent}/{index}", "value": item})
    return ops


def pod_patch(pod: Mapping[str, Any], issuer: str, token_endpoint: str) -> list[dict[str, Any]]:
    """Volumes, mounts and env for the grant; empty when the pod already has them."""
    spec = pod.get("spec") or {}
    ops = ensure_items("/spec/volumes", spec.get("volumes"), grant_volumes(issuer), "name")
    # Regular containers only: init containers finish before the agent runs, and ephemeral
    # (debug) containers must not inherit the agent's authority.
    for index, container in enumerate(spec.get("containers") or []):
        if not isinstance(container, Mapping):
            continue
        base = f"/spec/containers/{index}"
        ops += ensure_items(
            f"{base}/volumeMounts", container.get("volumeMounts"), grant_mounts(), "mountPath"
        )
        ops += owned_env(f"{base}/env", container.get("env"), grant_env(token_endpoint))
    return ops
