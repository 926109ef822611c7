"""RFC 8693 token exchange at `POST /token`: pod ServiceAccount token + grant -> access token.

Request (application/x-www-form-urlencoded):

    grant_type=urn:ietf:params:oauth:grant-type:token-exchange
    subject_token=<the pod's projected ServiceAccount token, audience = the issuer>
    subject_token_type=urn:ietf:params:oauth:token-type:jwt
    actor_token=<the grant from /var/run/kube-intent/grant/grant>
    actor_token_type=urn:kube-intent:params:oauth:token-type:grant
    audience=<the one service the access token is for>
    scope=<optional, space separated, within the grant's scope>

Why the grant travels as the `actor_token`: RFC 8693 has exactly two token slots. The subject
token says who the request is from (the pod, proven by the API server's TokenReview); the
grant says what that pod's agent may do. RFC 8693 §2.1 lets the actor token be any token type
the server understands, and a private URN type makes it impossible to confuse with a real
OAuth token type. Neither token is sufficient on its own: a stolen grant is useless without a
live pod's ServiceAccount token, and that token is useless without the grant the pod carries.

Errors follow RFC 6749 §5.2. Descriptions name the category of the failure only; which check
failed goes to the audit trail (`on_event`) and never to the client. Malformed tokens are
refused before the API server is asked; a server without one (`serve --dev`) says that
TokenReview needs a Kubernetes API, a fact about the server rather than the request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import inspect
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from identity.binding import AGENT_LABEL, DEFAULT_SERVICE_ACCOUNT
from identity.grants import (
    GRANT_ANNOTATION,
    GRANT_TYP,
    GrantClaims,
    GrantError,
    token_endpoint_for,
    verify_grant,
)
from identity.intent import INTENT_ANNOTATION, parse_intent
from identity.jsonio import JsonError, loads
from identity.keys import ALG, JwtRefused, KeySet, checked_header
from identity.registry import AgentRegistry
from identity.verify import ACCESS_TOKEN_TYP

log = logging.getLogger("kube_intent.token")

# Protocol identifiers, not secrets (ruff S105 reads "TOKEN" in a name as a password).
GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
TOKEN_TYPE_GRANT = "urn:kube-intent:params:oauth:token-type:grant"  # noqa: S105
# RFC 9068 tokens are bearer tokens: five minutes bounds what a leaked one is worth.
ACCESS_TOKEN_TTL_SECONDS = 300
# A form holds two JWTs of a few KB each; anything much larger is not a token exchange.
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 16
MAX_AUDIENCE_CHARS = 256
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
SA_USER_PREFIX = "system:serviceaccount:"
FINISHED_PHASES = ("Succeeded", "Failed")

JWKS_PATH = "/.well-known/jwks.json"
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"

# Every response of the token endpoint, success or error (RFC 6749 §5.1).
NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# RFC 6749 Appendix A.4: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_AUDIENCE = re.compile(r"^[\x21-\x7e]+$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
# What an API server signs ServiceAccount tokens with (RSA or ECDSA keys; EdDSA from external
# signers): never `none`, never an HMAC, so neither reaches TokenReview.
SUBJECT_TOKEN_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SUBJECT_TOKEN_TYP = "jwt"  # noqa: S105 - a JOSE typ (RFC 7519 §5.1, case-insensitive)

# Told to the client: a configuration fact of the server, not which check a token failed.
ERR_NO_CLUSTER = "TokenReview needs a Kubernetes API: run serve with --kubeconfig or in a cluster"
REASON_NO_CLUSTER = "no-cluster"

ERR_DESCRIPTIONS = {
    "invalid_request": "the request is malformed: {detail}",
    "unsupported_grant_type": "only RFC 8693 token exchange is supported",
    "invalid_grant": "the subject token or the grant is invalid, expired or revoked",
    "unauthorized_client": "this workload is not authorized to exchange tokens",
    "invalid_scope": "the requested scope is not within the grant",
    "invalid_target": "no token can be issued for the requested audience",
    "temporarily_unavailable": "the token service cannot verify the request now; retry shortly",
    "server_error": "the token service failed; retry shortly",
}
DETAIL_CONTENT_TYPE = f"the body must be {FORM_CONTENT_TYPE}"
DETAIL_ENCODING = "the body is not a valid UTF-8 form"
DETAIL_REPEATED = "parameter {name} is repeated"
DETAIL_MISSING = "parameter {name} is required"
DETAIL_UNSUPPORTED = "{name} must be {value}"
DETAIL_AUDIENCE = "audience must be one printable name or URI of at most 256 characters"
DETAIL_SCOPE = "scope must be space-separated scope tokens"
DETAIL_TOO_LARGE = "the body is too large"
KNOWN_PARAMETERS = frozenset(
    {
        "grant_type",
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "audience",
        "scope",
        "resource",
        "requested_token_type",
    }
)

Event = Callable[[str, dict[str, Any]], Awaitable[None] | None]
# "Was this pod reviewed by both webhooks?" (the same resolved accelerator detection).
Governed = Callable[[dict[str, Any]], Awaitable[bool]]
# "Was this pod's admission, with this grant, allowed and recorded?" (pod UID, grant jti).
Admitted = Callable[[str, str], Awaitable[bool]]


class LedgerUnavailable(Exception):
    """The record of admissions could not be read (not: it holds no such admission)."""


class KubeUnavailable(Exception):
    """The API server could not answer (not: it answered no). `description`, when given, is
    safe to show the client (it says nothing about the request)."""

    def __init__(self, reason: str, description: str = "") -> None:
        super().__init__(reason)
        self.description = description


class KubeAuth(Protocol):
    """What the exchange needs from the API server."""

    async def token_review(self, token: str, audiences: Sequence[str]) -> dict[str, Any]:
        """The TokenReview `status` (authenticated, user, audiences, error)."""
        ...

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as JSON, or None when it does not exist."""
        ...


