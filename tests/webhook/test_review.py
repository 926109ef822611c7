"""`kube-intent review`: in CI and GitOps repositories, with a real OPA.

In process (``prepare`` + ``decide_all`` against a real OPA loaded with the bundled policies)
for what is decided; through the real CLI in a subprocess for what the user sees: exit codes,
stdin, colour, output formats.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from identity.registry import load_registry_file
from tests.support import cli
from tests.support.paths import DATA, EXAMPLES, REPO
from webhook.decision import Decider
from webhook.opa_process import policy_engine
from webhook.policy import OpaPolicyEngine
from webhook.review import (
    EXIT_ALLOWED,
    EXIT_BAD_INPUT,
    EXIT_DENIED,
    ReviewReport,
    decide_all,
    manifest_paths,
    prepare,
    render_text,
    use_color,
)
from webhook.settings import BUNDLED_POLICIES, Settings

EXAMPLE_PODS = sorted((EXAMPLES / "pods").glob("*.yaml"))
OPERATORS = DATA / "manifests" / "operators"
OPERATOR_AGENTS = OPERATORS / "agents.yaml"
WORKLOADS = DATA / "workloads"
ESC = "\x1b["


# --- helpers ----------------------------------------------------------------------------------


def run_cli(
    *args: str | Path,
    opa_bin: str,
    agents: Path = EXAMPLES / "agents.yaml",
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "KUBE_INTENT_OPA_BIN": opa_bin}
    environment.pop("NO_COLOR", None)
    environment.update(env or {})
    return cli.run_cli("review", "--agents", agents, *args, env=environment, stdin=stdin)


async def review_paths(
    engine: OpaPolicyEngine,
    *paths: str | Path,
    stdin: str = "",
    namespace: str = "default",
    agents: Path = EXAMPLES / "agents.yaml",
) -> ReviewReport:
    """Review as the CLI does; ``agents`` must be what ``engine`` holds."""
    settings = Settings()
    registry = load_registry_file(agents)
    prepared = prepare(
        [str(p) for p in paths],
        settings.accelerator_detector,
        stdin=io.StringIO(stdin),
        default_namespace=namespace,
    )
    decider = Decider(
        detector=prepared.detector,
        registry=lambda: registry,
        policy=engine,
        trust_domain=settings.trust_domain,
        memo=False,
    )
    return await decide_all(prepared, decider, namespace)


async def review_operators(
    engine: OpaPolicyEngine, *paths: str | Path, stdin: str = ""
) -> ReviewReport:
    return await review_paths(engine, *paths, stdin=stdin, agents=OPERATOR_AGENTS)


def by_name(report: ReviewReport) -> dict[str, Any]:
    return {r.name: r for r in report.results}


def denied_rules(result: Any) -> set[str]:
    return {v["rule"] for v in result.violations if v["enforcement"] == "deny"}


@pytest_asyncio.fixture(scope="module")
async def operator_opa(opa_bin: str) -> AsyncIterator[OpaPolicyEngine]:
    """A real OPA with the bundled policies and the operator samples' Agent."""
    async with policy_engine(None, BUNDLED_POLICIES, opa_bin=opa_bin) as engine:
        await engine.put_agents(load_registry_file(OPERATOR_AGENTS).to_data())
        yield engine


# --- the examples, as the README's quick start runs them (real CLI) -----------------------------


@pytest.fixture(scope="module")
def example_results(opa_bin: str) -> dict[str, list[dict[str, Any]]]:
    result = run_cli(*EXAMPLE_PODS, "--output", "json", opa_bin=opa_bin)
    assert result.returncode == EXIT_DENIED, result.stderr  # some examples are denied by design
    by_file: dict[str, list[dict[str, Any]]] = {}
    for item in json.loads(result.stdout)["results"]:
        by_file.setdefault(Path(item["source"].split("#")[0]).stem, []).append(item)
    return by_file


