"""ES256 signing keys: the key directory, RFC 7638 key ids, the JWKS, rotation and reloading.

The directory is a mounted Secret in the chart and holds PEM files (PKCS8, or SEC1 as Helm's
`genPrivateKey "ecdsa"` writes them):

- `active.pem`   signs every grant and access token;
- `next.pem`     is published in the JWKS before it signs, so verifiers that cache the JWKS
                 already know it when `rotate` promotes it;
- `previous.pem` is published after it stopped signing, so tokens it signed still verify until
                 they expire.

Keys are never read from environment variables: a variable leaks into `/proc/<pid>/environ`,
crash reports and `kubectl describe`, a mounted Secret file does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity import jws

log = logging.getLogger("kube_intent.keys")

ALG = jws.ALG
CURVE = "P-256"
COORDINATE_BYTES = jws.COORDINATE_BYTES

ACTIVE = "active.pem"
NEXT = "next.pem"
PREVIOUS = "previous.pem"
KEY_FILES = (ACTIVE, NEXT, PREVIOUS)

# How often a KeyWatcher looks at the directory: the kubelet refreshes a mounted Secret about
# once a minute, so a few seconds of extra delay is invisible, and it keeps hashing off the
# hot path of every admission.
DEFAULT_CHECK_INTERVAL = 5.0

ERR_NO_ACTIVE = (
    "key directory {dir} has no {name}: create a key set with `kube-intent keys generate`"
)
ERR_READ = "cannot read signing key {path}: {detail}"
ERR_NOT_P256 = "{path} is not an EC P-256 private key (ES256 needs P-256), got {kind}"
ERR_EXISTS = "{path} exists: pass --force to replace the key set (tokens it signed stop verifying)"
ERR_NO_NEXT = (
    "key directory {dir} has no {name}: rotation promotes the published next key, so that "
    "verifiers know a key before it signs; recreate the set with "
    "`kube-intent keys generate --force`"
)
ERR_THUMBPRINT_KTY = "cannot compute an RFC 7638 thumbprint for key type {kty!r}"

# RFC 7638 §3.2: the required members of each key type, the only ones that are hashed.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


class KeyDirError(Exception):
    """The key directory cannot be used; the message names the file and what to do."""


class JwtRefused(Exception):
    """A signed token was refused; `reason` is a short stable code (see the REASON_* constants)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


# Reasons shared by grants and access tokens (the checks before any claim is read).
REASON_MALFORMED = "malformed"
REASON_ALGORITHM = "algorithm"
REASON_TYPE = "type"
REASON_UNKNOWN_KID = "unknown-kid"
REASON_SIGNATURE = "signature"


