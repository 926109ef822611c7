"""Accelerator detection: decide whether a Pod uses accelerators, how many, and by which path.

This module builds the ``workload`` part of the policy input (webhook/policies/README.md,
"Input"; the paths and their rationale: docs/accelerator-detection.md). A pod is *governed*
(sent to the policy) when it reaches an accelerator by any path a namespace editor controls.
Two kinds:

**Counted** paths allocate devices, and their number goes into ``total`` (the intent's budget):

* extended resources (device plugins) in the ``requests`` and ``limits`` of every container,
  init container and ephemeral container. The defaults cover whole vendor domains
  (``nvidia.com/*``, ``amd.com/*``, ``huawei.com/*``, ...) so that a renamed or new product
  (``nvidia.com/pgpu``, sandbox passthrough names, time-slicing renames) is never missed, with
  ``!`` exclusions for the NICs that share those domains. ``~`` marks *capacity* resources
  (HAMi ``nvidia.com/gpumem``, Intel GAS ``millicores``): they are amounts, not devices, so they
  count one device only when the container holds no device-count resource next to them;
* Dynamic Resource Allocation (DRA) claims listed in ``spec.resourceClaims``, resolved to
  their ResourceClaim / ResourceClaimTemplate objects to read the requested device classes;
* DRA-backed extended resources (``deviceclass.resource.kubernetes.io/<class>``);
* GPU-sharing schedulers' pod annotations (KAI / Run:ai ``gpu-fraction``, ``gpu-memory``,
  ``gpu-fraction-num-devices``): a share of a GPU still occupies a device, so it counts as
  ``gpu-fraction-num-devices`` (default 1) devices of the resource named like the annotation.

**Side doors** reach devices without allocating them; they are not counted (there is nothing
to count) but they are governed, and listed in ``sideDoors`` for the ``accelerator-side-door``
rule to refuse:

* env vars that a container runtime hook turns into device nodes (``NVIDIA_VISIBLE_DEVICES``,
  ``AMD_VISIBLE_DEVICES``, ``HABANA_VISIBLE_DEVICES``, ...; values that expose nothing, such as
  ``void``, are not side doors). Application-level selectors (``CUDA_VISIBLE_DEVICES``,
  ``ROCR_VISIBLE_DEVICES``, ``NEURON_RT_VISIBLE_CORES``, ...) only narrow what is already
  mounted, so they are ignored;
* ``hostPath`` volumes of device nodes, or of any ancestor of them (``/dev``, ``/``);
* privileged containers, which see every device on the node;
* a GPU ``runtimeClassName`` on a pod that allocates no accelerator (with an allocation it is
  the ordinary way to run one);
* pod annotations some runtimes read as device requests (CDI ``cdi.k8s.io/*``).

Names, labels, node selectors and tolerations are still ignored on purpose: they neither
allocate nor expose a device, and a policy that trusted them could be dodged (or triggered)
by renaming things.

Everything here is pure: no I/O at import or call time (claim lookups go through the
caller-supplied :class:`ClaimResolver`), and detectors hold only immutable compiled patterns, so
one instance can be shared by all request handlers.
"""

from __future__ import annotations

import fnmatch
import json
import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, NamedTuple, Protocol

from identity.manifests import objects

__all__ = [
    "DEFAULT_DEVICE_ANNOTATIONS",
    "DEFAULT_DEVICE_CLASSES",
    "DEFAULT_DEVICE_ENV",
    "DEFAULT_DEVICE_HOST_PATHS",
    "DEFAULT_RESOURCE_PATTERNS",
    "DEFAULT_RUNTIME_CLASSES",
    "DEFAULT_SHARING_ANNOTATIONS",
    "DRA_EXTENDED_RESOURCE_PREFIX",
    "NO_DEVICE_ENV_VALUES",
    "AcceleratorDetector",
    "AcceleratorUse",
    "ClaimResolver",
    "ClaimUse",
    "DetectError",
    "SideDoor",
    "StaticClaimResolver",
    "Workload",
    "parse_count",
]