@pytest.mark.parametrize("example", [p.stem for p in EXAMPLE_PODS])
def test_examples_show_the_whole_story(
    example_results: dict[str, list[dict[str, Any]]], example: str
) -> None:
    [result] = example_results[example]
    if example.startswith("passthrough-"):
        assert (result["gpu"], result["allowed"], result["violations"]) == (False, True, [])
    elif example.startswith("allowed-"):
        assert result["gpu"] is True
        assert result["allowed"] is True
        assert all(v["enforcement"] != "deny" for v in result["violations"])
    else:
        rule = example.removeprefix("denied-")
        assert result["allowed"] is False
        assert rule in {v["rule"] for v in result["violations"] if v["enforcement"] == "deny"}


def test_dra_example_counts_the_claim_template_devices(
    example_results: dict[str, list[dict[str, Any]]],
) -> None:
    [result] = example_results["allowed-dra-triton"]
    assert result["accelerators"] == 2
    assert result["detected"] == ["claim gpus: gpu.nvidia.com=2"]
    assert result["unresolvedClaims"] == []


# --- workloads and operators' custom resources (in process, real OPA) ---------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        pytest.param(
            "deployment-vllm.yaml", {"vllm-llama/spec.template": (True, set())}, id="deployment"
        ),
        pytest.param(
            "cronjob-eval.yaml",
            {"nightly-eval/spec.jobTemplate.spec.template": (False, {"intent-required"})},
            id="cronjob",
        ),
        pytest.param(
            "leaderworkerset.yaml",
            {
                "vllm-multinode/spec.leaderWorkerTemplate.leaderTemplate": (True, set()),
                "vllm-multinode/spec.leaderWorkerTemplate.workerTemplate": (
                    False,
                    {"intent-required"},
                ),
            },
            id="leaderworkerset",
        ),
        pytest.param(
            "raycluster.yaml",
            {
                "ray-serve/spec.headGroupSpec.template": (True, set()),
                "ray-serve/spec.workerGroupSpecs[0].template": (
                    False,
                    {"intent-required", "image-registry"},
                ),
            },
            id="raycluster-by-shape",
        ),
        pytest.param(
            "inferenceservice.yaml",
            {"llama-isvc/spec.predictor": (False, {"intent-required"})},
            id="kserve-inline-podspec",
        ),
        pytest.param("admissionreview.json", {"support-bot-": (True, set())}, id="admissionreview"),
    ],
)
async def test_workload_templates(
    opa: OpaPolicyEngine, fixture: str, expected: dict[str, tuple[bool, set[str]]]
) -> None:
    report = await review_paths(opa, WORKLOADS / fixture)
    assert {r.name: (r.allowed, denied_rules(r)) for r in report.results} == expected
    assert report.exit_code == (EXIT_ALLOWED if all(ok for ok, _ in expected.values()) else 1)