class Refusal(Exception):
    """An RFC 6749 §5.2 error; `reason` is the exact check, for the audit trail only."""

    def __init__(
        self,
        error: str,
        reason: str,
        *,
        status: int = 400,
        detail: str = "",
        description: str = "",
    ) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason
        self.status = status
        self.detail = detail
        self.description = description

    def body(self) -> dict[str, str]:
        description = self.description or ERR_DESCRIPTIONS[self.error].format(detail=self.detail)
        return {"error": self.error, "error_description": description}


def invalid_request(detail: str, reason: str = "request") -> Refusal:
    return Refusal("invalid_request", reason, detail=detail)


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """The form of a token request; raises Refusal(invalid_request).

    RFC 6749 §3.2: parameters sent without a value are treated as omitted, and a parameter
    must not be repeated (which value would win is exactly what an attacker would probe).
    """
    if content_type.split(";", 1)[0].strip().lower() != FORM_CONTENT_TYPE:
        raise invalid_request(DETAIL_CONTENT_TYPE, "content-type")
    if len(body) > MAX_FORM_BYTES:
        raise invalid_request(DETAIL_TOO_LARGE, "too-large")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=False,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise invalid_request(DETAIL_ENCODING, "encoding") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # Echo only names we define: error_description is restricted ASCII (RFC 6749 §5.2)
            # and must not reflect whatever a client sent.
            shown = name if name in KNOWN_PARAMETERS else "(unknown)"
            raise invalid_request(DETAIL_REPEATED.format(name=shown), "repeated")
        form[name] = value
    return form


@dataclass(frozen=True, slots=True)
class ExchangeRequest:
    subject_token: str = field(repr=False)
    grant: str = field(repr=False)
    audience: str
    scopes: tuple[str, ...] | None  # None: everything the grant allows


