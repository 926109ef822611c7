"""identity.jws: ES256 compact JWS, interoperable with PyJWT, and what it refuses."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from identity import jws
from identity.grants import GRANT_TYP
from identity.keys import KeySet
from tests.support.grants import (
    b64,
    grant_claims,
    hs256_with,
    unsigned,
    with_payload,
)

NOW = 1_760_000_000
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# What GrantIssuer mints (identity/grants.py GrantClaims.to_claims).
GRANT = grant_claims()
# What TokenExchange issues (identity/exchange.py _issue): a nested object too.
ACCESS_TOKEN = {
    **{k: GRANT[k] for k in ("iss", "sub", "iat", "nbf", "exp", "jti", "scope", "agent")},
    "aud": "inference-gateway",
    "client_id": GRANT["sub"],
    "act": {"sub": "spiffe://prod.example.com/ns/ml-serving/agent/support-bot", "pod": "p-1"},
    "grant_jti": GRANT["jti"],
}

CLAIM_SETS = [
    pytest.param(GRANT, id="grant"),
    pytest.param(ACCESS_TOKEN, id="access-token"),
    pytest.param({}, id="empty"),
    pytest.param({"sub": "agent-été", "note": "日本語 🙂", "quote": '"\\'}, id="non-ascii"),
    pytest.param(
        {"exp": 2**63, "ratio": 0.5, "neg": -1, "yes": True, "none": None, "list": [1, "a"]},
        id="json-types",
    ),
]
ASCII_CLAIM_SETS = CLAIM_SETS[:3]


def _sign(keys: KeySet, claims: dict[str, Any], typ: str = GRANT_TYP) -> str:
    return jws.sign(claims, keys.signing_key, kid=keys.signing_kid, typ=typ)


def _segments(token: str) -> list[str]:
    return token.split(".")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _raw_signature(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _compact(
    header: dict[str, Any] | bytes, payload: bytes, key: ec.EllipticCurvePrivateKey
) -> str:
    """header.payload.signature with a genuine ES256 signature by `key`, built without jws."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    signing_input = f"{b64(head)}.{b64(payload)}"
    return f"{signing_input}.{b64(_raw_signature(key, signing_input.encode()))}"


def _our_header(keys: KeySet, **changes: Any) -> dict[str, Any]:
    header = {"alg": "ES256", "kid": keys.signing_kid, "typ": GRANT_TYP, **changes}
    return {k: v for k, v in header.items() if v is not None}


def _with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64(signature)


def _edit_signature(token: str, edit: Callable[[bytes], bytes]) -> str:
    return _with_signature(token, edit(_unb64(_segments(token)[2])))


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _replace_segment(token: str, index: int, segment: str) -> str:
    parts = _segments(token)
    parts[index] = segment
    return ".".join(parts)


def _pad(token: str, index: int) -> str:
    """The segment with the `=` padding a lenient base64 decoder accepts."""
    segment = _segments(token)[index]
    return _replace_segment(token, index, segment + "=" * (-len(segment) % 4))


def _put(token: str, index: int, character: str) -> str:
    return token[:index] + character + token[index + 1 :]


def _non_canonical_last(token: str) -> str:
    """The signature's last character with its unused low bits set: a lenient decoder reads
    the same bytes, a strict one refuses (86 characters: 4 of the last one's 6 bits unused)."""
    signature = _segments(token)[2]
    assert len(signature) % 4 == 2
    last = ALPHABET[ALPHABET.index(signature[-1]) | 0b0101]
    return _replace_segment(token, 2, signature[:-1] + last)


def _der_signature(token: str, keys: KeySet) -> str:
    signing_input = token.rsplit(".", 1)[0].encode()
    return _with_signature(token, keys.signing_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))


def _public_pem(keys: KeySet) -> bytes:
    return keys.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _claims_bytes() -> bytes:
    return json.dumps(GRANT).encode()


# -- round trip and interoperability ---------------------------------------------------------


