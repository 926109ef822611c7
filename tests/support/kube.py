"""Small helpers over the `kubernetes` client: apply manifests, wait, read API errors, and the
optional fields of its response models."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "kube-intent-e2e"

T = TypeVar("T")


class HasMetadata(Protocol):
    """Any object the client returns (V1Pod, V1Job, ...): its metadata is optional in the
    models, though the API server always sends it."""

    @property
    def metadata(self) -> client.V1ObjectMeta | None: ...


def as_body(manifest: Mapping[str, Any]) -> Any:
    """A manifest as a request body. The client sends a dict as it is (the API server validates
    it: some tests send what a typed model could not hold), while its annotations name only the
    model classes (V1Pod, V1Deployment, ...)."""
    return manifest


def present(value: T | None, what: str) -> T:
    """An optional field of a response model that the API server fills in."""
    assert value is not None, f"the API server sent no {what}"
    return value


def json_object(value: object) -> dict[str, Any]:
    """A custom object as the client returns it (annotated `object`: it is the parsed JSON)."""
    assert isinstance(value, dict), f"expected a JSON object, got {type(value).__name__}"
    return value


def metadata_of(obj: HasMetadata) -> client.V1ObjectMeta:
    return present(obj.metadata, "metadata")


def annotations_of(obj: HasMetadata) -> dict[str, str]:
    return present(metadata_of(obj).annotations, "metadata.annotations")


def service_account_token(
    core: client.CoreV1Api,
    namespace: str,
    account: str,
    spec: client.V1TokenRequestSpec,
) -> str:
    """A TokenRequest for the ServiceAccount, as the kubelet (or kubectl create token) makes."""
    request = client.AuthenticationV1TokenRequest(spec=spec)
    response = core.create_namespaced_service_account_token(account, namespace, request)
    status = present(response.status, "TokenRequest status")
    return present(status.token, "token")


def as_dict(api: client.ApiClient, obj: object) -> dict[str, Any]:
    """A response model as the JSON object the API server sent (camelCase keys)."""
    # The client leaves sanitize_for_serialization unannotated.
    result: dict[str, Any] = api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return result


def dynamic_client(api: client.ApiClient) -> dynamic.DynamicClient:
    # The client leaves DynamicClient.__init__ unannotated.
    return dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]


def client_from_kubeconfig(path: Path) -> client.ApiClient:
    # The client leaves new_client_from_config unannotated.
    api: client.ApiClient = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    return api


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def api_error(exc: ApiException) -> dict[str, Any]:
    """The Status object of an API error (its message carries the webhook's denial)."""
    try:
        # No body at all reads as "" (not JSON): the same answer as a body that is not JSON.
        status: dict[str, Any] = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {"message": str(exc.body), "code": exc.status}
    return status


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def resource_for(dyn: dynamic.DynamicClient, obj: dict[str, Any]) -> Any:
    return dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])


def server_side_apply(
    api: client.ApiClient,
    obj: dict[str, Any],
    *,
    dry_run: bool = False,
    namespace: str | None = None,
    dyn: dynamic.DynamicClient | None = None,
) -> dict[str, Any]:
    """`kubectl apply --server-side [--dry-run=server]` for one object."""
    dyn = dyn or dynamic_client(api)
    resource = resource_for(dyn, obj)
    kwargs: dict[str, Any] = {
        "body": obj,
        "field_manager": FIELD_MANAGER,
        "force_conflicts": True,
    }
    if resource.namespaced:
        kwargs["namespace"] = obj.get("metadata", {}).get("namespace") or namespace or "default"
    if dry_run:
        kwargs["dry_run"] = "All"
    result = resource.server_side_apply(**kwargs)
    applied: dict[str, Any] = result.to_dict()
    return applied


def apply_all(
    api: client.ApiClient, objs: Iterable[dict[str, Any]], *, dry_run: bool = False
) -> list[dict[str, Any]]:
    dyn = dynamic_client(api)
    return [server_side_apply(api, obj, dry_run=dry_run, dyn=dyn) for obj in objs]


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as exc:
        if exc.status != 409:
            raise


def ensure_service_account(api: client.ApiClient, namespace: str, name: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as exc:
        if exc.status != 409:
            raise


def wait_crd_established(api: client.ApiClient, name: str, timeout: float = 30.0) -> None:
    ext = client.ApiextensionsV1Api(api)

    def established() -> bool:
        crd = ext.read_custom_resource_definition(name)
        return any(
            c.type == "Established" and c.status == "True"
            for c in present(crd.status, "CRD status").conditions or []
        )

    wait_until(f"CRD {name} Established", established, timeout)
