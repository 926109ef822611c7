"""Size limits for pathological pods, checked before any cluster read or policy evaluation.

A pod far beyond what real workloads look like is refused here, with a message saying which
limit and by how much, so that neither the claim lookups (one API read per claim) nor OPA's
time budget (whose refusal reads "policy engine unreachable") is what stops it. Each limit is
several times what real pods use; Kubernetes' own annotation limit is copied as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity import jsonio
from identity.intent import INTENT_ANNOTATION, MAX_INTENT_BYTES
from webhook.violations import Violation

RULE_POD_LIMITS = "pod-limits"

# Containers of all kinds together (containers, initContainers, ephemeralContainers): real
# pods have a handful; ephemeral containers accumulate over debugging sessions.
MAX_CONTAINERS = 256
# env and envFrom entries of one container: large Spring or Java pods reach a few hundred.
MAX_ENV_PER_CONTAINER = 1024
# spec.resourceClaims: each costs a cluster read, and the policy relates each to the others.
MAX_RESOURCE_CLAIMS = 128
# Kubernetes' own limit on metadata.annotations (keys plus values, in bytes): 256 KiB.
MAX_ANNOTATIONS_BYTES = 256 * 1024
# The pod as compact JSON: what OPA must read. Real pods, even with the annotation maximum and
# their managedFields, stay well below; OPA needs about half a second per MiB of tiny objects,
# and its budget (--opa-timeout-seconds, 1 s by default) must never be what refuses a pod.
MAX_POD_BYTES = 512 * 1024
# Characters of one violation message kept in answers, Events and audit rows.
MAX_VIOLATION_CHARS = 1024

ERR_CONTAINERS = (
    "the pod has {count} containers (containers, initContainers and ephemeralContainers "
    "together); kube-intent reviews pods with at most {limit}"
)
ERR_ENV = (
    "container {name} has {count} env and envFrom entries; kube-intent reviews containers "
    "with at most {limit}: move configuration to a ConfigMap mounted as a file"
)
ERR_CLAIMS = "the pod has {count} resource claims; kube-intent reviews pods with at most {limit}"
ERR_ANNOTATIONS = (
    "annotations take {size} bytes; Kubernetes allows at most {limit} (256 KiB) in total"
)
ERR_INTENT = "the intent takes {size} bytes; an intent may take at most {limit}"
ERR_POD_SIZE = "the pod takes {size} bytes as JSON; kube-intent reviews pods of at most {limit}"

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _list(parent: object, key: str) -> list[Any]:
    value = parent.get(key) if isinstance(parent, Mapping) else None
    return value if isinstance(value, list) else []


def _text_bytes(text: object) -> int:
    return len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else 0


def _violation(field: str, message: str) -> Violation:
    return Violation(rule=RULE_POD_LIMITS, field=field, message=f"{field}: {message}")


def claim_limit(pod: Mapping[str, Any]) -> list[Violation]:
    """Checked before the claims are looked up: each one is a read from the API server."""
    claims = _list(pod.get("spec"), "resourceClaims")
    if len(claims) <= MAX_RESOURCE_CLAIMS:
        return []
    message = ERR_CLAIMS.format(count=len(claims), limit=MAX_RESOURCE_CLAIMS)
    return [_violation("spec.resourceClaims", message)]


def pod_limits(pod: Mapping[str, Any]) -> list[Violation]:
    """Every limit the pod exceeds (none for real pods). Tolerates any shape."""
    found = claim_limit(pod)
    size = len(jsonio.dumps(pod))
    if size > MAX_POD_BYTES:
        found.append(_violation("pod", ERR_POD_SIZE.format(size=size, limit=MAX_POD_BYTES)))
    spec = pod.get("spec")
    containers = [(key, c) for key in _CONTAINER_LISTS for c in _list(spec, key)]
    if len(containers) > MAX_CONTAINERS:
        message = ERR_CONTAINERS.format(count=len(containers), limit=MAX_CONTAINERS)
        found.append(_violation("spec.containers", message))
    counters = {key: 0 for key in _CONTAINER_LISTS}
    for key, container in containers:
        index = counters[key]
        counters[key] += 1
        entries = len(_list(container, "env")) + len(_list(container, "envFrom"))
        if entries > MAX_ENV_PER_CONTAINER:
            name = container.get("name") if isinstance(container, Mapping) else None
            message = ERR_ENV.format(
                name=jsonio.shown(name if name is not None else f"#{index}"),
                count=entries,
                limit=MAX_ENV_PER_CONTAINER,
            )
            found.append(_violation(f"spec.{key}[{index}].env", message))
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if isinstance(annotations, Mapping):
        size = sum(_text_bytes(k) + _text_bytes(v) for k, v in annotations.items())
        if size > MAX_ANNOTATIONS_BYTES:
            message = ERR_ANNOTATIONS.format(size=size, limit=MAX_ANNOTATIONS_BYTES)
            found.append(_violation("metadata.annotations", message))
        intent_size = _text_bytes(annotations.get(INTENT_ANNOTATION))
        if intent_size > MAX_INTENT_BYTES:
            message = ERR_INTENT.format(size=intent_size, limit=MAX_INTENT_BYTES)
            found.append(_violation(f"metadata.annotations[{INTENT_ANNOTATION}]", message))
    return found


def bound_violations(violations: list[Violation]) -> list[Violation]:
    """Each message at most MAX_VIOLATION_CHARS: policies quote pod values (an image name)."""
    return [
        v
        if len(v.message) <= MAX_VIOLATION_CHARS and len(v.field) <= MAX_VIOLATION_CHARS
        else v.model_copy(
            update={
                "message": jsonio.bounded(v.message, MAX_VIOLATION_CHARS),
                "field": jsonio.bounded(v.field, jsonio.SHOWN_CHARS * 4),
            }
        )
        for v in violations
    ]