ContainerType = Literal["container", "initContainer", "ephemeralContainer"]
ClaimSource = Literal["resourceClaimName", "resourceClaimTemplateName"]
ClaimKind = Literal["ResourceClaim", "ResourceClaimTemplate"]
SideDoorKind = Literal["env", "hostPath", "privileged", "runtimeClass", "annotation"]

# Extended-resource names advertised by accelerator device plugins. Glob syntax (fnmatch),
# case-sensitive, evaluated in this order of precedence:
#   "!<glob>"  never an accelerator (NICs and other devices that share a vendor's domain);
#   "~<glob>"  a *capacity* resource: an amount of a shared device (memory, cores, percent),
#              not a device count. It counts one device, and only in a container that holds no
#              device-count resource (the sharing plugin's count resource is usually added
#              next to it, by the user or by the plugin's own webhook);
#   "<glob>"   a device count.
# Whole vendor domains are listed on purpose: an allow-list of product names misses the next
# product (and every rename), while a NIC wrongly counted as a GPU only over-counts - the
# operator sees it in a denial and adds a "!" exclusion. CEL (the chart's matchConditions)
# can express exact names and "prefix*" includes; "!"/"~" entries may put "*" anywhere.
DEFAULT_RESOURCE_PATTERNS: tuple[str, ...] = (
    # NVIDIA: gpu, gpu.shared (time-slicing/MPS renameByDefault), mig-<profile> (MIG "mixed"),
    # pgpu and <model> names of the GPU operator's sandbox (VFIO passthrough) device plugin,
    # vgpu (HAMi, vGPU), and whatever a time-slicing config renames them to.
    "nvidia.com/*",
    # NVIDIA Network Operator: SR-IOV VFs, RDMA shared devices and host-device NICs are
    # advertised under nvidia.com/ with operator-chosen names; these are the documented ones.
    # Exclusions are kept to documented names: a too-broad one would leave a GPU ungoverned.
    "!nvidia.com/rdma*",
    "!nvidia.com/mlnx*",
    "!nvidia.com/sriov*",
    "!nvidia.com/hostdev*",
    # HAMi on NVIDIA: per-task scheduling priority, not a device.
    "!nvidia.com/priority",
    # HAMi on NVIDIA: device memory (MiB or percent) and SM percentage of a shared GPU.
    "~nvidia.com/gpumem*",
    "~nvidia.com/gpucores",
    # AMD: gpu and the GPU partitioning / Xilinx accelerator names; AMD's network operator
    # advertises its AI NICs as amd.com/nic*.
    "amd.com/*",
    "!amd.com/nic*",
    # Intel GPU plugin: gpu.intel.com/i915, xe and their *_monitoring variants. GPU Aware
    # Scheduling adds capacity resources next to i915/xe (millicores: 500, memory.max: 8Gi)
    # that would blow up `total` if counted.
    "gpu.intel.com/*",
    "~gpu.intel.com/millicores",
    "~gpu.intel.com/memory.max",
    "~gpu.intel.com/tiles",
    "habana.ai/*",
    "google.com/*",
    # Neuron device plugin: aws.amazon.com/neuron, neuroncore, neurondevice. (EFA NICs are
    # vpc.amazonaws.com/efa, another domain.)
    "aws.amazon.com/*",
    # Huawei Ascend (Ascend910, Ascend910B3, Ascend310P, vNPU templates Ascend910-4c, ...);
    # HAMi's Ascend support adds <model>-memory capacity next to the count.
    "huawei.com/*",
    "~huawei.com/*-memory",
    # Cambricon MLU (cambricon.com/mlu, vmlu, mlu370, ...), with sMLU / HAMi capacity.
    "cambricon.com/*",
    "~cambricon.com/*.smlu.*",
    # Hygon DCU (hygon.com/dcunum; HAMi: dcumem, dcucores).
    "hygon.com/*",
    "~hygon.com/dcumem",
    "~hygon.com/dcucores",
    # Moore Threads (mthreads.com/vgpu; sGPU: sgpu-memory, sgpu-core).
    "mthreads.com/*",
    "~mthreads.com/sgpu-*",
    # MetaX (metax-tech.com/gpu, sgpu; vcore, vmemory).
    "metax-tech.com/*",
    "~metax-tech.com/vcore",
    "~metax-tech.com/vmemory",
    # Iluvatar CoreX (iluvatar.ai/vgpu; vcuda-core, vcuda-memory).
    "iluvatar.ai/*",
    "~iluvatar.ai/vcuda-*",
    # Enflame GCU (enflame.com/gcu, vgcu; vgcu-percentage).
    "enflame.com/*",
    "~enflame.com/*-percentage",
    # Kunlunxin XPU (kunlunxin.com/xpu, vxpu; vxpu-memory).
    "kunlunxin.com/*",
    "~kunlunxin.com/*-memory",
    # Qualcomm Cloud AI 100 (qualcomm.com/qaic).
    "qualcomm.com/*",
    # Volcano vGPU (volcano.sh/vgpu-number; vgpu-memory, vgpu-cores). Volcano's other
    # volcano.sh/ names are GPU-sharing too, so the domain is not listed whole.
    "volcano.sh/vgpu-number",
    "volcano.sh/gpu-number",
    "~volcano.sh/vgpu-memory",
    "~volcano.sh/vgpu-cores",
    "~volcano.sh/gpu-memory",
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

# runtimeClassName values whose handler exposes accelerators (glob syntax, as above). With an
# allocation they are how a GPU pod runs; without one they are a side door: an image that sets
# NVIDIA_VISIBLE_DEVICES=all (every CUDA base image does) then sees every GPU on the node.
DEFAULT_RUNTIME_CLASSES: tuple[str, ...] = (
    # GPU operator / container toolkit: nvidia, nvidia-cdi, nvidia-legacy, nvidia-experimental.
    "nvidia",
    "nvidia-*",
    # AMD container toolkit (amd-ctk runtime configure).
    "amd",
    "amd-*",
    # Habana (Intel Gaudi) container runtime.
    "habana",
    # Huawei Ascend docker runtime.
    "ascend",
    # Moore Threads and Enflame container toolkits.
    "mthreads",
    "enflame",
    # Kata Containers with GPU passthrough (kata-qemu-nvidia-gpu, -snp, -tdx).
    "kata-*nvidia-gpu*",
)

# Env vars a container runtime hook reads to add device nodes to the container. Setting one
# reaches devices the device plugin did not allocate (and overrides what it did allocate: the
# pod's env is applied after the plugin's). Application-level selectors are deliberately not
# here: CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES, GPU_DEVICE_ORDINAL,
# NEURON_RT_VISIBLE_CORES, TPU_VISIBLE_CHIPS, HABANA_VISIBLE_MODULES, ASCEND_RT_VISIBLE_DEVICES,
# ZE_AFFINITY_MASK only narrow the devices already mounted. NVIDIA_DRIVER_CAPABILITIES selects
# driver libraries, not devices.
DEFAULT_DEVICE_ENV: tuple[str, ...] = (
    "NVIDIA_VISIBLE_DEVICES",
    # MIG management: access to create/destroy MIG instances on the visible GPUs.
    "NVIDIA_MIG_CONFIG_DEVICES",
    "NVIDIA_MIG_MONITOR_DEVICES",
    "AMD_VISIBLE_DEVICES",
    "HABANA_VISIBLE_DEVICES",
    # oci-neuron-hook (AWS Neuron).
    "AWS_NEURON_VISIBLE_DEVICES",
    "ASCEND_VISIBLE_DEVICES",
    "MTHREADS_VISIBLE_DEVICES",
    "ENFLAME_VISIBLE_DEVICES",
)

# Values of those variables that expose no device (NVIDIA container toolkit: "void" and empty
# behave like runc, "none" mounts driver libraries but no device). Exact, case-sensitive: any
# other spelling is passed to the hook as a device list, so it is treated as one.
NO_DEVICE_ENV_VALUES: tuple[str, ...] = ("", "void", "none")

# Host path prefixes that hold accelerator device nodes. A hostPath volume whose (normalised)
# path starts with one, or is an ancestor of one ("/dev", "/"), is a side door. Prefixes, not
# directories: "/dev/nvidia" covers /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm, /dev/nvidia-caps.
DEFAULT_DEVICE_HOST_PATHS: tuple[str, ...] = (
    "/dev/nvidia",
    "/dev/dri",
    "/dev/kfd",
    # TPU (/dev/accel0), Gaudi and Qualcomm AI 100 (/dev/accel/accel0: the kernel accel class).
    "/dev/accel",
    "/dev/neuron",
    # Gaudi (older drivers).
    "/dev/hl",
    # Ascend.
    "/dev/davinci",
    "/dev/devmm_svm",
    "/dev/hisi_hdc",
    "/dev/cambricon",
    "/dev/mtgpu",
    "/dev/gcu",
    "/dev/iluvatar",
    "/dev/mxcd",
    "/dev/qaic",
    # VFIO: whole GPUs passed through to a VM runtime.
    "/dev/vfio",
    # /dev/char/<major>:<minor> are symlinks to every character device, accelerators included.
    "/dev/char",
    # WSL2 GPU paravirtualisation.
    "/dev/dxg",
)

# Pod annotations of GPU-sharing schedulers (KAI / Run:ai) that request a share of a device.
# Each pod with one counts KAI_NUM_DEVICES_ANNOTATION devices (default 1).
DEFAULT_SHARING_ANNOTATIONS: tuple[str, ...] = (
    "gpu-fraction",
    "gpu-memory",
    "gpu-fraction-num-devices",
)
KAI_FRACTION_ANNOTATION = "gpu-fraction"
KAI_NUM_DEVICES_ANNOTATION = "gpu-fraction-num-devices"
# Which container receives the share (KAI default: the first regular container).
KAI_CONTAINER_ANNOTATION = "gpu-fraction-container-name"
# KAI's admission webhook gives the fraction container NVIDIA_VISIBLE_DEVICES from the
# ConfigMap its binder writes at bind time; that is the sharing mechanism, not a side door.
KAI_VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"

# Pod annotations a runtime may read as device requests (glob syntax). Device plugins return
# CDI annotations in their Allocate response, never on the pod, so no governed pod needs them.
DEFAULT_DEVICE_ANNOTATIONS: tuple[str, ...] = (
    "cdi.k8s.io/*",
    # CRI-O: honoured when the runtime handler lists it in allowed_annotations.
    "io.kubernetes.cri-o.Devices",
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
_MAX_QUANTITY_CHARS = 64

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
    """One container's use of one accelerator (count > 0).

    ``resource`` is an extended-resource name, or the sharing annotation's key (``gpu-fraction``)
    for a GPU-sharing scheduler's share. ``field`` is what the pod author edits to change it.
    """

    container: str
    container_type: ContainerType
    resource: str
    count: int
    field: str = ""


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
class SideDoor:
    """A path to devices that allocates nothing: governed (sent to the policy), never counted.

    ``kind``: ``env`` (``name`` = variable, ``value`` = its value, or ``valueFrom.<source>``),
    ``hostPath`` (``name`` = volume, ``value`` = host path), ``privileged``, ``runtimeClass``
    (``name`` = class), ``annotation`` (``name`` = key, ``value`` = value). ``field`` is the
    most specific field path; ``container`` is set for container-level side doors. Values are
    clipped and ASCII-escaped: they end up in messages and HTTP Warning headers.
    """

    kind: SideDoorKind
    field: str
    container: str | None = None
    name: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """What the pod holds in accelerators; ``to_input()`` is the policy input's "workload"."""

    accelerators: tuple[AcceleratorUse, ...]
    claims: tuple[ClaimUse, ...]
    total: int
    side_doors: tuple[SideDoor, ...] = ()

    @property
    def gpu(self) -> bool:
        """True when the pod is governed: it holds an accelerator (a container's resource or
        share, or an accelerator claim) or reaches devices through a side door."""
        return (
            any(a.count > 0 for a in self.accelerators)
            or any(c.accelerator for c in self.claims)
            or bool(self.side_doors)
        )

    def to_input(self) -> dict[str, Any]:
        return {
            "accelerators": [
                {
                    "container": a.container,
                    "containerType": a.container_type,
                    "resource": a.resource,
                    "count": a.count,
                    "field": a.field,
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
            "sideDoors": [
                {
                    "kind": d.kind,
                    "field": d.field,
                    "container": d.container,
                    "name": d.name,
                    "value": d.value,
                }
                for d in self.side_doors
            ],
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
    return (obj for _, obj in objects(manifests) if isinstance(obj, Mapping))


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
    # Kubernetes quantities are int64 with a small exponent: a few dozen characters at most. A
    # longer one is garbage, and Fraction() of thousands of digits is slow, then refused.
    if len(text) > _MAX_QUANTITY_CHARS:
        raise DetectError(f"{_show(text)} is too long to be a resource quantity")
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


class _Globs(NamedTuple):
    include: re.Pattern[str]
    exclude: re.Pattern[str]
    capacity: re.Pattern[str]

    def selects(self, name: str) -> bool:
        return bool(
            self.include.match(name)
            and not self.exclude.match(name)
            and not self.capacity.match(name)
        )

    def is_capacity(self, name: str) -> bool:
        return bool(self.capacity.match(name) and not self.exclude.match(name))


def _compile_globs(patterns: Sequence[str], what: str, *, capacity: bool = False) -> _Globs:
    """Compile globs into one include, one exclude ("!") and one capacity ("~") regex.

    One alternation per set means a single regex scan per name on the hot path, instead of a
    Python loop over fnmatch calls (which also re-checks its cache and case-folds on some OSes;
    fnmatch.translate + re is always case-sensitive, which resource names are).
    """
    if isinstance(patterns, str):
        # A bare string is a Sequence[str] of characters: almost certainly a config mistake.
        raise TypeError(f"{what} must be a sequence of patterns, not a single string")
    sets: dict[str, list[str]] = {"": [], "!": [], "~": []}
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"{what}: pattern {pattern!r} is not a string")
        marker = pattern[:1] if pattern[:1] in ("!", "~") else ""
        if marker == "~" and not capacity:
            raise ValueError(f"{what}: capacity patterns (~) are not supported: {pattern!r}")
        body = pattern[len(marker) :]
        if not body or body != body.strip():
            raise ValueError(f"{what}: invalid pattern {pattern!r}")
        sets[marker].append(fnmatch.translate(body))
    return _Globs(_alternation(sets[""]), _alternation(sets["!"]), _alternation(sets["~"]))


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


def _names(values: Sequence[str], what: str) -> tuple[str, ...]:
    """A configured list of plain names/paths: a sequence of non-blank, unpadded strings."""
    if isinstance(values, str):
        raise TypeError(f"{what} must be a sequence of names, not a single string")
    out: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"{what}: {value!r} is not a string")
        if not value or value != value.strip():
            raise ValueError(f"{what}: invalid entry {value!r}")
        out.append(value)
    return tuple(out)


_WINDOWS_PATH_RE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def _normalise_host_path(path: str) -> str | None:
    """The Linux path a hostPath volume mounts, or None for a Windows path.

    "//dev/./nvidia0", "/dev/nvidia0/" and "/var/../dev/nvidia0" all name /dev/nvidia0 (the API
    server refuses ".." but not the rest). A relative path is resolved from "/", the kubelet's
    working directory.
    """
    if _WINDOWS_PATH_RE.match(path):
        return None
    return posixpath.normpath(re.sub(r"/+", "/", "/" + path))


def _host_path_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        raise ValueError(f"device_host_paths: {prefix!r} is not an absolute path")
    normalised = _normalise_host_path(prefix)
    assert normalised is not None  # absolute POSIX paths always normalise
    return normalised


def _clip(text: str, limit: int = 64) -> str:
    """A user-supplied string made safe for messages: ASCII only, printable, bounded."""
    safe = "".join(
        ch if " " <= ch <= "~" else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def _annotation_count(annotations: Mapping[str, Any], key: str, *, default: int) -> int:
    if key not in annotations:
        return default
    try:
        return parse_count(annotations[key])
    except DetectError as err:
        raise DetectError(err.reason, field=_key("metadata.annotations", key)) from None


class _SharedUse(NamedTuple):
    use: AcceleratorUse
    # Path of the container that receives the share ("" when it does not exist).
    container_path: str


def _fraction_container(
    annotations: Mapping[str, Any], spec: Mapping[str, Any], spec_path: str
) -> tuple[str, ContainerType, str]:
    """The container a GPU-sharing scheduler gives the share to: (name, type, path).

    KAI gives it to the container named by gpu-fraction-container-name (a regular or an init
    container), else to the first regular container. Malformed lists are left to detect().
    """
    wanted = annotations.get(KAI_CONTAINER_ANNOTATION)
    lists: tuple[tuple[str, ContainerType], ...] = (
        ("containers", "container"),
        ("initContainers", "initContainer"),
    )
    for list_key, container_type in lists:
        containers = spec.get(list_key)
        for i, container in enumerate(containers if isinstance(containers, list) else []):
            if not isinstance(container, Mapping):
                continue
            name = container.get("name")
            if (isinstance(wanted, str) and name == wanted) or (
                wanted is None and list_key == "containers" and i == 0
            ):
                shown = name if isinstance(name, str) and name else f"#{i}"
                return shown, container_type, _index(f"{spec_path}.{list_key}", i)
    return (wanted if isinstance(wanted, str) else "#0"), "container", ""


class AcceleratorDetector:
    """Computes a pod's :class:`Workload`. Immutable after construction and thread-safe."""

    __slots__ = (
        "_classes",
        "_config",
        "_device_annotations",
        "_device_env",
        "_host_paths",
        "_privileged",
        "_resources",
        "_runtime_classes",
        "_sharing_annotations",
    )

    def __init__(
        self,
        resource_patterns: Sequence[str] = DEFAULT_RESOURCE_PATTERNS,
        device_classes: Sequence[str] = DEFAULT_DEVICE_CLASSES,
        *,
        runtime_classes: Sequence[str] = DEFAULT_RUNTIME_CLASSES,
        device_env: Sequence[str] = DEFAULT_DEVICE_ENV,
        device_host_paths: Sequence[str] = DEFAULT_DEVICE_HOST_PATHS,
        privileged: bool = True,
        sharing_annotations: Sequence[str] = DEFAULT_SHARING_ANNOTATIONS,
        device_annotations: Sequence[str] = DEFAULT_DEVICE_ANNOTATIONS,
    ) -> None:
        # The configuration as given, so that extended() can build a detector that knows more.
        self._config: tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]] = (
            tuple(resource_patterns),
            tuple(device_classes),
            {
                "runtime_classes": runtime_classes,
                "device_env": device_env,
                "device_host_paths": device_host_paths,
                "privileged": privileged,
                "sharing_annotations": sharing_annotations,
                "device_annotations": device_annotations,
            },
        )
        # Compiled once here: detect() runs for every pod creation in the cluster.
        self._resources = _compile_globs(resource_patterns, "resource_patterns", capacity=True)
        self._classes = _compile_globs(device_classes, "device_classes")
        self._runtime_classes = _compile_globs(runtime_classes, "runtime_classes")
        self._device_annotations = _compile_globs(device_annotations, "device_annotations")
        self._device_env = frozenset(_names(device_env, "device_env"))
        self._host_paths = tuple(
            _host_path_prefix(p) for p in _names(device_host_paths, "device_host_paths")
        )
        # Off for clusters where Pod Security Admission already refuses privileged pods and
        # privileged CPU pods outside the excluded namespaces are expected.
        self._privileged = bool(privileged)
        self._sharing_annotations = _names(sharing_annotations, "sharing_annotations")

    def extended(
        self, *, resource_patterns: Sequence[str] = (), device_classes: Sequence[str] = ()
    ) -> AcceleratorDetector:
        """A detector with the same configuration plus more accelerator names.

        `kube-intent review` adds the DeviceClasses it finds in its input (their names, their
        ``extendedResourceName``), as an operator adds them to the server's lists. Exclusions
        ("!") still win over an added name.
        """
        if isinstance(resource_patterns, str) or isinstance(device_classes, str):
            raise TypeError("extended() takes sequences of patterns, not a single string")
        resources, classes, options = self._config
        return AcceleratorDetector(
            (*resources, *resource_patterns), (*classes, *device_classes), **options
        )

    def is_accelerator_resource(self, name: str) -> bool:
        """Whether an extended-resource name is a count of accelerator devices."""
        if self._resources.selects(name):
            return True
        if name.startswith(DRA_EXTENDED_RESOURCE_PREFIX):
            return self.is_accelerator_class(name[len(DRA_EXTENDED_RESOURCE_PREFIX) :])
        return False

    def is_capacity_resource(self, name: str) -> bool:
        """Whether an extended-resource name is an amount of a shared accelerator ("~")."""
        return self._resources.is_capacity(name)

    def is_accelerator_class(self, device_class: str) -> bool:
        """Whether a DRA DeviceClass name denotes accelerators."""
        return self._classes.selects(device_class)

    def is_device_host_path(self, path: str) -> bool:
        """Whether a hostPath volume of ``path`` exposes accelerator device nodes."""
        normalised = _normalise_host_path(path)
        if normalised is None:
            return False  # a Windows path: no Linux device node behind it
        return any(
            normalised.startswith(prefix)
            # An ancestor directory ("/dev", "/") holds the device nodes too.
            or normalised == "/"
            or prefix.startswith(normalised + "/")
            for prefix in self._host_paths
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
        metadata = _optional_mapping(pod, "metadata", "")
        if namespace is None:
            ns = metadata.get("namespace")
            namespace = ns if isinstance(ns, str) and ns else "default"
        annotations = _optional_mapping(metadata, "annotations", "metadata")

        accelerators: list[AcceleratorUse] = []
        side_doors: list[SideDoor] = []
        shared = self._shared_use(annotations, spec, spec_path)
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
                        AcceleratorUse(
                            container_name, container_type, resource, count, f"{path}.resources"
                        )
                    )
                fraction_target = shared is not None and shared.container_path == path
                side_doors += self._container_side_doors(
                    container, container_name, path, fraction_target=fraction_target
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
        if shared is not None:
            # A share is granted on top of whatever the containers request: it is pod-level.
            accelerators.append(shared.use)
            _add(steady, {shared.use.resource: shared.use.count})

        claims = self._claims(spec, spec_path, namespace, resolver)
        total = sum(steady.values()) + sum(c.count for c in claims if c.accelerator)
        side_doors += self._volume_side_doors(spec, spec_path)
        side_doors += self._annotation_side_doors(annotations)
        runtime_class = spec.get("runtimeClassName")
        if (
            total == 0
            and isinstance(runtime_class, str)
            and self._runtime_classes.selects(runtime_class)
        ):
            # Only without an allocation: with one, the runtime class is how the pod runs it.
            side_doors.insert(
                0, SideDoor("runtimeClass", f"{spec_path}.runtimeClassName", name=runtime_class)
            )
        return Workload(tuple(accelerators), claims, total, tuple(side_doors))

    # -- extended resources --------------------------------------------------------------------

    def _container_usage(
        self, container: Mapping[str, Any], container_name: str, path: str
    ) -> dict[str, int]:
        """Accelerator counts of one container: limit if set, else request; max if they differ."""
        resources = _optional_mapping(container, "resources", path)
        res_path = f"{path}.resources"
        found: dict[str, int] = {}
        capacity: dict[str, int] = {}
        for section in ("limits", "requests"):
            values = _optional_mapping(resources, section, res_path)
            for resource, raw in values.items():
                if not isinstance(resource, str):
                    raise DetectError(
                        f"resource name {_show(resource)} is not a string "
                        f"(container {_show(container_name)})",
                        field=f"{res_path}.{section}",
                    )
                if self.is_accelerator_resource(resource):
                    into = found
                elif self.is_capacity_resource(resource):
                    into = capacity
                else:
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
                into[resource] = max(into.get(resource, 0), count)
        # Zero means "none": such entries neither make a GPU pod nor appear in the output.
        usage = {r: c for r, c in sorted(found.items()) if c > 0}
        if not usage:
            # A capacity resource alone (HAMi gpumem without nvidia.com/gpu: HAMi's webhook adds
            # the count later, or the scheduler assumes one) still occupies one shared device.
            amounts = [r for r, c in sorted(capacity.items()) if c > 0]
            if amounts:
                usage = {amounts[0]: 1}
        return usage

    # -- GPU-sharing annotations ---------------------------------------------------------------

    def _shared_use(
        self, annotations: Mapping[str, Any], spec: Mapping[str, Any], spec_path: str
    ) -> _SharedUse | None:
        present = [key for key in self._sharing_annotations if key in annotations]
        if not present:
            return None
        devices = max(1, _annotation_count(annotations, KAI_NUM_DEVICES_ANNOTATION, default=1))
        # gpu-fraction is a share of each device (0.5); a value above 1 would span more devices.
        share = max(1, _annotation_count(annotations, KAI_FRACTION_ANNOTATION, default=1))
        resource = present[0]
        name, container_type, path = _fraction_container(annotations, spec, spec_path)
        field = _key("metadata.annotations", resource)
        return _SharedUse(
            AcceleratorUse(name, container_type, resource, devices * share, field), path
        )

    # -- side doors ----------------------------------------------------------------------------

    def _container_side_doors(
        self,
        container: Mapping[str, Any],
        container_name: str,
        path: str,
        *,
        fraction_target: bool,
    ) -> list[SideDoor]:
        found: list[SideDoor] = []
        for j, entry in enumerate(_optional_list(container, "env", path)):
            env_path = _index(f"{path}.env", j)
            if not isinstance(entry, Mapping):
                raise DetectError(f"expected an env var object, got {_show(entry)}", field=env_path)
            var = entry.get("name")
            if not isinstance(var, str) or var not in self._device_env:
                continue
            value_from = entry.get("valueFrom")
            if value_from is not None:
                sources = sorted(value_from) if isinstance(value_from, Mapping) else []
                if (
                    fraction_target
                    and var == KAI_VISIBLE_DEVICES_ENV
                    and sources == ["configMapKeyRef"]
                ):
                    continue  # KAI's own injection into the container that holds the share
                # The value is only known on the node (a ConfigMap, a Secret, a field): the
                # pod author may control it, so it counts as exposing devices.
                shown = "valueFrom." + (sources[0] if len(sources) == 1 else "?")
                found.append(SideDoor("env", env_path, container_name, var, shown))
                continue
            value = entry.get("value")
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise DetectError(
                    f"expected a string value, got {_show(value)}", field=f"{env_path}.value"
                )
            if value not in NO_DEVICE_ENV_VALUES:
                found.append(SideDoor("env", env_path, container_name, var, _clip(value)))
        if self._privileged:
            context = _optional_mapping(container, "securityContext", path)
            if context.get("privileged") not in (None, False):
                found.append(
                    SideDoor("privileged", f"{path}.securityContext.privileged", container_name)
                )
        return found

    def _volume_side_doors(self, spec: Mapping[str, Any], spec_path: str) -> list[SideDoor]:
        found: list[SideDoor] = []
        for i, volume in enumerate(_optional_list(spec, "volumes", spec_path)):
            path = _index(f"{spec_path}.volumes", i)
            if not isinstance(volume, Mapping):
                raise DetectError(f"expected a volume object, got {_show(volume)}", field=path)
            host_path = _optional_mapping(volume, "hostPath", path)
            if not host_path:
                continue
            where = host_path.get("path")
            if not isinstance(where, str):
                raise DetectError(
                    f"expected a string, got {_show(where)}", field=f"{path}.hostPath.path"
                )
            if self.is_device_host_path(where):
                name = volume.get("name")
                found.append(
                    SideDoor(
                        "hostPath",
                        f"{path}.hostPath.path",
                        name=name if isinstance(name, str) else None,
                        value=_clip(where),
                    )
                )
        return found

    def _annotation_side_doors(self, annotations: Mapping[str, Any]) -> list[SideDoor]:
        return [
            SideDoor(
                "annotation",
                _key("metadata.annotations", key),
                name=_clip(key),
                value=_clip(str(value)),
            )
            for key, value in sorted(annotations.items(), key=lambda kv: str(kv[0]))
            if isinstance(key, str) and self._device_annotations.selects(key)
        ]

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
