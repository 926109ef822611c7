"""Access token verification (library, JWKS fetching, `kube-intent token verify`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity.cli import token as token_cli
from identity.grants import GRANT_TYP
from identity.keys import KeySet, generate_keys, rotate_keys
from identity.verify import (
    ACCESS_TOKEN_TYP,
    AccessTokenError,
    JwksError,
    RemoteJwks,
    fetch_jwks,
    jwks_keys,
    verify_access_token,
)
from tests.support.grants import (
    ISSUER,
    TOKEN_ENDPOINT,
    grant_claims,
    hs256_with,
    segments,
    unsigned,
)
from tests.support.servers import HttpsServer, https_server

NOW = 1_760_000_000
AUDIENCE = "inference-gateway.ml-serving"
SUB = "spiffe://prod.example.com/ns/ml-serving/sa/support-bot"


def access_claims(**changes: Any) -> dict[str, Any]:
    """The claims TokenExchange issues (see identity/exchange.py _issue)."""
    claims = {
        "iss": ISSUER,
        "sub": SUB,
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "2b0e4f0e-6c1e-4f7b-9d1b-0c7d1c0e9a11",
        "client_id": SUB,
        "scope": "model:meta-llama/Llama-3.1-8B-Instruct:infer tool:kb-search:invoke",
        "act": {"sub": "spiffe://prod.example.com/ns/ml-serving/agent/support-bot"},
        "agent": "support-bot",
        "grant_jti": "5f0f3b7e-0000-4000-8000-000000000000",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _pem(keyset: KeySet) -> bytes:
    return keyset.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check(token: str, jwks: dict[str, Any], **options: Any) -> Any:
    arguments = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW + 1, **options}
    return verify_access_token(token, jwks, **arguments)


def test_a_valid_access_token(keyset: KeySet) -> None:
    token = keyset.sign(access_claims(), ACCESS_TOKEN_TYP)
    claims = check(token, keyset.jwks(), required_scopes=["tool:kb-search:invoke"])
    assert claims.sub == claims.client_id == SUB
    assert claims.scopes == (
        "model:meta-llama/Llama-3.1-8B-Instruct:infer",
        "tool:kb-search:invoke",
    )
    assert claims.claims["act"]["sub"].endswith("/agent/support-bot")


Make = Callable[[KeySet, KeySet], str]

REFUSALS: list[Any] = [
    pytest.param(
        lambda k, o: k.sign(access_claims(), "kube-intent-grant+jwt"), {}, "type", id="a-grant"
    ),
    pytest.param(lambda k, o: k.sign(access_claims(), "JWT"), {}, "type", id="plain-jwt-typ"),
    pytest.param(
        lambda k, o: unsigned({"typ": ACCESS_TOKEN_TYP, "kid": k.signing_kid}, access_claims()),
        {},
        "algorithm",
        id="alg-none",
    ),
    pytest.param(
        lambda k, o: hs256_with(
            _pem(k), {"typ": ACCESS_TOKEN_TYP, "kid": k.signing_kid}, access_claims()
        ),
        {},
        "algorithm",
        id="hs256-keyed-with-public-key",
    ),
    pytest.param(
        lambda k, o: o.sign(access_claims(), ACCESS_TOKEN_TYP), {}, "unknown-kid", id="not-in-jwks"
    ),
    pytest.param(
        lambda k, o: jwt.encode(
            access_claims(),
            o.signing_key,
            algorithm="ES256",
            headers={"kid": k.signing_kid, "typ": ACCESS_TOKEN_TYP},
        ),
        {},
        "signature",
        id="forged-signature-with-our-kid",
    ),
    pytest.param(
        lambda k, o: jwt.encode(
            access_claims(),
            ec.generate_private_key(ec.SECP384R1()),
            algorithm="ES384",
            headers={"kid": k.signing_kid, "typ": ACCESS_TOKEN_TYP},
        ),
        {},
        "algorithm",
        id="es384",
    ),
    pytest.param(
        lambda k, o: k.sign(access_claims(iss="https://evil"), ACCESS_TOKEN_TYP),
        {},
        "issuer",
        id="other-issuer",
    ),
    pytest.param(
        lambda k, o: k.sign(access_claims(aud="other-service"), ACCESS_TOKEN_TYP),
        {},
        "audience",
        id="other-audience",
    ),
    pytest.param(
        lambda k, o: k.sign(access_claims(aud=[AUDIENCE, "other"]), ACCESS_TOKEN_TYP),
        {},
        "claims",
        id="audience-list",
    ),
    pytest.param(
        lambda k, o: k.sign(access_claims(), ACCESS_TOKEN_TYP),
        {"now": NOW + 300},
        "expired",
        id="expired",
    ),
    pytest.param(
        lambda k, o: k.sign(access_claims(), ACCESS_TOKEN_TYP),
        {"now": NOW - 120},
        "not-yet-valid",
        id="not-yet-valid",
    ),
    pytest.param(
        lambda k, o: k.sign(access_claims(), ACCESS_TOKEN_TYP),
        {"required_scopes": ["tool:shell:invoke"]},
        "scope",
        id="missing-scope",
    ),
    pytest.param(
        lambda k, o: k.sign(access_claims(client_id=None), ACCESS_TOKEN_TYP),
        {},
        "claims",
        id="no-client-id",
    ),
    pytest.param(lambda k, o: "x.y.z", {}, "malformed", id="garbage"),
]


@pytest.mark.parametrize(("make", "options", "reason"), REFUSALS)
def test_access_token_refusals(
    keyset: KeySet, other_keyset: KeySet, make: Make, options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(AccessTokenError) as refused:
        check(make(keyset, other_keyset), keyset.jwks(), **options)
    assert refused.value.reason == reason


def test_a_token_from_the_previous_key_verifies_until_the_key_is_dropped(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path)
    token = keys.sign(access_claims(), ACCESS_TOKEN_TYP)
    check(token, rotate_keys(tmp_path).jwks())  # published as previous
    with pytest.raises(AccessTokenError) as refused:
        check(token, rotate_keys(tmp_path).jwks())
    assert refused.value.reason == "unknown-kid"


@pytest.mark.parametrize(
    ("edit", "kept"),
    [
        pytest.param(lambda j: j, True, id="as-published"),
        pytest.param(lambda j: {**j, "kid": "my-choice"}, False, id="kid-not-thumbprint"),
        pytest.param(lambda j: {**j, "alg": "ES384"}, False, id="other-alg"),
        pytest.param(lambda j: {**j, "use": "enc"}, False, id="encryption-key"),
        pytest.param(lambda j: {**j, "crv": "P-384"}, False, id="other-curve"),
        pytest.param(lambda j: {"kty": "oct", "k": "c2VjcmV0", "kid": j["kid"]}, False, id="hmac"),
    ],
)
def test_jwks_keys_only_takes_es256_signing_keys_with_thumbprint_kids(
    keyset: KeySet, edit: Callable[[dict[str, Any]], dict[str, Any]], kept: bool
) -> None:
    published = keyset.jwks()["keys"][0]
    keys = jwks_keys({"keys": [edit(dict(published))]})
    assert (published["kid"] in keys or "my-choice" in keys) is kept


def test_jwks_must_have_keys() -> None:
    with pytest.raises(JwksError):
        jwks_keys({"no": "keys"})


@pytest.fixture
def jwks_server(tmp_path: Path, keyset: KeySet) -> Iterator[HttpsServer]:
    with https_server(tmp_path / "tls") as server:
        server.responses.append((200, keyset.jwks()))
        yield server


def test_fetch_jwks_over_https_with_a_ca_file(jwks_server: HttpsServer, keyset: KeySet) -> None:
    url = jwks_server.url + "/.well-known/jwks.json"
    assert fetch_jwks(url, jwks_server.ca_file) == keyset.jwks()
    assert jwks_server.requests[0].path == "/.well-known/jwks.json"


def test_fetch_jwks_refuses_an_unknown_server_certificate(jwks_server: HttpsServer) -> None:
    with pytest.raises(JwksError, match="cannot fetch"):
        fetch_jwks(jwks_server.url + "/.well-known/jwks.json")  # system CAs only


def test_remote_jwks_refetches_for_an_unknown_kid_at_most_every_30s(
    tmp_path: Path, jwks_server: HttpsServer, keyset: KeySet
) -> None:
    clock = [1000.0]
    remote = RemoteJwks(jwks_server.url + "/jwks", jwks_server.ca_file, clock=lambda: clock[0])
    token = keyset.sign(access_claims(exp=2**31), ACCESS_TOKEN_TYP)
    assert remote.verify(token, issuer=ISSUER, audience=AUDIENCE).sub == SUB
    assert len(jwks_server.requests) == 1
    assert remote.verify(token, issuer=ISSUER, audience=AUDIENCE).sub == SUB
    assert len(jwks_server.requests) == 1  # cached

    rotated = generate_keys(tmp_path / "new")
    jwks_server.responses.append((200, rotated.jwks()))
    fresh = rotated.sign(access_claims(exp=2**31), ACCESS_TOKEN_TYP)
    with pytest.raises(AccessTokenError):  # unknown kid, but refetched too recently
        remote.verify(fresh, issuer=ISSUER, audience=AUDIENCE)
    assert len(jwks_server.requests) == 1
    clock[0] += 31
    assert remote.verify(fresh, issuer=ISSUER, audience=AUDIENCE).sub == SUB
    assert len(jwks_server.requests) == 2


@pytest.mark.parametrize(
    ("options", "code", "expected"),
    [
        pytest.param([], 0, '"sub"', id="valid"),
        pytest.param(["--scope", "tool:kb-search:invoke"], 0, '"scope"', id="with-scope"),
        pytest.param(["--scope", "tool:shell:invoke"], 1, "refused: scope", id="missing-scope"),
        pytest.param(["--audience", "other"], 1, "refused: audience", id="other-audience"),
    ],
)
def test_token_verify_cli(
    tmp_path: Path, keyset: KeySet, options: list[str], code: int, expected: str
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(keyset.jwks()))
    token = keyset.sign(access_claims(exp=2**31, iat=NOW), ACCESS_TOKEN_TYP)
    arguments = ["verify", "-", "--jwks", str(jwks_file), "--issuer", ISSUER]
    if "--audience" not in options:
        arguments += ["--audience", AUDIENCE]
    result = CliRunner().invoke(token_cli, [*arguments, *options], input=token + "\n")
    assert result.exit_code == code, result.output
    assert expected in result.output
    if code == 0:
        assert json.loads(result.stdout)["jti"] == segments(token)[1]["jti"]


def test_token_verify_cli_with_a_jwks_url(jwks_server: HttpsServer, keyset: KeySet) -> None:
    token = keyset.sign(access_claims(exp=2**31), ACCESS_TOKEN_TYP)
    result = CliRunner().invoke(
        token_cli,
        [
            "verify",
            token,
            "--jwks",
            jwks_server.url + "/.well-known/jwks.json",
            "--ca-file",
            str(jwks_server.ca_file),
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
        ],
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("token_of", "options", "code", "expected"),
    [
        pytest.param("grant", ["--grant"], 0, '"intent_digest"', id="valid-grant"),
        pytest.param(
            "grant", ["--grant", "--scope", "tool:kb-search:invoke"], 0, '"ns"', id="with-scope"
        ),
        pytest.param(
            "grant",
            ["--grant", "--scope", "tool:shell:invoke"],
            1,
            "refused: scope",
            id="missing-scope",
        ),
        pytest.param(
            "grant", ["--grant", "--audience", AUDIENCE], 1, "refused: audience", id="audience"
        ),
        pytest.param("expired", ["--grant"], 1, "refused: expired", id="expired"),
        pytest.param("foreign", ["--grant"], 1, "refused: unknown-kid", id="another-key"),
        pytest.param("access", ["--grant"], 1, "refused: type", id="an-access-token"),
        pytest.param("grant", [], 1, "refused: type", id="a-grant-without-the-flag"),
    ],
)
def test_token_verify_cli_with_a_grant(
    tmp_path: Path,
    keyset: KeySet,
    other_keyset: KeySet,
    token_of: str,
    options: list[str],
    code: int,
    expected: str,
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(keyset.jwks()))
    token = {
        "grant": lambda: keyset.sign(grant_claims(), GRANT_TYP),
        "expired": lambda: keyset.sign(grant_claims(exp=NOW + 60), GRANT_TYP),
        "foreign": lambda: other_keyset.sign(grant_claims(), GRANT_TYP),
        "access": lambda: keyset.sign(
            access_claims(aud=TOKEN_ENDPOINT, exp=2**31), ACCESS_TOKEN_TYP
        ),
    }[token_of]()
    arguments = ["verify", "-", "--jwks", str(jwks_file), "--issuer", ISSUER]
    if "--audience" not in options:
        arguments += ["--audience", TOKEN_ENDPOINT]
    result = CliRunner().invoke(token_cli, [*arguments, *options], input=token + "\n")
    assert result.exit_code == code, result.output
    assert expected in result.output
    if code == 0:
        assert json.loads(result.stdout) == grant_claims()
