"""Servers the tests run for real: `kube-intent serve` as a process, a loopback HTTPS server."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.paths import EXAMPLES, REPO
from webhook.opa_process import free_port
from webhook.tls import ensure_dev_certificates


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


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    ca: Path
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=5
        )

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def start(tmp_path: Path, opa_bin: str, *args: str, **variables: str) -> Server:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "KUBE_INTENT_OPA_BIN": opa_bin,
        "KUBE_INTENT_TLS_RELOAD_SECONDS": "0.2",
        **variables,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
            "--agents",
            str(EXAMPLES / "agents.yaml"),
            *args,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    ca = tmp_path / "state" / "tls" / "ca.crt" if "--dev" in args else tmp_path / "certs" / "ca.crt"
    server = Server(process, f"https://127.0.0.1:{port}", port, ca, log)
    try:
        wait_until(lambda: server.client().get("/healthz").status_code == 200)
    except AssertionError:
        process.kill()
        raise AssertionError(f"server did not start:\n{log.read_text()}") from None
    return server


def stop(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=20)
