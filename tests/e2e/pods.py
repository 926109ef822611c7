"""Helpers for tests that create pods through the API server and exchange their grants."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from kubernetes import client

from identity.exchange import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_GRANT, TOKEN_TYPE_JWT
from tests.conftest import example_pod
from tests.e2e.conftest import WebhookServer

ISSUER = "https://kube-intent.kube-intent.svc"
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
    created = core.create_namespaced_pod(pod["metadata"]["namespace"], pod)
    result: dict[str, Any] = core.api_client.sanitize_for_serialization(created)
    return result


def pod_token(core: client.CoreV1Api, pod: dict[str, Any], audience: str) -> str:
    """What the kubelet would project into the pod: a token bound to this pod."""
    meta = pod["metadata"]
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(
            audiences=[audience],
            expiration_seconds=600,
            bound_object_ref=client.V1BoundObjectReference(
                kind="Pod", api_version="v1", name=meta["name"], uid=meta["uid"]
            ),
        )
    )
    account = pod["spec"]["serviceAccountName"]
    token: str = core.create_namespaced_service_account_token(
        account, meta["namespace"], request
    ).status.token
    return token


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
