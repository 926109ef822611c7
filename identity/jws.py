"""kube-intent's compact JWS (RFC 7515): ES256 only, nothing else to configure.

    token = sign(claims, private_key, kid=kid, typ="kube-intent-grant+jwt")
    kid = header(token).get("kid")       # unverified: pick the key, check typ
    claims = verify(token, public_key)   # the signature, then the claims

Every grant is signed at /mutate and verified at /validate, so this is on the admission hot
path: each check is one C call (a compiled regex over the token, binascii, orjson, OpenSSL),
never a loop over characters in Python.

What is read is only what kube-intent writes: three segments of unpadded, canonical base64url
(RFC 7515 §2: no `=`, no other alphabet, no stray bits in the last character), a header
that is a JSON object, UTF-8 JSON (orjson: no NaN, no lone surrogates, no BOM), no critical
extensions. Anything else raises JwsError; a well-formed token whose signature does not verify
raises its subclass BadSignature. The algorithm is ES256 whatever the header says, and the key
is always the caller's: `jwk`, `jku`, `x5u` and `x5c` headers are never read.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ALG = "ES256"
# RFC 7518 §3.4: the JWS signature is r || s, each a 32-byte big-endian integer on P-256.
COORDINATE_BYTES = 32
SIGNATURE_BYTES = 2 * COORDINATE_BYTES

# The longest token read, checked on the length alone before anything else. A grant lives in
# a pod annotation and Kubernetes caps all of a pod's annotations together at 256 KiB
# (webhook.limits.MAX_ANNOTATIONS_BYTES), so no grant is longer; the largest the intent limits
# allow (64 KiB of intent values turned into scopes) is about 100 KB, and an access token
# carries at most its grant's scopes. The cap bounds what an unauthenticated token costs
# before its signature is checked: a regex, base64 and SHA-256 over at most 256 KiB.
MAX_TOKEN_CHARS = 256 * 1024

ERR_TOO_LONG = f"longer than {MAX_TOKEN_CHARS} characters"
ERR_NOT_ASCII = "not ASCII text"
ERR_SEGMENTS = "not three dot-separated segments"
ERR_BASE64URL = "the {name} is not unpadded base64url"
ERR_JSON = "the {name} is not a JSON object"
ERR_KID = "the header's kid is not a string"
ERR_CRIT = "the header names critical extensions (crit), and none is implemented"
ERR_B64 = "the header asks for an unencoded payload (b64: false, RFC 7797)"
ERR_ALG = f"the header's alg is not {ALG}"
ERR_CURVE = f"{ALG} needs a P-256 key, got {{curve}}"
ERR_SIGNATURE_LENGTH = f"the signature is not {SIGNATURE_BYTES} bytes (r || s)"
ERR_SIGNATURE = "the signature does not verify with this key"

_SEGMENT_NAMES = ("header", "payload", "signature")
# Three segments of the base64url alphabet (RFC 4648 §5), no padding: one C-speed pass over the
# whole token (possessive, so a hostile token is never backtracked over).
_COMPACT = re.compile(rb"([A-Za-z0-9_-]*+)\.([A-Za-z0-9_-]*+)\.([A-Za-z0-9_-]*+)")
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*+")  # only to say which segment is wrong
# Canonical base64url: after whole 4-character quanta, 2 or 3 characters (4n+1 encodes
# nothing) whose unused low bits are zero, the only encodings a strict encoder writes.
_LAST_OF_2 = frozenset(b"AQgw")
_LAST_OF_3 = frozenset(b"AEIMQUYcgkosw048")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_ECDSA = ec.ECDSA(hashes.SHA256())


class JwsError(ValueError):
    """Not a compact JWS this module reads; the message says what is wrong, never what the
    token holds."""


class BadSignature(JwsError):
    """A well-formed token whose signature is not an ES256 signature by the given key."""


def sign(claims: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, *, kid: str, typ: str) -> str:
    """The compact JWS of `claims`, header {"alg": "ES256", "kid": kid, "typ": typ}."""
    _check_curve(key.curve)
    if not isinstance(claims, dict):
        claims = dict(claims)  # orjson writes dicts, not other Mappings
    header = b64url_encode(orjson.dumps({"alg": ALG, "kid": kid, "typ": typ}))
    signing_input = header + b"." + b64url_encode(orjson.dumps(claims))
    r, s = decode_dss_signature(key.sign(signing_input, _ECDSA))
    signature = r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big")
    return (signing_input + b"." + b64url_encode(signature)).decode("ascii")


def header(token: str) -> dict[str, Any]:
    """The header, unverified: for choosing the key and checking typ, never for trusting.

    The whole token is checked for shape (three base64url segments, a header object), so
    that a token refused here would be refused by `verify` for the same reason."""
    return _split(token)[0]


def verify(token: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """The claims of a token signed with ES256 by `key`; raises BadSignature when the
    signature does not verify, JwsError for anything else."""
    _check_curve(key.curve, error=JwsError)
    parsed, signing_input, payload, signature = _split(token)
    if parsed.get("alg") != ALG:
        raise JwsError(ERR_ALG)
    raw = _b64decode(signature)
    if len(raw) != SIGNATURE_BYTES:
        raise BadSignature(ERR_SIGNATURE_LENGTH)
    r = int.from_bytes(raw[:COORDINATE_BYTES], "big")
    s = int.from_bytes(raw[COORDINATE_BYTES:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, _ECDSA)
    except InvalidSignature:
        raise BadSignature(ERR_SIGNATURE) from None
    return _object(_b64decode(payload), "payload")


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims, unverified: for cross-reference only (a jti to record), never for a
    decision. Any alg is read; the shape checks are those of `header`."""
    _, _, payload, _ = _split(token)
    return _object(_b64decode(payload), "payload")


