"""The DRA claim swap, played by an attacker against a real API server.

The attacker is a ServiceAccount with the built-in `edit` role in one namespace, nothing more:
what any namespace editor can do. It creates a pod whose ResourceClaim (or template) asks for a
NIC class, which the pod webhooks let through ungoverned, then deletes the claim and re-creates
it under the same name with the accelerator class gpu.nvidia.com. Without the claims webhook
the pod would get a GPU with no intent, agent or grant. The legitimate path (a governed pod
whose template the resourceclaim controller instantiates) must still work.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster
from tests.support.kube import (
    annotations_of,
    api_error,
    as_body,
    client_from_kubeconfig,
    ensure_namespace,
    ensure_service_account,
    json_object,
    metadata_of,
    present,
    server_side_apply,
    wait_until,
)
from tests.support.pods import example, quantities_as_strings
from tests.support.release import service_account_kubeconfig
from tests.support.webhook_process import WebhookServer
from webhook.claim_guard import CLAIMS_PATH, RULE
from webhook.routes.admission import ERR_CLIENT_CERT

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhook")]

GROUP = "resource.k8s.io"
VERSIONS = ("v1", "v1beta2", "v1beta1")
NAMESPACE = "claim-swap"
ATTACKER = "mallory"
GPU = "gpu.nvidia.com"
NIC = "nic.example.com"
WEBHOOK_DENIED = 'admission webhook "claims.validate.kube-intent.io" denied the request: '
GOVERNED_ANNOTATIONS = ("kube-intent.io/intent-digest", "kube-intent.io/grant")


def unique(prefix: str) -> str:
    # One cluster serves the whole session, and reruns by hand reuse it.
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def device_request(device_class: str, version: str, count: int = 1) -> dict[str, Any]:
    """One request in `version`'s shape: v1beta1 flat, v1beta2 and v1 under `exactly`."""
    wanted = {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": count}
    return {"name": "dev", **wanted} if version == "v1beta1" else {"name": "dev", "exactly": wanted}


def claim_body(
    name: str, device_class: str, version: str = "v1", **metadata: Any
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": "ResourceClaim",
        "metadata": {"name": name, **metadata},
        "spec": {"devices": {"requests": [device_request(device_class, version)]}},
    }


def template_body(name: str, device_class: str, version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {"spec": {"devices": {"requests": [device_request(device_class, version)]}}},
    }


def pod_body(name: str, source: str, object_name: str) -> dict[str, Any]:
    """A pod with one DRA claim entry ("net") and nothing else an admission would govern."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"claims": [{"name": "net"}]},
                }
            ],
            "resourceClaims": [{"name": "net", source: object_name}],
        },
    }


class Claims:
    """ResourceClaims and templates of one namespace, as one user, in any served version."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        version = body["apiVersion"].split("/")[1]
        return json_object(
            self.objects.create_namespaced_custom_object(
                GROUP, version, self.namespace, plural(body["kind"]), body
            )
        )

    def delete(self, kind: str, name: str) -> None:
        self.objects.delete_namespaced_custom_object(
            GROUP, "v1", self.namespace, plural(kind), name
        )

        def gone() -> bool:
            return self.get(kind, name) is None

        wait_until(f"{kind} {self.namespace}/{name} to be deleted", gone, timeout=20)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            found = json_object(
                self.objects.get_namespaced_custom_object(
                    GROUP, "v1", self.namespace, plural(kind), name
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def refused(self, body: dict[str, Any]) -> str:
        """Create `body`, expecting the claims webhook's refusal; return its message."""
        with pytest.raises(ApiException) as caught:
            self.create(body)
        status = api_error(caught.value)
        assert caught.value.status == 403, status
        message = str(status.get("message", ""))
        assert message.startswith(WEBHOOK_DENIED), message
        assert self.get(body["kind"], body["metadata"]["name"]) is None
        return message


def plural(kind: str) -> str:
    return {"ResourceClaim": "resourceclaims", "ResourceClaimTemplate": "resourceclaimtemplates"}[
        kind
    ]


@pytest.fixture(scope="module")
def served(api: client.ApiClient) -> set[str]:
    """The resource.k8s.io versions this API server serves (v1beta1/v1beta2 may be off)."""
    groups = client.ApisApi(api).get_api_versions().groups
    [group] = [g for g in groups if g.name == GROUP]
    return {v.version for v in group.versions}


@pytest.fixture
def version(request: pytest.FixtureRequest, served: set[str]) -> str:
    wanted: str = request.param
    if wanted not in served:
        pytest.skip(f"{GROUP}/{wanted} is not served by this API server")
    return wanted


@pytest.fixture(scope="module")
def attacker(
    cluster: Cluster,
    api: client.ApiClient,
    core: client.CoreV1Api,
    tmp_path_factory: pytest.TempPathFactory,
) -> client.ApiClient:
    """A client authenticated as a ServiceAccount holding the built-in `edit` role in
    NAMESPACE: it may create and delete pods, ResourceClaims and ResourceClaimTemplates."""
    ensure_namespace(api, NAMESPACE)
    ensure_service_account(api, NAMESPACE, ATTACKER)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{ATTACKER}-edit", "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": ATTACKER, "namespace": NAMESPACE}],
    }
    server_side_apply(api, binding)

    def default_account() -> bool:  # pods need it; the controller manager creates it
        try:
            core.read_namespaced_service_account("default", NAMESPACE)
        except ApiException:
            return False
        return True

    wait_until("the namespace's default ServiceAccount", default_account)
    path = tmp_path_factory.mktemp("attacker") / "kubeconfig"
    kubeconfig = service_account_kubeconfig(cluster, core, NAMESPACE, ATTACKER, path)
    mallory = client_from_kubeconfig(kubeconfig)

    def may(verb: str, resource: str) -> bool:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, group=GROUP, resource=resource, namespace=NAMESPACE
                )
            )
        )
        answer = client.AuthorizationV1Api(mallory).create_self_subject_access_review(review)
        return bool(present(answer.status, "SelfSubjectAccessReview status").allowed)

    # RBAC settles asynchronously (the aggregated `edit` role); the attack needs exactly these.
    for verb in ("create", "delete"):
        for resource in ("resourceclaims", "resourceclaimtemplates"):
            wait_until(f"{ATTACKER} may {verb} {resource}", partial(may, verb, resource))
    return mallory


