"""`kube-intent review` end to end: the real CLI, a real OPA subprocess, files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, EXAMPLES, REPO

EXAMPLE_PODS = sorted((EXAMPLES / "pods").glob("*.yaml"))


def run_review(*args: str | Path, opa_bin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBE_INTENT_OPA_BIN": opa_bin}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "review",
            "--agents",
            str(EXAMPLES / "agents.yaml"),
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def example_results(opa_bin: str) -> dict[str, list[dict[str, Any]]]:
    """One review of every example, as the README's quick start runs it."""
    result = run_review(*EXAMPLE_PODS, "--output", "json", opa_bin=opa_bin)
    assert result.returncode == 1, result.stderr  # some examples are denied by design
    by_file: dict[str, list[dict[str, Any]]] = {}
    for item in json.loads(result.stdout):
        by_file.setdefault(Path(item["source"].split("#")[0]).stem, []).append(item)
    return by_file


@pytest.mark.parametrize("example", [p.stem for p in EXAMPLE_PODS])
def test_examples_show_the_whole_story(
    example_results: dict[str, list[dict[str, Any]]], example: str
) -> None:
    [result] = example_results[example]
    assert set(result) >= {"source", "kind", "name", "gpu", "accelerators", "allowed", "violations"}
    if example.startswith("passthrough-"):
        assert result["gpu"] is False
        assert result["allowed"] is True
        assert result["violations"] == []
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


def verdicts(stdout: str) -> dict[str, tuple[bool, set[str]]]:
    return {
        item["name"]: (
            item["allowed"],
            {v["rule"] for v in item["violations"] if v["enforcement"] == "deny"},
        )
        for item in json.loads(stdout)
    }


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
def test_workload_templates(
    opa_bin: str, fixture: str, expected: dict[str, tuple[bool, set[str]]]
) -> None:
    result = run_review(DATA / "workloads" / fixture, "-o", "json", opa_bin=opa_bin)
    assert verdicts(result.stdout) == expected
    assert result.returncode == (0 if all(ok for ok, _ in expected.values()) else 1)


def test_text_output_names_rule_and_message(opa_bin: str) -> None:
    result = run_review(EXAMPLES / "pods" / "denied-model-allowed.yaml", opa_bin=opa_bin)
    assert result.returncode == 1
    assert "DENY  Pod ml-serving/unapproved-model" in result.stdout
    assert "[model-allowed]" in result.stdout
    assert "deepseek-ai/DeepSeek-R1" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("kind: [unclosed\n", "cannot read", id="yaml-syntax"),
        pytest.param("- just\n- a list\n", "expected a Kubernetes object", id="not-an-object"),
        pytest.param(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {}\n",
            "holds no pod",
            id="no-pod",
        ),
    ],
)
def test_bad_input_exits_2(opa_bin: str, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = run_review(path, opa_bin=opa_bin)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_exits_2(opa_bin: str, tmp_path: Path) -> None:
    result = run_review(tmp_path / "nope.yaml", opa_bin=opa_bin)
    assert result.returncode == 2
    assert "cannot read" in result.stderr
