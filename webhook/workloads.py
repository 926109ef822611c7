"""Any manifest turned into the pods it would create, for `kube-intent review`.

The webhook only ever sees pods. Offline, a repository holds what *makes* pods: workloads
(Deployments, Jobs, LeaderWorkerSets), operators' custom resources (KServe, NVIDIA NIM, KubeRay)
and everything else (Services, ConfigMaps, CRDs). This module predicts the pods, so that the
same detection and the same policies apply to them, and says why it skipped the rest.

Pods are found, in this order:

1. ``Pod`` and ``AdmissionReview`` documents are taken as they are;
2. well-known workload kinds read their pod templates at fixed paths (``TEMPLATE_PATHS``);
3. custom resources whose pods are not pod-shaped in the manifest are synthesised from the
   fields their operator builds the pod from (``SYNTHESISED``: KServe ``InferenceService``,
   NVIDIA ``NIMService``);
4. anything else is searched by shape: a pod template (``{metadata, spec: {containers}}``) or
   an inline pod spec (``{containers: [...]}``) anywhere under ``spec`` (RayCluster groups,
   RayService/RayJob's cluster spec, LLMInferenceService ``template``/``worker``, ...).

Annotations: the pod's own template annotations win over the custom resource's, which are
merged under them because KServe and the NIM operator copy them to the pods. KubeRay does not
(``ANNOTATIONS_STAY_ON_RESOURCE``): there only the group template's annotations count, and an
intent left on the RayCluster itself is reported, since the real pods would not carry it.

Detection stays in ``webhook/detect.py`` (the admission hot path knows nothing of this module).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from identity.intent import INTENT_ANNOTATION
from webhook.decision import RequestInfo
from webhook.detect import CLAIM_KINDS as CLAIM_SOURCES
from webhook.detect import AcceleratorDetector

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

CLAIM_KINDS = frozenset(CLAIM_SOURCES.values())
DEVICE_CLASS_KIND = "DeviceClass"

# Kinds that hold containers but never become pods of their own: their containers are merged
# into the pods of the resources that name them (a KServe runtime, a LLMInferenceService
# preset). Reviewing them alone would judge half a pod.
NOT_A_WORKLOAD: dict[str, str] = {
    "ServingRuntime": "a KServe runtime: its containers are reviewed in the InferenceServices "
    "that use it",
    "ClusterServingRuntime": "a KServe runtime: its containers are reviewed in the "
    "InferenceServices that use it",
    "LLMInferenceServiceConfig": "a KServe preset: merged into the LLMInferenceServices that "
    "name it",
}

SKIP_CLAIM = "a DRA claim: read for the pods that reference it"
SKIP_DEVICE_CLASS = "a DRA DeviceClass: used for detection ({use})"
SKIP_NO_POD = "holds no pod, pod template or known accelerator fields"

# KubeRay copies a group template's metadata to the pods, never the RayCluster's own.
ANNOTATIONS_STAY_ON_RESOURCE = frozenset({"RayCluster", "RayService", "RayJob"})
WARN_INTENT_ON_RESOURCE = (
    "{kind} {name}: {annotation} is on the {kind}'s metadata, which {operator} does not copy to "
    "its pods: put it on the pod template's metadata.annotations"
)

# KServe InferenceService: the components that become pods, and the container name KServe gives
# the model server built from `model:` or a framework section (`sklearn:`, `pytorch:`, ...).
KSERVE_COMPONENTS = ("predictor", "transformer", "explainer")
KSERVE_CONTAINER = "kserve-container"
# Fields of a component that configure KServe, not the pod.
KSERVE_COMPONENT_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "scaleMetricType",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "logger",
        "batcher",
        "labels",
        "annotations",
        "deploymentStrategy",
        "autoScaling",
        "workerSpec",
        "storageUris",
    }
)
# A framework section (`model`, `sklearn`, `huggingface`, ...) is a container with KServe's
# extra fields; pod spec fields that are mappings too are never one.
_MODEL_SERVER_KEYS = frozenset(
    {"storageUri", "modelFormat", "runtime", "protocolVersion", "resources", "image", "args", "env"}
)
_POD_SPEC_MAPPINGS = frozenset(
    {"affinity", "securityContext", "dnsConfig", "nodeSelector", "overhead", "resources", "os"}
)

# Fields of a `model:` section that tell KServe which runtime to use, not container fields.
_KSERVE_MODEL_FIELDS = frozenset({"modelFormat", "runtime", "storageUri", "protocolVersion"})
KSERVE_RUNTIME_KINDS = frozenset({"ServingRuntime", "ClusterServingRuntime"})
NOTE_NO_RUNTIME = (
    "the model server's image and defaults come from ServingRuntime {runtime!r}, which is not "
    "in the input: pass it with -f to review them too"
)

# NVIDIA NIM operator: the container and service account it creates for a NIMService.
NIM_CONTAINER = "nim"

# A DeviceClass's selectors name the driver whose devices it hands out: device.driver == "x".
_DRIVER_RE = re.compile(r"""device\.driver\s*==\s*["']([^"']+)["']""")


@dataclass(slots=True)
class PodUnderReview:
    source: str
    kind: str
    name: str
    namespace: str
    pod: dict[str, Any]
    request: RequestInfo
    # Where the prediction may differ from the pods the operator will create.
    notes: list[str] = field(default_factory=list)
    # The same, about the intent: only worth saying for a pod that is governed.
    intent_notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Skipped:
    source: str
    kind: str
    name: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "kind": self.kind, "name": self.name, "reason": self.reason}


@dataclass(slots=True)
class Expansion:
    """What a set of manifests holds: pods to review, claim objects, DeviceClasses, the rest."""

    pods: list[PodUnderReview] = field(default_factory=list)
    claims: list[Mapping[str, Any]] = field(default_factory=list)
    # (source, DeviceClass): what they are used for is known once the detector is.
    device_classes: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    # KServe ServingRuntimes / ClusterServingRuntimes: the model server an InferenceService uses.
    runtimes: list[Mapping[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # (source, message) of documents that are not Kubernetes objects: bad input.
    errors: list[tuple[str, str]] = field(default_factory=list)


ERR_NOT_AN_OBJECT = "expected a Kubernetes object (a mapping with kind), got a {type}"
ERR_TOO_LARGE = (
    "too large or too deeply nested to search for pod templates (YAML aliases?): "
    "expand it to a plain manifest, or review its pods"
)
# Far beyond any real manifest (a RayCluster with 50 worker groups is a few thousand nodes).
MAX_SEARCH_NODES = 200_000
MAX_SEARCH_DEPTH = 100


class TooLarge(ValueError):
    """A document too large (or too deep) to search by shape."""


def expand(documents: Iterable[tuple[str, Any]], default_namespace: str) -> Expansion:
    """Sort (source, document) pairs into pods, claims, DeviceClasses, skipped documents and
    errors (documents that are not objects at all).

    Two passes: what other documents' pods depend on (claims, runtimes) may come after them.
    """
    out = Expansion()
    workloads: list[tuple[str, Mapping[str, Any]]] = []
    for source, document in documents:
        if not isinstance(document, Mapping):
            out.errors.append((source, ERR_NOT_AN_OBJECT.format(type=type(document).__name__)))
            continue
        kind = str(document.get("kind") or "")
        name = _name(document)
        if kind in CLAIM_KINDS:
            out.claims.append(document)
            out.skipped.append(Skipped(source, kind, name, SKIP_CLAIM))
        elif kind == DEVICE_CLASS_KIND:
            out.device_classes.append((source, document))
        elif kind in NOT_A_WORKLOAD:
            if kind in KSERVE_RUNTIME_KINDS:
                out.runtimes.append(document)
            out.skipped.append(Skipped(source, kind, name, NOT_A_WORKLOAD[kind]))
        else:
            workloads.append((source, document))
    for source, document in workloads:
        try:
            pods = list(pods_in(source, document, default_namespace, out))
        except TooLarge as exc:
            out.errors.append((source, str(exc)))
            continue
        if pods:
            out.pods.extend(pods)
        else:
            kind = str(document.get("kind") or "") or "document"
            out.skipped.append(Skipped(source, kind, _name(document), SKIP_NO_POD))
    return out


def device_class_names(
    device_classes: Iterable[tuple[str, Mapping[str, Any]]], detector: AcceleratorDetector
) -> tuple[list[str], list[str], list[Skipped]]:
    """(extended-resource patterns, class patterns, the DeviceClasses as skipped documents
    saying what each was used for).

    A DeviceClass hands out accelerators when its name is an accelerator class already, or when
    its selectors pick an accelerator driver (``device.driver == "gpu.nvidia.com"``): a site's
    own ``a100-80gb`` class. Its name then counts as an accelerator class, and its
    ``spec.extendedResourceName`` (KEP-5004) as an accelerator resource. Names are escaped: they
    are plain names, not globs.
    """
    resources: list[str] = []
    classes: list[str] = []
    skipped: list[Skipped] = []
    for source, obj in device_classes:
        name = _name(obj)
        spec = _map(obj.get("spec"))
        drivers = _DRIVER_RE.findall(_selector_text(spec.get("selectors")))
        extended = spec.get("extendedResourceName")
        # Only names the API server would take: a detector pattern starting with "!" or "~"
        # means something else (an exclusion, a capacity), and input must not switch
        # detection off for the rest of the review.
        if not _OBJECT_NAME.fullmatch(name) or (
            extended is not None and not _RESOURCE_NAME.fullmatch(str(extended))
        ):
            use = "not a valid DeviceClass (name or extendedResourceName): ignored"
            skipped.append(
                Skipped(source, DEVICE_CLASS_KIND, name, SKIP_DEVICE_CLASS.format(use=use))
            )
            continue
        accelerator = detector.is_accelerator_class(name) or any(
            detector.is_accelerator_class(d) for d in drivers
        )
        use = "its devices are not accelerators"
        if accelerator:
            classes.append(glob.escape(name))
            use = "accelerator class"
            if extended:
                resources.append(glob.escape(str(extended)))
                use += f"; extended resource {extended}"
        skipped.append(Skipped(source, DEVICE_CLASS_KIND, name, SKIP_DEVICE_CLASS.format(use=use)))
    return resources, classes, skipped


# A DNS-1123 subdomain (object names) and a qualified resource name (extended resources).
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_RESOURCE_NAME = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


def _selector_text(selectors: Any) -> str:
    if not isinstance(selectors, list):
        return ""
    return "\n".join(
        str(cel.get("expression") or "")
        for s in selectors
        if isinstance(s, Mapping)
        for cel in [s.get("cel")]
        if isinstance(cel, Mapping)
    )


def _name(document: Mapping[str, Any]) -> str:
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return ""
    return str(metadata.get("name") or metadata.get("generateName") or "")


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _map(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    # A malformed field (a number where a list belongs) finds nothing here; detection then
    # reports what is wrong with the pod in its own words.
    return value if isinstance(value, list) else []


def _is_pod_spec(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("containers"), list)


def _is_pod_template(value: Any) -> bool:
    return isinstance(value, Mapping) and _is_pod_spec(value.get("spec"))


def find_templates(obj: Any, path: str = "") -> list[tuple[str, Mapping[str, Any]]]:
    """Pod templates nested anywhere in a custom resource, found by shape: a template
    ({metadata, spec: {containers}}, e.g. Ray's groups) or an inline pod spec ({containers},
    e.g. a LLMInferenceService's template). ``status`` is never searched.

    Raises :class:`TooLarge` past ``MAX_SEARCH_NODES`` nodes or ``MAX_SEARCH_DEPTH`` levels:
    YAML aliases make a few lines into billions of nodes (a review of a hostile pull request
    must still end).
    """
    found: list[tuple[str, Mapping[str, Any]]] = []
    budget = [MAX_SEARCH_NODES]

    def walk(node: Any, where: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_SEARCH_DEPTH:
            raise TooLarge(ERR_TOO_LARGE)
        if _is_pod_template(node):
            found.append((where, node))
        elif _is_pod_spec(node):
            found.append((where, {"metadata": {}, "spec": node}))
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if key != "status":
                    walk(value, f"{where}.{key}" if where else str(key), depth + 1)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]", depth + 1)

    walk(obj, path, 0)
    return found


def _request(namespace: str, name: str, source: str) -> RequestInfo:
    return RequestInfo(uid=f"review:{source}", operation="CREATE", namespace=namespace, name=name)


def pods_in(
    source: str,
    document: Mapping[str, Any],
    default_namespace: str,
    context: Expansion | None = None,
) -> Iterator[PodUnderReview]:
    """The pods a document would create. ``context`` holds the other documents (runtimes) and
    receives the ResourceClaimTemplates an operator would create for the pods (a NIMService's
    ``draResources.claimCreationSpec``)."""
    kind = str(document.get("kind", ""))
    metadata = _map(document.get("metadata"))
    name = _name(document)
    namespace = str(metadata.get("namespace") or default_namespace)

    if kind == "AdmissionReview":
        yield _admission_review(source, document, default_namespace)
        return
    if kind == "Pod":
        yield PodUnderReview(
            source, kind, name, namespace, dict(document), _request(namespace, name, source)
        )
        return

    synthesise = SYNTHESISED.get(kind)
    if synthesise is not None:
        for path, pod, notes in synthesise(document, namespace, context or Expansion()):
            pod_name = f"{name}/{path}"
            item_source = f"{source}:{path}"
            request = _request(namespace, pod_name, item_source)
            yield PodUnderReview(item_source, kind, pod_name, namespace, pod, request, notes)
        return

    paths = TEMPLATE_PATHS.get(kind)
    templates = (
        [(".".join(p), _dig(document, p)) for p in paths if _is_pod_template(_dig(document, p))]
        if paths
        else find_templates(document.get("spec"), "spec")
    )
    for path, template in templates:
        pod_meta = {**_map(template.get("metadata")), "namespace": namespace}
        intent_notes = _merge_resource_metadata(kind, name, metadata, pod_meta) if not paths else []
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template["spec"]}
        pod_name = f"{name}/{path}"
        item_source = f"{source}:{path}"
        yield PodUnderReview(
            item_source,
            kind,
            pod_name,
            namespace,
            pod,
            _request(namespace, pod_name, item_source),
            intent_notes=intent_notes,
        )


def _merge_resource_metadata(
    kind: str, name: str, metadata: Mapping[str, Any], pod_meta: dict[str, Any]
) -> list[str]:
    """Put a custom resource's labels and annotations under its pod template's (which win)."""
    if kind in ANNOTATIONS_STAY_ON_RESOURCE:
        own = _map(metadata.get("annotations"))
        if INTENT_ANNOTATION in own and INTENT_ANNOTATION not in _map(pod_meta.get("annotations")):
            return [
                WARN_INTENT_ON_RESOURCE.format(
                    kind=kind, name=name, annotation=INTENT_ANNOTATION, operator="KubeRay"
                )
            ]
        return []
    for key in ("labels", "annotations"):
        pod_meta[key] = {**_map(metadata.get(key)), **_map(pod_meta.get(key))}
    return []


def _admission_review(
    source: str, document: Mapping[str, Any], default_namespace: str
) -> PodUnderReview:
    request = _map(document.get("request"))
    pod = _map(request.get("object"))
    pod_meta = _map(pod.get("metadata"))
    user = _map(request.get("userInfo"))
    groups = user.get("groups")
    info = RequestInfo(
        uid=str(request.get("uid") or f"review:{source}"),
        operation=str(request.get("operation") or "CREATE"),
        namespace=str(request.get("namespace") or pod_meta.get("namespace") or default_namespace),
        name=str(request.get("name") or pod_meta.get("name") or pod_meta.get("generateName") or ""),
        username=str(user.get("username") or ""),
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        dry_run=bool(request.get("dryRun")),
    )
    return PodUnderReview(source, "Pod", info.name, info.namespace, pod, info)


# -- custom resources whose pods are built from non-pod fields -----------------------------------

# Pod spec fields copied from a component to the synthesised pod: those detection and the
# policies read, plus what identifies the pod (its service account).
_POD_SPEC_FIELDS = (
    "serviceAccountName",
    "initContainers",
    "volumes",
    "runtimeClassName",
    "resourceClaims",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "securityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
    "imagePullSecrets",
    "priorityClassName",
    "schedulerName",
)

# (resource, namespace, the other documents) -> (path, pod, notes) for each pod it creates.
Synthesiser = Callable[
    [Mapping[str, Any], str, Expansion], Iterator[tuple[str, dict[str, Any], list[str]]]
]


def _pod(metadata: Mapping[str, Any], namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": namespace,
            "labels": _map(metadata.get("labels")),
            "annotations": _map(metadata.get("annotations")),
        },
        "spec": spec,
    }


def _merged_metadata(resource: Mapping[str, Any], inner: Mapping[str, Any]) -> dict[str, Any]:
    """The resource's labels and annotations with a component's own over them (they win)."""
    outer = _map(resource.get("metadata"))
    return {
        key: {**_map(outer.get(key)), **_map(inner.get(key))} for key in ("labels", "annotations")
    }


def _inference_service(
    document: Mapping[str, Any], namespace: str, context: Expansion
) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
    """KServe InferenceService: one pod per component (predictor, transformer, explainer).

    The component is a pod spec (``containers``, ``serviceAccountName``, ...) plus KServe's
    fields; ``model:`` or a framework section (``sklearn:``, ``huggingface:``, ...) is the
    model-server container KServe names ``kserve-container``. A multi-node ``workerSpec`` with
    containers is a pod of its own.
    """
    spec = _map(document.get("spec"))
    for component_name in KSERVE_COMPONENTS:
        component = spec.get(component_name)
        if not isinstance(component, Mapping):
            continue
        containers = [c for c in _list(component.get("containers")) if isinstance(c, Mapping)]
        notes: list[str] = []
        for key, value in component.items():
            if _is_model_server(key, value):
                server, note = _model_server(key, value, namespace, context.runtimes)
                containers.insert(0, server)
                notes += note
        pod_spec = {k: component[k] for k in _POD_SPEC_FIELDS if k in component}
        pod_spec["containers"] = containers
        metadata = _merged_metadata(document, component)
        yield f"spec.{component_name}", _pod(metadata, namespace, pod_spec), notes
        worker = component.get("workerSpec")
        if _is_pod_spec(worker):
            assert isinstance(worker, Mapping)
            worker_spec = {k: worker[k] for k in (*_POD_SPEC_FIELDS, "containers") if k in worker}
            yield f"spec.{component_name}.workerSpec", _pod(metadata, namespace, worker_spec), []


def _model_server(
    key: str, section: Mapping[str, Any], namespace: str, runtimes: list[Mapping[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    """The model-server container KServe builds: the ServingRuntime's container (image, args,
    default resources) with the section's fields over it, resources merged name by name."""
    fields = {k: v for k, v in section.items() if k not in _KSERVE_MODEL_FIELDS}
    runtime = _find_runtime(section, key, namespace, runtimes)
    if runtime is None:
        wanted = section.get("runtime") or _map(section.get("modelFormat")).get("name") or key
        note = NOTE_NO_RUNTIME.format(runtime=wanted)
        return {"name": KSERVE_CONTAINER, **fields}, [note] if "image" not in fields else []
    base = next(
        (
            _map(c)
            for c in _list(_dig(runtime, ("spec", "containers")))
            if isinstance(c, Mapping) and c.get("name") == KSERVE_CONTAINER
        ),
        {},
    )
    container = {**base, **fields, "name": KSERVE_CONTAINER}
    resources = {}
    for section_name in ("limits", "requests"):
        merged = {
            **_map(_map(base.get("resources")).get(section_name)),
            **_map(_map(fields.get("resources")).get(section_name)),
        }
        if merged:
            resources[section_name] = merged
    if resources:
        container["resources"] = {**_map(fields.get("resources")), **resources}
    return container, []