@pytest.fixture
def as_attacker(attacker: client.ApiClient) -> tuple[Claims, client.CoreV1Api]:
    return Claims(attacker, NAMESPACE), client.CoreV1Api(attacker)


def admitted_ungoverned(pods: client.CoreV1Api, body: dict[str, Any]) -> client.V1Pod:
    created = pods.create_namespaced_pod(NAMESPACE, as_body(body))
    annotations = metadata_of(created).annotations or {}
    # The pod webhooks resolved its claim to a NIC: admitted untouched, never governed.
    assert not set(GOVERNED_ANNOTATIONS) & set(annotations), annotations
    return created


def not_admitted(pod: str, kind: str) -> str:
    return (
        f"[{RULE}] pod {NAMESPACE}/{pod} uses this {kind}, which requests "
        f"accelerators ({GPU}), but kube-intent never admitted that pod as a governed GPU pod"
    )


# -- the attack ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS, indirect=True)
def test_a_nic_claim_re_created_as_a_gpu_claim_under_its_pod_is_refused(
    as_attacker: tuple[Claims, client.CoreV1Api], webhook: WebhookServer, version: str
) -> None:
    claims, pods = as_attacker
    name, pod = unique("net"), unique("nic-pod")
    claims.create(claim_body(name, NIC))
    admitted_ungoverned(pods, pod_body(pod, "resourceClaimName", name))
    claims.delete("ResourceClaim", name)

    message = claims.refused(claim_body(name, GPU, version))

    assert f"kube-intent denied ResourceClaim {NAMESPACE}/{name}: 1 violation(s): " in message
    assert not_admitted(pod, "ResourceClaim") in message
    # The NIC claim can still come back: only accelerator classes reach the webhook.
    before = webhook.admission_requests()
    claims.create(claim_body(name, NIC, version))
    assert webhook.admission_requests() == before


@pytest.mark.parametrize("version", VERSIONS, indirect=True)
def test_a_nic_template_re_created_as_a_gpu_template_under_its_pod_is_refused(
    as_attacker: tuple[Claims, client.CoreV1Api], version: str
) -> None:
    claims, pods = as_attacker
    name, pod = unique("net-tpl"), unique("nic-tpl-pod")
    claims.create(template_body(name, NIC))
    admitted_ungoverned(pods, pod_body(pod, "resourceClaimTemplateName", name))
    claims.delete("ResourceClaimTemplate", name)

    message = claims.refused(template_body(name, GPU, version))

    assert f"kube-intent denied ResourceClaimTemplate {NAMESPACE}/{name}" in message
    assert not_admitted(pod, "ResourceClaimTemplate") in message


