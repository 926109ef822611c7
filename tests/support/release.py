"""The chart installed with Helm in webhook.url mode, and what its ServiceAccount may do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

from tests.support.cluster import Cluster
from tests.support.helm import CHART, helm
from tests.support.kube import present, service_account_token
from tests.support.webhook_process import (
    Endpoint,
    WebhookServer,
    start_webhook,
    wait_until_called,
)

RELEASE = "kube-intent"


RELEASE_NAMESPACE = "kube-intent"


def install_url_mode(cluster: Cluster, endpoint: Endpoint, home: Path) -> str:
    """`helm install` the chart with webhook.url pointing at `endpoint`; its NOTES."""
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
    return installed.stdout.split("NOTES:", 1)[-1]


@dataclass
class Release:
    name: str
    namespace: str
    service_account: str
    endpoint: Endpoint
    helm_home: Path
    install_seconds: float
    notes: str


def service_account_kubeconfig(
    cluster: Cluster, core: client.CoreV1Api, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a TokenRequest token), so that the
    webhook runs with exactly the chart's RBAC, as it would in its pod."""
    token = service_account_token(
        core, namespace, name, client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
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


def can(
    api: client.ApiClient,
    release: Release,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
) -> bool:
    resource_name, _, subresource = resource.partition("/")
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{release.namespace}:{release.service_account}",
            groups=[
                "system:serviceaccounts",
                f"system:serviceaccounts:{release.namespace}",
                "system:authenticated",
            ],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb,
                group=group,
                resource=resource_name,
                subresource=subresource or None,
                namespace=namespace,
            ),
        )
    )
    answer = client.AuthorizationV1Api(api).create_subject_access_review(review)
    return bool(present(answer.status, "SubjectAccessReview status").allowed)


def serve_as_the_chart(
    cluster: Cluster, core: client.CoreV1Api, release: Release, *args: str
) -> WebhookServer:
    """`kube-intent serve` with the credentials of the chart's ServiceAccount (so the chart's
    least-privilege RBAC is what is tested), returned once the API server calls it."""
    kubeconfig = service_account_kubeconfig(
        cluster,
        core,
        release.namespace,
        release.service_account,
        release.endpoint.directory / "kubeconfig",
    )
    server = start_webhook(release.endpoint, f"--kubeconfig={kubeconfig}", *args)
    try:
        wait_until_called(core)
    except AssertionError:
        server.stop()
        raise
    return server
