"""Serving TLS: a self-signed dev CA, and hot reload of rotated certificate files."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("kube_intent.tls")

DEV_CERT_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class DevCertificates:
    ca_cert: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def cert_not_after(path: Path) -> dt.datetime:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


def ensure_dev_certificates(directory: Path, hosts: list[str]) -> DevCertificates:
    """Create (or reuse while valid) a CA and a serving certificate for `hosts`."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = DevCertificates(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    now = dt.datetime.now(dt.UTC)
    existing = all(p.exists() for p in (files.ca_cert, files.cert, files.key))
    if existing and cert_not_after(files.cert) - now > RENEW_BEFORE:
        return files

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kube-intent dev CA"))
        .issuer_name(_name("kube-intent dev CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=DEV_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0] if hosts else "localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=DEV_CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    (directory / "ca.key").unlink(missing_ok=True)  # the dev CA signs once; its key is not kept
    return files


class CertReloader:
    """Reloads the serving certificate into the live SSLContext when the files change.

    cert-manager and kubelet swap Secret files atomically; new handshakes pick up the new
    certificate while established connections keep theirs, so there is no restart.
    """

    def __init__(
        self, context: ssl.SSLContext, cert: Path, key: Path, interval: float = 5.0
    ) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self.interval = interval
        self._fingerprint = self._read_fingerprint()

    def _read_fingerprint(self) -> str:
        return hashlib.sha256(self.cert.read_bytes() + b"\0" + self.key.read_bytes()).hexdigest()

    def check(self) -> bool:
        """Reload if the files changed; returns True when a new certificate was loaded."""
        try:
            fingerprint = self._read_fingerprint()
            if fingerprint == self._fingerprint:
                return False
            self.context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            # A half-written pair is retried next tick; the old certificate keeps serving.
            log.warning("serving certificate not reloaded: %s", exc)
            return False
        self._fingerprint = fingerprint
        log.info(
            "reloaded serving certificate %s (expires %s)", self.cert, cert_not_after(self.cert)
        )
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
