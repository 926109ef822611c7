"""Metrics: denials by rule, namespace and agent, with every label bounded (docs/monitoring.md)."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from identity.binding import bind
from identity.registry import AgentRegistry
from tests.support.admission import AppClient, review
from tests.support.manifests import example_pod
from webhook.metrics import (
    AGENT_NONE,
    AGENT_UNREGISTERED,
    MAX_LABEL_CHARS,
    OTHER_NAMESPACE,
    Metrics,
)
from webhook.settings import Settings
from webhook.violations import Violation

DENIALS = "kube_intent_denials_total"


async def admit(client: httpx.AsyncClient, path: str, pod: dict[str, Any]) -> dict[str, Any]:
    http = await client.post(
        path, content=json.dumps(review(pod)).encode(), headers={"content-type": "application/json"}
    )
    assert http.status_code == 200, http.text
    response: dict[str, Any] = http.json()["response"]
    return response


def in_namespace(name: str, namespace: str) -> dict[str, Any]:
    pod = copy.deepcopy(example_pod(name))
    pod["metadata"]["namespace"] = namespace
    return pod


def denial_series(metrics: Metrics) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == DENIALS
    ]


@pytest.mark.parametrize(
    ("example", "rule", "agent"),
    [
        ("denied-model-allowed", "model-allowed", "support-bot"),
        ("denied-agent-registered", "agent-registered", AGENT_UNREGISTERED),
        ("denied-agent-required", "agent-required", AGENT_NONE),
    ],
    ids=["registered-agent", "agent-not-registered-here", "no-agent-label"],
)
async def test_a_denial_is_counted_by_rule_namespace_and_registered_agent(
    make_client: AppClient, example: str, rule: str, agent: str
) -> None:
    metrics = Metrics()
    async with make_client(metrics=metrics) as client:
        response = await admit(client, "/mutate", example_pod(example))

    assert response["allowed"] is False
    labels = {"webhook": "mutate", "rule": rule, "namespace": "ml-serving", "agent": agent}
    assert metrics.registry.get_sample_value(DENIALS, labels) == 1
    # The same request is in the totals the dashboard's rate panels divide by.
    total = {"webhook": "mutate", "operation": "CREATE", "decision": "denied"}
    assert metrics.registry.get_sample_value("kube_intent_admission_requests_total", total) == 1


async def test_allowed_pods_and_warnings_are_no_denials(make_client: AppClient) -> None:
    metrics = Metrics()
    async with make_client(metrics=metrics) as client:
        for name in ("allowed-vllm-llama", "allowed-warn-ttl", "passthrough-cpu"):
            assert (await admit(client, "/mutate", example_pod(name)))["allowed"] is True

    assert denial_series(metrics) == []
    warned = {"webhook": "mutate", "rule": "grant-ttl-cap", "enforcement": "warn"}
    assert metrics.registry.get_sample_value("kube_intent_admission_violations_total", warned) == 1


async def test_namespaces_past_the_bound_count_as_other(make_client: AppClient) -> None:
    metrics = Metrics(max_namespaces=2)
    namespaces = ["team-a", "team-b", "team-c", "team-d", "team-a"]
    async with make_client(metrics=metrics) as client:
        for namespace in namespaces:
            pod = in_namespace("denied-agent-required", namespace)
            assert (await admit(client, "/validate", pod))["allowed"] is False

    counted = {
        s["namespace"]: metrics.registry.get_sample_value(DENIALS, s)
        for s in denial_series(metrics)
    }
    assert counted == {"team-a": 2, "team-b": 1, OTHER_NAMESPACE: 2}


@pytest.mark.parametrize(
    ("namespace", "label"),
    [
        ("ml-serving", "ml-serving"),
        ("", OTHER_NAMESPACE),
        ("Not_A_Namespace", OTHER_NAMESPACE),
        ("x" * 64, OTHER_NAMESPACE),
        ('a"}\n# HELP injected', OTHER_NAMESPACE),
    ],
    ids=["dns-label", "empty", "invalid-chars", "too-long", "exposition-injection"],
)
def test_a_namespace_that_cannot_exist_takes_no_slot_of_its_own(namespace: str, label: str) -> None:
    metrics = Metrics(max_namespaces=1)
    assert metrics.namespace_label(namespace) == label
    # The one slot is still free for a real namespace unless the value above took it.
    assert metrics.namespace_label("late") == (
        "late" if label == OTHER_NAMESPACE else OTHER_NAMESPACE
    )


@pytest.mark.parametrize(
    ("rule", "label"),
    [
        ("model-allowed", "model-allowed"),
        ("org.example/egress:v2", "org.example/egress:v2"),
        ('say "hi"\nnow', "say_hi_now"),
        ("r" * 200, "r" * MAX_LABEL_CHARS),
        ("", "unnamed"),
    ],
    ids=["plain", "namespaced-id", "quotes-and-newline", "too-long", "empty"],
)
def test_rule_ids_from_policies_are_cleaned(rule: str, label: str) -> None:
    metrics = Metrics()
    metrics.observe_admission("validate", "CREATE", "denied", 0.001, [Violation(rule=rule)])
    labels = {"webhook": "validate", "rule": label, "namespace": OTHER_NAMESPACE, "agent": "none"}
    assert metrics.registry.get_sample_value(DENIALS, labels) == 1


def test_agent_label_trusts_the_registry_not_the_pod(agents: AgentRegistry) -> None:
    metrics = Metrics()
    pod = example_pod("denied-model-allowed")
    assert metrics.agent_label(bind(pod, "ml-serving", agents, "cluster.local")) == "support-bot"
    # Any pod can carry any label: an unregistered name never becomes a label value.
    pod["metadata"]["labels"]["kube-intent.io/agent"] = "made-up-agent-1234"
    assert metrics.agent_label(bind(pod, "ml-serving", agents, "cluster.local")) == "unregistered"
    assert metrics.agent_label(bind(pod, "ml-serving", AgentRegistry(), "cluster.local")) == (
        AGENT_UNREGISTERED
    )
    assert metrics.agent_label(None) == AGENT_NONE


async def test_a_thousand_namespaces_make_a_bounded_number_of_series() -> None:
    metrics = Metrics(max_namespaces=10)
    violations = [Violation(rule="agent-required"), Violation(rule="warned", enforcement="warn")]
    for i in range(1000):
        metrics.observe_admission(
            "validate", "CREATE", "denied", 0.001, violations, namespace=f"ns-{i}"
        )

    series = denial_series(metrics)
    assert len(series) == 11  # ten namespaces of their own, and "other"
    assert sum(metrics.registry.get_sample_value(DENIALS, s) or 0 for s in series) == 1000


def test_the_bound_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE_INTENT_METRICS_MAX_NAMESPACES", "3")
    assert Settings().metrics_max_namespaces == 3
    monkeypatch.setenv("KUBE_INTENT_METRICS_MAX_NAMESPACES", "-1")
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings()
