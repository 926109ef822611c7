"""The chart rendered with helm template, and lookups in the rendered objects."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.helm import CHART, helm
from tests.support.kube import (
    documents,
)
from tests.support.paths import REPO
from tests.support.release import RELEASE

VALUES = REPO / "tests" / "charts" / "values"


NAMESPACE = "kube-intent"


Objects = list[dict[str, Any]]


STATUS_WEBHOOK = "pods-status.validate.kube-intent.io"


CLAIMS_WEBHOOK = "claims.validate.kube-intent.io"


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return helm(*args, home=Path("/tmp/kube-intent-chart-tests-helm"), check=False)


@functools.cache
def _render(values: str | None, sets: tuple[str, ...], namespace: str, crds: bool) -> str:
    args = ["template", RELEASE, str(CHART), f"--namespace={namespace}"]
    if values:
        args.append(f"--values={VALUES / values}.yaml")
    args += [f"--set={s}" for s in sets]
    if crds:
        args.append("--include-crds")
    result = run_helm(*args)
    if result.returncode != 0:
        raise RenderError(result.stderr)
    return result.stdout


class RenderError(Exception):
    pass


def render(
    values: str | None = None, *sets: str, namespace: str = NAMESPACE, crds: bool = False
) -> Objects:
    return documents(_render(values, sets, namespace, crds))


def render_error(values: str | None = None, *sets: str) -> str:
    with pytest.raises(RenderError) as caught:
        render(values, *sets)
    return str(caught.value)


def one(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(objects: Objects) -> set[str]:
    return {o["kind"] for o in objects}


def pod_spec(objects: Objects) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def all_containers(objects: Objects) -> list[dict[str, Any]]:
    spec = pod_spec(objects)
    found: list[dict[str, Any]] = spec.get("initContainers", []) + spec["containers"]
    return found


def container(objects: Objects, name: str) -> dict[str, Any]:
    [found] = [c for c in all_containers(objects) if c["name"] == name]
    return found


def env(objects: Objects) -> dict[str, Any]:
    return {e["name"]: e for e in container(objects, "webhook").get("env", [])}


def webhooks(objects: Objects) -> list[tuple[str, dict[str, Any]]]:
    """The pod webhooks (the DRA claims and pods/status webhooks have their own tests)."""
    return [
        (o["kind"], w)
        for o in objects
        if o["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        for w in o["webhooks"]
        if w["name"] not in (CLAIMS_WEBHOOK, STATUS_WEBHOOK)
    ]


def stand_in_crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
