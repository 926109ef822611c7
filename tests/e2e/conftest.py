"""End-to-end fixtures: the control plane (session), a `kube-intent serve` process with a real
OPA (one per module), and the Helm chart installed in `webhook.url` mode pointing at it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from identity.keys import generate_keys
from tests.support import control_plane
from tests.support.cluster import Cluster, free_port
from tests.support.control_plane import pytest_runtest_makereport  # noqa: F401 - a hook for this dir
from tests.support.helm import helm
from tests.support.kube import (
    ensure_namespace,
    ensure_service_account,
    server_side_apply,
    wait_crd_established,
    wait_until,
)
from tests.support.manifests import SERVICE_ACCOUNTS, load_yaml
from tests.support.paths import EXAMPLES
from tests.support.release import (
    RELEASE,
    RELEASE_NAMESPACE,
    Release,
    install_url_mode,
    serve_as_the_chart,
)
from tests.support.webhook_process import Endpoint, WebhookServer
from webhook.tls import ensure_dev_certificates


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return control_plane.shared_cluster(request.config)


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


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    directory = tmp_path_factory.mktemp("webhook")
    certs = ensure_dev_certificates(directory / "certs", ["127.0.0.1"])
    return Endpoint(directory, free_port(), certs)


@pytest.fixture(scope="module")
def release(
    cluster: Cluster,
    namespaces: dict[str, list[str]],
    endpoint: Endpoint,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """`helm install` the chart with webhook.url pointing at the module's webhook."""
    control_plane.require_tools(["helm"])
    home = tmp_path_factory.mktemp("helm")
    started = time.monotonic()
    notes = install_url_mode(cluster, endpoint, home)
    yield Release(
        name=RELEASE,
        namespace=RELEASE_NAMESPACE,
        service_account=RELEASE,  # the chart's fullname for this release name
        endpoint=endpoint,
        helm_home=home,
        install_seconds=time.monotonic() - started,
        notes=notes,
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
    server = serve_as_the_chart(cluster, core, release)
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
    server = serve_as_the_chart(cluster, core, release, f"--keys-dir={directory / 'keys'}")
    yield server
    server.stop()