@pytest.mark.parametrize("claims", CLAIM_SETS)
def test_round_trip(keyset: KeySet, claims: dict[str, Any]) -> None:
    token = _sign(keyset, claims)
    assert jws.header(token) == {"alg": "ES256", "kid": keyset.signing_kid, "typ": GRANT_TYP}
    assert jws.verify(token, keyset.signing_key.public_key()) == claims
    assert jws.unverified_claims(token) == claims
    segments = _segments(token)
    assert len(segments) == 3
    assert "=" not in token
    assert len(_unb64(segments[2])) == jws.SIGNATURE_BYTES


@pytest.mark.parametrize("claims", CLAIM_SETS)
def test_pyjwt_verifies_what_we_sign(keyset: KeySet, claims: dict[str, Any]) -> None:
    token = _sign(keyset, claims)
    assert jwt.get_unverified_header(token) == jws.header(token)
    decoded = jwt.decode(
        token,
        keyset.signing_key.public_key(),
        algorithms=["ES256"],
        options={"verify_aud": False, "verify_exp": False},
    )
    assert decoded == claims


@pytest.mark.parametrize("claims", CLAIM_SETS)
def test_we_verify_what_pyjwt_signs(keyset: KeySet, claims: dict[str, Any]) -> None:
    token = jwt.encode(
        claims,
        keyset.signing_key,
        algorithm="ES256",
        headers={"kid": keyset.signing_kid, "typ": GRANT_TYP},
    )
    assert jws.header(token) == {"alg": "ES256", "kid": keyset.signing_kid, "typ": GRANT_TYP}
    assert jws.verify(token, keyset.signing_key.public_key()) == claims


@pytest.mark.parametrize("claims", ASCII_CLAIM_SETS)
def test_signing_input_is_byte_for_byte_pyjwts(keyset: KeySet, claims: dict[str, Any]) -> None:
    # ECDSA signatures are randomised; everything before them is not.
    theirs = jwt.encode(
        claims,
        keyset.signing_key,
        algorithm="ES256",
        headers={"kid": keyset.signing_kid, "typ": GRANT_TYP},
    )
    assert _sign(keyset, claims).rsplit(".", 1)[0] == theirs.rsplit(".", 1)[0]


def test_a_mapping_that_is_not_a_dict_is_signed(keyset: KeySet) -> None:
    token = jws.sign(
        MappingProxyType(GRANT), keyset.signing_key, kid=keyset.signing_kid, typ=GRANT_TYP
    )
    assert jws.verify(token, keyset.signing_key.public_key()) == GRANT


def test_keys_of_another_curve_are_refused(keyset: KeySet) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        jws.sign(GRANT, p384, kid="k", typ=GRANT_TYP)
    with pytest.raises(jws.JwsError, match="P-256"):
        jws.verify(_sign(keyset, GRANT), p384.public_key())


# -- refusals ----------------------------------------------------------------------------------

# What refuses a token:
SHAPE = "shape"  # header(), unverified_claims() and verify() all raise JwsError
ALGORITHM = "algorithm"  # the header reads; verify() raises JwsError (not BadSignature)
SIGNATURE = "signature"  # the header reads; verify() raises BadSignature
PAYLOAD = "payload"  # validly signed; unverified_claims() and verify() raise JwsError
# ... and `because` is the error's message.

Forge = Callable[[str, KeySet, KeySet], str]
NOT_BASE64URL = jws.ERR_BASE64URL
NOT_AN_OBJECT = jws.ERR_JSON

