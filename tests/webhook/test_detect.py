"""Tests for webhook.detect: which pods are accelerator pods, and how many devices they hold."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import DATA
from webhook.detect import (
    DEFAULT_DEVICE_CLASSES,
    DEFAULT_RESOURCE_PATTERNS,
    AcceleratorDetector,
    AcceleratorUse,
    ClaimResolver,
    ClaimUse,
    DetectError,
    SideDoor,
    StaticClaimResolver,
    Workload,
    claim_references,
    parse_count,
)

MANIFESTS = DATA / "manifests"


def load(name: str) -> tuple[dict[str, Any], StaticClaimResolver]:
    """The single Pod of a fixture file, and a resolver over every object in the file."""
    with (MANIFESTS / name).open(encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    pods = [d for d in docs if d.get("kind") == "Pod"]
    assert len(pods) == 1, f"{name}: expected exactly one Pod"
    return pods[0], StaticClaimResolver(docs)


@pytest.fixture(scope="module")
def detector() -> AcceleratorDetector:
    return AcceleratorDetector()


def ctr(name: str, limits: Any = None, requests: Any = None, **extra: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if limits is not None:
        resources["limits"] = limits
    if requests is not None:
        resources["requests"] = requests
    return {"name": name, "image": "example.com/img:1", "resources": resources, **extra}


def make_pod(
    *containers: dict[str, Any],
    init: tuple[dict[str, Any], ...] = (),
    ephemeral: tuple[dict[str, Any], ...] = (),
    claims: list[Any] | None = None,
    namespace: str | None = "ns",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    if ephemeral:
        spec["ephemeralContainers"] = list(ephemeral)
    if claims is not None:
        spec["resourceClaims"] = claims
    metadata: dict[str, Any] = {"name": "p"}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def sidecar(name: str, limits: dict[str, Any]) -> dict[str, Any]:
    return ctr(name, limits, restartPolicy="Always")


GPU = "nvidia.com/gpu"

# --------------------------------------------------------------------------------------------
# Extended resources (device plugins), one fixture per real-world form
# --------------------------------------------------------------------------------------------

EXTENDED_CASES = [
    pytest.param(
        "vllm-stack-requests-and-limits.yaml",
        [("vllm", "container", GPU, 1)],
        1,
        id="nvidia-requests-and-limits-string",
    ),
    pytest.param(
        "kserve-predictor-limits-only.yaml",
        [("kserve-container", "container", GPU, 1)],
        1,
        id="nvidia-limits-only-kserve",
    ),
    pytest.param(
        "triton-requests-only-int.yaml",
        [("triton", "container", GPU, 2)],
        2,
        id="nvidia-requests-only-int",
    ),
    pytest.param(
        "mig-1g-10gb.yaml",
        [("tei", "container", "nvidia.com/mig-1g.10gb", 1)],
        1,
        id="nvidia-mig-1g.10gb",
    ),
    pytest.param(
        "lws-vllm-leader.yaml",
        [("vllm-leader", "container", GPU, 8)],
        8,
        id="lws-leader-8-gpus",
    ),
    pytest.param(
        "lws-vllm-worker.yaml",
        [("vllm-worker", "container", GPU, 8)],
        8,
        id="lws-worker-8-gpus",
    ),
    pytest.param(
        "llm-d-decode-rdma.yaml",
        [("vllm", "container", GPU, 8)],
        8,
        id="llm-d-decode-rdma-nic-not-counted",
    ),
    pytest.param(
        "amd-rocm-vllm.yaml",
        [("vllm", "container", "amd.com/gpu", 2)],
        2,
        id="amd-gpu",
    ),
    pytest.param(
        "intel-i915-gas.yaml",
        [("ovms", "container", "gpu.intel.com/i915", 1)],
        1,
        id="intel-i915-gas-capacity-excluded",
    ),
    pytest.param(
        "gke-tpu-jetstream.yaml",
        [("maxengine-server", "container", "google.com/tpu", 4)],
        4,
        id="google-tpu",
    ),
    pytest.param(
        "neuron-inf2.yaml",
        [("neuron-serve", "container", "aws.amazon.com/neuroncore", 2)],
        2,
        id="aws-neuroncore",
    ),
    pytest.param(
        "init-container-gpu.yaml",
        [("engine-build", "initContainer", GPU, 2), ("triton", "container", GPU, 1)],
        2,  # the init container runs alone: max(2, 1), not 3
        id="init-container",
    ),
    pytest.param(
        "sidecar-init-gpu.yaml",
        [("guardrail-model", "initContainer", GPU, 1), ("vllm", "container", GPU, 1)],
        2,  # a sidecar runs next to the main container: 1 + 1
        id="sidecar-init-container",
    ),
    pytest.param(
        "ephemeral-gpu.yaml",
        [("vllm", "container", GPU, 1), ("debugger-x7k2p", "ephemeralContainer", GPU, 1)],
        2,
        id="ephemeral-container",
    ),
    pytest.param(
        "dra-extended-resource.yaml",
        [("vllm", "container", "deviceclass.resource.kubernetes.io/gpu.nvidia.com", 2)],
        2,
        id="dra-extended-resource",
    ),
]


@pytest.mark.parametrize(("fixture", "expected", "total"), EXTENDED_CASES)
def test_extended_resource_forms(
    detector: AcceleratorDetector,
    fixture: str,
    expected: list[tuple[str, str, str, int]],
    total: int,
) -> None:
    pod, resolver = load(fixture)
    workload = detector.detect(pod, resolver)
    assert [astuple(a) for a in workload.accelerators] == expected
    assert workload.claims == ()
    assert workload.total == total
    assert workload.gpu is True


def astuple(use: AcceleratorUse) -> tuple[str, str, str, int]:
    return (use.container, use.container_type, use.resource, use.count)


# --------------------------------------------------------------------------------------------
# DRA claims
# --------------------------------------------------------------------------------------------

DRA_CASES = [
    pytest.param(
        "dra-v1-exactly-template.yaml",
        [
            ClaimUse(
                "gpus", "resourceClaimTemplateName", "two-gpus", ("gpu.nvidia.com",), 2, True, True
            )
        ],
        2,
        id="v1-exactly-template",
    ),
    pytest.param(
        "dra-v1-first-available.yaml",
        [
            ClaimUse(
                "accel",
                "resourceClaimTemplateName",
                "gpu-or-mig",
                ("gpu.nvidia.com", "mig.nvidia.com"),
                2,  # max over alternatives: 1 full GPU or 2 MIG slices
                True,
                True,
            )
        ],
        2,
        id="v1-firstAvailable-max-over-alternatives",
    ),
    pytest.param(
        "dra-v1beta1-intel.yaml",
        [
            ClaimUse(
                "resource",
                "resourceClaimTemplateName",
                "intel-gpus",
                ("gpu.intel.com",),
                2,
                True,
                True,
            )
        ],
        2,
        id="v1beta1-deviceClassName-on-request",
    ),
    pytest.param(
        "dra-v1beta2-mig.yaml",
        [
            ClaimUse(
                "migdev",
                "resourceClaimTemplateName",
                "mig-1g-10gb",
                ("mig.nvidia.com",),
                1,  # no count: API default of one
                True,
                True,
            )
        ],
        1,
        id="v1beta2-exactly-default-count",
    ),
    pytest.param(
        "dra-shared-claim-by-name.yaml",
        [
            ClaimUse(
                "shared-gpu",
                "resourceClaimName",
                "shared-h100",
                ("gpu.nvidia.com",),
                1,
                True,
                True,
            )
        ],
        1,  # two containers reference the claim; it is still one device
        id="claim-by-name-shared",
    ),
    pytest.param(
        "dra-unresolved-template.yaml",
        [
            ClaimUse(
                "accel",
                "resourceClaimTemplateName",
                "created-after-the-pod",
                (),
                1,
                True,
                False,
            )
        ],
        1,
        id="unresolved-template-fails-closed",
    ),
    pytest.param(
        "dra-neuron-with-efa.yaml",
        [
            ClaimUse(
                "devices",
                "resourceClaimTemplateName",
                "neuron-8-efa-8",
                ("neuron.aws.com", "efa.networking.k8s.aws"),
                8,  # the 8 EFA NICs in the same claim are not accelerators
                True,
                True,
            )
        ],
        8,
        id="neuron-with-efa-only-neurons-counted",
    ),
    pytest.param(
        "dra-tpu-all.yaml",
        [
            ClaimUse(
                "tpu",
                "resourceClaimTemplateName",
                "tpu-claim-template",
                ("tpu.google.com",),
                1,  # allocationMode All: unknown at admission, counted as at least one
                True,
                True,
                all_devices=True,  # ... and flagged, so the policy can refuse it
            )
        ],
        1,
        id="tpu-allocationMode-All",
    ),
    pytest.param(
        "dra-v1alpha2-source.yaml",
        [ClaimUse("gpu", "resourceClaimName", "legacy-gpu", ("gpu.nvidia.com",), 1, True, True)],
        1,
        id="v1alpha2-source-form",
    ),
]


@pytest.mark.parametrize(("fixture", "expected", "total"), DRA_CASES)
def test_dra_claims(
    detector: AcceleratorDetector, fixture: str, expected: list[ClaimUse], total: int
) -> None:
    pod, resolver = load(fixture)
    workload = detector.detect(pod, resolver)
    assert list(workload.claims) == expected
    assert workload.accelerators == ()
    assert workload.total == total
    assert workload.gpu is True


def test_non_accelerator_claim_is_not_a_gpu_pod(detector: AcceleratorDetector) -> None:
    pod, resolver = load("dra-nic-only.yaml")
    workload = detector.detect(pod, resolver)
    assert workload.claims == (
        ClaimUse("nic", "resourceClaimTemplateName", "rdma-nic", ("dranet.net",), 0, False, True),
    )
    assert workload.total == 0
    assert workload.gpu is False


def test_mixed_plugin_and_claims_add_up(detector: AcceleratorDetector) -> None:
    pod, resolver = load("dra-mixed-claims-and-plugin.yaml")
    workload = detector.detect(pod, resolver)
    assert [astuple(a) for a in workload.accelerators] == [("main", "container", GPU, 4)]
    imex, extra = workload.claims
    # An IMEX channel (ComputeDomain) is not a GPU and must not inflate the total.
    assert (imex.accelerator, imex.count, imex.resolved) == (False, 0, True)
    assert imex.device_classes == ("compute-domain-default-channel.nvidia.com",)
    assert (extra.accelerator, extra.count) == (True, 1)
    assert workload.total == 5


def test_unresolved_claim_becomes_resolved_once_template_exists(
    detector: AcceleratorDetector,
) -> None:
    pod, empty = load("dra-unresolved-template.yaml")
    assert detector.detect(pod, empty).claims[0].resolved is False
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "created-after-the-pod", "namespace": "dra-inference"},
        "spec": {"spec": {"devices": {"requests": [{"name": "r", "exactly": {
            "deviceClassName": "gpu.nvidia.com", "count": 3}}]}}},
    }  # fmt: skip
    claim = detector.detect(pod, StaticClaimResolver([template])).claims[0]
    assert (claim.resolved, claim.accelerator, claim.count) == (True, True, 3)


def test_without_resolver_every_claim_fails_closed(detector: AcceleratorDetector) -> None:
    # Even a NIC-only claim: without the object we cannot know it is harmless.
    pod, _ = load("dra-nic-only.yaml")
    workload = detector.detect(pod)
    assert workload.claims == (
        ClaimUse("nic", "resourceClaimTemplateName", "rdma-nic", (), 1, True, False),
    )
    assert workload.gpu is True
    assert workload.total == 1


def test_claims_resolve_only_in_the_pods_namespace(detector: AcceleratorDetector) -> None:
    pod, resolver = load("dra-v1-exactly-template.yaml")
    pod = copy.deepcopy(pod)
    pod["metadata"]["namespace"] = "other-team"
    assert detector.detect(pod, resolver).claims[0].resolved is False
    # The AdmissionRequest namespace, when given, wins over metadata.
    assert detector.detect(pod, resolver, namespace="dra-inference").claims[0].resolved is True


def test_namespaceless_pod_and_template_meet_in_default(detector: AcceleratorDetector) -> None:
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "t"},
        "spec": {"spec": {"devices": {"requests": [{"name": "g", "exactly": {
            "deviceClassName": "gpu.amd.com"}}]}}},
    }  # fmt: skip
    pod = make_pod(
        ctr("c"), claims=[{"name": "g", "resourceClaimTemplateName": "t"}], namespace=None
    )
    claim = detector.detect(pod, StaticClaimResolver([template])).claims[0]
    assert (claim.resolved, claim.device_classes, claim.count) == (True, ("gpu.amd.com",), 1)


def test_container_claim_references_do_not_create_claims(detector: AcceleratorDetector) -> None:
    # resources.claims only points at spec.resourceClaims; on its own it allocates nothing.
    pod = make_pod({"name": "c", "image": "i", "resources": {"claims": [{"name": "gpu"}]}})
    workload = detector.detect(pod)
    assert workload.claims == ()
    assert workload.gpu is False


def test_unknown_request_shape_fails_closed(detector: AcceleratorDetector) -> None:
    claim_obj = {
        "apiVersion": "resource.k8s.io/v9",
        "kind": "ResourceClaim",
        "metadata": {"name": "future", "namespace": "ns"},
        "spec": {"devices": {"requests": [{"name": "r", "someFutureField": {"x": 1}}]}},
    }
    pod = make_pod(ctr("c"), claims=[{"name": "f", "resourceClaimName": "future"}])
    claim = detector.detect(pod, StaticClaimResolver([claim_obj])).claims[0]
    assert (claim.accelerator, claim.count, claim.resolved) == (True, 1, True)


def test_firstavailable_with_only_nic_alternatives_is_not_accelerator(
    detector: AcceleratorDetector,
) -> None:
    claim_obj = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "nics", "namespace": "ns"},
        "spec": {"devices": {"requests": [{"name": "r", "firstAvailable": [
            {"name": "a", "deviceClassName": "dranet.net", "count": 2},
            {"name": "b", "deviceClassName": "sriov.example.com", "count": 4},
        ]}]}},
    }  # fmt: skip
    pod = make_pod(ctr("c"), claims=[{"name": "n", "resourceClaimName": "nics"}])
    workload = detector.detect(pod, StaticClaimResolver([claim_obj]))
    assert workload.claims[0].accelerator is False
    assert workload.claims[0].device_classes == ("dranet.net", "sriov.example.com")
    assert workload.gpu is False


class RecordingResolver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def lookup(self, namespace: str, kind: Any, name: str) -> Mapping[str, Any] | None:
        self.calls.append((namespace, kind, name))
        return None


def test_resolver_is_asked_with_kind_per_source(detector: AcceleratorDetector) -> None:
    resolver = RecordingResolver()
    typed: ClaimResolver = resolver  # structural typing: any object with lookup() works
    pod = make_pod(
        ctr("c"),
        claims=[
            {"name": "a", "resourceClaimName": "claim-a"},
            {"name": "b", "resourceClaimTemplateName": "tmpl-b"},
        ],
        namespace="team-x",
    )
    detector.detect(pod, typed)
    assert resolver.calls == [
        ("team-x", "ResourceClaim", "claim-a"),
        ("team-x", "ResourceClaimTemplate", "tmpl-b"),
    ]


# --------------------------------------------------------------------------------------------
# Pods that are not accelerator pods
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    [
        pytest.param("cpu-only.yaml", id="cpu-only"),
        pytest.param("gpu-lookalike-cpu-only.yaml", id="gpu-names-labels-env-nodeselector"),
        pytest.param("side-door-env-void.yaml", id="visible-devices-void-none-empty"),
        pytest.param("zero-gpu.yaml", id="nvidia-gpu-zero"),
        pytest.param("dra-extended-resource-nic.yaml", id="dra-extended-resource-nic-class"),
    ],
)
def test_not_a_gpu_pod(detector: AcceleratorDetector, fixture: str) -> None:
    pod, resolver = load(fixture)
    workload = detector.detect(pod, resolver)
    assert workload == Workload((), (), 0)
    assert workload.gpu is False


def test_lookalike_fixture_really_carries_the_decoys() -> None:
    # Guard the negative test above: the decoys must stay in the fixture to mean anything.
    pod, _ = load("gpu-lookalike-cpu-only.yaml")
    spec = pod["spec"]
    assert "nvidia.com/gpu.product" in spec["nodeSelector"]
    assert "nvidia.com/gpu.present" in pod["metadata"]["labels"]
    names = {e["name"] for e in spec["containers"][0]["env"]}
    # Application-level selectors and driver capabilities: no runtime exposes devices for them.
    assert {"CUDA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "ROCR_VISIBLE_DEVICES"} <= names
    assert "runtimeClassName" not in spec  # that one is a side door (side-door-runtimeclass-*)


# --------------------------------------------------------------------------------------------
# Totals: Kubernetes effective-request semantics
# --------------------------------------------------------------------------------------------

TOTAL_CASES = [
    pytest.param(make_pod(ctr("a", {GPU: 2}), ctr("b", {GPU: 2})), 4, id="regular-containers-sum"),
    pytest.param(
        make_pod(ctr("a", {GPU: 1}), init=(ctr("i1", {GPU: 3}), ctr("i2", {GPU: 2}))),
        3,
        id="init-containers-max-not-sum",
    ),
    pytest.param(
        make_pod(ctr("a", {GPU: 1}), init=(ctr("i", {GPU: 2}), sidecar("s", {GPU: 1}))),
        2,
        id="init-before-sidecar-runs-alone",
    ),
    pytest.param(
        make_pod(ctr("a", {GPU: 1}), init=(sidecar("s", {GPU: 1}), ctr("i", {GPU: 2}))),
        3,
        id="init-after-sidecar-runs-with-it",
    ),
    pytest.param(
        make_pod(ctr("a", {GPU: 1}), init=(sidecar("s1", {GPU: 1}), sidecar("s2", {GPU: 2}))),
        4,
        id="sidecars-add-to-regular",
    ),
    pytest.param(
        make_pod(ctr("a", {GPU: 1, "nvidia.com/mig-2g.20gb": 2})), 3, id="resources-summed"
    ),
    pytest.param(
        make_pod(ctr("a", {"amd.com/gpu": 1}), init=(ctr("i", {GPU: 4}),)),
        5,
        id="init-max-is-per-resource",
    ),
    pytest.param(make_pod(ctr("a", {GPU: 1}, {GPU: 2})), 2, id="limits-requests-differ-take-max"),
    pytest.param(make_pod(ctr("a", {GPU: 3}, {GPU: 1})), 3, id="limits-larger-than-requests"),
    pytest.param(
        make_pod(ctr("a", {GPU: 1}), ephemeral=(ctr("dbg", {GPU: 2}),)),
        3,
        id="ephemeral-added",
    ),
    pytest.param(make_pod(ctr("a", {GPU: "500m"})), 1, id="fraction-rounds-up"),
]


@pytest.mark.parametrize(("pod", "total"), TOTAL_CASES)
def test_totals(detector: AcceleratorDetector, pod: dict[str, Any], total: int) -> None:
    workload = detector.detect(pod)
    assert workload.total == total
    assert workload.gpu is True


def test_per_container_count_and_ordering(detector: AcceleratorDetector) -> None:
    pod = make_pod(
        ctr("main", {"nvidia.com/mig-1g.10gb": 1, GPU: "2"}, {GPU: 2, "cpu": "1"}),
        init=(ctr("warm", None, {GPU: "1"}),),
    )
    assert [astuple(a) for a in detector.detect(pod).accelerators] == [
        ("warm", "initContainer", GPU, 1),
        ("main", "container", GPU, 2),
        ("main", "container", "nvidia.com/mig-1g.10gb", 1),
    ]


def test_unnamed_container_gets_a_positional_name(detector: AcceleratorDetector) -> None:
    pod = make_pod({"image": "i", "resources": {"limits": {GPU: 1}}})
    assert detector.detect(pod).accelerators[0].container == "#0"


def test_zero_entries_are_dropped_but_others_kept(detector: AcceleratorDetector) -> None:
    pod = make_pod(ctr("a", {GPU: 0, "amd.com/gpu": 1}))
    workload = detector.detect(pod)
    assert [a.resource for a in workload.accelerators] == ["amd.com/gpu"]
    assert workload.total == 1


# --------------------------------------------------------------------------------------------
# Pattern configuration
# --------------------------------------------------------------------------------------------


def test_custom_resource_pattern() -> None:
    pod = make_pod(ctr("c", {"example.com/npu": 2}))
    assert AcceleratorDetector().detect(pod).gpu is False
    custom = AcceleratorDetector(resource_patterns=["example.com/npu"])
    workload = custom.detect(pod)
    assert (workload.gpu, workload.total) == (True, 2)


def test_custom_patterns_replace_defaults() -> None:
    pod = make_pod(ctr("c", {GPU: 1}))
    assert AcceleratorDetector(resource_patterns=["example.com/npu"]).detect(pod).gpu is False


def test_deviceclass_extended_resource_name_added_by_operator() -> None:
    # A DeviceClass with spec.extendedResourceName: example.com/gpu lets pods request it like a
    # device-plugin resource; the operator lists that name next to the defaults.
    pod = make_pod(ctr("c", {"example.com/gpu": 1}))
    assert AcceleratorDetector().detect(pod).gpu is False
    detector = AcceleratorDetector(
        resource_patterns=[*DEFAULT_RESOURCE_PATTERNS, "example.com/gpu"]
    )
    assert detector.detect(pod).total == 1


def test_dra_extended_resource_follows_device_class_config() -> None:
    pod = make_pod(
        ctr(
            "c",
            {
                "deviceclass.resource.kubernetes.io/gpu.example.com": 1,
                "deviceclass.resource.kubernetes.io/gpu.nvidia.com": 1,
            },
        )
    )
    detector = AcceleratorDetector(device_classes=["gpu.example.com"])
    assert [a.resource for a in detector.detect(pod).accelerators] == [
        "deviceclass.resource.kubernetes.io/gpu.example.com"
    ]


def test_custom_device_class_glob() -> None:
    claim_obj = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {"devices": {"requests": [{"name": "r", "exactly": {
            "deviceClassName": "fpga.example.com", "count": 2}}]}},
    }  # fmt: skip
    pod = make_pod(ctr("c"), claims=[{"name": "x", "resourceClaimName": "c"}])
    resolver = StaticClaimResolver([claim_obj])
    assert AcceleratorDetector().detect(pod, resolver).gpu is False
    detector = AcceleratorDetector(device_classes=["*.example.com"])
    assert detector.detect(pod, resolver).total == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("nvidia.com/gpu", True, id="exact"),
        pytest.param("nvidia.com/gpu.shared", True, id="time-sliced-renamed"),
        pytest.param("nvidia.com/mig-3g.40gb", True, id="mig-glob"),
        # Whole vendor domains: renamed and future products are accelerators too.
        pytest.param("nvidia.com/pgpu", True, id="nvidia-sandbox-pgpu"),
        pytest.param("nvidia.com/GH100_H100_SXM5_80GB", True, id="nvidia-sandbox-model-name"),
        pytest.param("nvidia.com/a100-shared", True, id="nvidia-time-slicing-rename"),
        pytest.param("nvidia.com/vgpu", True, id="nvidia-vgpu"),
        pytest.param("NVIDIA.com/gpu", False, id="case-sensitive-domain"),
        pytest.param("xnvidia.com/gpu", False, id="no-suffix-match"),
        pytest.param("nvidia.com.evil.example/gpu", False, id="domain-lookalike"),
        # NICs in a GPU vendor's domain are excluded.
        pytest.param("nvidia.com/rdma_shared_device_a", False, id="nvidia-rdma-shared-device"),
        pytest.param("nvidia.com/mlnx_sriov_rdma", False, id="nvidia-mlnx-sriov"),
        pytest.param("nvidia.com/sriov_rdma_vf", False, id="nvidia-sriov-vf"),
        pytest.param("nvidia.com/hostdev", False, id="nvidia-host-device-nic"),
        pytest.param("nvidia.com/priority", False, id="hami-task-priority"),
        pytest.param("amd.com/gpu", True, id="amd-gpu"),
        pytest.param("amd.com/cpx_nps4", True, id="amd-partition"),
        pytest.param("amd.com/nic", False, id="amd-ai-nic"),
        # Capacity resources are not device counts (see test_capacity_resources).
        pytest.param("nvidia.com/gpumem", False, id="hami-gpumem-is-capacity"),
        pytest.param("nvidia.com/gpucores", False, id="hami-gpucores-is-capacity"),
        pytest.param("gpu.intel.com/xe", True, id="intel-xe"),
        pytest.param("gpu.intel.com/millicores", False, id="intel-gas-millicores-capacity"),
        pytest.param("gpu.intel.com/memory.max", False, id="intel-gas-memory-capacity"),
        pytest.param("habana.ai/gaudi", True, id="gaudi"),
        pytest.param("habana.ai/gaudi2", True, id="gaudi2"),
        pytest.param("google.com/tpu", True, id="tpu"),
        pytest.param("aws.amazon.com/neuron", True, id="neuron"),
        pytest.param("aws.amazon.com/neurondevice", True, id="neurondevice"),
        pytest.param("vpc.amazonaws.com/efa", False, id="efa-nic"),
        pytest.param("huawei.com/Ascend910B3", True, id="ascend"),
        pytest.param("huawei.com/Ascend910B3-memory", False, id="ascend-hami-memory-capacity"),
        pytest.param("cambricon.com/mlu370", True, id="cambricon"),
        pytest.param("cambricon.com/mlu.smlu.vmemory", False, id="cambricon-smlu-capacity"),
        pytest.param("hygon.com/dcunum", True, id="hygon-dcu"),
        pytest.param("mthreads.com/vgpu", True, id="moore-threads"),
        pytest.param("metax-tech.com/sgpu", True, id="metax-sgpu"),
        pytest.param("iluvatar.ai/vgpu", True, id="iluvatar"),
        pytest.param("enflame.com/vgcu", True, id="enflame-vgcu"),
        pytest.param("enflame.com/vgcu-percentage", False, id="enflame-percentage-capacity"),
        pytest.param("kunlunxin.com/xpu", True, id="kunlunxin"),
        pytest.param("qualcomm.com/qaic", True, id="qualcomm-ai100"),
        pytest.param("volcano.sh/vgpu-number", True, id="volcano-vgpu"),
        pytest.param("volcano.sh/vgpu-memory", False, id="volcano-vgpu-memory-capacity"),
        pytest.param("rdma/ib", False, id="rdma"),
        pytest.param("rdma/rdma_shared_device_a", False, id="rdma-shared-device"),
        pytest.param("intel.com/sriov_netdevice", False, id="intel-sriov-nic"),
        pytest.param("deviceclass.resource.kubernetes.io/mig.nvidia.com", True, id="dra-ext-mig"),
        pytest.param(
            "deviceclass.resource.kubernetes.io/compute-domain-default-channel.nvidia.com",
            False,
            id="dra-ext-imex-channel",
        ),
        pytest.param("cpu", False, id="cpu"),
    ],
)
def test_default_resource_patterns(name: str, expected: bool) -> None:
    assert AcceleratorDetector().is_accelerator_resource(name) is expected


def test_exclusion_pattern() -> None:
    detector = AcceleratorDetector(resource_patterns=["nvidia.com/*", "!nvidia.com/hostdev"])
    assert detector.is_accelerator_resource("nvidia.com/gpu") is True
    assert detector.is_accelerator_resource("nvidia.com/hostdev") is False


def test_exclusion_beats_capacity_beats_count() -> None:
    detector = AcceleratorDetector(
        resource_patterns=["vendor.io/*", "~vendor.io/mem*", "!vendor.io/mem-nic"]
    )
    assert (
        detector.is_accelerator_resource("vendor.io/npu"),
        detector.is_capacity_resource("vendor.io/npu"),
    ) == (True, False)
    assert (
        detector.is_accelerator_resource("vendor.io/memory"),
        detector.is_capacity_resource("vendor.io/memory"),
    ) == (False, True)
    assert (
        detector.is_accelerator_resource("vendor.io/mem-nic"),
        detector.is_capacity_resource("vendor.io/mem-nic"),
    ) == (False, False)


def test_empty_pattern_lists_match_nothing() -> None:
    detector = AcceleratorDetector(resource_patterns=(), device_classes=())
    assert detector.is_accelerator_resource("nvidia.com/gpu") is False
    assert detector.is_accelerator_class("gpu.nvidia.com") is False


def test_default_device_classes() -> None:
    detector = AcceleratorDetector()
    for name in DEFAULT_DEVICE_CLASSES:
        assert detector.is_accelerator_class(name), name
    for name in ("compute-domain-daemon.nvidia.com", "dranet.net", "efa.networking.k8s.aws"):
        assert not detector.is_accelerator_class(name), name


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"resource_patterns": "nvidia.com/gpu"}, TypeError, id="bare-string"),
        pytest.param({"device_classes": "gpu.nvidia.com"}, TypeError, id="bare-string-classes"),
        pytest.param({"resource_patterns": [""]}, ValueError, id="empty-pattern"),
        pytest.param({"resource_patterns": ["!"]}, ValueError, id="empty-negation"),
        pytest.param({"resource_patterns": [" nvidia.com/gpu"]}, ValueError, id="whitespace"),
        pytest.param({"resource_patterns": [3]}, TypeError, id="not-a-string"),
        pytest.param({"resource_patterns": ["~"]}, ValueError, id="empty-capacity"),
        pytest.param({"device_classes": ["~gpu.nvidia.com"]}, ValueError, id="capacity-class"),
        pytest.param({"runtime_classes": "nvidia"}, TypeError, id="bare-string-runtime"),
        pytest.param({"device_env": "NVIDIA_VISIBLE_DEVICES"}, TypeError, id="bare-string-env"),
        pytest.param({"device_env": [""]}, ValueError, id="empty-env-name"),
        pytest.param({"device_host_paths": ["dev/nvidia"]}, ValueError, id="relative-host-path"),
        pytest.param({"sharing_annotations": [None]}, TypeError, id="annotation-not-a-string"),
    ],
)
def test_bad_pattern_configuration(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        AcceleratorDetector(**kwargs)


# --------------------------------------------------------------------------------------------
# Quantities
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("1", 1, id="str-1"),
        pytest.param(2, 2, id="int-2"),
        pytest.param("2", 2, id="str-2"),
        pytest.param(0, 0, id="zero"),
        pytest.param("1k", 1000, id="kilo"),
        pytest.param("1Ki", 1024, id="kibi"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param("1E", 10**18, id="exa-suffix-not-exponent"),
        pytest.param("500m", 1, id="milli-rounds-up"),
        pytest.param("1500m", 2, id="milli-above-one-rounds-up"),
        pytest.param("2000m", 2, id="milli-exact"),
        pytest.param("1.5", 2, id="decimal-rounds-up"),
        pytest.param(".5", 1, id="leading-dot"),
        pytest.param("+3", 3, id="plus-sign"),
        pytest.param(" 4 ", 4, id="surrounding-space"),
        pytest.param(2.0, 2, id="float"),
        pytest.param(0.25, 1, id="float-fraction-rounds-up"),
        pytest.param("1e-40", 1, id="tiny-positive-still-one"),
    ],
)
def test_parse_count(value: object, expected: int) -> None:
    assert parse_count(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("abc", '"abc" is not a valid quantity', id="garbage"),
        pytest.param("", '"" is not a valid quantity', id="empty"),
        pytest.param("1 GPU", '"1 GPU" is not a valid quantity', id="unit-word"),
        pytest.param("1e", '"1e" is not a valid quantity', id="bare-e"),
        pytest.param("0x10", '"0x10" is not a valid quantity', id="hex"),
        pytest.param("-1", '"-1" is negative', id="negative-str"),
        pytest.param(-2, "-2 is negative", id="negative-int"),
        pytest.param(True, "true is not a valid quantity", id="bool"),
        pytest.param(None, "null is not a valid quantity", id="null"),
        pytest.param([1], "[1] is not a valid quantity", id="list"),
        pytest.param(float("inf"), "Infinity is not a valid quantity", id="infinity"),
        pytest.param("1e31", "too large", id="huge-exponent"),
        pytest.param("10E", "too large", id="beyond-int64"),
    ],
)
def test_parse_count_rejects(value: object, message: str) -> None:
    with pytest.raises(DetectError) as excinfo:
        parse_count(value)
    assert message in str(excinfo.value)


def test_parse_count_error_truncates_long_values() -> None:
    with pytest.raises(DetectError) as excinfo:
        parse_count("x" * 10_000)
    assert len(str(excinfo.value)) < 200


# --------------------------------------------------------------------------------------------
# Malformed input: DetectError naming the field
# --------------------------------------------------------------------------------------------

MALFORMED_CASES = [
    pytest.param(["not", "a", "pod"], "pod", "expected a Pod object", id="pod-not-object"),
    pytest.param({"spec": "x"}, "spec", "expected an object", id="spec-not-object"),
    pytest.param(
        {"spec": {"containers": "vllm"}}, "spec.containers", "expected a list", id="containers-str"
    ),
    pytest.param(
        {"spec": {"containers": ["vllm"]}},
        "spec.containers[0]",
        "expected a container object",
        id="container-not-object",
    ),
    pytest.param(
        make_pod({"name": "vllm", "resources": ["nvidia.com/gpu"]}),
        "spec.containers[0].resources",
        "expected an object",
        id="resources-list",
    ),
    pytest.param(
        make_pod({"name": "vllm", "resources": {"limits": "nvidia.com/gpu=1"}}),
        "spec.containers[0].resources.limits",
        "expected an object",
        id="limits-str",
    ),
    pytest.param(
        make_pod(ctr("vllm", {GPU: "abc"})),
        'spec.containers[0].resources.limits["nvidia.com/gpu"]',
        '"abc" is not a valid quantity; use a number such as "1" (container "vllm")',
        id="garbage-quantity",
    ),
    pytest.param(
        make_pod(ctr("main"), init=(ctr("a"), ctr("warmup", None, {GPU: "1 GPU"}))),
        'spec.initContainers[1].resources.requests["nvidia.com/gpu"]',
        '(container "warmup")',
        id="init-container-garbage",
    ),
    pytest.param(
        make_pod(ctr("vllm", {GPU: -1})),
        'spec.containers[0].resources.limits["nvidia.com/gpu"]',
        "negative",
        id="negative",
    ),
    pytest.param(
        make_pod(ctr("vllm", {GPU: True})),
        'spec.containers[0].resources.limits["nvidia.com/gpu"]',
        "true is not a valid quantity",
        id="yaml-bool",
    ),
    pytest.param(
        make_pod(ctr("vllm", {1: 1})),
        "spec.containers[0].resources.limits",
        "resource name 1 is not a string",
        id="non-string-resource-name",
    ),
    pytest.param(
        {"spec": {"containers": [], "ephemeralContainers": {"name": "dbg"}}},
        "spec.ephemeralContainers",
        "expected a list",
        id="ephemeral-not-list",
    ),
    pytest.param(
        make_pod(ctr("c"), claims={"name": "gpu"}),  # type: ignore[arg-type]
        "spec.resourceClaims",
        "expected a list",
        id="resourceClaims-not-list",
    ),
    pytest.param(
        make_pod(ctr("c"), claims=["gpu"]),
        "spec.resourceClaims[0]",
        "expected an object",
        id="resourceClaim-not-object",
    ),
    pytest.param(
        make_pod(ctr("c"), claims=[{"resourceClaimName": "x"}]),
        "spec.resourceClaims[0].name",
        "name must be a non-empty string",
        id="resourceClaim-no-name",
    ),
    pytest.param(
        make_pod(ctr("c"), claims=[{"name": "gpu"}]),
        "spec.resourceClaims[0]",
        "exactly one of resourceClaimName or resourceClaimTemplateName",
        id="resourceClaim-no-source",
    ),
    pytest.param(
        make_pod(
            ctr("c"),
            claims=[{"name": "g", "resourceClaimName": "a", "resourceClaimTemplateName": "b"}],
        ),
        "spec.resourceClaims[0]",
        "exactly one of",
        id="resourceClaim-both-sources",
    ),
    pytest.param(
        make_pod(ctr("c"), claims=[{"name": "g", "source": {}}]),
        "spec.resourceClaims[0].source",
        "exactly one of",
        id="resourceClaim-empty-legacy-source",
    ),
    pytest.param(
        make_pod(ctr("c"), claims=[{"name": "g", "resourceClaimTemplateName": 5}]),
        "spec.resourceClaims[0].resourceClaimTemplateName",
        "expected a non-empty string, got 5",
        id="resourceClaim-name-not-string",
    ),
]


@pytest.mark.parametrize(("pod", "field", "message"), MALFORMED_CASES)
def test_malformed_pod(detector: AcceleratorDetector, pod: Any, field: str, message: str) -> None:
    with pytest.raises(DetectError) as excinfo:
        detector.detect(pod)
    assert excinfo.value.field == field
    assert str(excinfo.value).startswith(f"{field}: ")
    assert message in str(excinfo.value)


def test_garbage_quantity_message_is_exact(detector: AcceleratorDetector) -> None:
    with pytest.raises(DetectError) as excinfo:
        detector.detect(make_pod(ctr("vllm", {GPU: "abc"})))
    assert str(excinfo.value) == (
        'spec.containers[0].resources.limits["nvidia.com/gpu"]: "abc" is not a valid quantity; '
        'use a number such as "1" (container "vllm")'
    )


def test_garbage_in_non_accelerator_resources_is_not_our_business(
    detector: AcceleratorDetector,
) -> None:
    # The API server validates cpu/memory; detection only parses accelerator quantities.
    workload = detector.detect(make_pod(ctr("c", {"cpu": "lots", GPU: 1})))
    assert workload.total == 1


def claim_template(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"spec": {"devices": {"requests": [request]}}},
    }


@pytest.mark.parametrize(
    ("template", "inner"),
    [
        pytest.param(
            claim_template({"name": "r", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                                      "count": "many"}}),
            'spec.spec.devices.requests[0].exactly.count: "many" is not a valid quantity',
            id="bad-count",
        ),
        pytest.param(
            claim_template({"name": "r", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                                      "allocationMode": "Some"}}),
            'spec.spec.devices.requests[0].exactly.allocationMode: "Some" is not a known',
            id="bad-allocation-mode",
        ),
        pytest.param(
            claim_template({"name": "r", "exactly": {"count": 1}}),
            "spec.spec.devices.requests[0].exactly.deviceClassName: deviceClassName must be",
            id="missing-device-class",
        ),
        pytest.param(
            claim_template({"name": "r", "firstAvailable": "gpu.nvidia.com"}),
            "spec.spec.devices.requests[0].firstAvailable: expected a list",
            id="firstAvailable-not-list",
        ),
        pytest.param(
            {**claim_template({}), "spec": {"spec": {"devices": {"requests": {"a": 1}}}}},
            "spec.spec.devices.requests: expected a list",
            id="requests-not-list",
        ),
    ],
)  # fmt: skip
def test_malformed_claim_object(
    detector: AcceleratorDetector, template: dict[str, Any], inner: str
) -> None:
    pod = make_pod(ctr("c"), claims=[{"name": "g", "resourceClaimTemplateName": "t"}])
    with pytest.raises(DetectError) as excinfo:
        detector.detect(pod, StaticClaimResolver([template]))
    assert excinfo.value.field == "spec.resourceClaims[0]"
    assert str(excinfo.value).startswith('spec.resourceClaims[0]: ResourceClaimTemplate "ns/t": ')
    assert inner in str(excinfo.value)


# --------------------------------------------------------------------------------------------
# Other vendors and renamed resources: whole vendor domains, NICs excluded
# --------------------------------------------------------------------------------------------

VENDOR_CASES = [
    pytest.param(
        "nvidia-passthrough-kata-pgpu.yaml",
        [
            ("cuda-vectoradd", "container", "nvidia.com/pgpu", 1),
            ("second-vm-gpu", "container", "nvidia.com/GA102GL_A10", 1),
        ],
        2,
        id="nvidia-sandbox-passthrough-names",
    ),
    pytest.param(
        "nvidia-network-operator-rdma.yaml",
        [("vllm", "container", GPU, 8)],
        8,
        id="nvidia-sriov-rdma-hostdev-nics-not-counted",
    ),
    pytest.param(
        "hami-gpumem-gpucores.yaml",
        [("ubuntu-container", "container", GPU, 1)],
        1,  # 3000 MiB and 30 % are amounts of that one GPU
        id="hami-capacity-next-to-count",
    ),
    pytest.param(
        "hami-gpumem-percentage-only.yaml",
        [("ubuntu-container", "container", "nvidia.com/gpumem-percentage", 1)],
        1,
        id="hami-capacity-alone-is-one-device",
    ),
    pytest.param(
        "ascend-910b-mindie.yaml",
        [("mindie", "container", "huawei.com/Ascend910B", 2)],
        2,
        id="huawei-ascend",
    ),
    pytest.param(
        "ascend-vnpu-template.yaml",
        [("infer", "container", "huawei.com/Ascend310P-2c", 1)],
        1,
        id="huawei-ascend-vnpu-template",
    ),
    pytest.param(
        "cambricon-mlu.yaml", [("infer", "container", "cambricon.com/mlu", 1)], 1, id="cambricon"
    ),
    pytest.param(
        "hygon-dcu.yaml", [("infer", "container", "hygon.com/dcunum", 1)], 1, id="hygon-dcu"
    ),
    pytest.param(
        "mthreads-vgpu.yaml",
        [("infer", "container", "mthreads.com/vgpu", 1)],
        1,
        id="moore-threads",
    ),
    pytest.param(
        "metax-gpu.yaml", [("infer", "container", "metax-tech.com/gpu", 2)], 2, id="metax"
    ),
    pytest.param(
        "iluvatar-vgpu.yaml", [("infer", "container", "iluvatar.ai/vgpu", 1)], 1, id="iluvatar"
    ),
    pytest.param(
        "enflame-gcu.yaml", [("infer", "container", "enflame.com/gcu", 4)], 4, id="enflame"
    ),
    pytest.param(
        "qualcomm-qaic.yaml", [("infer", "container", "qualcomm.com/qaic", 1)], 1, id="qualcomm"
    ),
    pytest.param(
        "runtimeclass-nvidia-with-gpu.yaml",
        [("cuda-container", "container", GPU, 1)],
        1,  # with an allocation, the runtime class is how the GPU runs: no side door
        id="nvidia-runtime-class-with-allocation",
    ),
]


@pytest.mark.parametrize(("fixture", "expected", "total"), VENDOR_CASES)
def test_vendor_and_renamed_resources(
    detector: AcceleratorDetector,
    fixture: str,
    expected: list[tuple[str, str, str, int]],
    total: int,
) -> None:
    pod, resolver = load(fixture)
    workload = detector.detect(pod, resolver)
    assert [astuple(a) for a in workload.accelerators] == expected
    assert workload.total == total
    assert workload.side_doors == ()
    assert workload.gpu is True


CAPACITY_CASES = [
    pytest.param({"nvidia.com/gpumem": 3000}, [("nvidia.com/gpumem", 1)], id="memory-alone"),
    pytest.param(
        {"nvidia.com/gpucores": 30, "nvidia.com/gpumem": "8Gi"},
        [("nvidia.com/gpucores", 1)],
        id="two-amounts-one-device",
    ),
    pytest.param(
        {GPU: 2, "nvidia.com/gpumem": 3000}, [(GPU, 2)], id="amount-next-to-count-ignored"
    ),
    pytest.param({"nvidia.com/gpumem": 0}, [], id="zero-amount-is-none"),
    pytest.param(
        {"gpu.intel.com/millicores": 500}, [("gpu.intel.com/millicores", 1)], id="intel-gas-alone"
    ),
    pytest.param(
        {
            "gpu.intel.com/i915": 1,
            "gpu.intel.com/millicores": 500,
            "gpu.intel.com/memory.max": "8G",
        },
        [("gpu.intel.com/i915", 1)],
        id="intel-gas-with-i915",
    ),
]


@pytest.mark.parametrize(("limits", "expected"), CAPACITY_CASES)
def test_capacity_resources(
    detector: AcceleratorDetector, limits: dict[str, Any], expected: list[tuple[str, int]]
) -> None:
    workload = detector.detect(make_pod(ctr("c", limits)))
    assert [(a.resource, a.count) for a in workload.accelerators] == expected
    assert workload.total == sum(count for _, count in expected)


def test_garbage_capacity_quantity_names_the_field(detector: AcceleratorDetector) -> None:
    with pytest.raises(DetectError) as excinfo:
        detector.detect(make_pod(ctr("c", {"nvidia.com/gpumem": "lots"})))
    assert excinfo.value.field == 'spec.containers[0].resources.limits["nvidia.com/gpumem"]'


# --------------------------------------------------------------------------------------------
# GPU-sharing schedulers' annotations: counted
# --------------------------------------------------------------------------------------------

SHARING_CASES = [
    pytest.param(
        "kai-gpu-fraction.yaml",
        ("sleep", "container", "gpu-fraction", 1),
        'metadata.annotations["gpu-fraction"]',
        id="kai-fraction-first-container",
    ),
    pytest.param(
        "kai-gpu-fraction-admitted.yaml",
        ("server", "container", "gpu-fraction", 1),
        'metadata.annotations["gpu-fraction"]',
        id="kai-fraction-after-kai-webhook-configmap-env-is-not-a-side-door",
    ),
    pytest.param(
        "kai-gpu-memory-multi-device.yaml",
        ("vllm", "container", "gpu-memory", 2),
        'metadata.annotations["gpu-memory"]',
        id="kai-memory-on-two-devices",
    ),
]


@pytest.mark.parametrize(("fixture", "expected", "field"), SHARING_CASES)
def test_gpu_sharing_annotations_are_counted(
    detector: AcceleratorDetector,
    fixture: str,
    expected: tuple[str, str, str, int],
    field: str,
) -> None:
    pod, resolver = load(fixture)
    workload = detector.detect(pod, resolver)
    [use] = workload.accelerators
    assert astuple(use) == expected
    assert use.field == field
    assert workload.total == expected[3]
    assert workload.side_doors == ()
    assert workload.gpu is True


def shared_pod(
    annotations: dict[str, Any], *containers: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    pod = make_pod(*(containers or (ctr("main"),)), **kw)
    pod["metadata"]["annotations"] = annotations
    return pod


@pytest.mark.parametrize(
    ("annotations", "resource", "count"),
    [
        pytest.param({"gpu-fraction": "0.25"}, "gpu-fraction", 1, id="quarter"),
        pytest.param({"gpu-fraction": "1.5"}, "gpu-fraction", 2, id="above-one-spans-two"),
        pytest.param(
            {"gpu-fraction": "0.5", "gpu-fraction-num-devices": "4"}, "gpu-fraction", 4,
            id="fraction-of-four",
        ),
        pytest.param({"gpu-memory": "2000"}, "gpu-memory", 1, id="memory"),
        pytest.param(
            {"gpu-fraction-num-devices": "3"}, "gpu-fraction-num-devices", 3,
            id="num-devices-alone-fails-closed",
        ),
        pytest.param(
            {"gpu-fraction-num-devices": "0", "gpu-memory": "1"}, "gpu-memory", 1,
            id="zero-devices-still-one",
        ),
    ],
)  # fmt: skip
def test_sharing_counts(
    detector: AcceleratorDetector, annotations: dict[str, str], resource: str, count: int
) -> None:
    workload = detector.detect(shared_pod(annotations))
    assert [(a.resource, a.count) for a in workload.accelerators] == [(resource, count)]
    assert workload.total == count


def test_share_adds_to_container_resources(detector: AcceleratorDetector) -> None:
    workload = detector.detect(shared_pod({"gpu-fraction": "0.5"}, ctr("main", {GPU: 1})))
    assert [astuple(a) for a in workload.accelerators] == [
        ("main", "container", GPU, 1),
        ("main", "container", "gpu-fraction", 1),
    ]
    assert workload.total == 2


def test_share_goes_to_the_named_init_container(detector: AcceleratorDetector) -> None:
    pod = shared_pod(
        {"gpu-fraction": "0.5", "gpu-fraction-container-name": "warmup"},
        ctr("main"),
        init=(ctr("warmup"),),
    )
    assert astuple(detector.detect(pod).accelerators[0]) == (
        "warmup", "initContainer", "gpu-fraction", 1
    )  # fmt: skip


def test_garbage_sharing_annotation_names_it(detector: AcceleratorDetector) -> None:
    with pytest.raises(DetectError) as excinfo:
        detector.detect(shared_pod({"gpu-fraction": "half"}))
    assert excinfo.value.field == 'metadata.annotations["gpu-fraction"]'


def test_sharing_annotations_are_configurable() -> None:
    pod = shared_pod({"gpu-fraction": "0.5"})
    assert AcceleratorDetector(sharing_annotations=()).detect(pod).gpu is False


# --------------------------------------------------------------------------------------------
# Side doors: devices without an allocation; governed, never counted
# --------------------------------------------------------------------------------------------

Door = tuple[str, str, str | None, str | None, str | None]

SIDE_DOOR_CASES = [
    pytest.param(
        "side-door-env-visible-devices-all.yaml",
        [("env", "spec.containers[0].env[1]", "cuda-vectoradd", "NVIDIA_VISIBLE_DEVICES", "all")],
        0,
        id="nvidia-visible-devices-all-without-a-request",
    ),
    pytest.param(
        "side-door-env-value-from.yaml",
        [
            (
                "env",
                "spec.containers[0].env[0]",
                "triton",
                "NVIDIA_VISIBLE_DEVICES",
                "valueFrom.configMapKeyRef",
            )
        ],
        1,  # the GPU it requests is counted; the env var would override which ones it sees
        id="nvidia-visible-devices-from-a-configmap-next-to-a-request",
    ),
    pytest.param(
        "side-door-env-amd-habana-neuron.yaml",
        [
            ("env", "spec.containers[0].env[0]", "rocm", "AMD_VISIBLE_DEVICES", "all"),
            ("env", "spec.containers[1].env[0]", "gaudi", "HABANA_VISIBLE_DEVICES", "all"),
            ("env", "spec.containers[2].env[0]", "neuron", "AWS_NEURON_VISIBLE_DEVICES", "ALL"),
        ],
        0,
        id="amd-habana-neuron-runtime-variables",
    ),
    pytest.param(
        "side-door-runtimeclass-nvidia.yaml",
        [("runtimeClass", "spec.runtimeClassName", None, "nvidia", None)],
        0,
        id="nvidia-runtime-class-without-allocation",
    ),
    pytest.param(
        "side-door-hostpath-nvidia-devices.yaml",
        [
            ("hostPath", "spec.volumes[0].hostPath.path", None, "nvidia0", "/dev/nvidia0"),
            ("hostPath", "spec.volumes[1].hostPath.path", None, "nvidiactl", "//dev/nvidiactl"),
            ("hostPath", "spec.volumes[2].hostPath.path", None, "nvidia-uvm", "/dev/./nvidia-uvm/"),
        ],
        0,
        id="nvidia-device-nodes-as-host-paths",
    ),
    pytest.param(
        "side-door-hostpath-rocm.yaml",
        [
            ("hostPath", "spec.volumes[0].hostPath.path", None, "kfd", "/dev/kfd"),
            ("hostPath", "spec.volumes[1].hostPath.path", None, "dri", "/dev/dri"),
        ],
        0,
        id="rocm-kfd-and-dri",
    ),
    pytest.param(
        "side-door-hostpath-dev.yaml",
        [
            ("hostPath", "spec.volumes[0].hostPath.path", None, "dev", "/dev"),
            ("hostPath", "spec.volumes[1].hostPath.path", None, "host-root", "/"),
        ],
        0,  # /var/log is no door
        id="dev-and-root-hold-every-device",
    ),
    pytest.param(
        "side-door-privileged.yaml",
        [
            ("privileged", "spec.initContainers[0].securityContext.privileged", "pull-model",
             None, None),
            ("privileged", "spec.containers[0].securityContext.privileged", "ollama", None, None),
        ],
        0,  # privileged: false is no door
        id="privileged-init-and-regular-containers",
    ),
    pytest.param(
        "side-door-cdi-annotation.yaml",
        [
            ("annotation", 'metadata.annotations["cdi.k8s.io/vllm"]', None, "cdi.k8s.io/vllm",
             "nvidia.com/gpu=all"),
            ("annotation", 'metadata.annotations["io.kubernetes.cri-o.Devices"]', None,
             "io.kubernetes.cri-o.Devices", "/dev/nvidia0"),
        ],
        0,
        id="cdi-and-cri-o-device-annotations",
    ),
]  # fmt: skip


def door(d: SideDoor) -> Door:
    return (d.kind, d.field, d.container, d.name, d.value)


@pytest.mark.parametrize(("fixture", "expected", "total"), SIDE_DOOR_CASES)
def test_side_doors(
    detector: AcceleratorDetector, fixture: str, expected: list[Door], total: int
) -> None:
    pod, resolver = load(fixture)
    workload = detector.detect(pod, resolver)
    assert [door(d) for d in workload.side_doors] == expected
    assert workload.total == total  # side doors are governed, never counted
    assert workload.gpu is True


def env_pod(*env: dict[str, Any], annotations: dict[str, Any] | None = None) -> dict[str, Any]:
    pod = make_pod(ctr("main", env=list(env)))
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations
    return pod


NVD = "NVIDIA_VISIBLE_DEVICES"
FROM_CONFIGMAP = {"configMapKeyRef": {"name": "gpu-sharing-x7k2pq9-shared-gpu-0", "key": NVD}}

ENV_CASES = [
    pytest.param({"name": NVD, "value": "all"}, "all", id="all"),
    pytest.param({"name": NVD, "value": "0,1"}, "0,1", id="indexes"),
    pytest.param({"name": NVD, "value": "GPU-3b1c2d4e"}, "GPU-3b1c2d4e", id="uuid"),
    pytest.param({"name": NVD, "value": "void"}, None, id="void-exposes-nothing"),
    pytest.param({"name": NVD, "value": "none"}, None, id="none-exposes-nothing"),
    pytest.param({"name": NVD, "value": ""}, None, id="empty-exposes-nothing"),
    pytest.param({"name": NVD}, None, id="no-value-exposes-nothing"),
    # The toolkit compares exactly: anything else is a device list.
    pytest.param({"name": NVD, "value": "VOID"}, "VOID", id="void-upper-case-is-a-device-list"),
    pytest.param({"name": NVD, "value": " void"}, " void", id="void-padded-is-a-device-list"),
    pytest.param(
        {"name": NVD, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        "valueFrom.secretKeyRef",
        id="from-a-secret",
    ),
    pytest.param(
        {"name": NVD, "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['gpus']"}}},
        "valueFrom.fieldRef",
        id="from-an-annotation",
    ),
    pytest.param({"name": NVD, "valueFrom": FROM_CONFIGMAP}, "valueFrom.configMapKeyRef",
                 id="from-a-configmap-without-a-share"),
    pytest.param({"name": "NVIDIA_MIG_CONFIG_DEVICES", "value": "all"}, "all", id="mig-config"),
    pytest.param({"name": "ASCEND_VISIBLE_DEVICES", "value": "0"}, "0", id="ascend"),
    pytest.param({"name": "MTHREADS_VISIBLE_DEVICES", "value": "all"}, "all", id="moore-threads"),
    pytest.param({"name": "ENFLAME_VISIBLE_DEVICES", "value": "0,1"}, "0,1", id="enflame"),
    # Application level: they only narrow the devices already in the container.
    pytest.param({"name": "CUDA_VISIBLE_DEVICES", "value": "0"}, None, id="cuda-app-level"),
    pytest.param({"name": "HIP_VISIBLE_DEVICES", "value": "0"}, None, id="hip-app-level"),
    pytest.param({"name": "ROCR_VISIBLE_DEVICES", "value": "0"}, None, id="rocr-app-level"),
    pytest.param({"name": "NEURON_RT_VISIBLE_CORES", "value": "0"}, None, id="neuron-cores"),
    pytest.param({"name": "TPU_VISIBLE_CHIPS", "value": "0"}, None, id="tpu-app-level"),
    pytest.param(
        {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}, None, id="driver-libraries"
    ),
    pytest.param({"name": "nvidia_visible_devices", "value": "all"}, None, id="case-sensitive"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "value"), ENV_CASES)
def test_device_env_values(
    detector: AcceleratorDetector, env: dict[str, Any], value: str | None
) -> None:
    workload = detector.detect(env_pod(env))
    expected = (
        [] if value is None else [("env", "spec.containers[0].env[0]", "main", env["name"], value)]
    )
    assert [door(d) for d in workload.side_doors] == expected
    assert workload.gpu is (value is not None)


KAI_EXEMPTION_CASES = [
    pytest.param(
        {"gpu-fraction": "0.5"}, FROM_CONFIGMAP, 0, False, id="kai-share-configmap-exempt"
    ),
    pytest.param(
        {"gpu-fraction": "0.5", "gpu-fraction-container-name": "other"}, FROM_CONFIGMAP, 0, True,
        id="not-the-fraction-container",
    ),
    pytest.param(
        {"gpu-fraction": "0.5"}, {"secretKeyRef": {"name": "s", "key": NVD}}, 0, True,
        id="share-but-from-a-secret",
    ),
    pytest.param(
        {"gpu-fraction": "0.5"}, {"configMapKeyRef": {"name": "c", "key": NVD}, "fieldRef": {}},
        0, True, id="share-but-two-sources",
    ),
    pytest.param({}, FROM_CONFIGMAP, 0, True, id="configmap-without-a-share"),
    pytest.param(
        {"gpu-fraction": "0.5"}, None, 1, True, id="share-but-literal-value",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("annotations", "value_from", "container", "door_found"), KAI_EXEMPTION_CASES
)
def test_kai_visible_devices_exemption(
    detector: AcceleratorDetector,
    annotations: dict[str, str],
    value_from: dict[str, Any] | None,
    container: int,
    door_found: bool,
) -> None:
    # KAI gives NVIDIA_VISIBLE_DEVICES from its own ConfigMap to the fraction container only.
    env = {"name": NVD, "valueFrom": value_from} if value_from else {"name": NVD, "value": "all"}
    containers = [ctr("main"), ctr("other")]
    containers[container]["env"] = [env]
    workload = detector.detect(shared_pod(annotations, *containers))
    assert bool(workload.side_doors) is door_found


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/dev/nvidia0", True, id="nvidia-device"),
        pytest.param("/dev/nvidia-caps/nvidia-cap1", True, id="nvidia-mig-caps"),
        pytest.param("/dev/dri/renderD128", True, id="dri-render-node"),
        pytest.param("/dev/accel/accel0", True, id="accel-class"),
        pytest.param("/dev/accel0", True, id="tpu"),
        pytest.param("/dev/neuron3", True, id="neuron"),
        pytest.param("/dev/hl0", True, id="gaudi-legacy"),
        pytest.param("/dev/davinci_manager", True, id="ascend-manager"),
        pytest.param("/dev/vfio/42", True, id="vfio-passthrough"),
        pytest.param("/dev/char/195:0", True, id="char-device-symlinks"),
        pytest.param("/dev", True, id="dev-ancestor"),
        pytest.param("/dev/", True, id="dev-trailing-slash"),
        pytest.param("/", True, id="root-ancestor"),
        pytest.param("//", True, id="root-double-slash"),
        pytest.param("//dev//nvidia0", True, id="doubled-slashes"),
        pytest.param("/dev/./nvidia0", True, id="dot-segment"),
        pytest.param("/run/../dev/nvidia0", True, id="dot-dot-segment"),
        pytest.param("dev/nvidia0", True, id="relative-from-kubelet-root"),
        pytest.param("/dev/shm", False, id="dev-shm"),
        pytest.param("/dev/infiniband", False, id="rdma-devices-not-accelerators"),
        pytest.param("/de", False, id="not-an-ancestor"),
        pytest.param("/devices/nvidia0", False, id="lookalike-directory"),
        pytest.param("/var/lib/kubelet/pods", False, id="unrelated"),
        pytest.param("/mnt/models", False, id="models"),
        pytest.param("C:\\dev\\nvidia0", False, id="windows-drive-path"),
        pytest.param("\\\\server\\share", False, id="windows-unc-path"),
    ],
)
def test_device_host_paths(detector: AcceleratorDetector, path: str, expected: bool) -> None:
    assert detector.is_device_host_path(path) is expected


@pytest.mark.parametrize(
    ("runtime_class", "door_found"),
    [
        pytest.param("nvidia", True, id="nvidia"),
        pytest.param("nvidia-cdi", True, id="nvidia-cdi"),
        pytest.param("nvidia-legacy", True, id="nvidia-legacy"),
        pytest.param("amd", True, id="amd"),
        pytest.param("habana", True, id="habana"),
        pytest.param("kata-qemu-nvidia-gpu-snp", True, id="kata-gpu-passthrough-snp"),
        pytest.param("nvidiafoo", False, id="no-prefix-without-dash"),
        pytest.param("runc", False, id="runc"),
        pytest.param("kata-qemu", False, id="kata-without-gpu"),
        pytest.param("gvisor", False, id="gvisor"),
    ],
)
def test_runtime_classes(
    detector: AcceleratorDetector, runtime_class: str, door_found: bool
) -> None:
    pod = make_pod(ctr("main"))
    pod["spec"]["runtimeClassName"] = runtime_class
    assert bool(detector.detect(pod).side_doors) is door_found
    # An allocation makes it the ordinary way to run the accelerator.
    pod["spec"]["containers"][0]["resources"] = {"limits": {GPU: 1}}
    assert detector.detect(pod).side_doors == ()


def test_privileged_ephemeral_debug_container(detector: AcceleratorDetector) -> None:
    # `kubectl debug --profile=sysadmin` adds a privileged ephemeral container.
    debug = {"name": "debugger-r2x9k", "image": "busybox", "securityContext": {"privileged": True}}
    workload = detector.detect(make_pod(ctr("main"), ephemeral=(debug,)))
    assert [door(d) for d in workload.side_doors] == [
        ("privileged", "spec.ephemeralContainers[0].securityContext.privileged",
         "debugger-r2x9k", None, None),
    ]  # fmt: skip


def test_privileged_check_can_be_turned_off() -> None:
    # For clusters where Pod Security Admission already refuses privileged pods.
    pod, _ = load("side-door-privileged.yaml")
    assert AcceleratorDetector(privileged=False).detect(pod).gpu is False


def test_side_door_paths_are_configurable() -> None:
    pod, _ = load("side-door-hostpath-rocm.yaml")
    assert AcceleratorDetector(device_host_paths=()).detect(pod).side_doors == ()
    only_kfd = AcceleratorDetector(device_host_paths=["/dev/kfd"]).detect(pod)
    assert [d.name for d in only_kfd.side_doors] == ["kfd"]
    pod, _ = load("side-door-runtimeclass-nvidia.yaml")
    assert AcceleratorDetector(runtime_classes=()).detect(pod).gpu is False
    pod, _ = load("side-door-env-visible-devices-all.yaml")
    assert AcceleratorDetector(device_env=()).detect(pod).gpu is False
    pod, _ = load("side-door-cdi-annotation.yaml")
    assert AcceleratorDetector(device_annotations=()).detect(pod).gpu is False


def test_side_door_values_are_clipped_and_ascii(detector: AcceleratorDetector) -> None:
    [found] = detector.detect(
        env_pod({"name": NVD, "value": "GPU-\u00e9\n" + "x" * 200})
    ).side_doors
    assert found.value is not None
    assert found.value.isascii()
    assert found.value.startswith("GPU-\\xe9\\n")
    assert len(found.value) == 64
    assert found.value.endswith("...")


def test_side_doors_in_policy_input(detector: AcceleratorDetector) -> None:
    pod, _ = load("side-door-env-value-from.yaml")
    data = detector.detect(pod).to_input()
    assert data["sideDoors"] == [
        {
            "kind": "env",
            "field": "spec.containers[0].env[0]",
            "container": "triton",
            "name": "NVIDIA_VISIBLE_DEVICES",
            "value": "valueFrom.configMapKeyRef",
        }
    ]
    assert data["total"] == 1


SIDE_DOOR_MALFORMED_CASES = [
    pytest.param(
        make_pod(ctr("c", env="NVIDIA_VISIBLE_DEVICES=all")),
        "spec.containers[0].env",
        "expected a list",
        id="env-not-a-list",
    ),
    pytest.param(
        make_pod(ctr("c", env=["NVIDIA_VISIBLE_DEVICES=all"])),
        "spec.containers[0].env[0]",
        "expected an env var object",
        id="env-entry-not-an-object",
    ),
    pytest.param(
        make_pod(ctr("c", env=[{"name": NVD, "value": 1}])),
        "spec.containers[0].env[0].value",
        "expected a string value, got 1",
        id="env-value-not-a-string",
    ),
    pytest.param(
        make_pod(ctr("c", securityContext="privileged")),
        "spec.containers[0].securityContext",
        "expected an object",
        id="security-context-not-an-object",
    ),
    pytest.param(
        {"spec": {"containers": [], "volumes": {"dev": "/dev"}}},
        "spec.volumes",
        "expected a list",
        id="volumes-not-a-list",
    ),
    pytest.param(
        {"spec": {"containers": [], "volumes": [{"name": "d", "hostPath": {"path": 5}}]}},
        "spec.volumes[0].hostPath.path",
        "expected a string, got 5",
        id="host-path-not-a-string",
    ),
    pytest.param(
        {"metadata": {"annotations": ["gpu-fraction"]}, "spec": {"containers": []}},
        "metadata.annotations",
        "expected an object",
        id="annotations-not-an-object",
    ),
]


@pytest.mark.parametrize(("pod", "field", "message"), SIDE_DOOR_MALFORMED_CASES)
def test_malformed_side_door_fields(
    detector: AcceleratorDetector, pod: Any, field: str, message: str
) -> None:
    with pytest.raises(DetectError) as excinfo:
        detector.detect(pod)
    assert excinfo.value.field == field
    assert message in str(excinfo.value)


# --------------------------------------------------------------------------------------------
# Output shape, resolver, purity
# --------------------------------------------------------------------------------------------


def test_to_input_matches_contract_shape(detector: AcceleratorDetector) -> None:
    pod, resolver = load("dra-mixed-claims-and-plugin.yaml")
    data = detector.detect(pod, resolver).to_input()
    assert data == {
        "accelerators": [
            {
                "container": "main",
                "containerType": "container",
                "resource": GPU,
                "count": 4,
                "field": "spec.containers[0].resources",
            }
        ],
        "claims": [
            {
                "name": "imex",
                "source": "resourceClaimTemplateName",
                "objectName": "imex-channel",
                "deviceClasses": ["compute-domain-default-channel.nvidia.com"],
                "count": 0,
                "accelerator": False,
                "resolved": True,
                "allDevices": False,
            },
            {
                "name": "extra-gpu",
                "source": "resourceClaimTemplateName",
                "objectName": "one-gpu",
                "deviceClasses": ["gpu.nvidia.com"],
                "count": 1,
                "accelerator": True,
                "resolved": True,
                "allDevices": False,
            },
        ],
        "total": 5,
        "sideDoors": [],
    }
    assert json.loads(json.dumps(data)) == data  # plain JSON types only


def test_to_input_for_cpu_pod(detector: AcceleratorDetector) -> None:
    pod, _ = load("cpu-only.yaml")
    assert detector.detect(pod).to_input() == {
        "accelerators": [],
        "claims": [],
        "total": 0,
        "sideDoors": [],
    }


def test_results_are_immutable(detector: AcceleratorDetector) -> None:
    pod, resolver = load("dra-v1-exactly-template.yaml")
    workload = detector.detect(pod, resolver)
    with pytest.raises(dataclasses.FrozenInstanceError):
        workload.total = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        workload.claims[0].count = 0  # type: ignore[misc]


def test_detect_does_not_mutate_the_pod(detector: AcceleratorDetector) -> None:
    pod, resolver = load("llm-d-decode-rdma.yaml")
    before = copy.deepcopy(pod)
    detector.detect(pod, resolver)
    assert pod == before


def test_detector_is_reusable_and_deterministic(detector: AcceleratorDetector) -> None:
    pod, resolver = load("sidecar-init-gpu.yaml")
    assert detector.detect(pod, resolver) == detector.detect(pod, resolver)


def test_static_resolver_indexing() -> None:
    docs: list[Any] = [
        None,  # an empty YAML document
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t", "namespace": "a"}},
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceClaim",
                    "metadata": {"name": "t", "namespace": "a"},
                },
            ],
        },
        {
            "apiVersion": "resource.k8s.io/v1beta1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "t"},
        },
        {"apiVersion": "example.com/v1", "kind": "ResourceClaim", "metadata": {"name": "x"}},
        {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {}},
    ]
    resolver = StaticClaimResolver(docs)
    assert len(resolver) == 2
    claim = resolver.lookup("a", "ResourceClaim", "t")
    assert claim is not None
    assert claim["kind"] == "ResourceClaim"
    assert resolver.lookup("a", "ResourceClaimTemplate", "t") is None
    assert resolver.lookup("default", "ResourceClaimTemplate", "t") is not None
    assert resolver.lookup("default", "ResourceClaim", "x") is None


def test_every_fixture_is_exercised() -> None:
    # A fixture no test loads is dead weight that silently stops testing anything.
    source = Path(__file__).read_text(encoding="utf-8")
    on_disk = sorted(p.name for p in MANIFESTS.glob("*.yaml"))
    assert on_disk, "fixture directory is empty"
    assert [name for name in on_disk if f'"{name}"' not in source] == []


def test_claim_references_name_what_a_resolver_must_fetch() -> None:
    pod = {
        "spec": {
            "resourceClaims": [
                {"name": "a", "resourceClaimTemplateName": "two-gpus"},
                {"name": "b", "resourceClaimName": "shared-gpu"},
                {"name": "c", "source": {"resourceClaimName": "legacy"}},
                {"name": "d"},  # malformed: left for detect() to report
                "not-a-claim",
            ]
        }
    }
    assert claim_references(pod) == [
        ("ResourceClaimTemplate", "two-gpus"),
        ("ResourceClaim", "shared-gpu"),
        ("ResourceClaim", "legacy"),
    ]


# --- extended(): a detector that knows more names (review's DeviceClasses) --------------------


@pytest.mark.parametrize(
    ("extra", "resource", "expected"),
    [
        pytest.param(
            {"resource_patterns": ["example.com/a100"]}, "example.com/a100", 1, id="resource"
        ),
        pytest.param(
            {"device_classes": ["a100-80gb"]},
            "deviceclass.resource.kubernetes.io/a100-80gb",
            1,
            id="dra-extended-resource",
        ),
        pytest.param(
            {"resource_patterns": ["nvidia.com/rdma_shared"]},
            "nvidia.com/rdma_shared",
            0,
            id="exclusion-still-wins",
        ),
        pytest.param({}, "example.com/a100", 0, id="nothing-added"),
    ],
)
def test_extended_detector_adds_names_and_keeps_the_rest(
    detector: AcceleratorDetector, extra: dict[str, list[str]], resource: str, expected: int
) -> None:
    extended = detector.extended(**extra)
    pod = make_pod(ctr("main", limits={resource: 1, "nvidia.com/gpu": 1}))
    assert extended.detect(pod).total == 1 + expected
    # The original is untouched: the admission hot path never sees review's additions.
    assert detector.detect(pod).total == 1
    # Everything else configured stays: side doors are still found.
    side_door = make_pod(ctr("main", env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]))
    assert [d.kind for d in extended.detect(side_door).side_doors] == ["env"]


def test_extended_keeps_a_custom_configuration() -> None:
    custom = AcceleratorDetector(["example.com/tpu"], [], privileged=False, device_env=())
    extended = custom.extended(device_classes=["site.example.com"])
    pod = make_pod(ctr("main", limits={"example.com/tpu": 2}, securityContext={"privileged": True}))
    workload = extended.detect(pod)
    assert workload.total == 2
    assert workload.side_doors == ()  # privileged=False carried over
    assert extended.is_accelerator_class("site.example.com")
    assert not custom.is_accelerator_class("site.example.com")


def test_extended_refuses_a_bare_string(detector: AcceleratorDetector) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        detector.extended(device_classes="gpu.example.com")