# fixture -> {pod name: (allowed, denied rules, detected accelerators)}
OPERATOR_CASES: list[Any] = [
    pytest.param(
        "kserve-isvc-huggingface.yaml",
        {
            "huggingface-llama3/spec.predictor": (
                True,
                set(),
                ["kserve-container: nvidia.com/gpu=1"],
            )
        },
        id="kserve-model-with-runtime",
    ),
    pytest.param(
        "kserve-isvc-triton-framework.yaml",
        {
            "torchscript-cifar/spec.predictor": (
                False,
                {"intent-required", "image-registry"},
                ["kserve-container: nvidia.com/gpu=1"],
            )
        },
        id="kserve-framework-section",
    ),
    pytest.param(
        "kserve-isvc-transformer.yaml",
        {
            "qwen-chat/spec.predictor": (True, set(), ["kserve-container: nvidia.com/gpu=1"]),
            "qwen-chat/spec.transformer": (True, set(), []),
        },
        id="kserve-containers-and-transformer",
    ),
    pytest.param(
        "nim-service-resources.yaml",
        {"meta-llama3-8b-instruct/spec": (True, set(), ["nim: nvidia.com/gpu=1"])},
        id="nim-resources",
    ),
    pytest.param(
        "nim-service-dra.yaml",
        {"nim-dra/spec": (True, set(), ["claim dra-0: gpu.nvidia.com=2"])},
        id="nim-dra-template",
    ),
    pytest.param(
        "nim-service-dra-auto.yaml",
        {"nim-dra-auto/spec": (True, set(), ["claim dra-0: gpu.nvidia.com=1"])},
        id="nim-dra-claim-creation-spec",
    ),
    pytest.param(
        "nim-service-dra-missing.yaml",
        {"nim-dra-missing/spec": (False, {"accelerator-declared"}, ["claim dra-0: unresolved=1"])},
        id="nim-dra-unresolved",
    ),
    pytest.param(
        "llmisvc-template-worker.yaml",
        {
            "llama3-70b/spec.template": (True, set(), ["main: nvidia.com/gpu=4"]),
            "llama3-70b/spec.worker": (True, set(), ["main: nvidia.com/gpu=4"]),
        },
        id="llmisvc-template-and-worker",
    ),
    pytest.param(
        "llmisvc-dra.yaml",
        {"qwen-dra/spec.template": (True, set(), ["claim gpus: gpu.nvidia.com=2"])},
        id="llmisvc-dra",
    ),
    pytest.param(
        "raycluster-kai-fraction.yaml",
        {
            "ray-llm/spec.headGroupSpec.template": (True, set(), []),
            "ray-llm/spec.workerGroupSpecs[0].template": (
                True,
                set(),
                ["ray-worker: gpu-fraction=1"],
            ),
        },
        id="raycluster-kai-gpu-fraction",
    ),
    pytest.param(
        "rayservice-intent-on-resource.yaml",
        {
            "text-ml/spec.rayClusterConfig.headGroupSpec.template": (True, set(), []),
            "text-ml/spec.rayClusterConfig.workerGroupSpecs[0].template": (
                False,
                {"intent-required"},
                ["ray-worker: nvidia.com/gpu=1"],
            ),
        },
        id="rayservice-cluster-config",
    ),
    pytest.param(
        "rayjob-gpu-fraction.yaml",
        {
            "batch-eval/spec.rayClusterSpec.headGroupSpec.template": (True, set(), []),
            "batch-eval/spec.rayClusterSpec.workerGroupSpecs[0].template": (
                False,
                {"intent-required", "agent-required"},
                ["ray-worker: gpu-fraction=2"],
            ),
        },
        id="rayjob-cluster-spec-fraction-devices",
    ),
    pytest.param(
        "deviceclass-site-gpu.yaml",
        {"a100-server/spec.template": (False, {"intent-required"}, ["vllm: example.com/a100=1"])},
        id="deviceclass-extended-resource",
    ),
]


@pytest.mark.parametrize(("fixture", "expected"), OPERATOR_CASES)
async def test_operator_samples(
    operator_opa: OpaPolicyEngine,
    fixture: str,
    expected: dict[str, tuple[bool, set[str], list[str]]],
) -> None:
    report = await review_operators(operator_opa, OPERATORS / fixture)
    assert report.errors == []
    got = {r.name: (r.allowed, denied_rules(r), r.detected) for r in report.results}
    assert got == expected


def test_every_operator_sample_is_exercised() -> None:
    tested = {p.values[0] for p in OPERATOR_CASES}
    assert tested == {p.name for p in OPERATORS.glob("*.yaml")} - {OPERATOR_AGENTS.name}


