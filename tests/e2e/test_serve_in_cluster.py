"""`kube-intent serve` with signing keys against the real API server: grants on admitted pods,
token exchange with a real TokenRequest token, denial Events, and the RBAC-guarded audit API."""

from __future__ import annotations

import secrets

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from identity.grants import GRANT_ANNOTATION
from identity.verify import verify_access_token
from tests.support.grants import ISSUER
from tests.support.kube import (
    as_body,
    ensure_service_account,
    present,
    service_account_token,
    wait_until,
)
from tests.support.manifests import example_pod
from tests.support.pods import AUDIENCE, create, exchange, pod_token, quantities_as_strings
from tests.support.webhook_process import WebhookServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def webhook(keyed_webhook: WebhookServer) -> WebhookServer:
    return keyed_webhook


def test_admitted_pod_carries_a_grant_that_buys_an_access_token(
    webhook: WebhookServer, core: client.CoreV1Api
) -> None:
    pod = create(core, "allowed-vllm-llama")
    grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
    mounts = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert {"/var/run/kube-intent/token", "/var/run/kube-intent/grant"} <= mounts

    response = exchange(
        webhook,
        pod_token(core, pod, ISSUER),
        grant,
        scope="model:meta-llama/Llama-3.1-8B-Instruct:infer",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300
    with webhook.client() as http:
        jwks = http.get("/.well-known/jwks.json").json()
    claims = verify_access_token(
        body["access_token"],
        jwks,
        issuer=ISSUER,
        audience=AUDIENCE,
        required_scopes=["model:meta-llama/Llama-3.1-8B-Instruct:infer"],
    )
    assert claims.sub == "spiffe://cluster.local/ns/ml-serving/sa/support-bot"
    # No bearer credential anywhere in the stored pod or in the server's log.
    stored = str(
        core.api_client.sanitize_for_serialization(
            core.read_namespaced_pod(pod["metadata"]["name"], "ml-serving")
        )
    )
    assert body["access_token"] not in stored
    assert body["access_token"] not in webhook.log.read_text()


@pytest.mark.parametrize(
    ("case", "error"),
    [
        pytest.param("wrong-audience", "invalid_grant", id="sa-token-for-another-audience"),
        pytest.param("scope-escalation", "invalid_scope", id="scope-escalation"),
        pytest.param("grant-of-another-pod", "invalid_grant", id="swapped-grant"),
    ],
)
def test_exchange_refusals_through_the_server(
    webhook: WebhookServer, core: client.CoreV1Api, case: str, error: str
) -> None:
    pod = create(core, "allowed-vllm-llama")
    grant = pod["metadata"]["annotations"][GRANT_ANNOTATION]
    audience, extra = ISSUER, {}
    if case == "wrong-audience":
        audience = "https://kubernetes.default.svc.cluster.local"
    elif case == "scope-escalation":
        extra = {"scope": "tool:shell-exec:invoke"}
    else:
        grant = create(core, "allowed-warn-ttl")["metadata"]["annotations"][GRANT_ANNOTATION]
    response = exchange(webhook, pod_token(core, pod, audience), grant, **extra)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def test_denial_leaves_an_event_on_the_namespace(
    webhook: WebhookServer, core: client.CoreV1Api
) -> None:
    with pytest.raises(ApiException):
        create(core, "denied-model-allowed")

    def event_seen() -> bool:
        events = core.list_namespaced_event("ml-serving", field_selector="reason=AdmissionDenied")
        return any("[model-allowed]" in (e.message or "") for e in events.items)

    wait_until("an AdmissionDenied event", event_seen, timeout=15)


def user_token(core: client.CoreV1Api, namespace: str, account: str) -> str:
    ensure_service_account(core.api_client, namespace, account)
    return service_account_token(core, namespace, account, client.V1TokenRequestSpec(audiences=[]))


def audit_get(webhook: WebhookServer, token: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with webhook.client() as http:
        return http.get("/audit/decisions", params=params, headers=headers)


def test_audit_api_is_guarded_by_cluster_rbac(
    webhook: WebhookServer, core: client.CoreV1Api, api: client.ApiClient
) -> None:
    with pytest.raises(ApiException):
        create(core, "denied-intent-required")
    assert audit_get(webhook, None).status_code == 401
    assert audit_get(webhook, "not-a-token").status_code == 401
    reader = user_token(core, "ml-serving", f"auditor-{secrets.token_hex(2)}")
    forbidden = audit_get(webhook, reader)
    assert forbidden.status_code == 403
    assert "decisions.audit.kube-intent.io" in forbidden.json()["error"]

    rbac = client.RbacAuthorizationV1Api(api)
    name = f"audit-reader-{secrets.token_hex(2)}"
    rbac.create_cluster_role(
        as_body(
            {
                "metadata": {"name": name},
                "rules": [
                    {
                        "apiGroups": ["audit.kube-intent.io"],
                        "resources": ["decisions"],
                        "verbs": ["get"],
                    }
                ],
            }
        )
    )
    account = forbidden.json()["error"].split('"')[1].rsplit(":", 1)[1]
    rbac.create_cluster_role_binding(
        as_body(
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": account, "namespace": "ml-serving"}
                ],
            }
        )
    )
    try:
        wait_until(
            "RBAC to allow the reader",
            lambda: audit_get(webhook, reader).status_code == 200,
            timeout=15,
        )
        page = audit_get(webhook, reader, decision="denied", rule="intent-required").json()
        assert page["items"]
        assert all(not item["allowed"] for item in page["items"])
        assert audit_get(webhook, reader, since="yesterday").status_code == 400
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def test_a_grant_copied_onto_a_pod_the_webhooks_never_saw_buys_nothing(
    webhook: WebhookServer, core: client.CoreV1Api
) -> None:
    """A CPU pod is never sent to the webhooks, so its annotations are whatever its author
    wrote: with another pod's grant, intent and agent label it must still get no token."""
    admitted = create(core, "allowed-vllm-llama")
    annotations = admitted["metadata"]["annotations"]
    copycat = quantities_as_strings(example_pod("allowed-vllm-llama"))
    copycat["metadata"]["name"] = f"copycat-{secrets.token_hex(3)}"
    copycat["metadata"]["annotations"] = {
        key: annotations[key]
        for key in ("kube-intent.io/intent", GRANT_ANNOTATION, "kube-intent.io/intent-digest")
    }
    del copycat["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    created = core.api_client.sanitize_for_serialization(
        core.create_namespaced_pod("ml-serving", as_body(copycat))
    )
    response = exchange(webhook, pod_token(core, created, ISSUER), annotations[GRANT_ANNOTATION])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_debug_container_cannot_mount_the_pods_credentials(
    webhook: WebhookServer, core: client.CoreV1Api
) -> None:
    """`kubectl debug` adds an ephemeral container through its subresource: reviewed too."""
    pod = create(core, "allowed-vllm-llama")
    name = pod["metadata"]["name"]
    debugger = {
        "name": "debugger",
        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "volumeMounts": [{"name": "kube-intent-token", "mountPath": "/steal"}],
    }
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_pod_ephemeralcontainers(
            name, "ml-serving", {"spec": {"ephemeralContainers": [debugger]}}
        )
    assert "[ephemeral-container-credentials]" in str(caught.value.body)
    debugger["volumeMounts"] = []
    patched = core.patch_namespaced_pod_ephemeralcontainers(
        name, "ml-serving", {"spec": {"ephemeralContainers": [debugger]}}
    )
    assert [c.name for c in present(patched.spec, "spec").ephemeral_containers or []] == [
        "debugger"
    ]
