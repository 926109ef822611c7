"""Mutual TLS: with a client CA, only the API server's certificate gets admission decisions.

A network neighbour who reaches the port must not be able to write audit rows or mint
grants; the probes, JWKS and token endpoint stay reachable without a certificate.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from tests.support.admission import review
from tests.support.manifests import example_pod
from tests.support.servers import Server, start, stop, wait_until
from webhook.client_auth import ClientCertificates, tracking_protocol
from webhook.opa_process import free_port
from webhook.routes.admission import ERR_CLIENT_CERT
from webhook.tls import ensure_dev_certificates

API_SERVER = "kube-apiserver-webhook-client"


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def client_pki(directory: Path, *names: str) -> tuple[Path, dict[str, ClientCert]]:
    """A client CA and one client certificate (CN = name) per name."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{directory.name} client CA"))
        .issuer_name(_name(f"{directory.name} client CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs = {}
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256())
        )
        files = ClientCert(directory / f"{name}.crt", directory / f"{name}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        certs[name] = files
    return ca_path, certs


def client(server: Server, cert: ClientCert | None = None) -> httpx.Client:
    return https_client(server.url, server.ca, cert)


def https_client(url: str, ca: Path, cert: ClientCert | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return httpx.Client(base_url=url, verify=context, timeout=5)


def audit_rows(server: Server, uid: str) -> list[int]:
    """The `authenticated` column of the rows recorded for this request uid."""
    db = server.log.parent / "state" / "audit.db"
    with sqlite3.connect(db) as conn:
        query = "SELECT authenticated FROM audit_record WHERE uid = ? ORDER BY seq"
        return [row[0] for row in conn.execute(query, (uid,))]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ClientCert]]:
    directory = tmp_path_factory.mktemp("pki") / "apiserver"
    return client_pki(directory, API_SERVER, "some-other-client")


@pytest.fixture(scope="module")
def mtls_server(
    tmp_path_factory: pytest.TempPathFactory,
    opa_bin: str,
    pki: tuple[Path, dict[str, ClientCert]],
) -> Iterator[Server]:
    ca, _ = pki
    tmp_path = tmp_path_factory.mktemp("mtls")
    server = start(
        tmp_path, opa_bin, "--dev", f"--client-ca={ca}", f"--client-cert-name={API_SERVER}"
    )
    yield server
    if server.process.poll() is None:
        stop(server)


def denied_review(uid: str) -> dict[str, object]:
    body = review(example_pod("denied-model-allowed"))
    body["request"]["uid"] = uid
    return body


def test_the_api_servers_certificate_gets_a_decision_and_an_authenticated_row(
    mtls_server: Server, pki: tuple[Path, dict[str, ClientCert]]
) -> None:
    _, certs = pki
    with client(mtls_server, certs[API_SERVER]) as http:
        response = http.post("/validate", json=denied_review("from-the-api-server"))
    assert response.status_code == 200
    assert response.json()["response"]["allowed"] is False
    assert audit_rows(mtls_server, "from-the-api-server") == [1]


@pytest.mark.parametrize("path", ["/mutate", "/validate"])
@pytest.mark.parametrize("who", ["no-certificate", "other-name"])
def test_a_caller_that_is_not_the_api_server_gets_no_decision_and_no_row(
    mtls_server: Server, pki: tuple[Path, dict[str, ClientCert]], path: str, who: str
) -> None:
    _, certs = pki
    cert = certs["some-other-client"] if who == "other-name" else None
    with client(mtls_server, cert) as http:
        response = http.post(path, json=denied_review(f"forged-{who}"))
    assert response.status_code == 401
    assert response.json() == {"error": ERR_CLIENT_CERT}
    assert audit_rows(mtls_server, f"forged-{who}") == []


def test_a_certificate_from_another_ca_fails_the_handshake(
    mtls_server: Server, tmp_path: Path
) -> None:
    _, foreign = client_pki(tmp_path / "foreign", API_SERVER)
    # TLS 1.3: the client learns of the refusal when the server closes the connection.
    refused = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)
    with client(mtls_server, foreign[API_SERVER]) as http, pytest.raises(refused):
        http.post("/validate", json=denied_review("foreign"))


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_and_metrics_need_no_client_certificate(mtls_server: Server, path: str) -> None:
    with client(mtls_server) as http:
        assert http.get(path).status_code == 200


def test_without_a_client_ca_rows_say_the_caller_was_not_authenticated(
    tmp_path: Path, opa_bin: str
) -> None:
    server = start(tmp_path, opa_bin, "--dev")
    try:
        with client(server) as http:
            assert http.post("/validate", json=denied_review("anyone")).status_code == 200
        assert audit_rows(server, "anyone") == [0]
    finally:
        stop(server)


def test_closed_connections_are_forgotten(tmp_path: Path) -> None:
    """A verified peer is dropped when its connection closes, or a later connection from the
    same address and port would inherit the authentication (and the set would only grow)."""
    ca, certs = client_pki(tmp_path / "apiserver", API_SERVER)
    serving = ensure_dev_certificates(tmp_path / "tls", ["127.0.0.1"])
    verified = ClientCertificates([API_SERVER])
    seen: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(verified.authenticated(scope["client"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(serving.cert),
        ssl_keyfile=str(serving.key),
        ssl_ca_certs=str(ca),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        http=tracking_protocol(AutoHTTPProtocol, verified),
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        for cert in (certs[API_SERVER], None, certs[API_SERVER]):
            with https_client(f"https://127.0.0.1:{port}", serving.ca_cert, cert) as http:
                assert http.get("/").status_code == 204
        wait_until(lambda: len(verified) == 0)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert seen == [True, False, True]
