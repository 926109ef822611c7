"""Who is calling: the API server can prove itself with a TLS client certificate.

Anyone who can reach the webhook's port can POST an AdmissionReview. With a client CA
configured (`--client-ca`), the TLS handshake verifies any certificate a client presents, and
the admission routes refuse callers that presented none: only the API server, configured with
a client certificate through its `AdmissionConfiguration` kubeconfig, gets decisions, grants
and audit rows. The token endpoint, JWKS, probes and metrics stay reachable without one
(pods and kubelets have no client certificate), which is why the handshake asks for a
certificate instead of requiring it.

uvicorn does not put the peer certificate in the ASGI scope, so the HTTP protocol class is
wrapped to note each verified connection by its peer address, which the scope does carry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.utils import get_remote_addr

Peer = tuple[str, int]


def certificate_names(cert: dict[str, Any]) -> set[str]:
    """Subject common names and DNS/URI subject alternative names of a verified certificate."""
    names = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names.update(value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "URI"))
    return names


class ClientCertificates:
    """The live TLS connections whose client presented a certificate the CA verified.

    `allowed_names`, when not empty, narrows that to certificates naming one of them (subject
    CN or SAN): the client CA may also sign certificates for other clients.
    """

    def __init__(self, allowed_names: Iterable[str] = ()) -> None:
        self.allowed_names = frozenset(allowed_names)
        self._verified: set[Peer] = set()

    def connected(self, transport: asyncio.BaseTransport) -> Peer | None:
        """Note the connection if its certificate passes; returns the peer to forget later."""
        ssl_object = transport.get_extra_info("ssl_object")
        address = get_remote_addr(transport)  # type: ignore[arg-type]
        if ssl_object is None or address is None:
            return None
        # The handshake is over (asyncio calls connection_made after it); a certificate here
        # chains to the client CA, or the handshake would have failed.
        cert = ssl_object.getpeercert()
        if not cert:
            return None
        if self.allowed_names and not (certificate_names(cert) & self.allowed_names):
            return None
        peer = (address[0], address[1])
        self._verified.add(peer)
        return peer

    def disconnected(self, peer: Peer | None) -> None:
        # The peer noted at connect time: a closed transport may no longer say who it was.
        if peer is not None:
            self._verified.discard(peer)

    def authenticated(self, client: Any) -> bool:
        """`client` is the ASGI scope's ("host", port) of the request's connection."""
        if not client or len(client) != 2:
            return False
        return (client[0], client[1]) in self._verified

    def __len__(self) -> int:
        return len(self._verified)


def tracking_protocol(base: type[asyncio.Protocol], certificates: ClientCertificates) -> type:
    """uvicorn's HTTP protocol class, noting verified client certificates per connection."""

    class CertificateTracking(base):  # type: ignore[valid-type,misc]
        verified_peer: Peer | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.verified_peer = certificates.connected(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            certificates.disconnected(self.verified_peer)
            super().connection_lost(exc)

    return CertificateTracking
