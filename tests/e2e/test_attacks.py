"""The two promises, attacked the way a pod author with the built-in `edit` role would.

1. No pod reaches an accelerator without a reviewed intent and a bound identity.
2. No token is minted for a pod that was not reviewed, allowed and recorded.

Everything here runs against the real API server (the chart's webhook configurations, mutual
TLS from the API server), `kube-intent serve` with signing keys and the real OPA. Each test
is one attempt; it asserts the secure outcome, not the mechanism.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from identity.grants import ENV_TOKEN_ENDPOINT, GRANT_ANNOTATION
from tests.support.admission import review
from tests.support.cluster import Cluster
from tests.support.grants import ISSUER
from tests.support.kube import api_error, as_body, as_dict
from tests.support.manifests import example_pod
from tests.support.pods import create, exchange, pod_token, quantities_as_strings
from tests.support.webhook_process import WebhookServer
from webhook.routes.admission import ERR_CLIENT_CERT

pytestmark = pytest.mark.e2e

NAMESPACE = "ml-serving"
ATTACKER = "mallory"
INTENT = "kube-intent.io/intent"
NIC_CLASS = {"deviceClassName": "dranet.net"}


@pytest.fixture(scope="module")
def webhook(keyed_webhook: WebhookServer) -> WebhookServer:
    return keyed_webhook


@pytest.fixture(scope="module")
def attacker(cluster: Cluster, api: client.ApiClient) -> Iterator[client.CoreV1Api]:
    """A user bound to the built-in `edit` ClusterRole in the namespace, and nothing else."""
    rbac = client.RbacAuthorizationV1Api(api)
    name = f"{ATTACKER}-edit-{secrets.token_hex(2)}"
    rbac.create_namespaced_role_binding(
        NAMESPACE,
        as_body(
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "edit",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ATTACKER}
                ],
            }
        ),
    )
    impersonating = client.ApiClient(
        api.configuration, header_name="Impersonate-User", header_value=ATTACKER
    )
    yield client.CoreV1Api(impersonating)
    rbac.delete_namespaced_role_binding(name, NAMESPACE)


def as_pod(created: Any, api_client: client.ApiClient) -> dict[str, Any]:
    return as_dict(api_client, created)


def fresh(example: str) -> dict[str, Any]:
    pod = quantities_as_strings(example_pod(example))
    pod["metadata"]["name"] += f"-{secrets.token_hex(3)}"
    return pod


def audit_uids(webhook: WebhookServer) -> set[str]:
    with sqlite3.connect(webhook.state_dir / "audit.db") as conn:
        return {row[0] for row in conn.execute("SELECT uid FROM audit_record")}


# -- promise 2: no token without an allowed, recorded admission --------------------------------


def test_a_server_side_dry_run_gets_no_grant(
    webhook: WebhookServer, attacker: client.CoreV1Api
) -> None:
    """A dry run leaves no audit row: what it returns must not be a usable grant."""
    pod = fresh("allowed-vllm-llama")
    answer = as_pod(
        attacker.create_namespaced_pod(NAMESPACE, as_body(pod), dry_run="All"), attacker.api_client
    )
    assert GRANT_ANNOTATION not in answer["metadata"]["annotations"]
    # The volumes and env a real request gets are shown; only the signed part is missing.
    assert "kube-intent-grant" in {v["name"] for v in answer["spec"]["volumes"]}


def test_a_grant_copied_onto_a_nic_only_dra_pod_buys_nothing(
    webhook: WebhookServer,
    core: client.CoreV1Api,
    attacker: client.CoreV1Api,
    api: client.ApiClient,
) -> None:
    """The NIC claim keeps the pod away from review (no accelerator), and a claim does not make
    a pod governed at /token unless it resolves to an accelerator class."""
    source = create(core, "allowed-vllm-llama")
    annotations = source["metadata"]["annotations"]
    claim_name = f"nic-{secrets.token_hex(3)}"
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "resource.k8s.io",
        "v1",
        NAMESPACE,
        "resourceclaims",
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": claim_name},
            "spec": {
                "devices": {
                    "requests": [{"name": "nic", "exactly": {"deviceClassName": "dranet.net"}}]
                }
            },
        },
    )
    copycat = fresh("allowed-vllm-llama")
    copycat["metadata"]["annotations"] = {
        key: annotations[key] for key in (INTENT, GRANT_ANNOTATION, "kube-intent.io/intent-digest")
    }
    container = copycat["spec"]["containers"][0]
    del container["resources"]["limits"]["nvidia.com/gpu"]
    container["resources"]["claims"] = [{"name": "nic"}]
    copycat["spec"]["resourceClaims"] = [{"name": "nic", "resourceClaimName": claim_name}]
    created = as_pod(
        attacker.create_namespaced_pod(NAMESPACE, as_body(copycat)), attacker.api_client
    )
    grant = annotations[GRANT_ANNOTATION]
    assert exchange(webhook, pod_token(core, created, ISSUER), grant).json()["error"] == (
        "invalid_grant"
    )
    # Not even once the pod it was minted for is gone.
    core.delete_namespaced_pod(source["metadata"]["name"], NAMESPACE, grace_period_seconds=0)
    assert exchange(webhook, pod_token(core, created, ISSUER), grant).json()["error"] == (
        "invalid_grant"
    )


def test_a_review_sent_from_the_network_gets_no_decision_and_no_row(
    webhook: WebhookServer,
) -> None:
    """A neighbour who reaches the port cannot write audit rows or mint grants: only the API
    server's client certificate gets an answer."""
    body = review(example_pod("allowed-vllm-llama"))
    body["request"]["uid"] = uid = f"forged-{secrets.token_hex(4)}"
    for path in ("/mutate", "/validate"):
        with webhook.client() as http:
            response = http.post(path, json=body)
        assert response.status_code == 401
        assert response.json() == {"error": ERR_CLIENT_CERT}
    assert uid not in audit_uids(webhook)