def b64url(data: bytes) -> str:
    return jws.b64url_encode(data).decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: sha256 over the required members, sorted, no whitespace."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(str(kty))
    if members is None:
        raise ValueError(ERR_THUMBPRINT_KTY.format(kty=kty))
    canonical = json.dumps(
        {name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True
    )
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK of a P-256 key, with its kid, for the JWKS."""
    numbers = public_key.public_numbers()
    jwk = {
        "kty": "EC",
        "crv": CURVE,
        # RFC 7518 §6.2.1.2: coordinates are the full-length (32 byte) big-endian octets.
        "x": b64url(numbers.x.to_bytes(COORDINATE_BYTES, "big")),
        "y": b64url(numbers.y.to_bytes(COORDINATE_BYTES, "big")),
    }
    return {**jwk, "kid": thumbprint(jwk), "alg": ALG, "use": "sig"}


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    public_key: ec.EllipticCurvePublicKey
    role: str  # "active", "next" or "previous": for `keys jwks` output and logs


@dataclass(frozen=True, slots=True)
class KeySet:
    """The signing key (active) and every published verification key (active, next, previous)."""

    signing_kid: str
    signing_key: ec.EllipticCurvePrivateKey = field(repr=False)
    verification: tuple[VerificationKey, ...]
    fingerprint: str = ""

    @classmethod
    def load(cls, directory: Path) -> KeySet:
        directory = Path(directory)
        contents = _read_key_files(directory)
        if ACTIVE not in contents:
            raise KeyDirError(ERR_NO_ACTIVE.format(dir=directory, name=ACTIVE))
        return cls.from_pems(contents, source=directory)

    @classmethod
    def from_pems(cls, pems: Mapping[str, bytes], *, source: Path | None = None) -> KeySet:
        """Build from {file name: PEM bytes}; `active.pem` is required."""
        keys = {
            name: _private_key(pems[name], (source or Path(".")) / name)
            for name in KEY_FILES
            if name in pems
        }
        verification: list[VerificationKey] = []
        for name, key in keys.items():
            kid = public_jwk(key.public_key())["kid"]
            # The same key may sit in two slots for a moment during a rotation: publish it once.
            if all(existing.kid != kid for existing in verification):
                role = name.removesuffix(".pem")
                verification.append(VerificationKey(kid, key.public_key(), role))
        active = keys[ACTIVE]
        return cls(
            signing_kid=public_jwk(active.public_key())["kid"],
            signing_key=active,
            verification=tuple(verification),
            fingerprint=_fingerprint(pems),
        )

    def public_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        for key in self.verification:
            if key.kid == kid:
                return key.public_key
        return None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [public_jwk(key.public_key) for key in self.verification]}

    def sign(self, claims: Mapping[str, Any], typ: str) -> str:
        """A compact JWS over `claims` with the active key, header {alg ES256, kid, typ}."""
        return jws.sign(claims, self.signing_key, kid=self.signing_kid, typ=typ)

    def verify(self, token: str, typ: str) -> dict[str, Any]:
        """Check the header and signature; return the claims (unchecked: the caller checks them)."""
        return verify_signed(token, self.public_key, typ)


def checked_header(token: str, typ: str) -> dict[str, Any]:
    """The checks of a kube-intent token that need no key: a compact JWS whose header names
    ES256 and `typ`. Cheap and local, so they run before anything slower is asked."""
    try:
        header = jws.header(token)
    except jws.JwsError:
        raise JwtRefused(REASON_MALFORMED) from None
    if header.get("alg") != ALG:
        raise JwtRefused(REASON_ALGORITHM)
    if header.get("typ") != typ:
        raise JwtRefused(REASON_TYPE)
    return header


def verify_signed(
    token: str, key_for: Callable[[str], ec.EllipticCurvePublicKey | None], typ: str
) -> dict[str, Any]:
    """The checks every kube-intent token gets before any claim is believed.

    Only ES256 is accepted, whatever the header says: this refuses `alg: none` and the
    HS256-with-the-public-key confusion before a key is even looked up. The key comes from
    our own set by kid, never from a header (`jwk`, `jku`, `x5u` are ignored).
    """
    header = checked_header(token, typ)
    kid = header.get("kid")
    key = key_for(kid) if isinstance(kid, str) else None
    if key is None:
        raise JwtRefused(REASON_UNKNOWN_KID)
    try:
        return jws.verify(token, key)
    except jws.BadSignature:  # also a signature that is not 64 bytes (r || s)
        raise JwtRefused(REASON_SIGNATURE) from None
    except jws.JwsError:  # claims that are not a JSON object
        raise JwtRefused(REASON_MALFORMED) from None


def _private_key(pem: bytes, path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyDirError(ERR_READ.format(path=path, detail=exc)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyDirError(ERR_NOT_P256.format(path=path, kind=type(key).__name__))
    return key


def _read_key_files(directory: Path) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for name in KEY_FILES:
        path = directory / name
        try:
            # read_bytes follows the Secret volume's symlinks (name -> ..data/name).
            contents[name] = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KeyDirError(ERR_READ.format(path=path, detail=exc)) from None
    return contents


def _fingerprint(contents: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in KEY_FILES:
        digest.update(name.encode() + b"\0" + contents.get(name, b"-") + b"\0")
    return digest.hexdigest()


# -- managing the directory (kube-intent keys ...) -----------------------------------------------


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Write 0600 through a temporary file and a rename: a reader never sees half a key."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def generate_keys(directory: Path, *, overwrite: bool = False) -> KeySet:
    """Create `active.pem` and `next.pem` (0600). An existing `previous.pem` is left alone."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not overwrite:
        for name in (ACTIVE, NEXT):
            if (directory / name).exists():
                raise KeyDirError(ERR_EXISTS.format(path=directory / name))
    write_private(directory / NEXT, private_pem(new_private_key()))
    write_private(directory / ACTIVE, private_pem(new_private_key()))
    return KeySet.load(directory)


def ensure_keys(directory: Path) -> tuple[KeySet, bool]:
    """The key set of `directory`, generated there first if it holds none (`serve --dev`);
    True when it was generated now. An existing set is loaded as it is, never replaced."""
    directory = Path(directory)
    if (directory / ACTIVE).exists():
        return KeySet.load(directory), False
    # No active key: nothing was ever signed with this set, so a half-written one (next.pem
    # from an interrupted start) is replaced rather than blocking every later start.
    return generate_keys(directory, overwrite=True), True


def rotate_keys(directory: Path) -> KeySet:
    """previous <- active, active <- next, next <- a new key.

    Each step is one rename of a complete file, in an order that keeps a valid `active.pem`
    at every moment (a crash leaves a key in two slots, which is harmless).
    """
    directory = Path(directory)
    contents = _read_key_files(directory)
    if ACTIVE not in contents:
        raise KeyDirError(ERR_NO_ACTIVE.format(dir=directory, name=ACTIVE))
    if NEXT not in contents:
        raise KeyDirError(ERR_NO_NEXT.format(dir=directory, name=NEXT))
    KeySet.from_pems(contents, source=directory)  # refuse to rotate an unreadable set
    write_private(directory / PREVIOUS, contents[ACTIVE])
    write_private(directory / ACTIVE, contents[NEXT])
    write_private(directory / NEXT, private_pem(new_private_key()))
    return KeySet.load(directory)


# -- reloading ------------------------------------------------------------------------------------


class KeyWatcher:
    """The current KeySet of a directory, reloaded when its files' contents change.

    A Secret volume is updated by an atomic swap of the `..data` symlink, so file times are
    unreliable: compare a hash of the contents. Call it (`watcher()`) wherever a
    `Callable[[], KeySet]` is wanted; it checks the directory at most every `interval` seconds.
    A set that fails to load is logged and the last good one kept: a half-written update must
    not take signing down.
    """

    def __init__(
        self,
        directory: Path,
        *,
        interval: float = DEFAULT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self._clock = clock
        self._current = KeySet.load(self.directory)
        self._checked = clock()

    @property
    def current(self) -> KeySet:
        return self._current

    def __call__(self) -> KeySet:
        if self._clock() - self._checked >= self.interval:
            self.reload_if_changed()
        return self._current

    def reload_if_changed(self) -> bool:
        """Reload now if the contents changed; True when a new set was loaded."""
        self._checked = self._clock()
        try:
            contents = _read_key_files(self.directory)
            if _fingerprint(contents) == self._current.fingerprint:
                return False
            if ACTIVE not in contents:
                raise KeyDirError(ERR_NO_ACTIVE.format(dir=self.directory, name=ACTIVE))
            loaded = KeySet.from_pems(contents, source=self.directory)
        except KeyDirError as exc:
            log.error("signing keys not reloaded, keeping the current set: %s", exc)
            return False
        log.info(
            "signing keys reloaded: active %s, published %s",
            loaded.signing_kid,
            [key.kid for key in loaded.verification],
        )
        self._current = loaded
        return True