def read_request(form: Mapping[str, str]) -> ExchangeRequest:
    def required(name: str) -> str:
        value = form.get(name)
        if not value:
            raise invalid_request(DETAIL_MISSING.format(name=name), f"missing:{name}")
        return value

    def expect(name: str, value: str) -> None:
        if required(name) != value:
            raise invalid_request(DETAIL_UNSUPPORTED.format(name=name, value=value), name)

    if required("grant_type") != GRANT_TYPE_TOKEN_EXCHANGE:
        raise Refusal("unsupported_grant_type", "grant_type")
    expect("subject_token_type", TOKEN_TYPE_JWT)
    expect("actor_token_type", TOKEN_TYPE_GRANT)
    if form.get("requested_token_type") not in (None, "", TOKEN_TYPE_ACCESS_TOKEN):
        raise invalid_request(
            DETAIL_UNSUPPORTED.format(name="requested_token_type", value=TOKEN_TYPE_ACCESS_TOKEN),
            "requested_token_type",
        )
    if form.get("resource"):
        # One audience per token; `resource` would be a second way to name targets.
        raise Refusal("invalid_target", "resource")
    audience = required("audience")
    if len(audience) > MAX_AUDIENCE_CHARS or not _AUDIENCE.fullmatch(audience):
        raise invalid_request(DETAIL_AUDIENCE, "audience")
    scopes: tuple[str, ...] | None = None
    raw_scope = form.get("scope")
    if raw_scope:
        scopes = tuple(dict.fromkeys(raw_scope.split(" ")))
        if not all(_SCOPE_TOKEN.fullmatch(scope) for scope in scopes):
            raise invalid_request(DETAIL_SCOPE, "scope")
    return ExchangeRequest(
        subject_token=required("subject_token"),
        grant=required("actor_token"),
        audience=audience,
        scopes=scopes,
    )


def _segment(part: str) -> Any:
    """One base64url segment of a compact JWS, as bounded JSON (identity.jsonio)."""
    if not _BASE64URL.fullmatch(part):
        raise ValueError("not base64url")
    return loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def check_subject_token(token: str) -> None:
    """Refuse what cannot be a ServiceAccount token before the API server is asked about it:
    not a compact JWS (three base64url segments, JSON object header and claims), `alg` none
    or an HMAC, a `typ` other than JWT. TokenReview would refuse all of these too, after a
    round trip to the API server (and without one, in dev, a 503 would hide the real problem).
    """
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not three segments")
        header, claims = _segment(parts[0]), _segment(parts[1])
        if not parts[2] or not _BASE64URL.fullmatch(parts[2]):
            raise ValueError("no signature")
        base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (ValueError, JsonError, binascii.Error):
        raise Refusal("invalid_grant", "subject-token:malformed") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Refusal("invalid_grant", "subject-token:malformed")
    if header.get("alg") not in SUBJECT_TOKEN_ALGS:
        raise Refusal("invalid_grant", "subject-token:algorithm")
    typ = header.get("typ", SUBJECT_TOKEN_TYP)
    if not isinstance(typ, str) or typ.lower() != SUBJECT_TOKEN_TYP:
        raise Refusal("invalid_grant", "subject-token:type")


def check_grant_shape(grant: str) -> None:
    """The grant's keyless checks (a compact JWS naming ES256 and the grant typ), before the
    API server is asked; its signature and claims are checked against the live pod later."""
    try:
        checked_header(grant, GRANT_TYP)
    except JwtRefused as exc:
        raise Refusal("invalid_grant", f"grant:{exc.reason}") from None


@dataclass(frozen=True, slots=True)
class PodIdentity:
    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str


def pod_identity(status: Mapping[str, Any], issuer: str) -> PodIdentity:
    """Who the TokenReview says the subject token belongs to; only pod-bound SA tokens pass."""
    if status.get("authenticated") is not True:
        raise Refusal("invalid_grant", "subject-token:unauthenticated")
    # The API server returns the requested audiences the token is valid for.
    if issuer not in (status.get("audiences") or []):
        raise Refusal("invalid_grant", "subject-token:audience")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    parts = username.removeprefix(SA_USER_PREFIX).split(":")
    if not username.startswith(SA_USER_PREFIX) or len(parts) != 2 or not all(parts):
        raise Refusal("invalid_grant", "subject-token:not-service-account")
    extra = user.get("extra") or {}
    names, uids = extra.get(POD_NAME_EXTRA) or [], extra.get(POD_UID_EXTRA) or []
    # A legacy Secret-based token, or one not bound to a pod, names no pod: refused.
    if len(names) != 1 or len(uids) != 1 or not names[0] or not uids[0]:
        raise Refusal("invalid_grant", "subject-token:not-pod-bound")
    return PodIdentity(
        namespace=parts[0], service_account=parts[1], pod_name=names[0], pod_uid=uids[0]
    )