async def test_template_annotations_win_over_the_resources(
    operator_opa: OpaPolicyEngine,
) -> None:
    # The InferenceService declares 2 accelerators, its predictor 1 (what it uses): the
    # predictor's own annotation is the one its pods carry.
    report = await review_operators(operator_opa, OPERATORS / "kserve-isvc-transformer.yaml")
    predictor = by_name(report)["qwen-chat/spec.predictor"]
    assert predictor.allowed is True
    assert "accelerator-declared" not in {v["rule"] for v in predictor.violations}


async def test_intent_on_a_ray_resource_is_pointed_at_the_template(
    operator_opa: OpaPolicyEngine,
) -> None:
    report = await review_operators(operator_opa, OPERATORS / "rayservice-intent-on-resource.yaml")
    results = by_name(report)
    worker = results["text-ml/spec.rayClusterConfig.workerGroupSpecs[0].template"]
    assert worker.notes == [
        "RayService text-ml: kube-intent.io/intent is on the RayService's metadata, which "
        "KubeRay does not copy to its pods: put it on the pod template's metadata.annotations"
    ]
    # Not said about the CPU head group, which is not governed.
    assert results["text-ml/spec.rayClusterConfig.headGroupSpec.template"].notes == []


async def test_a_runtime_missing_from_the_input_is_noted(operator_opa: OpaPolicyEngine) -> None:
    report = await review_operators(operator_opa, OPERATORS / "kserve-isvc-triton-framework.yaml")
    [result] = report.results
    assert result.notes == [
        "the model server's image and defaults come from ServingRuntime 'triton', which is "
        "not in the input: pass it with -f to review them too"
    ]


async def test_runtime_defaults_reach_the_model_server(
    operator_opa: OpaPolicyEngine, tmp_path: Path
) -> None:
    # A runtime that gives every model server a GPU by default makes the pod a GPU pod even
    # when the InferenceService's model section asks for nothing.
    docs = yaml.safe_load_all((OPERATORS / "kserve-isvc-huggingface.yaml").read_text())
    isvc, runtime = list(docs)
    del isvc["spec"]["predictor"]["model"]["resources"]
    runtime["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump_all([isvc, runtime]))
    [result] = (await review_operators(operator_opa, path)).results
    assert result.detected == ["kserve-container: nvidia.com/gpu=1"]
    assert result.allowed is True


async def test_without_its_deviceclass_a_site_resource_is_not_an_accelerator(
    operator_opa: OpaPolicyEngine, tmp_path: Path
) -> None:
    _, deployment = yaml.safe_load_all((OPERATORS / "deviceclass-site-gpu.yaml").read_text())
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(deployment))
    [result] = (await review_operators(operator_opa, path)).results
    assert (result.gpu, result.allowed) == (False, True)


@pytest.mark.parametrize(
    ("device_class", "governed"),
    [
        pytest.param(
            {"metadata": {"name": "gpu.nvidia.com"}, "spec": {"extendedResourceName": "x.io/g"}},
            True,
            id="known-class-name",
        ),
        pytest.param(
            {
                "metadata": {"name": "my-gpus"},
                "spec": {
                    "selectors": [{"cel": {"expression": "device.driver == 'gpu.amd.com'"}}],
                    "extendedResourceName": "x.io/g",
                },
            },
            True,
            id="accelerator-driver-selector",
        ),
        pytest.param(
            {
                "metadata": {"name": "rdma-nics"},
                "spec": {
                    "selectors": [{"cel": {"expression": 'device.driver == "rdma.example.com"'}}],
                    "extendedResourceName": "x.io/g",
                },
            },
            False,
            id="nic-class-stays-ungoverned",
        ),
    ],
)
async def test_deviceclasses_in_the_input_teach_detection(
    operator_opa: OpaPolicyEngine, tmp_path: Path, device_class: dict[str, Any], governed: bool
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "llm"},
        "spec": {"containers": [{"name": "c", "image": "nvcr.io/x:1",
                                 "resources": {"limits": {"x.io/g": 1}}}]},
    }  # fmt: skip
    dc = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", **device_class}
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all([dc, pod]))
    report = await review_operators(operator_opa, path)
    [result] = report.results
    assert result.gpu is governed
    [skipped] = report.skipped
    assert (skipped.kind, skipped.name) == ("DeviceClass", device_class["metadata"]["name"])
    assert (
        skipped.reason.startswith("a DRA DeviceClass: used for detection (accelerator class")
        is governed
    )