def test_a_gpu_claim_made_out_to_an_ungoverned_pod_is_refused(
    as_attacker: tuple[Claims, client.CoreV1Api],
) -> None:
    """The generated-claim door: the resourceclaim controller adopts a claim the pod owns for an
    entry it has not served yet, so the attacker need not touch the template at all."""
    claims, pods = as_attacker
    template, pod = unique("net-tpl"), unique("nic-tpl-pod")
    claims.create(template_body(template, NIC))
    created = admitted_ungoverned(pods, pod_body(pod, "resourceClaimTemplateName", template))
    owner = {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": metadata_of(created).uid}
    forged = claim_body(
        unique(f"{pod}-net"),
        GPU,
        ownerReferences=[owner],
        annotations={"resource.kubernetes.io/pod-claim-name": "net"},
    )

    message = claims.refused(forged)

    assert not_admitted(pod, "ResourceClaim") in message


# -- what must keep working ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_device_class(api: client.ApiClient) -> None:
    server_side_apply(
        api,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "DeviceClass",
            "metadata": {"name": GPU},
            "spec": {"selectors": [{"cel": {"expression": f"device.driver == '{GPU}'"}}]},
        },
    )


def generated_claim(core: client.CoreV1Api, namespace: str, pod: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        status = present(core.read_namespaced_pod(pod, namespace).status, "pod status")
        statuses = status.resource_claim_statuses or []
        return next((s.resource_claim_name for s in statuses if s.resource_claim_name), None)

    return probe


@pytest.mark.usefixtures("gpu_device_class")
def test_a_governed_pods_template_is_instantiated_by_the_controller(
    api: client.ApiClient, core: client.CoreV1Api, webhook: WebhookServer
) -> None:
    """examples/pods/allowed-dra-triton: two GPUs through a template, intent and agent in order.
    The claim the resourceclaim controller creates for it is reviewed, and allowed."""
    template = copy.deepcopy(example("allowed-dra-triton", kind="ResourceClaimTemplate"))
    template["metadata"]["name"] = unique("two-gpus")
    pod = quantities_as_strings(copy.deepcopy(example("allowed-dra-triton")))
    pod["metadata"]["name"] = unique("research-qwen")
    pod["spec"]["resourceClaims"][0]["resourceClaimTemplateName"] = template["metadata"]["name"]
    namespace = pod["metadata"]["namespace"]
    key = ("claims", "CREATE", "allowed")

    before = webhook.admission_requests().get(key, 0)
    server_side_apply(api, template)  # no pod uses it yet: allowed
    created = core.create_namespaced_pod(namespace, as_body(pod))
    assert annotations_of(created)["kube-intent.io/intent-digest"].startswith("sha256:")
    claim_name = wait_until(
        "the resourceclaim controller to create the pod's claim",
        generated_claim(core, namespace, pod["metadata"]["name"]),
        timeout=30,
    )

    claim = Claims(api, namespace).get("ResourceClaim", claim_name)
    assert claim is not None
    assert claim["metadata"]["ownerReferences"][0]["uid"] == metadata_of(created).uid
    [request] = claim["spec"]["devices"]["requests"]
    assert (request["exactly"]["deviceClassName"], request["exactly"]["count"]) == (GPU, 2)
    # Both the template and the generated claim went through the webhook, and were allowed.
    assert webhook.admission_requests().get(key, 0) - before == 2


def test_the_guard_reads_with_the_charts_least_privilege(api: client.ApiClient) -> None:
    """The webhook runs as the chart's ServiceAccount (conftest): it may list pods in any
    namespace a claim may be created in, and still change none."""
    auth = client.AuthorizationV1Api(api)

    def can(verb: str, namespace: str | None) -> bool:
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user="system:serviceaccount:kube-intent:kube-intent",
                groups=["system:serviceaccounts", "system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    verb=verb, group="", resource="pods", namespace=namespace
                ),
            )
        )
        answer = auth.create_subject_access_review(review)
        return bool(present(answer.status, "SubjectAccessReview status").allowed)

    assert can("list", NAMESPACE)
    assert not can("delete", NAMESPACE)
    assert not can("watch", NAMESPACE)


def test_a_claim_review_sent_from_the_network_gets_no_answer(webhook: WebhookServer) -> None:
    """Only the API server (its client certificate) may ask: a neighbour who reaches the port
    learns nothing and writes no denial rows."""
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "forged-claim-review",
            "kind": {"group": GROUP, "version": "v1", "kind": "ResourceClaim"},
            "resource": {"group": GROUP, "version": "v1", "resource": "resourceclaims"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "object": claim_body("forged", GPU),
        },
    }
    with webhook.client() as http:
        response = http.post(CLAIMS_PATH, json=body)
    assert response.status_code == 401
    assert response.json() == {"error": ERR_CLIENT_CERT}
