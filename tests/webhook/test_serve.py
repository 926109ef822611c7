"""`kube-intent serve` as a real process: HTTPS, readiness, OPA supervision, certificate reload."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import EXAMPLES, REPO, example_pod, review
from webhook.opa_process import free_port
from webhook.settings import BUNDLED_POLICIES
from webhook.tls import ensure_dev_certificates


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

    def log_lines(self) -> list[dict[str, object]]:
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


@pytest.fixture
def dev_server(tmp_path: Path, opa_bin: str) -> Iterator[Server]:
    server = start(tmp_path, opa_bin, "--dev")
    yield server
    if server.process.poll() is None:
        stop(server)


def opa_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(c)
        for c in children
        if "opa" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
    ]


def test_dev_mode_serves_verified_https_and_logs_one_json_line_per_decision(
    dev_server: Server,
) -> None:
    with dev_server.client() as client:
        assert client.get("/readyz").status_code == 200
        response = client.post("/validate", json=review(example_pod("denied-model-allowed"))).json()
    assert response["response"]["allowed"] is False
    wait_until(
        lambda: any(line.get("msg") == "admission decision" for line in dev_server.log_lines()), 5
    )
    [decision] = [
        line for line in dev_server.log_lines() if line.get("msg") == "admission decision"
    ]
    assert decision["allowed"] is False
    assert decision["agent"] == "support-bot"
    assert decision["violations"] == [{"rule": "model-allowed", "enforcement": "deny"}] or any(
        v["rule"] == "model-allowed"
        for v in decision["violations"]  # type: ignore[union-attr]
    )
    assert "Traceback" not in dev_server.log.read_text()


def test_opa_is_restarted_when_it_dies_and_stopped_on_exit(dev_server: Server) -> None:
    [opa_pid] = opa_children(dev_server.process.pid)
    os.kill(opa_pid, signal.SIGKILL)
    with dev_server.client() as client:
        wait_until(lambda: opa_children(dev_server.process.pid) not in ([], [opa_pid]))
        wait_until(lambda: client.get("/readyz").status_code == 200)
        response = client.post("/mutate", json=review(example_pod("allowed-vllm-llama"))).json()
    assert response["response"]["allowed"] is True
    [new_pid] = opa_children(dev_server.process.pid)
    assert stop(dev_server) == 0
    assert (
        not Path(f"/proc/{new_pid}").exists()
        or "zombie" in Path(f"/proc/{new_pid}/status").read_text()
    )


EXTRA_RULE = """package kube_intent.admission

rule_catalog["test-extra"] := {"enforcement": "deny", "summary": "added while serving"}

violation contains new_violation("test-extra", "metadata", "denied by the extra rule")
"""
# Line 4 calls a function nobody defines.
BROKEN_RULE = """package kube_intent.admission