REFUSALS: list[Any] = [
    # -- structure
    pytest.param(lambda t, k, o: "", SHAPE, jws.ERR_SEGMENTS, id="empty-string"),
    pytest.param(lambda t, k, o: _segments(t)[0], SHAPE, jws.ERR_SEGMENTS, id="one-segment"),
    pytest.param(lambda t, k, o: t.rsplit(".", 1)[0], SHAPE, jws.ERR_SEGMENTS, id="two-segments"),
    pytest.param(
        lambda t, k, o: t + "." + _segments(t)[2], SHAPE, jws.ERR_SEGMENTS, id="four-segments"
    ),
    pytest.param(
        lambda t, k, o: ".".join([_segments(t)[0], *_segments(t)]),
        SHAPE,
        jws.ERR_SEGMENTS,
        id="header-twice",
    ),
    pytest.param(
        lambda t, k, o: "..", SHAPE, NOT_AN_OBJECT.format(name="header"), id="empty-segments"
    ),
    # -- base64url: padding, alphabet, canonical form
    pytest.param(
        lambda t, k, o: _pad(t, 0),
        SHAPE,
        NOT_BASE64URL.format(name="header"),
        id="padding-in-header",
    ),
    pytest.param(
        lambda t, k, o: _pad(t, 1),
        SHAPE,
        NOT_BASE64URL.format(name="payload"),
        id="padding-in-payload",
    ),
    pytest.param(
        lambda t, k, o: _pad(t, 2),
        SHAPE,
        NOT_BASE64URL.format(name="signature"),
        id="padding-in-signature",
    ),
    pytest.param(
        lambda t, k, o: _put(t, 5, "+"),
        SHAPE,
        NOT_BASE64URL.format(name="header"),
        id="plus-of-standard-base64",
    ),
    pytest.param(
        lambda t, k, o: _put(t, len(t) - 3, "/"),
        SHAPE,
        NOT_BASE64URL.format(name="signature"),
        id="slash-of-standard-base64",
    ),
    pytest.param(
        lambda t, k, o: _put(t, 10, "!"),
        SHAPE,
        NOT_BASE64URL.format(name="header"),
        id="exclamation-mark",
    ),
    pytest.param(
        lambda t, k, o: _put(t, 200, " "),
        SHAPE,
        NOT_BASE64URL.format(name="payload"),
        id="space-inside",
    ),
    pytest.param(
        lambda t, k, o: _put(t, 200, "%"), SHAPE, NOT_BASE64URL.format(name="payload"), id="percent"
    ),
    pytest.param(
        lambda t, k, o: _non_canonical_last(t),
        SHAPE,
        NOT_BASE64URL.format(name="signature"),
        id="non-canonical-last-character",
    ),
    pytest.param(
        lambda t, k, o: t[:-5],
        SHAPE,
        NOT_BASE64URL.format(name="signature"),
        id="signature-of-4n+1-characters",
    ),
    # -- whitespace and text that is not ASCII (a str token: UTF-8 on the wire)
    pytest.param(
        lambda t, k, o: t + "\n",
        SHAPE,
        NOT_BASE64URL.format(name="signature"),
        id="trailing-newline",
    ),
    pytest.param(
        lambda t, k, o: t + " ", SHAPE, NOT_BASE64URL.format(name="signature"), id="trailing-space"
    ),
    pytest.param(
        lambda t, k, o: t + "\r\n",
        SHAPE,
        NOT_BASE64URL.format(name="signature"),
        id="trailing-crlf",
    ),
    pytest.param(
        lambda t, k, o: " " + t, SHAPE, NOT_BASE64URL.format(name="header"), id="leading-space"
    ),
    pytest.param(lambda t, k, o: _put(t, 7, "é"), SHAPE, jws.ERR_NOT_ASCII, id="non-ascii-letter"),
    pytest.param(
        lambda t, k, o: _put(t, 7, "\uff21"), SHAPE, jws.ERR_NOT_ASCII, id="fullwidth-letter"
    ),
    pytest.param(
        lambda t, k, o: _put(t, 7, "\udc80"), SHAPE, jws.ERR_NOT_ASCII, id="lone-surrogate"
    ),
    # -- the header
    pytest.param(
        lambda t, k, o: _compact(b'["ES256"]', _claims_bytes(), k.signing_key),
        SHAPE,
        NOT_AN_OBJECT.format(name="header"),
        id="header-an-array",
    ),
    pytest.param(
        lambda t, k, o: _compact(b'"ES256"', _claims_bytes(), k.signing_key),
        SHAPE,
        NOT_AN_OBJECT.format(name="header"),
        id="header-a-string",
    ),
    pytest.param(
        lambda t, k, o: _compact(b"null", _claims_bytes(), k.signing_key),
        SHAPE,
        NOT_AN_OBJECT.format(name="header"),
        id="header-null",
    ),
    pytest.param(
        lambda t, k, o: _compact(b"alg=ES256", _claims_bytes(), k.signing_key),
        SHAPE,
        NOT_AN_OBJECT.format(name="header"),
        id="header-not-json",
    ),
    pytest.param(
        lambda t, k, o: _compact(b'{"alg":"ES256","kid":"\xff"}', _claims_bytes(), k.signing_key),
        SHAPE,
        NOT_AN_OBJECT.format(name="header"),
        id="header-not-utf-8",
    ),
    pytest.param(
        lambda t, k, o: _compact(
            json.dumps(_our_header(k)).encode("utf-16"), _claims_bytes(), k.signing_key
        ),
        SHAPE,
        NOT_AN_OBJECT.format(name="header"),
        id="header-utf-16",
    ),
    pytest.param(
        lambda t, k, o: _compact(
            json.dumps(_our_header(k, x=float("nan"))).encode(), _claims_bytes(), k.signing_key
        ),
        SHAPE,
        NOT_AN_OBJECT.format(name="header"),
        id="header-nan",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k, kid=7), _claims_bytes(), k.signing_key),
        SHAPE,
        jws.ERR_KID,
        id="kid-not-a-string",
    ),
    pytest.param(
        lambda t, k, o: _compact(
            _our_header(k, crit=["exp"], exp=1), _claims_bytes(), k.signing_key
        ),
        SHAPE,
        jws.ERR_CRIT,
        id="critical-extension",
    ),
    pytest.param(
        lambda t, k, o: _compact(
            _our_header(k, crit=["b64"], b64=True), _claims_bytes(), k.signing_key
        ),
        SHAPE,
        jws.ERR_CRIT,
        id="critical-b64",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k, b64=False), _claims_bytes(), k.signing_key),
        SHAPE,
        jws.ERR_B64,
        id="unencoded-payload",
    ),
    # -- the algorithm is ES256, whatever the header says
    pytest.param(
        lambda t, k, o: unsigned(_our_header(k), GRANT),
        ALGORITHM,
        jws.ERR_ALG,
        id="alg-none-unsigned",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k, alg="none"), _claims_bytes(), k.signing_key),
        ALGORITHM,
        jws.ERR_ALG,
        id="alg-none-with-a-good-signature",
    ),
    pytest.param(
        lambda t, k, o: hs256_with(_public_pem(k), _our_header(k), GRANT),
        ALGORITHM,
        jws.ERR_ALG,
        id="hs256-keyed-with-the-public-key-pem",
    ),
    pytest.param(
        lambda t, k, o: jwt.encode(
            GRANT,
            ec.generate_private_key(ec.SECP384R1()),
            algorithm="ES384",
            headers={"kid": k.signing_kid, "typ": GRANT_TYP},
        ),
        ALGORITHM,
        jws.ERR_ALG,
        id="es384",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k, alg="es256"), _claims_bytes(), k.signing_key),
        ALGORITHM,
        jws.ERR_ALG,
        id="alg-lowercase",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k, alg=None), _claims_bytes(), k.signing_key),
        ALGORITHM,
        jws.ERR_ALG,
        id="alg-missing",
    ),
    # -- the signature
    pytest.param(
        lambda t, k, o: jws.sign(GRANT, o.signing_key, kid=k.signing_kid, typ=GRANT_TYP),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="another-key-with-our-kid",
    ),
    pytest.param(
        lambda t, k, o: _compact(
            _our_header(k, jwk=ECAlgorithm.to_jwk(o.signing_key.public_key(), as_dict=True)),
            _claims_bytes(),
            o.signing_key,
        ),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="embedded-jwk-of-the-signer-ignored",
    ),
    pytest.param(
        lambda t, k, o: _compact(
            _our_header(k, jku="https://evil.example.com/jwks.json"),
            _claims_bytes(),
            o.signing_key,
        ),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="jku-ignored",
    ),
    pytest.param(
        lambda t, k, o: _edit_signature(t, lambda s: _flip(s, 5)),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="flipped-r-bit",
    ),
    pytest.param(
        lambda t, k, o: _edit_signature(t, lambda s: _flip(s, 63)),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="flipped-s-bit",
    ),
    pytest.param(
        lambda t, k, o: _edit_signature(t, lambda s: s[32:] + s[:32]),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="r-and-s-swapped",
    ),
    pytest.param(
        lambda t, k, o: _with_signature(t, bytes(64)),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="all-zero-signature",
    ),
    pytest.param(
        lambda t, k, o: _der_signature(t, k),
        SIGNATURE,
        jws.ERR_SIGNATURE_LENGTH,
        id="der-encoded-signature",
    ),
    pytest.param(
        lambda t, k, o: _edit_signature(t, lambda s: s[:63]),
        SIGNATURE,
        jws.ERR_SIGNATURE_LENGTH,
        id="63-bytes",
    ),
    pytest.param(
        lambda t, k, o: _edit_signature(t, lambda s: s + b"\0"),
        SIGNATURE,
        jws.ERR_SIGNATURE_LENGTH,
        id="65-bytes",
    ),
    pytest.param(
        lambda t, k, o: _edit_signature(t, lambda s: s + s[:32]),
        SIGNATURE,
        jws.ERR_SIGNATURE_LENGTH,
        id="96-bytes-p384",
    ),
    pytest.param(
        lambda t, k, o: _with_signature(t, b""),
        SIGNATURE,
        jws.ERR_SIGNATURE_LENGTH,
        id="empty-signature",
    ),
    pytest.param(
        lambda t, k, o: with_payload(t, {**GRANT, "scope": "admin"}),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="tampered-payload",
    ),
    pytest.param(
        lambda t, k, o: _replace_segment(
            t, 0, b64(json.dumps(_our_header(k, typ="at+jwt")).encode())
        ),
        SIGNATURE,
        jws.ERR_SIGNATURE,
        id="tampered-header",
    ),
    pytest.param(
        lambda t, k, o: _replace_segment(
            hs256_with(_public_pem(k), _our_header(k), GRANT),
            0,
            b64(json.dumps(_our_header(k)).encode()),
        ),
        SIGNATURE,
        jws.ERR_SIGNATURE_LENGTH,
        id="hmac-under-an-es256-header",
    ),
    # -- the payload (validly signed: only our own key could make these)
    pytest.param(
        lambda t, k, o: _compact(_our_header(k), b"[1, 2]", k.signing_key),
        PAYLOAD,
        NOT_AN_OBJECT.format(name="payload"),
        id="payload-an-array",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k), b'"claims"', k.signing_key),
        PAYLOAD,
        NOT_AN_OBJECT.format(name="payload"),
        id="payload-a-string",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k), b"", k.signing_key),
        PAYLOAD,
        NOT_AN_OBJECT.format(name="payload"),
        id="payload-empty",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k), b"{'jti': 1}", k.signing_key),
        PAYLOAD,
        NOT_AN_OBJECT.format(name="payload"),
        id="payload-not-json",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k), b'{"jti":"\xff"}', k.signing_key),
        PAYLOAD,
        NOT_AN_OBJECT.format(name="payload"),
        id="payload-not-utf-8",
    ),
    pytest.param(
        lambda t, k, o: _compact(_our_header(k), b'{"exp":NaN}', k.signing_key),
        PAYLOAD,
        NOT_AN_OBJECT.format(name="payload"),
        id="payload-nan",
    ),
]


