"""Verifying kube-intent access tokens, for model servers and gateways written in Python.

    jwks = fetch_jwks("https://kube-intent.kube-intent.svc/.well-known/jwks.json", ca_file)
    claims = verify_access_token(token, jwks, issuer=ISSUER, audience="inference-gateway",
                                 required_scopes=["model:meta-llama/Llama-3.1-8B-Instruct"])

Only ES256 with a key from the JWKS (by kid) and `typ: at+jwt` is accepted: a token that
names another algorithm, or carries its own key, is refused before any claim is read.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from identity import jws
from identity.keys import ALG, CURVE, JwtRefused, thumbprint, verify_signed

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a JOSE typ, not a secret
CLOCK_SKEW_SECONDS = 30
JWKS_TIMEOUT_SECONDS = 5.0
# At most one JWKS refetch per interval when a token names an unknown kid (a flood of forged
# kids must not turn into a flood of JWKS requests).
JWKS_REFRESH_INTERVAL = 30.0
JWKS_MAX_AGE = 300.0

REASON_CLAIMS = "claims"
REASON_ISSUER = "issuer"
REASON_AUDIENCE = "audience"
REASON_EXPIRED = "expired"
REASON_NOT_YET_VALID = "not-yet-valid"
REASON_SCOPE = "scope"

ERR_JWKS = "JWKS from {source} is not a JSON object with a `keys` array"
ERR_JWKS_FETCH = "cannot fetch the JWKS from {url}: {detail}"
ERR_JWKS_FILE = "cannot read the JWKS file {path}: {detail}"

_REQUIRED_STRINGS = ("iss", "sub", "jti", "client_id")
_REQUIRED_TIMES = ("exp", "iat")


class AccessTokenError(JwtRefused):
    """The access token was refused; `reason` says which check failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, f"access token refused: {reason}")


class JwksError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    iss: str
    sub: str
    aud: str
    exp: int
    iat: int
    jti: str
    client_id: str
    scopes: tuple[str, ...]
    claims: dict[str, Any] = field(repr=False)  # everything, including act, agent, grant_jti


def jwks_keys(jwks: Mapping[str, Any]) -> dict[str, ec.EllipticCurvePublicKey]:
    """kid -> public key for the JWKS's ES256 (EC P-256) signing keys; others are skipped."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise JwksError(ERR_JWKS.format(source="input"))
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("kty") != "EC":
            continue
        if entry.get("crv") != CURVE or entry.get("alg", ALG) != ALG:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(dict(entry), algorithm=ALG).key
        except jwt.PyJWTError:
            continue
        if not isinstance(key, ec.EllipticCurvePublicKey):
            continue
        # A kid is ours to check, not the publisher's to choose: it must be the thumbprint.
        kid = entry.get("kid")
        if isinstance(kid, str) and kid == thumbprint(entry):
            keys[kid] = key
    return keys


def verify_access_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    required_scopes: Iterable[str] = (),
    now: float | None = None,
) -> AccessTokenClaims:
    """Check signature (ES256, kid in the JWKS), typ, iss, aud, exp/nbf and scopes."""
    keys = jwks_keys(jwks)
    try:
        raw = verify_signed(token, keys.get, ACCESS_TOKEN_TYP)
    except JwtRefused as exc:
        raise AccessTokenError(exc.reason) from None
    claims = _claims(raw)
    now = time.time() if now is None else now
    if claims.iss != issuer:
        raise AccessTokenError(REASON_ISSUER)
    if claims.aud != audience:
        raise AccessTokenError(REASON_AUDIENCE)
    if now >= claims.exp:
        raise AccessTokenError(REASON_EXPIRED)
    not_before = raw.get("nbf", claims.iat)
    if not isinstance(not_before, int) or now + CLOCK_SKEW_SECONDS < max(not_before, claims.iat):
        raise AccessTokenError(REASON_NOT_YET_VALID)
    if not set(required_scopes) <= set(claims.scopes):
        raise AccessTokenError(REASON_SCOPE)
    return claims


def _claims(raw: dict[str, Any]) -> AccessTokenClaims:
    if not all(isinstance(raw.get(name), str) for name in _REQUIRED_STRINGS):
        raise AccessTokenError(REASON_CLAIMS)
    if not all(
        isinstance(raw.get(name), int) and not isinstance(raw.get(name), bool)
        for name in _REQUIRED_TIMES
    ):
        raise AccessTokenError(REASON_CLAIMS)
    # kube-intent issues exactly one audience; a list is not one of ours.
    aud, scope = raw.get("aud"), raw.get("scope", "")
    if not isinstance(aud, str) or not isinstance(scope, str):
        raise AccessTokenError(REASON_CLAIMS)
    return AccessTokenClaims(
        iss=raw["iss"],
        sub=raw["sub"],
        aud=aud,
        exp=raw["exp"],
        iat=raw["iat"],
        jti=raw["jti"],
        client_id=raw["client_id"],
        scopes=tuple(scope.split()),
        claims=raw,
    )


def tls_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """Verify the server with `ca_file` only, or with the system CAs when there is none."""
    if ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_file))


def fetch_jwks(
    url: str, ca_file: Path | str | None = None, *, timeout: float = JWKS_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """GET the JWKS over HTTPS, verifying the server with `ca_file` (or the system CAs)."""
    try:
        verify = tls_context(ca_file)
        response = httpx.get(url, verify=verify, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError, OSError) as exc:
        raise JwksError(ERR_JWKS_FETCH.format(url=url, detail=exc)) from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError(ERR_JWKS.format(source=url))
    return document


def load_jwks(source: str, ca_file: Path | str | None = None) -> dict[str, Any]:
    """A JWKS from an https:// (or http://) URL or a file path."""
    if source.startswith(("https://", "http://")):
        return fetch_jwks(source, ca_file)
    try:
        document = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise JwksError(ERR_JWKS_FILE.format(path=source, detail=exc)) from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError(ERR_JWKS.format(source=source))
    return document


class RemoteJwks:
    """A cached JWKS for long-running verifiers: refetched when stale or when a kid is unknown.

    Rotation publishes a key (as `next`) before it signs, so an unknown kid is rare; the
    rate limit keeps forged kids from turning into JWKS requests.
    """

    def __init__(
        self,
        url: str,
        ca_file: Path | str | None = None,
        *,
        max_age: float = JWKS_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[str, Path | str | None], dict[str, Any]] = fetch_jwks,
    ) -> None:
        self.url = url
        self.ca_file = ca_file
        self.max_age = max_age
        self._clock = clock
        self._fetch = fetch
        self._jwks: dict[str, Any] | None = None
        self._fetched = float("-inf")

    def get(self, *, kid: str | None = None) -> dict[str, Any]:
        now = self._clock()
        stale = self._jwks is None or now - self._fetched >= self.max_age
        unknown = kid is not None and self._jwks is not None and kid not in jwks_keys(self._jwks)
        if stale or (unknown and now - self._fetched >= JWKS_REFRESH_INTERVAL):
            self._jwks = self._fetch(self.url, self.ca_file)
            self._fetched = now
        assert self._jwks is not None
        return self._jwks

    def verify(
        self, token: str, *, issuer: str, audience: str, required_scopes: Iterable[str] = ()
    ) -> AccessTokenClaims:
        try:
            kid = jws.header(token).get("kid")
        except jws.JwsError:
            kid = None
        jwks = self.get(kid=kid if isinstance(kid, str) else None)
        return verify_access_token(
            token, jwks, issuer=issuer, audience=audience, required_scopes=required_scopes
        )
