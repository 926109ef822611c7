"""Accelerator detection: decide whether a Pod uses accelerators, and how many.

This module builds the ``workload`` part of the policy input (see CONTRACT.md). It inspects
only what actually allocates hardware:

* extended resources (device plugins, e.g. ``nvidia.com/gpu``) in the ``requests`` and
  ``limits`` of every container, init container and ephemeral container;
* Dynamic Resource Allocation (DRA) claims listed in ``spec.resourceClaims``, resolved to
  their ResourceClaim / ResourceClaimTemplate objects to read the requested device classes;
* DRA-backed extended resources (``deviceclass.resource.kubernetes.io/<class>``).

Names, labels, env vars, node selectors, tolerations and ``runtimeClassName`` are ignored on
purpose: they do not allocate a device, and a policy that trusted them could be dodged (or
triggered) by renaming things.

Everything here is pure: no I/O at import or call time (claim lookups go through the
caller-supplied :class:`ClaimResolver`), and detectors hold only immutable compiled patterns, so
one instance can be shared by all request handlers.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

__all__ = [
    "DEFAULT_DEVICE_CLASSES",
    "DEFAULT_RESOURCE_PATTERNS",
    "DRA_EXTENDED_RESOURCE_PREFIX",
    "AcceleratorDetector",
    "AcceleratorUse",
    "ClaimResolver",
    "ClaimUse",
    "DetectError",
    "StaticClaimResolver",
    "Workload",
    "parse_count",
]

ContainerType = Literal["container", "initContainer", "ephemeralContainer"]
ClaimSource = Literal["resourceClaimName", "resourceClaimTemplateName"]
ClaimKind = Literal["ResourceClaim", "ResourceClaimTemplate"]

# Extended-resource names advertised by accelerator device plugins. Glob syntax (fnmatch),
# case-sensitive. A leading "!" excludes names matched by an earlier pattern.
DEFAULT_RESOURCE_PATTERNS: tuple[str, ...] = (
    "nvidia.com/gpu",
    # NVIDIA device plugin time-slicing/MPS with renameByDefault advertises the shared name.
    "nvidia.com/gpu.shared",
    # MIG "mixed" strategy: one resource per profile, e.g. nvidia.com/mig-1g.10gb.
    "nvidia.com/mig-*",
    "amd.com/gpu",
    # Intel GPU plugin: gpu.intel.com/i915, gpu.intel.com/xe and their *_monitoring variants.
    "gpu.intel.com/*",
    # GPU Aware Scheduling adds fractional/capacity resources next to i915/xe. They are not
    # device counts (millicores: 500, memory.max: 8Gi) and would blow up `total`; the pod is
    # still detected through the i915/xe request that GAS requires alongside them.
    "!gpu.intel.com/millicores",
    "!gpu.intel.com/memory.max",
    "!gpu.intel.com/tiles",
    "habana.ai/gaudi",
    "google.com/tpu",
    # Neuron device plugin: aws.amazon.com/neuron, neuroncore, neurondevice.
    "aws.amazon.com/neuron*",
    # DRA-backed extended resources (deviceclass.resource.kubernetes.io/<class>) are matched
    # against the device-class patterns instead, so they follow that configuration. A
    # DeviceClass's spec.extendedResourceName (any name) must be added here by the operator.
)

# DeviceClass names (DRA) whose devices are accelerators. Same glob syntax as above.
DEFAULT_DEVICE_CLASSES: tuple[str, ...] = (
    # NVIDIA k8s-dra-driver-gpu. Its compute-domain-*.nvidia.com classes are deliberately not
    # listed: they hand out IMEX channels for multi-node NVLink, not GPUs, and pods using them
    # also claim the GPUs themselves.
    "gpu.nvidia.com",
    "mig.nvidia.com",
    "vfio.gpu.nvidia.com",
    "gpu.amd.com",
    "gpu.intel.com",
    "gaudi.intel.com",
    "tpu.google.com",
    # AWS Neuron DRA driver ships "neuron.aws.com"; the second spelling is kept for safety.
    "neuron.aws.com",
    "neuron.amazonaws.com",
)

# KEP-5004 (DRAExtendedResource, Kubernetes 1.34+): any DeviceClass can be requested as the
# extended resource "<prefix><class name>"; the scheduler then creates a claim for it.
DRA_EXTENDED_RESOURCE_PREFIX = "deviceclass.resource.kubernetes.io/"

_CONTAINER_LISTS: tuple[tuple[str, ContainerType], ...] = (
    # Startup order, so the accelerators list reads in the order the kubelet runs containers.
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
)

# Kubernetes quantities are int64 underneath; anything larger is garbage, and bounding it keeps
# a hostile "1e999999999" from turning into a huge integer computation on the hot path.
_MAX_COUNT = 2**63 - 1
_MAX_EXPONENT = 30

# <sign><number><suffix>, suffix being a decimal exponent, a binary SI or a decimal SI suffix.
# The exponent branch comes first so that "1E3" is 1000 while a bare "1E" is 1 exa.
_QUANTITY_RE = re.compile(
    r"(?P<sign>[+-]?)(?P<num>\d+(?:\.\d*)?|\.\d+)"
    r"(?:[eE](?P<exp>[+-]?\d+)|(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<dec>[numkMGTPE]))?"
)
_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIX = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class DetectError(ValueError):
    """A pod (or a claim object it uses) is malformed in a way that prevents detection.

    ``str(err)`` is meant for the pod author: it names the field and what is wrong with it.
    ``field`` holds just the field path, for the policy violation's ``field`` attribute.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