@pytest.fixture(scope="module")
def good(keyset: KeySet) -> str:
    return _sign(keyset, GRANT)


@pytest.mark.parametrize(("forge", "refused_by", "because"), REFUSALS)
def test_refusals(
    good: str, keyset: KeySet, other_keyset: KeySet, forge: Forge, refused_by: str, because: str
) -> None:
    token = forge(good, keyset, other_keyset)
    assert token != good
    public_key = keyset.signing_key.public_key()
    if refused_by == SHAPE:
        with pytest.raises(jws.JwsError, match=f"^{re.escape(because)}$"):
            jws.header(token)
        with pytest.raises(jws.JwsError, match=f"^{re.escape(because)}$"):
            jws.unverified_claims(token)
    else:
        assert isinstance(jws.header(token), dict)
    if refused_by == PAYLOAD:
        with pytest.raises(jws.JwsError, match=f"^{re.escape(because)}$"):
            jws.unverified_claims(token)
    with pytest.raises(jws.JwsError) as refused:
        jws.verify(token, public_key)
    assert str(refused.value) == because
    assert isinstance(refused.value, jws.BadSignature) is (refused_by == SIGNATURE)


def test_the_length_cap(keyset: KeySet) -> None:
    """A token of MAX_TOKEN_CHARS verifies; one character more is refused unread."""
    public_key = keyset.signing_key.public_key()
    overhead = len(_sign(keyset, {"pad": ""})) - len(b64(b'{"pad":""}'))
    target = jws.MAX_TOKEN_CHARS - overhead  # base64url characters of the payload
    # n bytes of payload take (4n + 2) // 3 characters, so n = 3 * target / 4 (4n+1 is none).
    assert target % 4 != 1
    pad = "x" * (target * 3 // 4 - len(b'{"pad":""}'))
    longest = _sign(keyset, {"pad": pad})
    assert len(longest) == jws.MAX_TOKEN_CHARS
    assert jws.verify(longest, public_key) == {"pad": pad}
    too_long = _sign(keyset, {"pad": pad + "x"})
    assert len(too_long) > jws.MAX_TOKEN_CHARS
    for read in (jws.header, jws.unverified_claims, lambda t: jws.verify(t, public_key)):
        with pytest.raises(jws.JwsError, match="longer than"):
            read(too_long)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda t: t + "!", id="signature"),
        pytest.param(lambda t: t.replace(".", "..", 1), id="segments"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + ".", id="payload"),
    ],
)
def test_messages_never_quote_the_token(keyset: KeySet, broken: Callable[[str], str]) -> None:
    secret = "hunter2-do-not-log-me"
    token = _compact(_our_header(keyset, note=secret), secret.encode(), keyset.signing_key)
    with pytest.raises(jws.JwsError) as refused:
        jws.verify(broken(token), keyset.signing_key.public_key())
    message = str(refused.value)
    assert secret not in message
    assert not any(segment and segment in message for segment in _segments(token))


# -- properties --------------------------------------------------------------------------------

PROPERTIES = settings(max_examples=300, derandomize=True, database=None, deadline=None)
TOKEN_LIKE = st.one_of(
    st.text(max_size=300),
    st.lists(st.text(alphabet=ALPHABET + "=.+/ \n", max_size=200), min_size=1, max_size=5).map(
        ".".join
    ),
)


@PROPERTIES
@given(text=TOKEN_LIKE)
def test_any_text_is_read_or_refused_with_jws_error(keyset: KeySet, text: str) -> None:
    for read in (jws.header, jws.unverified_claims):
        with contextlib.suppress(jws.JwsError):
            assert isinstance(read(text), dict)
    with pytest.raises(jws.JwsError):
        jws.verify(text, keyset.signing_key.public_key())


@PROPERTIES
@given(position=st.floats(0, 1, exclude_max=True), character=st.sampled_from(ALPHABET + "=. "))
def test_any_one_character_changed_is_refused(
    good: str, keyset: KeySet, position: float, character: str
) -> None:
    index = int(position * len(good))
    forged = _put(good, index, character)
    if forged == good:
        return
    with pytest.raises(jws.JwsError):
        jws.verify(forged, keyset.signing_key.public_key())
