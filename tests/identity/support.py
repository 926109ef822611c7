"""Helpers for the identity tests: an RFC 6902 applier, verdicts from real pods, token forgery."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import hmac
import http.server
import json
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from identity.binding import bind
from identity.intent import INTENT_ANNOTATION, parse_intent
from identity.registry import AgentRegistry
from webhook.decision import Verdict
from webhook.detect import DEFAULT_DEVICE_CLASSES, DEFAULT_RESOURCE_PATTERNS, AcceleratorDetector
from webhook.policy import PolicyDecision
from webhook.tls import ensure_dev_certificates

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "identity"

ISSUER = "https://kube-intent.kube-intent.svc"
TOKEN_ENDPOINT = ISSUER + "/token"
TRUST_DOMAIN = "prod.example.com"
SCOPES = (
    "data:internal:read",
    "egress:api.support.example.com:443",
    "model:meta-llama/Llama-3.1-8B-Instruct:infer",
    "tool:kb-search:invoke",
)


def admission_pod() -> dict[str, Any]:
    """tests/data/identity/admission-pod.json (a fresh copy)."""
    pod: dict[str, Any] = json.loads((DATA / "admission-pod.json").read_text())["pod"]
    return pod


# -- RFC 6902


class PatchError(Exception):
    pass


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"bad pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, insert: bool) -> int:
    if token == "-" and insert:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"bad array index {token!r}")
    index = int(token)
    if index > len(container) or (not insert and index == len(container)):
        raise PatchError(f"array index {index} out of range")
    return index


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """Apply add/replace/remove/test strictly (a missing parent is an error, as in RFC 6902)."""
    document = copy.deepcopy(document)
    for op in patch:
        tokens = _tokens(op["path"])
        if not tokens:
            raise PatchError("whole-document operations are not used here")
        parent: Any = document
        for token in tokens[:-1]:
            if isinstance(parent, list):
                parent = parent[_index(parent, token, insert=False)]
            elif isinstance(parent, dict) and token in parent:
                parent = parent[token]
            else:
                raise PatchError(f"{op['path']}: parent {token!r} does not exist")
        last = tokens[-1]
        kind = op["op"]
        if kind == "add":
            if isinstance(parent, list):
                parent.insert(_index(parent, last, insert=True), copy.deepcopy(op["value"]))
            elif isinstance(parent, dict):
                parent[last] = copy.deepcopy(op["value"])
            else:
                raise PatchError(f"{op['path']}: parent is not a container")
        elif kind in ("replace", "remove", "test"):
            if isinstance(parent, list):
                index = _index(parent, last, insert=False)
            elif isinstance(parent, dict) and last in parent:
                index = last  # type: ignore[assignment]
            else:
                raise PatchError(f"{op['path']}: {kind} target does not exist")
            if kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[index]
            elif parent[index] != op["value"]:
                raise PatchError(f"{op['path']}: test failed")
        else:
            raise PatchError(f"unsupported op {kind!r}")
    return document


# -- verdicts


def verdict_for(
    pod: dict[str, Any],
    registry: AgentRegistry,
    *,
    namespace: str = "ml-serving",
    scopes: tuple[str, ...] = SCOPES,
    grant_ttl: int = 900,
    allowed: bool = True,
    fail_open: bool = False,
) -> Verdict:
    """The verdict the decision path gives this pod, with a policy decision we choose."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    workload = AcceleratorDetector(DEFAULT_RESOURCE_PATTERNS, DEFAULT_DEVICE_CLASSES).detect(pod)
    decision = None
    if not fail_open:
        decision = PolicyDecision(allowed=allowed, scopes=list(scopes), grant_ttl_seconds=grant_ttl)
    return Verdict(
        allowed=allowed,
        workload=workload,
        intent=parse_intent(annotations.get(INTENT_ANNOTATION)),
        identity=bind(pod, namespace, registry, TRUST_DOMAIN),
        decision=decision,
        fail_open=fail_open,
    )


# -- forged tokens


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload))


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """`alg: none`: header.payload. with an empty signature."""
    return (
        f"{b64(json.dumps({**header, 'alg': 'none'}).encode())}.{b64(json.dumps(claims).encode())}."
    )


def hs256_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """The classic confusion: HMAC-SHA256 keyed with the verifier's *public* key bytes."""
    signing_input = (
        f"{b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def with_payload(token: str, claims: dict[str, Any]) -> str:
    """The same header and signature over an edited payload (tampering)."""
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


JWT_PATTERN = re.compile(r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")


def looks_like_jwt(text: str) -> bool:
    return JWT_PATTERN.fullmatch(text) is not None


# -- a real HTTPS server on loopback


@dataclass
class Exchange:
    """One request the server received, and the response it sent."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class HttpsServer:
    """ThreadingHTTPServer with TLS from a throwaway CA; `responses` are served in order
    (the last one repeats), every request is recorded."""

    url: str
    ca_file: Path
    responses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    requests: list[Exchange] = field(default_factory=list)


@contextlib.contextmanager
def https_server(directory: Path) -> Iterator[HttpsServer]:
    certs = ensure_dev_certificates(directory, ["127.0.0.1"])
    state = HttpsServer(url="", ca_file=certs.ca_cert)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            state.requests.append(
                Exchange(
                    self.command, self.path, self.rfile.read(length), dict(self.headers.items())
                )
            )
            index = min(len(state.requests), len(state.responses)) - 1
            status, body = state.responses[index] if state.responses else (404, {})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