@dataclass(frozen=True, slots=True)
class AcceleratorUse:
    """One container's use of one accelerator extended resource (count > 0)."""

    container: str
    container_type: ContainerType
    resource: str
    count: int


@dataclass(frozen=True, slots=True)
class ClaimUse:
    """One entry of the pod's ``spec.resourceClaims``.

    ``count`` is the number of *accelerator* devices the claim allocates (0 for a claim that
    only asks for non-accelerator devices such as NICs), so that ``Workload.total`` is simply
    extended-resource accelerators plus the claims' counts.
    """

    name: str
    source: ClaimSource
    object_name: str | None
    device_classes: tuple[str, ...]
    count: int
    accelerator: bool
    resolved: bool
    # allocationMode "All": every matching device on the node, a number unknown at admission
    # (``count`` is then only a lower bound); policies refuse it unless they allow it.
    all_devices: bool = False


@dataclass(frozen=True, slots=True)
class Workload:
    """What the pod holds in accelerators; ``to_input()`` is the policy input's "workload"."""

    accelerators: tuple[AcceleratorUse, ...]
    claims: tuple[ClaimUse, ...]
    total: int

    @property
    def gpu(self) -> bool:
        """True when any container holds an accelerator or any claim is an accelerator claim."""
        return any(a.count > 0 for a in self.accelerators) or any(
            c.accelerator for c in self.claims
        )

    def to_input(self) -> dict[str, Any]:
        return {
            "accelerators": [
                {
                    "container": a.container,
                    "containerType": a.container_type,
                    "resource": a.resource,
                    "count": a.count,
                }
                for a in self.accelerators
            ],
            "claims": [
                {
                    "name": c.name,
                    "source": c.source,
                    "objectName": c.object_name,
                    "deviceClasses": list(c.device_classes),
                    "count": c.count,
                    "accelerator": c.accelerator,
                    "resolved": c.resolved,
                    "allDevices": c.all_devices,
                }
                for c in self.claims
            ],
            "total": self.total,
        }


class ClaimResolver(Protocol):
    """Looks up DRA claim objects; the webhook backs this with the API server (or a cache)."""

    def lookup(self, namespace: str, kind: ClaimKind, name: str) -> Mapping[str, Any] | None:
        """Return the object (any resource.k8s.io version) or None when it does not exist.

        None makes the claim count as an unresolved accelerator claim (fail closed). Errors
        other than "not found" should be raised, not mapped to None: they propagate out of
        ``detect()`` so the webhook can apply its failure policy.
        """
        ...


