"""Signing keys: RFC 7638 kids, the JWKS, generate/rotate, reload, and rotation overlap."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from identity.cli import keys as keys_cli
from identity.keys import (
    ACTIVE,
    NEXT,
    PREVIOUS,
    JwtRefused,
    KeyDirError,
    KeySet,
    KeyWatcher,
    ensure_keys,
    generate_keys,
    new_private_key,
    private_pem,
    public_jwk,
    rotate_keys,
    thumbprint,
)
from tests.support.grants import IDENTITY_DATA

GRANT_TYP = "kube-intent-grant+jwt"


def test_thumbprint_of_the_rfc7638_example_key() -> None:
    example = json.loads((IDENTITY_DATA / "rfc7638-example-jwk.json").read_text())
    assert thumbprint(example["jwk"]) == example["thumbprint"]


def test_ec_kid_matches_an_independently_computed_thumbprint() -> None:
    key = new_private_key()
    # PyJWT's own JWK export, then RFC 7638 by hand: members in lexicographic order.
    exported = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    canonical = (
        f'{{"crv":"{exported["crv"]}","kty":"EC","x":"{exported["x"]}","y":"{exported["y"]}"}}'
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest())
    jwk = public_jwk(key.public_key())
    assert jwk["kid"] == expected.rstrip(b"=").decode()
    assert (jwk["x"], jwk["y"]) == (exported["x"], exported["y"])


def test_coordinates_keep_leading_zero_bytes() -> None:
    # About 1 in 128 keys has a coordinate below 2^248; RFC 7518 wants all 32 bytes anyway.
    key = next(
        k
        for k in (new_private_key() for _ in range(4000))
        if min(k.public_key().public_numbers().x, k.public_key().public_numbers().y) < 2**248
    )
    jwk = public_jwk(key.public_key())
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32
    assert len(base64.urlsafe_b64decode(jwk["y"] + "=")) == 32
    assert jwt.PyJWK(jwk).key.public_numbers() == key.public_key().public_numbers()


def test_generate_creates_active_and_next_0600(tmp_path: Path) -> None:
    keyset = generate_keys(tmp_path / "keys")
    files = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert files == [ACTIVE, NEXT]
    for name in files:
        assert stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode) == 0o600
    assert [k.role for k in keyset.verification] == ["active", "next"]
    assert keyset.signing_kid == keyset.verification[0].kid


def test_jwks_publishes_public_keys_only(keyset: KeySet) -> None:
    jwks = keyset.jwks()
    assert [key["kid"] for key in jwks["keys"]] == [k.kid for k in keyset.verification]
    for key in jwks["keys"]:
        assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
        assert key["kid"] == thumbprint(key)
        assert isinstance(jwt.PyJWK(key).key, ec.EllipticCurvePublicKey)
    scalar = keyset.signing_key.private_numbers().private_value.to_bytes(32, "big")
    assert base64.urlsafe_b64encode(scalar).rstrip(b"=").decode() not in json.dumps(jwks)


def test_generate_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    first = generate_keys(tmp_path)
    with pytest.raises(KeyDirError, match="--force"):
        generate_keys(tmp_path)
    assert KeySet.load(tmp_path).signing_kid == first.signing_kid
    second = generate_keys(tmp_path, overwrite=True)
    assert second.signing_kid != first.signing_kid


def test_rotation_publishes_before_signing_and_after(tmp_path: Path) -> None:
    generation0 = generate_keys(tmp_path)
    next0 = generation0.verification[1].kid
    generation1 = rotate_keys(tmp_path)
    roles = {k.role: k.kid for k in generation1.verification}
    # The key that now signs was published (as next) before it signed ...
    assert generation1.signing_kid == next0 == roles["active"]
    # ... and the key that signed stays published as previous.
    assert roles["previous"] == generation0.signing_kid
    assert roles["next"] not in (next0, generation0.signing_kid)
    assert len(generation1.jwks()["keys"]) == 3
    generation2 = rotate_keys(tmp_path)
    assert generation0.signing_kid not in {k.kid for k in generation2.verification}


def test_rotation_overlap_a_token_verifies_until_its_key_is_dropped(tmp_path: Path) -> None:
    before = generate_keys(tmp_path)
    token = before.sign({"sub": "x"}, GRANT_TYP)
    assert before.verify(token, GRANT_TYP) == {"sub": "x"}
    once = rotate_keys(tmp_path)  # the signing key is now `previous`
    assert once.verify(token, GRANT_TYP) == {"sub": "x"}
    twice = rotate_keys(tmp_path)  # and now it is gone
    with pytest.raises(JwtRefused) as refused:
        twice.verify(token, GRANT_TYP)
    assert refused.value.reason == "unknown-kid"


@pytest.mark.parametrize(
    ("files", "operation", "message"),
    [
        pytest.param({}, "load", "has no active.pem", id="load-without-active"),
        pytest.param({NEXT: "ec"}, "load", "has no active.pem", id="load-only-next"),
        pytest.param({ACTIVE: "ec"}, "rotate", "has no next.pem", id="rotate-without-next"),
        pytest.param({ACTIVE: "p384"}, "load", "not an EC P-256", id="p384-key"),
        pytest.param({ACTIVE: "rsa"}, "load", "not an EC P-256", id="rsa-key"),
        pytest.param({ACTIVE: "garbage"}, "load", "cannot read signing key", id="not-pem"),
        pytest.param({ACTIVE: "ec", NEXT: "garbage"}, "rotate", "cannot read", id="rotate-bad"),
    ],
)
def test_unusable_key_directories_say_what_to_do(
    tmp_path: Path, files: dict[str, str], operation: str, message: str
) -> None:
    makers: dict[str, Callable[[], bytes]] = {
        "ec": lambda: private_pem(new_private_key()),
        "p384": lambda: ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "rsa": lambda: rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "garbage": lambda: b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    }
    for name, kind in files.items():
        (tmp_path / name).write_bytes(makers[kind]())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyDirError, match=message):
        KeySet.load(tmp_path) if operation == "load" else rotate_keys(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing changed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_watcher_reloads_when_contents_change_and_only_then(tmp_path: Path) -> None:
    generate_keys(tmp_path)
    clock = Clock()
    watcher = KeyWatcher(tmp_path, interval=5, clock=clock)
    first = watcher()
    assert watcher.reload_if_changed() is False
    rotate_keys(tmp_path)
    clock.now += 1
    assert watcher() is first  # within the interval: not even looked at
    clock.now += 5
    assert watcher().signing_kid != first.signing_kid
    assert watcher.reload_if_changed() is False


def test_watcher_follows_a_secret_volume_symlink_swap(tmp_path: Path) -> None:
    """The kubelet updates a Secret volume by re-pointing `..data` at a new directory."""
    volume = tmp_path / "volume"
    volume.mkdir()
    old, new = volume / "..2024_01_01_00_00_00.1", volume / "..2024_01_01_00_01_00.2"
    generate_keys(old)
    for name in (ACTIVE, NEXT):
        (volume / name).symlink_to(Path("..data") / name)
    (volume / "..data").symlink_to(old.name)
    watcher = KeyWatcher(volume, interval=0)
    before = watcher().signing_kid

    new.mkdir()
    for name in (ACTIVE, NEXT):
        (new / name).write_bytes((old / name).read_bytes())
    rotate_keys(new)
    (volume / "..data_tmp").symlink_to(new.name)
    os.replace(volume / "..data_tmp", volume / "..data")  # the atomic swap
    (volume / PREVIOUS).symlink_to(Path("..data") / PREVIOUS)

    after = watcher()
    assert after.signing_kid != before
    assert {k.role: k.kid for k in after.verification}["previous"] == before


def test_watcher_keeps_the_last_good_set_when_an_update_is_broken(tmp_path: Path) -> None:
    good = generate_keys(tmp_path)
    watcher = KeyWatcher(tmp_path, interval=0)
    (tmp_path / ACTIVE).write_bytes(b"half a key")
    assert watcher().signing_kid == good.signing_kid
    (tmp_path / ACTIVE).unlink()
    assert watcher().signing_kid == good.signing_kid


def test_keys_cli_generate_rotate_jwks(tmp_path: Path) -> None:
    runner = CliRunner()
    generated = runner.invoke(keys_cli, ["generate", str(tmp_path / "k")])
    assert generated.exit_code == 0, generated.output
    assert generated.output.splitlines()[0].startswith("active ")
    refused = runner.invoke(keys_cli, ["generate", str(tmp_path / "k")])
    assert refused.exit_code == 1
    assert "--force" in refused.output
    rotated = runner.invoke(keys_cli, ["rotate", str(tmp_path / "k")])
    assert rotated.exit_code == 0
    assert [line.split()[0] for line in rotated.output.splitlines()] == [
        "active",
        "next",
        "previous",
    ]
    printed = runner.invoke(keys_cli, ["jwks", str(tmp_path / "k")])
    assert printed.exit_code == 0
    assert json.loads(printed.output) == KeySet.load(tmp_path / "k").jwks()
    missing = runner.invoke(keys_cli, ["jwks", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1
    assert "keys generate" in missing.output


def test_a_half_written_dev_key_set_is_replaced_not_fatal(tmp_path: Path) -> None:
    # `serve --dev` interrupted between next.pem and active.pem: the next start must not stop
    # on "next.pem exists" (nothing was ever signed without an active key).
    generate_keys(tmp_path / "full")
    half = tmp_path / "half"
    half.mkdir()
    (half / "next.pem").write_bytes((tmp_path / "full" / "next.pem").read_bytes())
    keys, generated = ensure_keys(half)
    assert generated is True
    again, generated = ensure_keys(half)
    assert generated is False
    assert again.signing_kid == keys.signing_kid
