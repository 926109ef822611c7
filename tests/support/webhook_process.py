"""`kube-intent serve` on loopback as the e2e control plane calls it (mutual TLS, a real OPA)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.support import control_plane
from tests.support.cluster import WEBHOOK_CLIENT_NAME, tail
from tests.support.kube import (
    api_error,
    as_body,
    wait_until,
)
from tests.support.paths import REPO
from webhook.opa_process import find_opa
from webhook.tls import DevCertificates


@dataclass(frozen=True)
class Endpoint:
    """Where the module's webhook will listen, and the dev CA that verifies it (known before
    the chart is installed, which needs both)."""

    directory: Path
    port: int
    certs: DevCertificates

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class WebhookServer:
    """`kube-intent serve` on 127.0.0.1 with its own supervised OPA."""

    process: subprocess.Popen[bytes]
    endpoint: Endpoint
    log: Path
    state_dir: Path

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def ca(self) -> Path:
        return self.endpoint.certs.ca_cert

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=5
        )

    def admission_requests(self) -> dict[tuple[str, str, str], float]:
        """kube_intent_admission_requests_total by (webhook, operation, decision)."""
        with self.client() as http:
            text = http.get("/metrics").text
        counts: dict[tuple[str, str, str], float] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "kube_intent_admission_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    key = (labels["webhook"], labels["operation"], labels["decision"])
                    counts[key] = sample.value
        return counts

    def calls(self) -> float:
        return sum(self.admission_requests().values())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def client_ca_args() -> list[str]:
    """Mutual TLS as production should run it: only the API server may send reviews."""
    cluster = control_plane.current_cluster()
    if cluster is None or cluster.pki is None:
        return []
    return [
        f"--client-ca={cluster.pki.webhook_client_ca}",
        f"--client-cert-name={WEBHOOK_CLIENT_NAME}",
    ]


def start_webhook(endpoint: Endpoint, *args: str) -> WebhookServer:
    directory = endpoint.directory
    log = directory / "serve.log"
    env = {
        **os.environ,
        "KUBE_INTENT_OPA_BIN": find_opa(os.environ.get("KUBE_INTENT_OPA_BIN")),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook",
                "serve",
                "--host=127.0.0.1",
                f"--port={endpoint.port}",
                f"--state-dir={directory / 'state'}",
                f"--tls-cert={endpoint.certs.cert}",
                f"--tls-key={endpoint.certs.key}",
                *client_ca_args(),
                *args,
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = WebhookServer(process, endpoint, log, directory / "state")

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"kube-intent serve exited ({process.returncode}):\n{tail(log)}")
        try:
            with server.client() as http:
                return http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until("kube-intent serve /readyz", ready, timeout=60)
    except AssertionError as exc:
        server.stop()
        raise AssertionError(f"{exc}; kube-intent serve log:\n{tail(log)}") from None
    return server


# The pod NOTES.txt tells users to try with `kubectl run --dry-run=server`: a GPU, no agent, no
# intent; it must be denied.
GPU_PROBE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"generateName": "probe-"},
    "spec": {
        "containers": [
            {
                "name": "probe",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }
        ]
    },
}


def wait_until_called(core: client.CoreV1Api) -> None:
    """The API server picks up webhook configurations asynchronously: wait until a GPU pod
    reaches the webhook (a dry run, so nothing is stored)."""

    def called() -> bool:
        try:
            core.create_namespaced_pod("ml-serving", as_body(GPU_PROBE_POD), dry_run="All")
        except ApiException as exc:
            return "kube-intent denied pod" in str(api_error(exc).get("message", ""))
        return False

    wait_until("the API server to call the installed webhooks", called, timeout=30)
