"""End-to-end fixtures: the control plane (session), a `kube-intent serve` process with a real
OPA (one per module), and the Helm chart installed in `webhook.url` mode pointing at it."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from identity.keys import generate_keys
from tests.e2e import fixtures
from tests.e2e.cluster import REPO, WEBHOOK_CLIENT_NAME, Cluster, free_port, tail
from tests.e2e.fixtures import pytest_runtest_makereport  # noqa: F401 - a hook for this dir
from tests.e2e.kube import (
    CHART,
    api_error,
    ensure_namespace,
    ensure_service_account,
    helm,
    load_yaml,
    server_side_apply,
    wait_crd_established,
    wait_until,
)
from webhook.opa_process import find_opa
from webhook.tls import DevCertificates, ensure_dev_certificates

EXAMPLES = REPO / "examples"
RELEASE = "kube-intent"
RELEASE_NAMESPACE = "kube-intent"
# The namespaces and ServiceAccounts that examples/agents.yaml and examples/pods use.
SERVICE_ACCOUNTS = {
    "ml-serving": ["support-bot", "batch-eval"],
    "ml-research": ["research-agent"],
}


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return fixtures.shared_cluster(request.config)


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> client.ApiClient:
    return cluster.api_client()


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def namespaces(api: client.ApiClient, core: client.CoreV1Api) -> dict[str, list[str]]:
    """ml-serving and ml-research with the examples' ServiceAccounts (and their `default`)."""
    for namespace, accounts in SERVICE_ACCOUNTS.items():
        ensure_namespace(api, namespace)
        for account in accounts:
            ensure_service_account(api, namespace, account)

    def defaults_exist() -> bool:
        # The ServiceAccount admission plugin refuses pods whose account is missing; `default`
        # is created by the controller manager.
        try:
            for namespace in SERVICE_ACCOUNTS:
                core.read_namespaced_service_account("default", namespace)
        except ApiException:
            return False
        return True

    wait_until("the namespaces' default ServiceAccounts", defaults_exist)
    return SERVICE_ACCOUNTS


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
    cluster = fixtures.current_cluster()
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


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    directory = tmp_path_factory.mktemp("webhook")
    certs = ensure_dev_certificates(directory / "certs", ["127.0.0.1"])
    return Endpoint(directory, free_port(), certs)


@dataclass
class Release:
    name: str
    namespace: str
    service_account: str
    endpoint: Endpoint
    helm_home: Path
    install_seconds: float
    notes: str


@pytest.fixture(scope="module")
def release(
    cluster: Cluster,
    namespaces: dict[str, list[str]],
    endpoint: Endpoint,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """`helm install` the chart with webhook.url pointing at the module's webhook."""
    fixtures.require_tools(["helm"])
    home = tmp_path_factory.mktemp("helm")
    started = time.monotonic()
    installed = helm(
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={RELEASE_NAMESPACE}",
        "--create-namespace",
        f"--set=webhook.url={endpoint.url}",
        f"--set-file=tls.caBundle={endpoint.certs.ca_cert}",
        # The in-cluster Deployment is rendered too but never runs (no kubelet); its SQLite
        # volume claim would stay Pending (and is kept on uninstall), so leave it out here.
        "--set=audit.sqlite.persistence.enabled=false",
        "--timeout=60s",
        kubeconfig=cluster.kubeconfig,
        home=home,
    )
    yield Release(
        name=RELEASE,
        namespace=RELEASE_NAMESPACE,
        service_account=RELEASE,  # the chart's fullname for this release name
        endpoint=endpoint,
        helm_home=home,
        install_seconds=time.monotonic() - started,
        notes=installed.stdout.split("NOTES:", 1)[-1],
    )
    helm(
        "uninstall",
        RELEASE,
        f"--namespace={RELEASE_NAMESPACE}",
        "--wait",
        "--timeout=60s",
        kubeconfig=cluster.kubeconfig,
        home=home,
        check=False,
    )


@pytest.fixture(scope="module")
def example_agents(api: client.ApiClient, release: Release) -> list[dict[str, Any]]:
    """examples/agents.yaml as Agent objects (the CRD came with the chart)."""
    wait_crd_established(api, "agents.kube-intent.io")
    agents = load_yaml(EXAMPLES / "agents.yaml")
    for agent in agents:
        server_side_apply(api, agent)
    return agents


def service_account_kubeconfig(
    cluster: Cluster, core: client.CoreV1Api, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a TokenRequest token), so that the
    webhook runs with exactly the chart's RBAC, as it would in its pod."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = core.create_namespaced_service_account_token(name, namespace, request).status.token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": cluster.api_url,
                    "certificate-authority": str(cluster.ca_cert),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "e2e", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


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
            core.create_namespaced_pod("ml-serving", GPU_PROBE_POD, dry_run="All")
        except ApiException as exc:
            return "kube-intent denied pod" in str(api_error(exc).get("message", ""))
        return False

    wait_until("the API server to call the installed webhooks", called, timeout=30)


@pytest.fixture(scope="module")
def webhook(
    cluster: Cluster,
    core: client.CoreV1Api,
    release: Release,
    example_agents: list[dict[str, Any]],
) -> Iterator[WebhookServer]:
    """`kube-intent serve` as it runs in the chart's pod: registrations from the cluster's Agent
    objects (watched), DRA claims resolved with cluster reads, credentials of the chart's
    ServiceAccount (so its least-privilege RBAC is what is tested)."""
    kubeconfig = service_account_kubeconfig(
        cluster,
        core,
        release.namespace,
        release.service_account,
        release.endpoint.directory / "kubeconfig",
    )
    server = start_webhook(release.endpoint, f"--kubeconfig={kubeconfig}")
    try:
        wait_until_called(core)
    except AssertionError:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_webhook(
    cluster: Cluster,
    core: client.CoreV1Api,
    release: Release,
    example_agents: list[dict[str, Any]],
) -> Iterator[WebhookServer]:
    """`kube-intent serve` with grants, as the chart runs it: the chart's ServiceAccount,
    Agents from the cluster, signing keys from a directory (the mounted Secret)."""
    directory = release.endpoint.directory
    generate_keys(directory / "keys")
    kubeconfig = service_account_kubeconfig(
        cluster, core, release.namespace, release.service_account, directory / "kubeconfig"
    )
    server = start_webhook(
        release.endpoint, f"--kubeconfig={kubeconfig}", f"--keys-dir={directory / 'keys'}"
    )
    wait_until_called(core)
    yield server
    server.stop()