def _split(token: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """(header, signing input, payload segment, signature segment) after the shape checks."""
    if len(token) > MAX_TOKEN_CHARS:
        raise JwsError(ERR_TOO_LONG)
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:  # also a lone surrogate
        raise JwsError(ERR_NOT_ASCII) from None
    match = _COMPACT.fullmatch(raw)
    if match is None:
        raise JwsError(_shape_problem(raw))
    head, payload, signature = match.group(1, 2, 3)
    for name, segment in zip(_SEGMENT_NAMES, (head, payload, signature), strict=True):
        if not _canonical(segment):
            raise JwsError(ERR_BASE64URL.format(name=name))
    parsed = _object(_b64decode(head), "header")
    if "kid" in parsed and not isinstance(parsed["kid"], str):
        raise JwsError(ERR_KID)
    # RFC 7515 §4.1.11: a recipient that does not understand a listed extension must refuse.
    if "crit" in parsed:
        raise JwsError(ERR_CRIT)
    if parsed.get("b64", True) is False:
        raise JwsError(ERR_B64)
    return parsed, raw[: match.end(2)], payload, signature


def _shape_problem(raw: bytes) -> str:
    """Why _COMPACT refused `raw` (the error path only)."""
    segments = raw.split(b".")
    if len(segments) == 3:
        for name, segment in zip(_SEGMENT_NAMES, segments, strict=True):
            if _SEGMENT.fullmatch(segment) is None:
                return ERR_BASE64URL.format(name=name)
    return ERR_SEGMENTS


def _canonical(segment: bytes) -> bool:
    tail = len(segment) % 4
    if tail == 0:
        return True
    if tail == 2:
        return segment[-1] in _LAST_OF_2
    return tail == 3 and segment[-1] in _LAST_OF_3


def _object(data: bytes, name: str) -> dict[str, Any]:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:  # also invalid UTF-8
        raise JwsError(ERR_JSON.format(name=name)) from None
    if not isinstance(document, dict):
        raise JwsError(ERR_JSON.format(name=name))
    return document


def b64url_encode(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2), as every segment and JWK member is written."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE)


def _b64decode(segment: bytes) -> bytes:
    """A segment that passed _COMPACT and _canonical (so it always decodes)."""
    return binascii.a2b_base64(segment.translate(_FROM_URLSAFE) + b"=" * (-len(segment) % 4))


def _check_curve(curve: ec.EllipticCurve, error: type[Exception] = ValueError) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise error(ERR_CURVE.format(curve=curve.name))