def agent_actor(spiffe_sub: str, namespace: str, agent: str) -> str:
    """The `act.sub` of access tokens: spiffe://<trust domain>/ns/<ns>/agent/<agent>.

    A name in the workload's trust domain for the registered agent (not an SVID anyone is
    issued): the party acting with the workload's authority.
    """
    trust_domain = spiffe_sub.removeprefix("spiffe://").split("/", 1)[0]
    return f"spiffe://{trust_domain}/ns/{namespace}/agent/{agent}"


def openid_configuration(issuer: str, token_endpoint: str | None = None) -> dict[str, Any]:
    """`/.well-known/openid-configuration`: what Envoy, Istio and gateways read to find the JWKS.

    kube-intent issues no ID tokens and has no authorization endpoint; the fields OIDC
    discovery requires are present so that strict clients accept the document.
    """
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "jwks_uri": f"{base}{JWKS_PATH}",
        "token_endpoint": token_endpoint or token_endpoint_for(issuer),
        "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALG],
    }


class TokenExchange:
    """The token endpoint's logic; the route only parses the form and sends (status, body)."""

    def __init__(
        self,
        keys: Callable[[], KeySet],
        issuer: str,
        kube: KubeAuth,
        agents: Callable[[], AgentRegistry],
        *,
        token_endpoint: str | None = None,
        on_event: Event | None = None,
        admitted: Admitted,
        governed: Governed,
        audiences: Callable[[], frozenset[str]] | None = None,
        access_token_ttl: int = ACCESS_TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.token_endpoint = token_endpoint or token_endpoint_for(issuer)
        self.kube = kube
        self.agents = agents
        self.on_event = on_event
        self.audiences = audiences
        self.admitted = admitted
        self.governed = governed
        self.access_token_ttl = access_token_ttl
        self.clock = clock

    async def exchange_body(self, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """parse_form + exchange, for a route that has the raw body."""
        try:
            form = parse_form(content_type, body)
        except Refusal as refusal:
            await self._emit("refused", {"error": refusal.error, "reason": refusal.reason})
            return refusal.status, refusal.body()
        return await self.exchange(form)

    async def exchange(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        details: dict[str, Any] = {}
        try:
            body = await self._exchange(form, details)
        except Refusal as refusal:
            await self._emit(
                "refused", {**details, "error": refusal.error, "reason": refusal.reason}
            )
            return refusal.status, refusal.body()
        except Exception as exc:
            # A bug or an unreadable key set: an OAuth error with no-store, never a traceback.
            failure = Refusal("server_error", f"internal:{type(exc).__name__}", status=500)
            log.error("token exchange failed: %s", type(exc).__name__)
            await self._emit("error", {**details, "error": failure.error, "reason": failure.reason})
            return failure.status, failure.body()
        try:
            await self._emit("issued", details, required=True)
        except Exception as exc:
            # An issuance the audit trail did not take is not handed out.
            log.error("token issuance not recorded, token withheld: %s", type(exc).__name__)
            return 500, Refusal("server_error", "audit").body()
        return 200, body

    async def _exchange(self, form: Mapping[str, str], details: dict[str, Any]) -> dict[str, Any]:
        request = read_request(form)
        details["audience"] = request.audience
        if request.scopes is not None:
            details["requested_scope"] = " ".join(request.scopes)
        self._check_audience(request.audience)
        # Malformed tokens are a client's mistake: a 400 at once, whether or not a cluster is
        # there to ask (and none of a garbage token's bytes reach the API server).
        check_subject_token(request.subject_token)
        check_grant_shape(request.grant)

        try:
            status = await self.kube.token_review(request.subject_token, [self.issuer])
        except KubeUnavailable as exc:
            raise Refusal(
                "temporarily_unavailable",
                f"tokenreview:{exc}",
                status=503,
                description=exc.description,
            ) from None
        who = pod_identity(status, self.issuer)
        details.update(
            namespace=who.namespace,
            service_account=who.service_account,
            pod=who.pod_name,
            pod_uid=who.pod_uid,
        )
        claims = await self._check_pod_and_grant(who, request.grant, details)
        self._check_agent(who, claims)
        scopes = request.scopes if request.scopes is not None else claims.scopes
        if not set(scopes) <= set(claims.scopes):
            raise Refusal("invalid_scope", "scope-escalation")
        return self._issue(who, claims, request.audience, scopes, details)

    def _check_audience(self, audience: str) -> None:
        # Tokens for kube-intent itself would be confusable with the SA token audience.
        own = {_normal_url(self.issuer), _normal_url(self.token_endpoint)}
        if _normal_url(audience) in own:
            raise Refusal("invalid_target", "audience:self")
        if self.audiences is not None and audience not in self.audiences():
            raise Refusal("invalid_target", "audience:not-allowed")

    async def _check_pod_and_grant(
        self, who: PodIdentity, presented: str, details: dict[str, Any]
    ) -> GrantClaims:
        try:
            pod = await self.kube.get_pod(who.namespace, who.pod_name)
        except KubeUnavailable as exc:
            raise Refusal("temporarily_unavailable", f"get-pod:{exc}", status=503) from None
        if pod is None:
            raise Refusal("invalid_grant", "pod:gone")
        metadata = pod.get("metadata") or {}
        if metadata.get("uid") != who.pod_uid:
            raise Refusal("invalid_grant", "pod:uid")
        # A finished pod's token is still accepted by TokenReview, but nothing runs to need it.
        if (pod.get("status") or {}).get("phase") in FINISHED_PHASES:
            raise Refusal("invalid_grant", "pod:finished")
        # Only pods that both webhooks reviewed: a pod without accelerators is never sent to
        # them, so a grant copied onto one (with forged annotations) must buy nothing.
        if not await self.governed(pod):
            raise Refusal("invalid_grant", "pod:not-governed")
        spec_sa = (pod.get("spec") or {}).get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT
        if spec_sa != who.service_account:
            raise Refusal("invalid_grant", "pod:service-account")
        annotations = metadata.get("annotations") or {}
        carried = annotations.get(GRANT_ANNOTATION)
        if not isinstance(carried, str) or not hmac.compare_digest(
            carried.encode(), presented.encode()
        ):
            raise Refusal("invalid_grant", "grant:not-the-pods")
        intent = parse_intent(annotations.get(INTENT_ANNOTATION))
        if intent.digest is None:
            raise Refusal("invalid_grant", "pod:intent")
        try:
            claims = verify_grant(
                presented,
                self.keys(),
                issuer=self.issuer,
                audience=self.token_endpoint,
                namespace=who.namespace,
                service_account=who.service_account,
                intent_digest=intent.digest,
                now=self.clock(),
            )
        except GrantError as exc:
            raise Refusal("invalid_grant", f"grant:{exc.reason}") from None
        details.update(agent=claims.agent, grant_jti=claims.jti)
        labels = metadata.get("labels") or {}
        if labels.get(AGENT_LABEL) != claims.agent:
            raise Refusal("invalid_grant", "grant:agent")
        # The signature says kube-intent minted this grant, not that this pod was admitted with
        # it: a dry run, a copy on another pod, or a forged review all carry valid grants. The
        # audit trail's allowed row for this pod UID and this grant is what says so.
        try:
            admitted = await self.admitted(who.pod_uid, claims.jti)
        except LedgerUnavailable as exc:
            raise Refusal("temporarily_unavailable", f"ledger:{exc}", status=503) from None
        if not admitted:
            raise Refusal("invalid_grant", "pod:not-admitted")
        return claims

    def _check_agent(self, who: PodIdentity, claims: GrantClaims) -> None:
        # Read now, not at admission: suspending an Agent revokes its grants immediately.
        registration = self.agents().get(who.namespace, claims.agent)
        if registration is None:
            raise Refusal("unauthorized_client", "agent:unregistered")
        if registration.spec.suspended:
            raise Refusal("unauthorized_client", "agent:suspended")
        if who.service_account not in registration.spec.service_accounts:
            raise Refusal("unauthorized_client", "agent:service-account")

    def _issue(
        self,
        who: PodIdentity,
        grant: GrantClaims,
        audience: str,
        scopes: Sequence[str],
        details: dict[str, Any],
    ) -> dict[str, Any]:
        now = int(self.clock())
        exp = min(now + self.access_token_ttl, grant.exp)
        if exp <= now:
            raise Refusal("invalid_grant", "grant:expired")
        scope = " ".join(scopes)
        jti = str(uuid.uuid4())
        claims = {
            "iss": self.issuer,
            "sub": grant.sub,
            "aud": audience,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "jti": jti,
            # RFC 9068 §2.2: without a resource owner, sub and client_id name the same client.
            "client_id": grant.sub,
            "scope": scope,
            "act": {
                "sub": agent_actor(grant.sub, who.namespace, grant.agent),
                "pod": who.pod_name,
                "pod_uid": who.pod_uid,
            },
            "agent": grant.agent,
            "grant_jti": grant.jti,
        }
        token = self.keys().sign(claims, ACCESS_TOKEN_TYP)
        details.update(jti=jti, scope=scope, expires_at=exp)
        return {
            "access_token": token,
            "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            "token_type": "Bearer",
            "expires_in": exp - now,
            "scope": scope,
        }

    async def _emit(self, result: str, details: dict[str, Any], *, required: bool = False) -> None:
        """Log the outcome and hand it to on_event (audit, metrics). Details never hold a token."""
        log.info("token exchange %s", result, extra={"fields": {"result": result, **details}})
        if self.on_event is None:
            return
        try:
            outcome = self.on_event(result, dict(details))
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            if required:
                raise
            log.error("token exchange event not recorded: %s", type(exc).__name__)


class NoCluster:
    """The KubeAuth of a server without a Kubernetes API (`serve --dev` on a laptop): a
    well-formed exchange gets a 503 saying TokenReview needs a cluster, malformed ones their
    400 before this is reached."""

    async def token_review(self, token: str, audiences: Sequence[str]) -> dict[str, Any]:
        raise KubeUnavailable(REASON_NO_CLUSTER, ERR_NO_CLUSTER)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise KubeUnavailable(REASON_NO_CLUSTER, ERR_NO_CLUSTER)


class KubernetesAuth:
    """KubeAuth with the official client; its blocking calls run in a worker thread.

    The webhook's ServiceAccount needs `create` on authentication.k8s.io tokenreviews and
    `get` on pods.
    """

    def __init__(self, api_client: Any, *, timeout: float = 5.0) -> None:
        from kubernetes import client

        self._client = client
        self._api_client = api_client
        self._auth = client.AuthenticationV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self.timeout = timeout

    async def token_review(self, token: str, audiences: Sequence[str]) -> dict[str, Any]:
        client = self._client
        review = client.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=client.V1TokenReviewSpec(token=token, audiences=list(audiences)),
        )
        result = await self._call(
            self._auth.create_token_review, review, _request_timeout=self.timeout
        )
        # Only the status: the response also echoes spec.token, which must go nowhere.
        status = self._api_client.sanitize_for_serialization(result.status)
        return cast(dict[str, Any], status) if isinstance(status, dict) else {}

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        pod = await self._call(
            self._core.read_namespaced_pod,
            name,
            namespace,
            _request_timeout=self.timeout,
            missing_ok=True,
        )
        if pod is None:
            return None
        serialised = self._api_client.sanitize_for_serialization(pod)
        return cast(dict[str, Any], serialised) if isinstance(serialised, dict) else None

    async def _call(
        self, function: Callable[..., Any], *args: Any, missing_ok: bool = False, **kwargs: Any
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            # The status code only: an API error body may echo the request.
            raise KubeUnavailable(f"http-{exc.status}") from None
        except Exception as exc:
            raise KubeUnavailable(type(exc).__name__) from None


def _normal_url(url: str) -> str:
    """Compare audiences the way a verifier would: case-insensitive scheme/host, no trailing /."""
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, "")
    )
