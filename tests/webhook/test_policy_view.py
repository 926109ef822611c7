"""The lean policy input: the bundled policies read no pod field that policy_view drops, and
decide the same on the view as on the whole pod (real OPA)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from identity.registry import AgentRegistry
from tests.support.admission import AppClient, post, response_of, review
from tests.support.manifests import example_pod, load_yaml
from tests.support.opa import Counting
from tests.support.paths import EXAMPLES
from webhook.decision import Decider, RequestInfo
from webhook.policy import OpaPolicyEngine, PolicyDecision
from webhook.policy_view import policy_pod
from webhook.settings import BUNDLED_POLICIES, Settings

# Every way the bundled Rego reaches into the pod (lib.rego's views), and what policy_view keeps
# for it. A new entry here needs the field in webhook/policy_view.py first.
KNOWN_READS = {
    "input.pod",  # lib.rego: pod := input.pod
    "pod.spec",  # lib.rego: pod_spec := input.pod.spec
    "pod.metadata.labels[agent_label]",
    "pod.metadata.namespace",
    "pod_spec.serviceAccountName",
    "pod_spec.resourceClaims",  # claim_path: c.name
    "pod_spec[key]",  # containers, initContainers, ephemeralContainers: c.name, image
}
KNOWN_CONTAINER_FIELDS = {"name", "image"}
POD_READ = re.compile(
    r"\binput\.pod\b|\binput\[\"pod\"\]|\bpod\.[A-Za-z_.]+(?:\[[^\]]*\])?"
    r"|\bpod_spec(?:\.[A-Za-z_]+|\[[A-Za-z_\"]+\])"
)
CONTAINER_READ = re.compile(r"\bref\.container\.([A-Za-z_]+)|ref\.container, \"([A-Za-z_]+)\"")


def rego_sources() -> list[Path]:
    return [p for p in Path(BUNDLED_POLICIES).rglob("*.rego") if not p.name.endswith("_test.rego")]


def code(path: Path) -> str:
    """The module without comments and string literals (messages mention "pod.spec" too)."""
    lines = [line.split("#", 1)[0] for line in path.read_text().splitlines()]
    return re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', '""', "\n".join(lines))


def test_the_bundled_policies_read_only_the_pod_fields_the_view_keeps() -> None:
    reads = {match.group(0) for path in rego_sources() for match in POD_READ.finditer(code(path))}
    assert reads <= KNOWN_READS, (
        f"a bundled policy reads {sorted(reads - KNOWN_READS)} of the pod: keep it in "
        "webhook/policy_view.py, then add it to KNOWN_READS"
    )
    text = "\n".join(p.read_text() for p in rego_sources())
    fields = {a or b for a, b in CONTAINER_READ.findall(text)}
    assert fields <= KNOWN_CONTAINER_FIELDS, fields
    # The containers are read from the three lists policy_view keeps, nothing else.
    assert re.search(r'some key in \["containers", "initContainers", "ephemeralContainers"\]', text)


def test_the_view_keeps_indexes_and_drops_the_rest() -> None:
    pod = example_pod("allowed-dra-triton")
    pod["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    pod["spec"]["initContainers"] = [{"name": "init", "image": "busybox", "command": ["true"]}]
    pod["spec"]["ephemeralContainers"] = ["not a container"]
    view = policy_pod(pod)
    assert set(view) == {"metadata", "spec"}
    assert set(view["metadata"]) <= {"namespace", "labels"}
    assert view["spec"]["initContainers"] == [{"name": "init", "image": "busybox"}]
    assert view["spec"]["ephemeralContainers"] == ["not a container"]
    assert [c["name"] for c in view["spec"]["containers"]] == [
        c["name"] for c in pod["spec"]["containers"]
    ]
    assert all(set(c) <= {"name"} for c in view["spec"]["resourceClaims"])
    assert policy_pod({"spec": "x", "metadata": None}) == {"spec": "x", "metadata": None}


def variants() -> list[tuple[str, dict[str, Any]]]:
    pods = [
        (path.stem, doc)
        for path in sorted((EXAMPLES / "pods").glob("*.yaml"))
        for doc in load_yaml(path)
        if doc.get("kind") == "Pod"
    ]
    base = example_pod("allowed-vllm-llama")
    extra: list[tuple[str, dict[str, Any]]] = []
    for name, change in (
        ("init-from-elsewhere", {"initContainers": [{"name": "i", "image": "quay.io/x/y:1"}]}),
        ("ephemeral-debug", {"ephemeralContainers": [{"name": "dbg", "image": "busybox"}]}),
        ("no-image", {"containers": [{**base["spec"]["containers"][0], "image": None}]}),
        ("other-sa", {"serviceAccountName": "default"}),
    ):
        pod = copy.deepcopy(base)
        pod["spec"].update(change)
        extra.append((name, pod))
    unlabelled = copy.deepcopy(base)
    del unlabelled["metadata"]["labels"]["kube-intent.io/agent"]
    extra.append(("no-agent-label", unlabelled))
    return pods + extra


@pytest.mark.parametrize(("name", "pod"), variants(), ids=[n for n, _ in variants()])
async def test_the_bundled_policies_decide_the_same_on_the_view(
    opa: OpaPolicyEngine, agents: AgentRegistry, name: str, pod: dict[str, Any]
) -> None:
    decisions: list[PolicyDecision | None] = []
    for lean in (False, True):
        decider = Decider(
            detector=Settings().accelerator_detector,
            registry=lambda: agents,
            policy=opa,
            trust_domain="cluster.local",
            memo=False,
            lean_input=lean,
        )
        namespace = pod["metadata"].get("namespace", "default")
        info = RequestInfo(uid="u", operation="CREATE", namespace=namespace, name=name)
        workload = decider.detect(pod, namespace)
        if not workload.gpu:
            pytest.skip("not a GPU pod: never sent to OPA")
        verdict = await decider.decide(info, pod, workload)
        if verdict.policy_input is None:
            pytest.skip("denied by the webhook (intent schema) before OPA")
        assert verdict.policy_input["pod"] is pod  # the audit row keeps the whole pod
        decisions.append(verdict.decision)
    full, lean_decision = decisions
    assert full == lean_decision


@pytest.mark.parametrize(
    ("settings", "lean"),
    [
        pytest.param({}, True, id="bundled-policies-get-the-lean-view"),
        pytest.param({"extra_policies": EXAMPLES}, False, id="extra-rego-gets-the-whole-pod"),
        pytest.param({"policies": EXAMPLES}, False, id="replaced-policies-get-the-whole-pod"),
    ],
)
async def test_the_app_sends_the_lean_view_only_to_the_bundled_policies(
    make_client: AppClient, opa: OpaPolicyEngine, settings: dict[str, Any], lean: bool
) -> None:
    engine = Counting(opa)
    pod = example_pod("allowed-vllm-llama")
    async with make_client(policy=engine, **settings) as client:
        assert response_of(await post(client, "/mutate", review(pod)))["allowed"] is True
    [sent] = engine.inputs
    assert (sent["pod"] == policy_pod(pod)) is lean
    assert (sent["pod"] == pod) is not lean
