"""`kube-intent serve` as a real process: HTTPS, readiness, OPA supervision, certificate reload,
the dev key set (grants, JWKS, /token without a cluster)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from identity.exchange import (
    ERR_NO_CLUSTER,
    GRANT_TYPE_TOKEN_EXCHANGE,
    TOKEN_TYPE_GRANT,
    TOKEN_TYPE_JWT,
)
from identity.grants import GRANT_ANNOTATION, token_endpoint_for
from identity.keys import KeySet, generate_keys
from tests.support.admission import apply_patch, review
from tests.support.cli import run_cli
from tests.support.manifests import example_pod
from tests.support.servers import Server, start, stop, wait_until
from webhook.opa_process import free_port
from webhook.settings import BUNDLED_POLICIES, Settings
from webhook.tls import ensure_dev_certificates


@pytest.fixture
def dev_server(tmp_path: Path, opa_bin: str) -> Iterator[Server]:
    server = start(tmp_path, opa_bin, "--dev")
    yield server
    if server.process.poll() is None:
        stop(server)


def admit(
    client: httpx.Client, request: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What the API server does: /mutate, then /validate of the patched pod when /mutate
    allowed it. The last answer, and the patched pod (None when /mutate denied it)."""
    mutated: dict[str, Any] = client.post("/mutate", json=request).json()["response"]
    if not mutated["allowed"]:
        return mutated, None
    patch = json.loads(base64.b64decode(mutated["patch"])) if "patch" in mutated else []
    pod = apply_patch(request["request"]["object"], patch)
    final = {**request, "request": {**request["request"], "object": pod}}
    validated: dict[str, Any] = client.post("/validate", json=final).json()["response"]
    return validated, pod


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
        v["rule"] == "model-allowed" for v in decision["violations"]
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

    def answer(client: httpx.Client) -> dict[str, Any]:
        return admit(client, pod)[0]

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
    result = run_cli(
        "serve",
        "--port",
        str(free_port()),
        "--state-dir",
        tmp_path,
        env={**os.environ, "KUBE_INTENT_OPA_BIN": opa_bin},
        timeout=60,
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


# -- the dev key set: grants, JWKS and /token on the embedded default

ISSUER = str(Settings.model_fields["issuer"].default)


def verify_grant(server: Server, grant: str) -> subprocess.CompletedProcess[str]:
    """`kube-intent token verify --grant` against the JWKS the server publishes."""
    return run_cli(
        "token",
        "verify",
        "--grant",
        "--jwks",
        f"{server.url}/.well-known/jwks.json",
        "--ca-file",
        server.ca,
        "--issuer",
        ISSUER,
        "--audience",
        token_endpoint_for(ISSUER),
        "-",
        stdin=grant,
        timeout=60,
    )


def dev_keys_notice(server: Server) -> str:
    [line] = [line for line in server.log.read_text().splitlines() if "dev signing keys" in line]
    return line


def served_kids(server: Server) -> set[str]:
    with server.client() as client:
        return {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}


def test_dev_server_keeps_a_key_set_whose_grants_verify_against_the_served_jwks(
    tmp_path: Path, opa_bin: str
) -> None:
    keys_dir = tmp_path / "state" / "keys"
    server = start(tmp_path, opa_bin, "--dev")
    try:
        assert "generated" in dev_keys_notice(server)
        assert str(keys_dir) in dev_keys_notice(server)
        assert keys_dir.stat().st_mode & 0o777 == 0o700
        assert {p.name: p.stat().st_mode & 0o777 for p in keys_dir.iterdir()} == {
            "active.pem": 0o600,
            "next.pem": 0o600,
        }
        kid = KeySet.load(keys_dir).signing_kid
        assert kid in served_kids(server)
        with server.client() as client:
            discovery = client.get("/.well-known/openid-configuration").json()
            # The API server's order: the grant from /mutate is what /validate then accepts.
            answer, pod = admit(client, review(example_pod("allowed-vllm-llama")))
        assert discovery["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
        assert answer["allowed"] is True, answer
        assert pod is not None
        grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
        verified = verify_grant(server, grant)
        assert verified.returncode == 0, verified.stderr
        claims = json.loads(verified.stdout)
        assert (claims["agent"], claims["ns"], claims["sa"]) == (
            "support-bot",
            "ml-serving",
            "support-bot",
        )
        # The same grant with one more scope: its signature no longer matches.
        header, _, signature = grant.split(".")
        escalated = jws_segment({**claims, "scope": claims["scope"] + " tool:shell:invoke"})
        refused = verify_grant(server, f"{header}.{escalated}.{signature}")
        assert (refused.returncode, refused.stderr.strip()) == (1, "refused: signature")
    finally:
        stop(server)

    restarted = start(tmp_path, opa_bin, "--dev")
    try:
        assert "reused" in dev_keys_notice(restarted)
        assert KeySet.load(keys_dir).signing_kid == kid
        assert kid in served_kids(restarted)
        # Grants minted before the restart still verify.
        assert verify_grant(restarted, grant).returncode == 0
    finally:
        stop(restarted)


def test_keys_given_explicitly_win_over_the_dev_keys(tmp_path: Path, opa_bin: str) -> None:
    given = generate_keys(tmp_path / "given")
    server = start(tmp_path, opa_bin, "--dev", "--keys-dir", str(tmp_path / "given"))
    try:
        assert served_kids(server) == {key.kid for key in given.verification}
        assert not (tmp_path / "state" / "keys").exists()
        assert "dev signing keys" not in server.log.read_text()
        with server.client() as client:
            _, pod = admit(client, review(example_pod("allowed-vllm-llama")))
        assert pod is not None
        assert (
            verify_grant(server, pod["metadata"]["annotations"][GRANT_ANNOTATION]).returncode == 0
        )
    finally:
        stop(server)


def test_an_empty_keys_dir_is_a_clear_error(tmp_path: Path, opa_bin: str) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(
        "serve",
        "--dev",
        "--port",
        str(free_port()),
        "--state-dir",
        tmp_path / "state",
        "--keys-dir",
        tmp_path / "empty",
        env={**os.environ, "KUBE_INTENT_OPA_BIN": opa_bin},
        timeout=60,
    )
    assert result.returncode == 1
    assert "has no active.pem: create a key set with `kube-intent keys generate`" in result.stderr
    assert "Traceback" not in result.stderr


def exchange_form(subject_token: str, grant: str) -> dict[str, str]:
    return {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": TOKEN_TYPE_JWT,
        "actor_token": grant,
        "actor_token_type": TOKEN_TYPE_GRANT,
        "audience": "inference-gateway",
    }


def jws_segment(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


# What an API server issues (RS256, a kid, no typ); not signed by any API server here.
SERVICE_ACCOUNT_SHAPED = (
    f"{jws_segment({'alg': 'RS256', 'kid': 'k'})}.{jws_segment({'sub': 'x'})}.c2lnbmF0dXJl"
)


@pytest.mark.parametrize(
    ("subject_token", "status", "body"),
    [
        pytest.param(
            "garbage",
            400,
            {
                "error": "invalid_grant",
                "error_description": "the subject token or the grant is invalid, expired or "
                "revoked",
            },
            id="malformed-refused-at-once",
        ),
        pytest.param(
            SERVICE_ACCOUNT_SHAPED,
            503,
            {"error": "temporarily_unavailable", "error_description": ERR_NO_CLUSTER},
            id="well-formed-needs-a-cluster",
        ),
    ],
)
def test_token_endpoint_of_the_dev_server_without_a_cluster(
    dev_server: Server, subject_token: str, status: int, body: dict[str, str]
) -> None:
    with dev_server.client() as client:
        _, pod = admit(client, review(example_pod("allowed-vllm-llama")))
        assert pod is not None
        grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
        response = client.post("/token", data=exchange_form(subject_token, grant))
    assert (response.status_code, response.json()) == (status, body)
    assert response.headers["cache-control"] == "no-store"
    assert subject_token not in dev_server.log.read_text()
    assert grant not in dev_server.log.read_text()