@pytest.mark.parametrize(
    "device_class",
    [
        pytest.param(
            {
                "metadata": {"name": "gpu.nvidia.com"},
                "spec": {"extendedResourceName": "!nvidia.com/gpu"},
            },
            id="exclusion-as-extended-resource",
        ),
        pytest.param(
            {
                "metadata": {"name": "!gpu.nvidia.com"},
                "spec": {
                    "selectors": [{"cel": {"expression": 'device.driver == "gpu.nvidia.com"'}}]
                },
            },
            id="exclusion-as-class-name",
        ),
        pytest.param({"metadata": {"name": "~gpu"}, "spec": {}}, id="capacity-as-class-name"),
    ],
)
async def test_a_deviceclass_in_the_input_cannot_switch_detection_off(
    operator_opa: OpaPolicyEngine, tmp_path: Path, device_class: dict[str, Any]
) -> None:
    # An attacker's manifest in the reviewed repository: a GPU pod must still be governed.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "llm"},
        "spec": {"containers": [{"name": "c", "image": "nvcr.io/x:1",
                                 "resources": {"limits": {"nvidia.com/gpu": 8}}}]},
    }  # fmt: skip
    dc = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", **device_class}
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all([dc, pod]))
    report = await review_operators(operator_opa, path)
    [result] = report.results
    assert (result.gpu, result.allowed) == (True, False)
    [skipped] = report.skipped
    assert "not a valid DeviceClass" in skipped.reason


# --- unresolved claims --------------------------------------------------------------------------


async def test_an_unresolved_claim_is_said_not_counted_silently(
    operator_opa: OpaPolicyEngine,
) -> None:
    report = await review_operators(operator_opa, OPERATORS / "nim-service-dra-missing.yaml")
    [result] = report.results
    assert result.unresolved_claims == [
        "claim dra-0 could not be resolved (not in the input): pass it with -f "
        "(its ResourceClaimTemplate 'two-gpus'); it is counted as 1 device until then"
    ]
    [violation] = [v for v in result.violations if v["rule"] == "accelerator-declared"]
    assert "claim dra-0: unresolved, counted as 1" in violation["message"]
    assert "set intent.accelerators.count to 1" not in violation["message"]


async def test_passing_the_claim_template_resolves_it(
    operator_opa: OpaPolicyEngine, tmp_path: Path
) -> None:
    template = yaml.safe_load((OPERATORS / "nim-service-dra.yaml").read_text().split("---")[0])
    template["metadata"]["name"] = "two-gpus"
    path = tmp_path / "two-gpus.yaml"
    path.write_text(yaml.safe_dump(template))
    # The template after the pod that needs it, in another file: order does not matter.
    report = await review_operators(operator_opa, OPERATORS / "nim-service-dra-missing.yaml", path)
    [result] = report.results
    assert (result.allowed, result.unresolved_claims, result.detected) == (
        True,
        [],
        ["claim dra-0: gpu.nvidia.com=2"],
    )


# --- input: directories, stdin, skipped kinds, bad input ---------------------------------------