def _find_runtime(
    section: Mapping[str, Any], key: str, namespace: str, runtimes: list[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The runtime named by ``runtime:``, else one that auto-selects the model format (the
    framework key, e.g. ``sklearn``, names the format in the older syntax)."""
    named = section.get("runtime")
    fmt = _map(section.get("modelFormat")).get("name") or (key if key != "model" else None)
    for runtime in runtimes:
        meta = _map(runtime.get("metadata"))
        if runtime.get("kind") == "ServingRuntime" and meta.get("namespace") not in (
            None,
            namespace,
        ):
            continue
        if named:
            if meta.get("name") == named:
                return runtime
            continue
        spec = _map(runtime.get("spec"))
        for supported in _list(spec.get("supportedModelFormats")):
            if (
                isinstance(supported, Mapping)
                and supported.get("name") == fmt
                and supported.get("autoSelect") is True
            ):
                return runtime
    return None


def _is_model_server(key: str, value: Any) -> bool:
    """Is this component field `model:` or a framework section (`sklearn:`, `triton:`, ...)?"""
    if (
        key in KSERVE_COMPONENT_FIELDS
        or key in _POD_SPEC_MAPPINGS
        or not isinstance(value, Mapping)
    ):
        return False
    return bool(set(value) & _MODEL_SERVER_KEYS)


def _nim_service(
    document: Mapping[str, Any], namespace: str, context: Expansion
) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
    """NVIDIA NIMService: the operator runs one container ``nim`` from ``spec.image`` with
    ``spec.resources`` and ``spec.env``, under a service account named after the NIMService,
    with ``spec.annotations``/``spec.labels`` on the pods, and DRA claims from
    ``spec.draResources`` (existing claims and templates, or templates it creates from a
    ``claimCreationSpec``: synthesised here into ``claims`` so that they resolve)."""
    spec = _map(document.get("spec"))
    name = _name(document)
    image = _map(spec.get("image"))
    repository, tag = image.get("repository"), image.get("tag")
    container: dict[str, Any] = {
        "name": NIM_CONTAINER,
        "image": f"{repository}:{tag}" if repository and tag else str(repository or ""),
    }
    for key in ("resources", "env"):
        if key in spec:
            container[key] = spec[key]
    pod_spec: dict[str, Any] = {"serviceAccountName": name, "containers": [container]}
    for key in ("runtimeClassName", "nodeSelector", "tolerations"):
        if key in spec:
            pod_spec[key] = spec[key]
    resource_claims = []
    for i, entry in enumerate(_list(spec.get("draResources"))):
        if not isinstance(entry, Mapping):
            continue
        claim_name = f"dra-{i}"
        if entry.get("resourceClaimName"):
            resource_claims.append(
                {"name": claim_name, "resourceClaimName": entry["resourceClaimName"]}
            )
        elif entry.get("resourceClaimTemplateName"):
            resource_claims.append(
                {
                    "name": claim_name,
                    "resourceClaimTemplateName": entry["resourceClaimTemplateName"],
                }
            )
        elif isinstance(entry.get("claimCreationSpec"), Mapping):
            template = f"{name}-{claim_name}"
            context.claims.append(
                _nim_claim_template(template, namespace, entry["claimCreationSpec"])
            )
            resource_claims.append({"name": claim_name, "resourceClaimTemplateName": template})
    if resource_claims:
        pod_spec["resourceClaims"] = resource_claims
        container["resources"] = {
            **_map(container.get("resources")),
            "claims": [{"name": c["name"]} for c in resource_claims],
        }
    metadata = _merged_metadata(document, spec)
    yield "spec", _pod(metadata, namespace, pod_spec), []


def _nim_claim_template(name: str, namespace: str, creation: Mapping[str, Any]) -> dict[str, Any]:
    requests = [
        {
            "name": str(device.get("name") or f"device-{i}"),
            "exactly": {
                "deviceClassName": device.get("deviceClassName"),
                "allocationMode": "ExactCount",
                "count": device.get("count", 1),
            },
        }
        for i, device in enumerate(_list(creation.get("devices")))
        if isinstance(device, Mapping)
    ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": requests}}},
    }


SYNTHESISED: dict[str, Synthesiser] = {
    "InferenceService": _inference_service,
    "NIMService": _nim_service,
}