class StaticClaimResolver:
    """A :class:`ClaimResolver` over a fixed set of manifests (offline ``review`` and tests).

    Objects without ``metadata.namespace`` are indexed under ``default_namespace``, matching
    what ``kubectl apply`` does with them; the detector applies the same default to pods.
    """

    __slots__ = ("_objects",)

    def __init__(
        self,
        manifests: Iterable[Mapping[str, Any] | None],
        *,
        default_namespace: str = "default",
    ) -> None:
        objects: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for obj in _flatten_lists(manifests):
            kind = obj.get("kind")
            api_version = obj.get("apiVersion")
            if kind not in ("ResourceClaim", "ResourceClaimTemplate"):
                continue
            if not isinstance(api_version, str) or not api_version.startswith("resource.k8s.io/"):
                continue
            metadata = obj.get("metadata")
            if not isinstance(metadata, Mapping):
                continue
            name = metadata.get("name")
            namespace = metadata.get("namespace") or default_namespace
            if isinstance(name, str) and name and isinstance(namespace, str):
                objects[(namespace, kind, name)] = obj
        self._objects = objects

    def lookup(self, namespace: str, kind: ClaimKind, name: str) -> Mapping[str, Any] | None:
        return self._objects.get((namespace, kind, name))

    def __len__(self) -> int:
        return len(self._objects)


def _flatten_lists(manifests: Iterable[Mapping[str, Any] | None]) -> Iterable[Mapping[str, Any]]:
    # `kubectl get -o yaml` output is a `kind: List`; accept it alongside plain documents.
    for obj in manifests:
        if not isinstance(obj, Mapping):
            continue  # empty YAML documents load as None
        items = obj.get("items")
        if (
            isinstance(obj.get("kind"), str)
            and obj["kind"].endswith("List")
            and isinstance(items, list)
        ):
            yield from _flatten_lists(items)
        else:
            yield obj


def parse_count(value: object) -> int:
    """Parse an extended-resource quantity into a whole device count.

    Accepts ints, finite floats and Kubernetes quantity strings ("1", "2", "1k" = 1000,
    "1Ki" = 1024, "1e3", "500m"). Fractions round *up* ("500m" -> 1): a policy comparing the
    count with a limit must never see fewer devices than the pod could get.
    Raises :class:`DetectError` for anything else (bools, negatives, garbage strings).
    """
    if isinstance(value, bool):
        # YAML 1.1 turns `yes`/`true` into a bool; Python would happily treat True as 1.
        raise DetectError(f"{_show(value)} is not a valid quantity; use a number such as 1")
    if isinstance(value, int):
        amount = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise DetectError(f"{_show(value)} is not a valid quantity")
        amount = Fraction(value)
    elif isinstance(value, str):
        amount = _parse_quantity_string(value)
    else:
        raise DetectError(f'{_show(value)} is not a valid quantity; use a number such as "1"')
    if amount < 0:
        raise DetectError(f"{_show(value)} is negative; a resource quantity must be >= 0")
    count = math.ceil(amount)
    if count > _MAX_COUNT:
        raise DetectError(f"{_show(value)} is too large to be a resource quantity")
    return count


def _parse_quantity_string(text: str) -> Fraction:
    match = _QUANTITY_RE.fullmatch(text.strip())
    if match is None:
        raise DetectError(f'{_show(text)} is not a valid quantity; use a number such as "1"')
    mantissa = Fraction(match["num"])
    if match["sign"] == "-":
        mantissa = -mantissa
    if mantissa == 0:
        return mantissa
    if match["bin"]:
        return mantissa * (1 << _BINARY_SUFFIX[match["bin"]])
    exponent = int(match["exp"]) if match["exp"] else _DECIMAL_SUFFIX.get(match["dec"] or "", 0)
    if exponent > _MAX_EXPONENT:
        raise DetectError(f"{_show(text)} is too large to be a resource quantity")
    # Anything below 1e-30 still rounds up to one device, so clamping cannot change the result
    # while it keeps the arithmetic small.
    return mantissa * Fraction(10) ** max(exponent, -_MAX_EXPONENT)