MIXED = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: inferenceservices.serving.kserve.io}
spec: {group: serving.kserve.io, names: {kind: InferenceService}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Secret
  metadata: {name: token}
- apiVersion: v1
  kind: Pod
  metadata: {name: cpu, namespace: llm}
  spec: {containers: [{name: c, image: nvcr.io/x:1}]}
"""


async def test_documents_without_pods_are_skipped_with_kind_name_and_reason(
    operator_opa: OpaPolicyEngine,
) -> None:
    report = await review_operators(operator_opa, "-", stdin=MIXED)
    assert [(s.source, s.kind, s.name) for s in report.skipped] == [
        ("<stdin>#0", "Service", "web"),
        ("<stdin>#1", "ConfigMap", "settings"),
        ("<stdin>#2", "CustomResourceDefinition", "inferenceservices.serving.kserve.io"),
        ("<stdin>#3.items[0]", "Secret", "token"),
    ]
    assert {s.reason for s in report.skipped} == {
        "holds no pod, pod template or known accelerator fields"
    }
    assert [(r.source, r.name, r.allowed) for r in report.results] == [
        ("<stdin>#3.items[1]", "cpu", True)
    ]
    assert report.exit_code == EXIT_ALLOWED
    assert report.summary() == "0 denied, 1 allowed, 4 skipped"


def test_directories_are_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    for name in ("b/z.yaml", "b/a.yml", "a.json", "c/d/e.yaml", "notes.txt", "b/.hidden.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    listed = [source for source, _ in manifest_paths([str(tmp_path), "-"])]
    assert listed == [
        str(tmp_path / p) for p in ("a.json", "b/.hidden.yaml", "b/a.yml", "b/z.yaml", "c/d/e.yaml")
    ] + ["<stdin>"]


async def test_a_broken_file_is_reported_and_the_others_still_reviewed(
    opa: OpaPolicyEngine, tmp_path: Path
) -> None:
    broken = tmp_path / "a-broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n")
    (tmp_path / "b-pod.yaml").write_text(
        (EXAMPLES / "pods" / "allowed-vllm-llama.yaml").read_text()
    )
    (tmp_path / "c-scalar.yaml").write_text("just a string\n")
    report = await review_paths(opa, tmp_path)
    assert [str(e) for e in report.errors] == [
        f"{broken}:5:1: YAML syntax error: while parsing a flow sequence expected ',' or ']', "
        "but got '<stream end>'",
        f"{tmp_path / 'c-scalar.yaml'}#0: expected a Kubernetes object (a mapping with kind), "
        "got a str",
    ]
    assert [(r.name, r.allowed) for r in report.results] == [("support-bot-llama", True)]
    assert report.exit_code == EXIT_BAD_INPUT
    assert report.summary() == "0 denied, 1 allowed, 0 skipped, 2 unreadable"


async def test_denials_are_listed_first(opa: OpaPolicyEngine) -> None:
    pods = [
        EXAMPLES / "pods" / f"{n}.yaml" for n in ("allowed-vllm-llama", "denied-intent-required")
    ]
    report = await review_paths(opa, *pods)
    assert [r.allowed for r in report.results] == [False, True]


# --- the CLI: exit codes, stdin, output formats, colour ----------------------------------------


@pytest.mark.parametrize(
    ("output", "parse"),
    [pytest.param("json", json.loads, id="json"), pytest.param("yaml", yaml.safe_load, id="yaml")],
)
def test_structured_output_lists_results_skipped_and_errors(
    opa_bin: str, tmp_path: Path, output: str, parse: Any
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [\n")
    result = run_cli(
        "-f", OPERATORS / "nim-service-dra.yaml", broken, "-", "-o", output,
        opa_bin=opa_bin, agents=OPERATOR_AGENTS, stdin=MIXED,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    report = parse(result.stdout)
    assert report["summary"] == {
        "denied": 0, "allowed": 2, "skipped": 5, "errors": 1, "exitCode": EXIT_BAD_INPUT,
    }  # fmt: skip
    assert [r["name"] for r in report["results"]] == ["nim-dra/spec", "cpu"]
    assert report["results"][0]["detected"] == ["claim dra-0: gpu.nvidia.com=2"]
    assert {"source", "kind", "name", "reason"} <= set(report["skipped"][0])
    assert report["errors"][0]["source"] == f"{broken}:2:1"
    assert f"error: {broken}:2:1: YAML syntax error" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "summary"),
    [
        pytest.param(
            [EXAMPLES / "pods" / "allowed-vllm-llama.yaml"], EXIT_ALLOWED,
            "0 denied, 1 allowed, 0 skipped", id="allowed",
        ),
        pytest.param(
            [EXAMPLES / "pods"], EXIT_DENIED, "denied, 4 allowed, 1 skipped", id="denied-dir",
        ),
        pytest.param(["nope.yaml"], EXIT_BAD_INPUT, "0 denied, 0 allowed, 0 skipped, 1 unreadable",
                     id="missing-file"),
    ],
)  # fmt: skip
def test_exit_codes_and_summary_line(
    opa_bin: str, args: list[Any], code: int, summary: str
) -> None:
    result = run_cli(*args, opa_bin=opa_bin)
    assert result.returncode == code, result.stderr
    assert result.stdout.rstrip().splitlines()[-1].endswith(summary)
    assert "Traceback" not in result.stderr


def test_text_output_is_plain_when_not_a_tty_and_coloured_on_request(opa_bin: str) -> None:
    pod = EXAMPLES / "pods" / "denied-model-allowed.yaml"
    plain = run_cli(pod, opa_bin=opa_bin)  # stdout is a pipe: auto means no colour
    assert plain.returncode == EXIT_DENIED
    assert ESC not in plain.stdout
    assert "DENY  Pod ml-serving/unapproved-model" in plain.stdout
    assert "[model-allowed]" in plain.stdout
    coloured = run_cli(pod, "--color", "always", opa_bin=opa_bin, env={"NO_COLOR": "1"})
    assert ESC in coloured.stdout  # an explicit flag wins over NO_COLOR


def run_on_a_terminal(opa_bin: str, *args: str | Path, env: dict[str, str]) -> str:
    """The CLI's stdout when it is a terminal (a pseudo-terminal), as a user sees it."""
    master, slave = pty.openpty()
    environment = {**os.environ, "KUBE_INTENT_OPA_BIN": opa_bin, **env}
    if "NO_COLOR" not in env:
        environment.pop("NO_COLOR", None)
    with subprocess.Popen(
        [sys.executable, "-m", "webhook", "review", "--agents", str(EXAMPLES / "agents.yaml"),
         *map(str, args)],
        stdout=slave, stderr=subprocess.DEVNULL, cwd=REPO, env=environment,
    ) as process:  # fmt: skip
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode()


@pytest.mark.parametrize(
    ("env", "coloured"),
    [
        pytest.param({}, True, id="terminal"),
        pytest.param({"NO_COLOR": "1"}, False, id="terminal-NO_COLOR"),
    ],
)
def test_colour_on_a_terminal_unless_no_color(
    opa_bin: str, env: dict[str, str], coloured: bool
) -> None:
    out = run_on_a_terminal(opa_bin, EXAMPLES / "pods" / "denied-model-allowed.yaml", env=env)
    assert "unapproved-model" in out
    assert (ESC in out) is coloured


@pytest.mark.parametrize(
    ("choice", "tty", "no_color", "expected"),
    [
        pytest.param("auto", True, None, True, id="tty"),
        pytest.param("auto", False, None, False, id="pipe"),
        pytest.param("auto", True, "1", False, id="tty-NO_COLOR"),
        pytest.param("auto", True, "", True, id="tty-empty-NO_COLOR"),
        pytest.param("always", False, "1", True, id="always"),
        pytest.param("never", True, None, False, id="never"),
    ],
)
def test_colour_choice(choice: str, tty: bool, no_color: str | None, expected: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    environ = {} if no_color is None else {"NO_COLOR": no_color}
    assert use_color(choice, Stream(), environ) is expected


def test_rendered_colour_marks_denials() -> None:
    report = ReviewReport()
    assert ESC not in render_text(report, color=False)
    assert render_text(report, color=True).startswith(ESC)


def test_no_manifests_is_a_usage_error(opa_bin: str) -> None:
    result = run_cli(opa_bin=opa_bin)
    assert result.returncode == 2
    assert "give manifests" in result.stderr


def test_only_skipped_documents_need_no_policy_engine(tmp_path: Path) -> None:
    # No OPA binary at all: nothing to decide, so nothing is started.
    result = run_cli("-", opa_bin=str(tmp_path / "no-opa"), stdin=MIXED.split("---")[0])
    assert result.returncode == EXIT_ALLOWED, result.stderr
    assert result.stdout.rstrip().endswith("0 denied, 0 allowed, 1 skipped")


# --- hostile or odd input: a clear error or verdict, never a traceback -------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(BOMB, "more than 1,000,000 values once YAML aliases", id="alias-bomb"),
        pytest.param("kind: Pod\ndata: !!binary aGk=\n", "holds a bytes value", id="binary"),
        pytest.param("kind: Pod\n1: one\n", "holds a key 1", id="int-key"),
        pytest.param("[" * 2000, "nested too deeply", id="deep"),
    ],
)  # fmt: skip
def test_documents_that_are_not_json_data_are_bad_input(text: str, expected: str) -> None:
    prepared = prepare(["-"], Settings().accelerator_detector, stdin=io.StringIO(text))
    [error] = prepared.errors
    assert expected in error.message
    assert prepared.expansion.pods == []