def test_an_admitted_pods_row_says_the_api_server_sent_it(
    webhook: WebhookServer, core: client.CoreV1Api
) -> None:
    pod = create(core, "allowed-vllm-llama")
    with sqlite3.connect(webhook.state_dir / "audit.db") as conn:
        rows = conn.execute(
            "SELECT allowed, authenticated FROM audit_record WHERE pod_uid = ?",
            (pod["metadata"]["uid"],),
        ).fetchall()
    assert rows == [(1, 1)]


# -- promise 1: governed fields and the mutation's own names cannot be bent ---------------------


def test_a_status_write_cannot_change_the_agent_or_intent(
    webhook: WebhookServer, core: client.CoreV1Api
) -> None:
    """pods/status also writes labels and annotations (for whoever may write status)."""
    pod = create(core, "allowed-vllm-llama")
    name = pod["metadata"]["name"]
    for patch in (
        {"metadata": {"labels": {"kube-intent.io/agent": "batch-eval"}}},
        {"metadata": {"annotations": {INTENT: json.dumps({"purpose": "inference"})}}},
    ):
        with pytest.raises(ApiException) as refused:
            core.patch_namespaced_pod_status(name, NAMESPACE, patch)
        assert "[immutable-governed-fields]" in api_error(refused.value)["message"]
    # What the kubelet writes never reaches the webhook, and goes through.
    core.patch_namespaced_pod_status(
        name, NAMESPACE, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )


def test_a_duplicate_token_endpoint_env_cannot_win(
    webhook: WebhookServer, attacker: client.CoreV1Api
) -> None:
    """The API server keeps duplicate env names and the container gets the last one."""
    pod = fresh("allowed-vllm-llama")
    pod["spec"]["containers"][0]["env"] = [
        {"name": ENV_TOKEN_ENDPOINT, "value": "https://attacker.example/token"},
        {"name": ENV_TOKEN_ENDPOINT, "value": "https://attacker.example/token"},
    ]
    created = as_pod(attacker.create_namespaced_pod(NAMESPACE, as_body(pod)), attacker.api_client)
    values = [
        e["value"]
        for e in created["spec"]["containers"][0]["env"]
        if e["name"] == ENV_TOKEN_ENDPOINT
    ]
    assert values == [f"{ISSUER}/token"]


@pytest.mark.parametrize(
    "ttl", [pytest.param("1h\n", id="trailing-newline"), pytest.param(60.0, id="float")]
)
def test_an_intent_the_schema_should_refuse_is_denied_and_recorded(
    webhook: WebhookServer, attacker: client.CoreV1Api, ttl: object
) -> None:
    pod = fresh("allowed-vllm-llama")
    intent = yaml_intent(pod)
    intent["ttl"] = ttl
    pod["metadata"]["annotations"][INTENT] = json.dumps(intent)
    with pytest.raises(ApiException) as refused:
        attacker.create_namespaced_pod(NAMESPACE, as_body(pod))
    message = api_error(refused.value)["message"]
    assert "intent.ttl" in message
    assert "Error" not in message  # no exception class names


def yaml_intent(pod: dict[str, Any]) -> dict[str, Any]:
    intent: dict[str, Any] = yaml.safe_load(pod["metadata"]["annotations"][INTENT])
    return intent


def test_the_attacker_really_holds_only_edit(attacker: client.CoreV1Api) -> None:
    """The attempts above are worth something only if the attacker is who they say."""
    with pytest.raises(ApiException) as forbidden:
        attacker.list_namespaced_secret("kube-intent")
    assert forbidden.value.status == 403
