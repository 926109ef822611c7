"""webhook/limits.py: each limit holds exactly at its bound and names the field beyond it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from identity import jsonio
from identity.intent import INTENT_ANNOTATION, MAX_INTENT_BYTES
from tests.support.manifests import example_pod
from webhook import limits
from webhook.violations import Violation

Grow = Callable[[dict[str, Any], int], None]


def claims(pod: dict[str, Any], n: int) -> None:
    pod["spec"]["resourceClaims"] = [
        {"name": f"c{i}", "resourceClaimName": f"c{i}"} for i in range(n)
    ]


def containers(pod: dict[str, Any], n: int) -> None:
    first = pod["spec"]["containers"][0]
    # Spread over the three lists: the limit is on all of them together.
    pod["spec"]["initContainers"] = [{"name": f"i{i}"} for i in range(n // 3)]
    pod["spec"]["ephemeralContainers"] = [{"name": f"e{i}"} for i in range(n // 3)]
    rest = n - 2 * (n // 3)
    pod["spec"]["containers"] = [first] + [{"name": f"c{i}"} for i in range(rest - 1)]


def env(pod: dict[str, Any], n: int) -> None:
    container = pod["spec"]["containers"][0]
    container["env"] = [{"name": f"E{i}", "value": "v"} for i in range(n - 1)]
    container["envFrom"] = [{"configMapRef": {"name": "c"}}]


def annotations_of_size(pod: dict[str, Any], n: int) -> None:
    current = pod["metadata"]["annotations"]
    used = sum(len(k.encode()) + len(v.encode()) for k, v in current.items())
    current["padding"] = "é" * ((n - used - len("padding")) // 2) + "p" * ((n - used - 7) % 2)


def intent(pod: dict[str, Any], n: int) -> None:
    pod["metadata"]["annotations"][INTENT_ANNOTATION] = "i" * n


def size(pod: dict[str, Any], n: int) -> None:
    pod["spec"]["padding"] = ""
    pod["spec"]["padding"] = "p" * (n - len(jsonio.dumps(pod)))


LIMITS = [
    pytest.param(claims, limits.MAX_RESOURCE_CLAIMS, "spec.resourceClaims", id="resource-claims"),
    pytest.param(containers, limits.MAX_CONTAINERS, "spec.containers", id="containers"),
    pytest.param(env, limits.MAX_ENV_PER_CONTAINER, "spec.containers[0].env", id="env"),
    pytest.param(
        annotations_of_size, limits.MAX_ANNOTATIONS_BYTES, "metadata.annotations", id="annotations"
    ),
    pytest.param(
        intent, MAX_INTENT_BYTES, f"metadata.annotations[{INTENT_ANNOTATION}]", id="intent"
    ),
    pytest.param(size, limits.MAX_POD_BYTES, "pod", id="pod-size"),
]


@pytest.mark.parametrize(("grow", "limit", "field"), LIMITS)
def test_a_pod_at_each_limit_passes(grow: Grow, limit: int, field: str) -> None:
    pod = example_pod("allowed-vllm-llama")
    grow(pod, limit)
    assert [v.field for v in limits.pod_limits(pod)] == []


@pytest.mark.parametrize(("grow", "limit", "field"), LIMITS)
def test_one_past_each_limit_is_refused_naming_the_field(
    grow: Grow, limit: int, field: str
) -> None:
    pod = example_pod("allowed-vllm-llama")
    grow(pod, limit + 1)
    found = limits.pod_limits(pod)
    assert field in [v.field for v in found]
    violation = next(v for v in found if v.field == field)
    assert violation.rule == limits.RULE_POD_LIMITS
    assert violation.enforcement == "deny"
    assert str(limit) in violation.message


@pytest.mark.parametrize(
    "pod",
    [
        pytest.param({}, id="empty"),
        pytest.param({"spec": [], "metadata": "x"}, id="wrong-types"),
        pytest.param({"spec": {"containers": [None, 1, "x"]}}, id="junk-containers"),
        pytest.param({"metadata": {"annotations": {"a": 1, "b": None}}}, id="junk-annotations"),
    ],
)
def test_any_shape_is_tolerated(pod: dict[str, Any]) -> None:
    assert limits.pod_limits(pod) == []


def test_long_violation_messages_are_cut_with_a_digest() -> None:
    image = "registry.example.com/" + "x" * 100_000
    long = Violation(rule="image-registry", field="spec.containers[0].image", message=image)
    short = Violation(rule="r", message="fine")
    bounded = limits.bound_violations([long, short])
    assert bounded[1] is short
    assert len(bounded[0].message) <= limits.MAX_VIOLATION_CHARS
    assert "sha256:" in bounded[0].message
    assert bounded[0].rule == "image-registry"