def test_unquoted_dates_stay_strings_as_kubectl_reads_them() -> None:
    text = (
        "kind: Pod\nmetadata: {name: p, annotations: {since: 2024-01-01}}\nspec: {containers: []}\n"
    )
    prepared = prepare(["-"], Settings().accelerator_detector, stdin=io.StringIO(text))
    [pod] = prepared.expansion.pods
    assert pod.pod["metadata"]["annotations"]["since"] == "2024-01-01"


HOSTILE = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: isvc}
spec: {predictor: {containers: 5, model: {resources: 7, modelFormat: 3}}}
---
apiVersion: apps.nvidia.com/v1alpha1
kind: NIMService
metadata: {name: nim}
spec: {image: 5, draResources: 5, resources: {limits: {nvidia.com/gpu: x}}}
---
apiVersion: ray.io/v1
kind: RayCluster
metadata: {name: deep}
spec: %s
"""


async def test_malformed_custom_resources_are_denied_for_what_is_wrong(
    operator_opa: OpaPolicyEngine,
) -> None:
    deep = "{a: " * 150 + "{}" + "}" * 150
    report = await review_operators(operator_opa, "-", stdin=HOSTILE % deep)
    assert [(r.name, r.allowed, [v["rule"] for v in r.violations]) for r in report.results] == [
        ("isvc/spec.predictor", False, ["pod-resources"]),
        ("nim/spec", False, ["pod-resources"]),
    ]
    [error] = report.errors
    assert error.source == "<stdin>#2"
    assert "too large or too deeply nested to search for pod templates" in error.message


def test_the_opa_binary_can_be_named_with_a_flag(opa_bin: str) -> None:
    # The error without OPA on PATH tells people to pass --opa-bin: review takes it.
    environment = {k: v for k, v in os.environ.items() if k != "KUBE_INTENT_OPA_BIN"}
    environment["PATH"] = "/usr/bin:/bin"
    pod = EXAMPLES / "pods" / "allowed-vllm-llama.yaml"
    missing = cli.run_cli("review", "--agents", EXAMPLES / "agents.yaml", pod, env=environment)
    assert missing.returncode == 2
    assert "--opa-bin" in missing.stderr
    named = cli.run_cli(
        "review", "--agents", EXAMPLES / "agents.yaml", "--opa-bin", opa_bin, pod, env=environment
    )
    assert named.returncode == 0, named.stderr
    assert "0 denied, 1 allowed" in named.stdout
