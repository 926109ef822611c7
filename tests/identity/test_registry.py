from __future__ import annotations

from pathlib import Path

import pytest

from identity.binding import bind, spiffe_id
from identity.registry import AgentRegistry, RegistryError, load_registry_file
from tests.support.manifests import example_pod
from tests.support.paths import EXAMPLES


def test_example_agents_load_with_defaults_and_durations() -> None:
    registry = load_registry_file(EXAMPLES / "agents.yaml")
    assert len(registry) == 3
    bot = registry.get("ml-serving", "support-bot")
    assert bot is not None
    assert bot.spec.max_grant_ttl == 3600
    assert bot.to_input()["accelerators"] == {"max": 2, "resources": ["nvidia.com/gpu"]}
    assert registry.get("ml-serving", "research-agent") is None
    assert registry.registered_in("research-agent") == ["ml-research"]
    assert registry.to_data()["ml-research"]["research-agent"]["maxGrantTTLSeconds"] == 14400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("kind: Agent\n", "expected apiVersion", id="no-apiVersion"),
        pytest.param(
            "apiVersion: kube-intent.io/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {}\n",
            "metadata.namespace",
            id="no-namespace",
        ),
        pytest.param(
            "apiVersion: kube-intent.io/v1alpha1\nkind: Agent\n"
            "metadata: {name: a, namespace: n}\nspec: {serviceAccounts: [], colour: red}\n",
            "spec.serviceAccounts",
            id="bad-spec",
        ),
        pytest.param("a: [\n", "agents file", id="yaml-syntax"),
    ],
)
def test_bad_registration_files_name_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=expected):
        load_registry_file(path)


@pytest.fixture
def registry() -> AgentRegistry:
    return load_registry_file(EXAMPLES / "agents.yaml")


def test_binding_of_a_registered_agent(registry: AgentRegistry) -> None:
    binding = bind(example_pod("allowed-vllm-llama"), "ml-serving", registry, "prod.example.com")
    assert binding.bound
    assert binding.spiffe_id == "spiffe://prod.example.com/ns/ml-serving/sa/support-bot"
    assert binding.to_input()["registration"]["name"] == "support-bot"


@pytest.mark.parametrize(
    ("example", "namespace", "agent", "registered_in"),
    [
        ("denied-agent-required", "ml-serving", None, []),
        ("denied-agent-registered", "ml-serving", "research-agent", ["ml-research"]),
        ("denied-serviceaccount-bound", "ml-serving", "support-bot", ["ml-serving"]),
    ],
    ids=["no-label", "other-namespace", "wrong-serviceaccount"],
)
def test_unbound_identities(
    registry: AgentRegistry,
    example: str,
    namespace: str,
    agent: str | None,
    registered_in: list[str],
) -> None:
    binding = bind(example_pod(example), namespace, registry, "cluster.local")
    assert not binding.bound
    assert binding.agent == agent
    assert binding.to_input()["registeredIn"] == registered_in


def test_namespace_comes_from_the_request_not_the_object(registry: AgentRegistry) -> None:
    pod = example_pod("allowed-vllm-llama")
    pod["metadata"]["namespace"] = "ml-serving"
    binding = bind(pod, "attacker-ns", registry, "cluster.local")
    assert not binding.bound
    assert binding.spiffe_id == spiffe_id("cluster.local", "attacker-ns", "support-bot")


def test_missing_service_account_means_default(registry: AgentRegistry) -> None:
    pod = example_pod("allowed-vllm-llama")
    del pod["spec"]["serviceAccountName"]
    assert bind(pod, "ml-serving", registry, "cluster.local").service_account == "default"
