"""Helpers for tests that create pods through the API server and exchange their grants."""

from __future__ import annotations

import copy
import secrets
from typing import Any

import httpx
from kubernetes import client

from identity.exchange import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_GRANT, TOKEN_TYPE_JWT
from tests.support.kube import as_body, service_account_token
from tests.support.manifests import example_pod, load_yaml
from tests.support.paths import EXAMPLES
from tests.support.webhook_process import WebhookServer

AUDIENCE = "https://models.example.com"


def quantities_as_strings(pod: dict[str, Any]) -> dict[str, Any]:
    """`nvidia.com/gpu: 1` as the API's string quantity (the typed client insists on it)."""
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            for part in ("limits", "requests"):
                amounts = (container.get("resources") or {}).get(part) or {}
                for resource, amount in amounts.items():
                    amounts[resource] = str(amount)
    return pod


def create(core: client.CoreV1Api, example: str) -> dict[str, Any]:
    pod = quantities_as_strings(example_pod(example))
    pod["metadata"]["name"] += f"-{secrets.token_hex(3)}"
    created = core.create_namespaced_pod(pod["metadata"]["namespace"], as_body(pod))
    result: dict[str, Any] = core.api_client.sanitize_for_serialization(created)
    return result


def pod_token(core: client.CoreV1Api, pod: dict[str, Any], audience: str) -> str:
    """What the kubelet would project into the pod: a token bound to this pod."""
    meta = pod["metadata"]
    spec = client.V1TokenRequestSpec(
        audiences=[audience],
        expiration_seconds=600,
        bound_object_ref=client.V1BoundObjectReference(
            kind="Pod", api_version="v1", name=meta["name"], uid=meta["uid"]
        ),
    )
    return service_account_token(core, meta["namespace"], pod["spec"]["serviceAccountName"], spec)


def exchange(webhook: WebhookServer, subject: str, grant: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": TOKEN_TYPE_JWT,
        "actor_token": grant,
        "actor_token_type": TOKEN_TYPE_GRANT,
        "audience": AUDIENCE,
        **extra,
    }
    with webhook.client() as http:
        return http.post("/token", data=form)


def example(name: str, kind: str = "Pod") -> dict[str, Any]:
    [doc] = [d for d in load_yaml(EXAMPLES / "pods" / f"{name}.yaml") if d["kind"] == kind]
    return quantities_as_strings(copy.deepcopy(doc))


def deployment_of(
    pod: dict[str, Any], name: str, namespace: str, *, keep_annotations: bool = False
) -> dict[str, Any]:
    """A one-replica Deployment `name` whose pod template is `pod` (labelled app=<name>)."""
    labels = {**pod["metadata"]["labels"], "app": name}
    template_metadata: dict[str, Any] = {"labels": labels}
    if keep_annotations:
        template_metadata["annotations"] = pod["metadata"]["annotations"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": template_metadata, "spec": pod["spec"]},
        },
    }