def _show(value: object) -> str:
    """Render a user-supplied value for an error message: JSON-ish, and bounded in length."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _compile_globs(patterns: Sequence[str], what: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Compile globs into one include regex and one exclude ("!"-prefixed) regex.

    One alternation per set means a single regex scan per name on the hot path, instead of a
    Python loop over fnmatch calls (which also re-checks its cache and case-folds on some OSes;
    fnmatch.translate + re is always case-sensitive, which resource names are).
    """
    if isinstance(patterns, str):
        # A bare string is a Sequence[str] of characters: almost certainly a config mistake.
        raise TypeError(f"{what} must be a sequence of patterns, not a single string")
    include: list[str] = []
    exclude: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"{what}: pattern {pattern!r} is not a string")
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if not body or body != body.strip():
            raise ValueError(f"{what}: invalid pattern {pattern!r}")
        (exclude if negated else include).append(fnmatch.translate(body))
    return _alternation(include), _alternation(exclude)


def _alternation(translated: list[str]) -> re.Pattern[str]:
    # "(?!)" never matches: an empty pattern list selects nothing rather than everything.
    return re.compile("|".join(translated) if translated else "(?!)")


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _key(path: str, key: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}[{_show(key)}]"
    return f"{path}.{key}" if path else key


def _optional_mapping(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DetectError(f"expected an object, got {_show(value)}", field=_key(path, key))
    return value


def _optional_list(parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DetectError(f"expected a list, got {_show(value)}", field=_key(path, key))
    return value


class AcceleratorDetector:
    """Computes a pod's :class:`Workload`. Immutable after construction and thread-safe."""

    __slots__ = ("_class_exclude", "_class_include", "_res_exclude", "_res_include")

    def __init__(
        self,
        resource_patterns: Sequence[str] = DEFAULT_RESOURCE_PATTERNS,
        device_classes: Sequence[str] = DEFAULT_DEVICE_CLASSES,
    ) -> None:
        # Compiled once here: detect() runs for every pod creation in the cluster.
        self._res_include, self._res_exclude = _compile_globs(
            resource_patterns, "resource_patterns"
        )
        self._class_include, self._class_exclude = _compile_globs(device_classes, "device_classes")

    def is_accelerator_resource(self, name: str) -> bool:
        """Whether an extended-resource name denotes accelerators."""
        if self._res_include.match(name) and not self._res_exclude.match(name):
            return True
        if name.startswith(DRA_EXTENDED_RESOURCE_PREFIX):
            return self.is_accelerator_class(name[len(DRA_EXTENDED_RESOURCE_PREFIX) :])
        return False

    def is_accelerator_class(self, device_class: str) -> bool:
        """Whether a DRA DeviceClass name denotes accelerators."""
        return bool(
            self._class_include.match(device_class) and not self._class_exclude.match(device_class)
        )

    def detect(
        self,
        pod: Mapping[str, Any],
        resolver: ClaimResolver | None = None,
        *,
        namespace: str | None = None,
    ) -> Workload:
        """Inspect a Pod object (as JSON/YAML-decoded data) and return its :class:`Workload`.

        Claims are resolved in ``namespace`` if given (the AdmissionRequest's namespace is the
        authoritative one), else ``metadata.namespace``, else "default" (what kubectl applies
        a namespace-less manifest to). Raises :class:`DetectError` on malformed input.
        """
        if not isinstance(pod, Mapping):
            raise DetectError(f"expected a Pod object, got {_show(pod)}", field="pod")
        spec = _optional_mapping(pod, "spec", "")
        spec_path = "spec"
        if namespace is None:
            metadata = _optional_mapping(pod, "metadata", "")
            ns = metadata.get("namespace")
            namespace = ns if isinstance(ns, str) and ns else "default"

        accelerators: list[AcceleratorUse] = []
        # Per-resource device counts, combined below the way the scheduler computes a pod's
        # effective request (k8s.io/component-helpers resource.PodRequests).
        regular: dict[str, int] = {}
        ephemeral: dict[str, int] = {}
        sidecars_so_far: dict[str, int] = {}
        init_peak: dict[str, int] = {}

        for list_key, container_type in _CONTAINER_LISTS:
            containers = _optional_list(spec, list_key, spec_path)
            for i, container in enumerate(containers):
                path = _index(f"{spec_path}.{list_key}", i)
                if not isinstance(container, Mapping):
                    raise DetectError(
                        f"expected a container object, got {_show(container)}", field=path
                    )
                name = container.get("name")
                container_name = name if isinstance(name, str) and name else f"#{i}"
                usage = self._container_usage(container, container_name, path)
                for resource, count in usage.items():
                    accelerators.append(
                        AcceleratorUse(container_name, container_type, resource, count)
                    )

                if container_type == "container":
                    _add(regular, usage)
                elif container_type == "ephemeralContainer":
                    # Ephemeral containers may not set resources (the API server rejects it), but
                    # if one slips through we count it rather than under-count.
                    _add(ephemeral, usage)
                elif container.get("restartPolicy") == "Always":
                    # Sidecar (KEP-753): keeps running next to everything started after it.
                    _add(sidecars_so_far, usage)
                    _max_into(init_peak, sidecars_so_far)
                else:
                    # A classic init container runs alone, but alongside the sidecars that were
                    # started before it - exactly how the scheduler computes pod requests.
                    running = dict(sidecars_so_far)
                    _add(running, usage)
                    _max_into(init_peak, running)

        steady = dict(regular)
        _add(steady, sidecars_so_far)
        _max_into(steady, init_peak)
        _add(steady, ephemeral)

        claims = self._claims(spec, spec_path, namespace, resolver)
        total = sum(steady.values()) + sum(c.count for c in claims if c.accelerator)
        return Workload(tuple(accelerators), claims, total)

    # -- extended resources --------------------------------------------------------------------

    def _container_usage(
        self, container: Mapping[str, Any], container_name: str, path: str
    ) -> dict[str, int]:
        """Accelerator counts of one container: limit if set, else request; max if they differ."""
        resources = _optional_mapping(container, "resources", path)
        res_path = f"{path}.resources"
        found: dict[str, int] = {}
        for section in ("limits", "requests"):
            values = _optional_mapping(resources, section, res_path)
            for resource, raw in values.items():
                if not isinstance(resource, str):
                    raise DetectError(
                        f"resource name {_show(resource)} is not a string "
                        f"(container {_show(container_name)})",
                        field=f"{res_path}.{section}",
                    )
                if not self.is_accelerator_resource(resource):
                    continue  # cpu, memory, rdma/ib, ... are never parsed: not our business
                try:
                    count = parse_count(raw)
                except DetectError as err:
                    raise DetectError(
                        f"{err.reason} (container {_show(container_name)})",
                        field=f"{res_path}.{section}[{_show(resource)}]",
                    ) from None
                # Kubernetes requires request == limit for extended resources; if they differ
                # anyway, the larger one is what the pod may end up holding.
                found[resource] = max(found.get(resource, 0), count)
        # Zero means "none": such entries neither make a GPU pod nor appear in the output.
        return {r: c for r, c in sorted(found.items()) if c > 0}

    # -- DRA claims ----------------------------------------------------------------------------

    def _claims(
        self,
        spec: Mapping[str, Any],
        spec_path: str,
        namespace: str,
        resolver: ClaimResolver | None,
    ) -> tuple[ClaimUse, ...]:
        # spec.resourceClaims is the source of truth; containers' resources.claims only say which
        # container sees which claim, and a claim holds its devices whether referenced or not.
        out: list[ClaimUse] = []
        for i, entry in enumerate(_optional_list(spec, "resourceClaims", spec_path)):
            path = _index(f"{spec_path}.resourceClaims", i)
            if not isinstance(entry, Mapping):
                raise DetectError(f"expected an object, got {_show(entry)}", field=path)
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise DetectError("name must be a non-empty string", field=f"{path}.name")
            source, object_name = _claim_source(entry, path)
            kind = CLAIM_KINDS[source]
            obj = resolver.lookup(namespace, kind, object_name) if resolver is not None else None
            if obj is None:
                # Fail closed: if we cannot see what the claim asks for (no resolver, or the
                # object does not exist yet), assume it is one accelerator. Otherwise a pod author
                # could escape governance by creating the template only after the pod.
                out.append(ClaimUse(name, source, object_name, (), 1, True, False))
                continue
            try:
                classes, count, accelerator = self._claim_devices(obj, kind)
            except DetectError as err:
                # Point the pod author at the claim entry, and say what is wrong in the object.
                raise DetectError(
                    f"{kind} {_show(f'{namespace}/{object_name}')}: {err}", field=path
                ) from None
            all_devices = self._all_devices(obj, kind)
            out.append(
                ClaimUse(name, source, object_name, classes, count, accelerator, True, all_devices)
            )
        return tuple(out)

    def _all_devices(self, obj: Mapping[str, Any], kind: ClaimKind) -> bool:
        """Does any accelerator alternative ask for allocationMode All? (obj already checked)"""
        spec = obj.get("spec") or {}
        if kind == "ResourceClaimTemplate":
            spec = spec.get("spec") or {}
        for request in (spec.get("devices") or {}).get("requests") or []:
            alternatives = [
                request,
                request.get("exactly") or {},
                *(request.get("firstAvailable") or []),
            ]
            for alt in alternatives:
                device_class = alt.get("deviceClassName")
                if (
                    isinstance(device_class, str)
                    and self.is_accelerator_class(device_class)
                    and alt.get("allocationMode") == "All"
                ):
                    return True
        return False

    def _claim_devices(
        self, obj: Mapping[str, Any], kind: ClaimKind
    ) -> tuple[tuple[str, ...], int, bool]:
        """(device classes seen, accelerator device count, is accelerator claim) of an object."""
        if not isinstance(obj, Mapping):
            raise DetectError(f"expected an object, got {_show(obj)}")
        claim_spec = _optional_mapping(obj, "spec", "")
        spec_path = "spec"
        if kind == "ResourceClaimTemplate":
            claim_spec = _optional_mapping(claim_spec, "spec", "spec")
            spec_path = "spec.spec"

        legacy_class = claim_spec.get("resourceClassName")
        if isinstance(legacy_class, str) and "devices" not in claim_spec:
            # resource.k8s.io/v1alpha2 ("classic DRA", Kubernetes <= 1.30): a single class and
            # opaque parameters, so the number of devices is unknown; count at least one.
            accelerator = self.is_accelerator_class(legacy_class)
            return (legacy_class,), int(accelerator), accelerator

        devices = _optional_mapping(claim_spec, "devices", spec_path)
        requests = _optional_list(devices, "requests", f"{spec_path}.devices")
        classes: list[str] = []
        total = 0
        accelerator = False
        for i, request in enumerate(requests):
            rpath = _index(f"{spec_path}.devices.requests", i)
            req_classes, req_count, req_accel = self._request_devices(request, rpath)
            classes.extend(c for c in req_classes if c not in classes)
            if req_accel:
                accelerator = True
                total += req_count
        return tuple(classes), total, accelerator

    def _request_devices(self, request: object, path: str) -> tuple[list[str], int, bool]:
        if not isinstance(request, Mapping):
            raise DetectError(f"expected an object, got {_show(request)}", field=path)
        # The three shapes in use:
        #   v1alpha3/v1beta1: deviceClassName/allocationMode/count on the request itself;
        #   v1beta2/v1:       `exactly: {...}` or `firstAvailable: [{...}, ...]`;
        #   v1beta1 (1.33):   firstAvailable directly on the request.
        alternatives: list[tuple[Mapping[str, Any], str]] = []
        if "exactly" in request:
            alternatives.append((_optional_mapping(request, "exactly", path), f"{path}.exactly"))
        for j, sub in enumerate(_optional_list(request, "firstAvailable", path)):
            sub_path = _index(f"{path}.firstAvailable", j)
            if not isinstance(sub, Mapping):
                raise DetectError(f"expected an object, got {_show(sub)}", field=sub_path)
            alternatives.append((sub, sub_path))
        if "deviceClassName" in request:
            alternatives.append((request, path))
        if not alternatives:
            # A shape we do not know (a future API version?): fail closed as one accelerator
            # rather than wave the pod through as CPU-only.
            return [], 1, True

        classes: list[str] = []
        count = 0
        accelerator = False
        for alt, alt_path in alternatives:
            device_class = alt.get("deviceClassName")
            if not isinstance(device_class, str) or not device_class:
                raise DetectError(
                    "deviceClassName must be a non-empty string",
                    field=f"{alt_path}.deviceClassName",
                )
            if device_class not in classes:
                classes.append(device_class)
            if not self.is_accelerator_class(device_class):
                continue
            # Any accelerator alternative makes the request an accelerator request: the
            # scheduler may pick it. Count the largest accelerator alternative it could pick.
            accelerator = True
            # max(1, ...): an accelerator request always allocates at least one device.
            count = max(count, 1, _request_count(alt, alt_path))
        return classes, count, accelerator


def _request_count(alt: Mapping[str, Any], path: str) -> int:
    mode = alt.get("allocationMode") or "ExactCount"
    if mode == "All":
        # "All matching devices in the pool": the real number depends on the node picked at
        # scheduling time and is unknowable at admission. Allocation needs at least one device,
        # so 1 is a safe lower bound that keeps the pod classified (and governed) as a GPU pod.
        return 1
    if mode != "ExactCount":
        raise DetectError(
            f'{_show(mode)} is not a known allocationMode (expected "ExactCount" or "All")',
            field=f"{path}.allocationMode",
        )
    raw = alt.get("count")
    if raw is None:
        return 1  # API default for ExactCount
    try:
        return parse_count(raw)
    except DetectError as err:
        raise DetectError(err.reason, field=f"{path}.count") from None


CLAIM_KINDS: dict[ClaimSource, ClaimKind] = {
    "resourceClaimName": "ResourceClaim",
    "resourceClaimTemplateName": "ResourceClaimTemplate",
}


def claim_references(pod: Mapping[str, Any]) -> list[tuple[ClaimKind, str]]:
    """(kind, name) of the objects the pod's `spec.resourceClaims` name, for a resolver to fetch.

    Malformed entries are skipped here: `AcceleratorDetector.detect` reports them.
    """
    refs: list[tuple[ClaimKind, str]] = []
    spec = pod.get("spec")
    entries = spec.get("resourceClaims") if isinstance(spec, Mapping) else None
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, Mapping):
            continue
        try:
            source, name = _claim_source(entry, f"spec.resourceClaims[{i}]")
        except DetectError:
            continue
        refs.append((CLAIM_KINDS[source], name))
    return refs


def _claim_source(entry: Mapping[str, Any], path: str) -> tuple[ClaimSource, str]:
    # Current API: resourceClaimName | resourceClaimTemplateName on the entry. v1alpha2-era pods
    # nested them under `source:`; accept both, but exactly one reference overall.
    holder: Mapping[str, Any] = entry
    holder_path = path
    if "source" in entry and not (
        {"resourceClaimName", "resourceClaimTemplateName"} & entry.keys()
    ):
        holder = _optional_mapping(entry, "source", path)
        holder_path = f"{path}.source"
    found: list[tuple[ClaimSource, str]] = []
    keys: tuple[ClaimSource, ...] = ("resourceClaimName", "resourceClaimTemplateName")
    for key in keys:
        value = holder.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise DetectError(
                f"expected a non-empty string, got {_show(value)}", field=f"{holder_path}.{key}"
            )
        found.append((key, value))
    if len(found) != 1:
        raise DetectError(
            "exactly one of resourceClaimName or resourceClaimTemplateName must be set",
            field=holder_path,
        )
    return found[0]


def _add(into: dict[str, int], usage: Mapping[str, int]) -> None:
    for resource, count in usage.items():
        into[resource] = into.get(resource, 0) + count


def _max_into(into: dict[str, int], other: Mapping[str, int]) -> None:
    for resource, count in other.items():
        into[resource] = max(into.get(resource, 0), count)
