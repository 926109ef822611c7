"""`kube-intent review`: the admission decision for manifests on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from identity.manifests import objects
from webhook.decision import Decider, RequestInfo
from webhook.detect import DetectError, StaticClaimResolver
from webhook.violations import Violation

DEFAULT_NAMESPACE = "default"
CLAIM_KINDS = ("ResourceClaim", "ResourceClaimTemplate")
ERR_READ = "{source}: cannot read: {detail}"
ERR_NO_POD = "{source}: {kind} {name!r} holds no pod or pod template"

# Where well-known workload kinds keep their pod templates.
TEMPLATE_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Deployment": (("spec", "template"),),
    "StatefulSet": (("spec", "template"),),
    "DaemonSet": (("spec", "template"),),
    "ReplicaSet": (("spec", "template"),),
    "ReplicationController": (("spec", "template"),),
    "Job": (("spec", "template"),),
    "CronJob": (("spec", "jobTemplate", "spec", "template"),),
    "PodTemplate": (("template",),),
    "LeaderWorkerSet": (
        ("spec", "leaderWorkerTemplate", "leaderTemplate"),
        ("spec", "leaderWorkerTemplate", "workerTemplate"),
    ),
}


class ReviewInputError(Exception):
    """A file or document cannot be read (exit status 2)."""


@dataclass(slots=True)
class PodUnderReview:
    source: str
    kind: str
    name: str
    namespace: str
    pod: dict[str, Any]
    request: RequestInfo


@dataclass(slots=True)
class ReviewResult:
    source: str
    kind: str
    name: str
    namespace: str
    gpu: bool
    accelerators: int
    allowed: bool
    violations: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "gpu": self.gpu,
            "accelerators": self.accelerators,
            "allowed": self.allowed,
            "violations": self.violations,
            "warnings": self.warnings,
        }


def load_documents(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(source, document) for every document in a YAML or JSON file; Lists are flattened."""
    try:
        text = path.read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).replace("\n", " ")
        raise ReviewInputError(ERR_READ.format(source=path, detail=detail)) from None
    for position, document in objects(documents):
        source = f"{path}{position}"
        if not isinstance(document, dict):
            raise ReviewInputError(
                f"{source}: expected a Kubernetes object, got {type(document).__name__}"
            )
        yield source, document


def _dig(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = obj
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _is_pod_spec(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("containers"), list)


def _is_pod_template(value: Any) -> bool:
    return isinstance(value, Mapping) and _is_pod_spec(value.get("spec"))


def find_templates(obj: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Pod templates nested anywhere in a custom resource, found by shape: a template
    ({metadata, spec: {containers}}, e.g. Ray's groups) or an inline pod spec ({containers},
    e.g. a KServe predictor)."""
    if _is_pod_template(obj):
        yield path, obj
        return
    if _is_pod_spec(obj):
        yield path, {"metadata": {}, "spec": obj}
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key != "status":
                yield from find_templates(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from find_templates(value, f"{path}[{index}]")


def _request(namespace: str, name: str, source: str) -> RequestInfo:
    return RequestInfo(uid=f"review:{source}", operation="CREATE", namespace=namespace, name=name)


def pods_in(
    source: str, document: dict[str, Any], default_namespace: str
) -> Iterator[PodUnderReview]:
    kind = str(document.get("kind", ""))
    metadata = document.get("metadata") or {}
    name = str(metadata.get("name") or metadata.get("generateName") or "")
    namespace = str(metadata.get("namespace") or default_namespace)

    if kind == "AdmissionReview":
        request = document.get("request") or {}
        pod = request.get("object") or {}
        pod_meta = pod.get("metadata") or {}
        user = request.get("userInfo") or {}
        info = RequestInfo(
            uid=str(request.get("uid") or f"review:{source}"),
            operation=str(request.get("operation") or "CREATE"),
            namespace=str(
                request.get("namespace") or pod_meta.get("namespace") or default_namespace
            ),
            name=str(
                request.get("name") or pod_meta.get("name") or pod_meta.get("generateName") or ""
            ),
            username=str(user.get("username") or ""),
            groups=tuple(user.get("groups") or ()),
            dry_run=bool(request.get("dryRun")),
        )
        yield PodUnderReview(source, "Pod", info.name, info.namespace, pod, info)
        return
    if kind == "Pod":
        yield PodUnderReview(
            source, kind, name, namespace, document, _request(namespace, name, source)
        )
        return

    paths = TEMPLATE_PATHS.get(kind)
    templates = (
        [(".".join(p), _dig(document, p)) for p in paths if _is_pod_template(_dig(document, p))]
        if paths
        else list(find_templates(document.get("spec"), "spec"))
    )
    if not templates:
        raise ReviewInputError(ERR_NO_POD.format(source=source, kind=kind or "document", name=name))
    for path, template in templates:
        pod_meta = {**(template.get("metadata") or {}), "namespace": namespace}
        if not paths:
            # Operators such as KServe copy the resource's labels and annotations to its pods.
            for key in ("labels", "annotations"):
                pod_meta[key] = {**(metadata.get(key) or {}), **(pod_meta.get(key) or {})}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template["spec"]}
        pod_name = f"{name}/{path}"
        yield PodUnderReview(
            f"{source}:{path}",
            kind,
            pod_name,
            namespace,
            pod,
            _request(namespace, pod_name, source),
        )


async def review_files(
    paths: list[Path], decider: Decider, default_namespace: str = DEFAULT_NAMESPACE
) -> list[ReviewResult]:
    documents = [doc for path in paths for doc in load_documents(path)]
    resolver = StaticClaimResolver(
        [d for _, d in documents if d.get("kind") in CLAIM_KINDS],
        default_namespace=default_namespace,
    )
    pods = [
        pod
        for source, document in documents
        if document.get("kind") not in CLAIM_KINDS
        for pod in pods_in(source, document, default_namespace)
    ]
    results = []
    for item in pods:
        result = ReviewResult(item.source, item.kind, item.name, item.namespace, False, 0, True)
        try:
            workload = decider.detect(item.pod, item.namespace, resolver)
        except DetectError as exc:
            verdict = decider.detect_error_verdict(exc)
        else:
            result.gpu, result.accelerators = workload.gpu, workload.total
            if not workload.gpu:
                results.append(result)
                continue
            verdict = await decider.decide(item.request, item.pod, workload)
        result.allowed = verdict.allowed
        result.violations = [v.model_dump() for v in verdict.violations]
        result.warnings = verdict.warnings
        results.append(result)
    return results


def render_text(results: list[ReviewResult]) -> str:
    lines = []
    for r in results:
        verdict = "ALLOW" if r.allowed else "DENY "
        gpu = f"{r.accelerators} accelerator(s)" if r.gpu else "no accelerators: not governed"
        lines.append(f"{verdict} {r.kind} {r.namespace}/{r.name} ({r.source}; {gpu})")
        lines.extend(
            f"    {v['enforcement']:>6}  {Violation.model_validate(v)}" for v in r.violations
        )
    return "\n".join(lines)


def render_json(results: list[ReviewResult]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2)
