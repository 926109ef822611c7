"""Small helpers over the `kubernetes` client: apply manifests, wait, read API errors, run helm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

from tests.e2e.cluster import REPO, TOOLS_BIN

CHART = REPO / "charts" / "kube-intent"
FIELD_MANAGER = "kube-intent-e2e"

T = TypeVar("T")


def find_helm() -> str | None:
    candidate = TOOLS_BIN / "helm"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("helm")


def helm(
    *args: str, kubeconfig: Path | None = None, home: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run helm with its cache/config/data under `home` (never the developer's ~/.config/helm)."""
    binary = find_helm()
    assert binary is not None, "helm is missing (scripts/tools.sh helm)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    if home is not None:
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config")):
            env[var] = str(home / sub)
        env["HELM_DATA_HOME"] = str(home / "data")
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        )
    return result


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return documents(path.read_text())


def api_error(exc: ApiException) -> dict[str, Any]:
    """The Status object of an API error (its message carries the webhook's denial)."""
    try:
        body: dict[str, Any] = json.loads(exc.body)
    except (TypeError, ValueError):
        return {"message": str(exc.body), "code": exc.status}
    return body


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
    dyn = dyn or dynamic.DynamicClient(api)
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
    dyn = dynamic.DynamicClient(api)
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
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    wait_until(f"CRD {name} Established", established, timeout)