violation contains v if {
	v := no_such_function(1)
}
"""


def test_policy_changes_are_pushed_into_a_running_server(tmp_path: Path, opa_bin: str) -> None:
    policies = Path(shutil.copytree(BUNDLED_POLICIES, tmp_path / "policies"))
    extra = tmp_path / "extra"
    extra.mkdir()
    server = start(
        tmp_path,
        opa_bin,
        "--dev",
        "--policies",
        str(policies),
        "--extra-policies",
        str(extra),
        KUBE_INTENT_POLICY_RELOAD_SECONDS="0.2",
    )
    pod = review(example_pod("denied-model-allowed"))

    def answer(client: httpx.Client) -> dict[str, object]:
        response: dict[str, object] = client.post("/validate", json=pod).json()["response"]
        return response

    def logged(message: str) -> list[dict[str, object]]:
        return [line for line in server.log_lines() if line.get("msg") == message]

    try:
        with server.client() as client:
            wait_until(lambda: client.get("/readyz").status_code == 200)
            assert answer(client)["allowed"] is False
            # The main directory (in dev: a checkout's policies): a staged rollout in data.json.
            data = json.loads((policies / "data.json").read_text())
            data["kube_intent"]["config"]["enforcement"]["model-allowed"] = "warn"
            (policies / "data.json").write_text(json.dumps(data))
            changed = time.monotonic()
            wait_until(lambda: answer(client)["allowed"] is True, 10)
            assert time.monotonic() - changed < 5
            # The extra directory: a rule added.
            (extra / "test_extra.rego").write_text(EXTRA_RULE)
            wait_until(lambda: "[test-extra]" in json.dumps(answer(client)), 10)
            # A file OPA cannot compile: refused, logged with its line; the last good set decides.
            (extra / "broken.rego").write_text(BROKEN_RULE)
            wait_until(lambda: bool(logged("policies refused")), 10)
            assert client.get("/readyz").status_code == 200
            assert "[test-extra]" in json.dumps(answer(client))
        loaded = logged("policies loaded")
        assert [line["reason"] for line in loaded] == ["startup", "change", "change"]
        revisions = [line["revision"] for line in loaded]
        assert len(set(revisions)) == 3
        assert [line["previous"] for line in loaded] == [None, *revisions[:2]]
        [refused] = logged("policies refused")
        assert f"{extra / 'broken.rego'}:4" in str(refused["error"])
        assert refused["revision"] == revisions[-1]
        assert "Traceback" not in server.log.read_text()
    finally:
        stop(server)


def served_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as sock, context.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_rotated_certificate_files_are_served_without_a_restart(
    tmp_path: Path, opa_bin: str
) -> None:
    first = ensure_dev_certificates(tmp_path / "certs", ["127.0.0.1"])
    server = start(tmp_path, opa_bin, "--tls-cert", str(first.cert), "--tls-key", str(first.key))
    try:
        before = served_certificate(server.port).serial_number
        rotated = ensure_dev_certificates(tmp_path / "rotated", ["127.0.0.1"])
        # cert-manager style: the new pair replaces the old files in place.
        shutil.copy(rotated.key, first.key)
        shutil.copy(rotated.cert, first.cert)
        wait_until(lambda: served_certificate(server.port).serial_number != before, 10)
        assert (
            served_certificate(server.port).serial_number
            == x509.load_pem_x509_certificate(rotated.cert.read_bytes()).serial_number
        )
        with httpx.Client(
            base_url=server.url, verify=ssl.create_default_context(cafile=str(rotated.ca_cert))
        ) as client:
            metrics = client.get("/metrics").text
        expiry = x509.load_pem_x509_certificate(
            rotated.cert.read_bytes()
        ).not_valid_after_utc.timestamp()
        [family] = [
            f
            for f in text_string_to_metric_families(metrics)
            if f.name == "kube_intent_tls_cert_expiry_timestamp_seconds"
        ]
        assert family.samples[0].value == expiry
        assert server.process.poll() is None
    finally:
        stop(server)


def test_missing_tls_configuration_is_a_clear_error(tmp_path: Path, opa_bin: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--port",
            str(free_port()),
            "--state-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBE_INTENT_OPA_BIN": opa_bin},
    )
    assert result.returncode != 0
    assert "--dev or both --tls-cert and --tls-key" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_acknowledged_decision_is_lost_when_the_server_is_killed(
    tmp_path: Path, opa_bin: str
) -> None:
    """SIGKILL under load: every decision the client got an answer for is in the audit trail."""
    server = start(tmp_path, opa_bin, "--dev")
    acknowledged: list[str] = []
    pod = example_pod("denied-model-allowed")

    def load() -> None:
        with server.client() as client:
            for n in range(10_000):
                uid = f"kill-test-{n:05d}"
                try:
                    answer = client.post("/validate", json=review(pod, uid=uid)).json()
                except (httpx.HTTPError, ValueError):
                    return
                assert answer["response"]["uid"] == uid
                acknowledged.append(uid)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    wait_until(lambda: len(acknowledged) >= 100, 30)
    server.process.kill()
    for worker in workers:
        worker.join(timeout=30)
    server.process.wait(timeout=10)

    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "audit.db")) as conn:
        recorded = {uid for (uid,) in conn.execute("SELECT uid FROM audit_record")}
    assert len(acknowledged) >= 100
    assert set(acknowledged) <= recorded
