"""`kube-intent policy replay` on a trail the real webhook wrote, against real OPAs.

The trail mixes decisions the policy made (allowed, denied, a warning) with decisions the webhook
made itself (an intent that failed its schema: no policy input; a forged intent digest refused by
/validate's mutation-integrity check although the policy admits the pod). Those two must never
come back "newly allowed" because OPA alone would admit them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from identity.intent import INTENT_DIGEST_ANNOTATION
from tests.support.admission import AppClient
from tests.support.audit import full_record, write_trail
from tests.support.cli import run_cli
from tests.support.manifests import example_pod
from webhook.audit import GENESIS_HASH
from webhook.opa_process import find_opa
from webhook.replay import decided_by
from webhook.settings import BUNDLED_POLICIES
from webhook.violations import Enforcement, Violation


def forged_digest() -> dict[str, Any]:
    pod = example_pod("allowed-vllm-llama")
    pod["metadata"]["annotations"][INTENT_DIGEST_ANNOTATION] = "sha256:" + "0" * 64
    return pod


# (webhook, pod, what decided it) in the order written; the trail's record ids are 1..6.
TRAIL: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("/validate", lambda: example_pod("allowed-vllm-llama")),  # 1 allowed by the policy
    ("/mutate", lambda: example_pod("denied-model-allowed")),  # 2 denied: model-allowed
    ("/mutate", lambda: example_pod("denied-intent-schema")),  # 3 denied: intent-schema
    ("/validate", forged_digest),  # 4 denied: mutation-integrity
    ("/mutate", lambda: example_pod("denied-data-class-clearance")),  # 5 denied: clearance
    ("/validate", lambda: example_pod("allowed-warn-ttl")),  # 6 allowed with a warning
]
NOT_REPLAYABLE = {3: "intent-schema", 4: "mutation-integrity"}


@pytest.fixture
async def trail(tmp_path: Path, make_client: AppClient) -> Path:
    admissions = ((webhook, pod()) for webhook, pod in TRAIL)
    return await write_trail(make_client, tmp_path / "audit.db", admissions)


def candidate(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None) -> Path:
    """A copy of the bundled policies with `edit` applied to data.kube_intent.config."""
    target = Path(shutil.copytree(BUNDLED_POLICIES, tmp_path / "candidate"))
    if edit is not None:
        data = json.loads((target / "data.json").read_text())
        edit(data["kube_intent"]["config"])
        (target / "data.json").write_text(json.dumps(data))
    return target


def enforce(rule: str, enforcement: str) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["enforcement"].update({rule: enforcement})


def drop_vllm_registry(config: dict[str, Any]) -> None:
    config["allowed_registries"] = [r for r in config["allowed_registries"] if "vllm" not in r]


# name -> (edit, status by record id of the replayable ones, exit status with --fail-on-change)
CASES: dict[str, tuple[Callable[[dict[str, Any]], None] | None, dict[int, str], int]] = {
    "same-policy": (
        None,
        {1: "unchanged", 2: "unchanged", 5: "unchanged", 6: "unchanged"},
        0,
    ),
    "model-allowed-to-warn": (
        enforce("model-allowed", "warn"),
        {1: "unchanged", 2: "newly allowed", 5: "unchanged", 6: "unchanged"},
        1,
    ),
    "clearance-to-dryrun": (
        enforce("data-class-clearance", "dryrun"),
        {1: "unchanged", 2: "unchanged", 5: "newly allowed", 6: "unchanged"},
        1,
    ),
    "registry-dropped": (
        drop_vllm_registry,
        {1: "newly denied", 2: "rules changed", 5: "rules changed", 6: "newly denied"},
        1,
    ),
}


def replay_cli(db: Path, policies: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "policy", "replay", "--policies", policies, "--db", db, "--opa-bin", find_opa(), *args
    )


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_replay_classifies_every_recorded_decision(trail: Path, tmp_path: Path, case: str) -> None:
    edit, expected, fail_exit = CASES[case]
    policies = candidate(tmp_path, edit)
    result = replay_cli(trail, policies, "-o", "json", "--fail-on-change")
    assert result.returncode == fail_exit, result.stderr
    report = json.loads(result.stdout)
    statuses = {r["id"]: r["status"] for r in report["results"]}
    assert statuses == {**expected, **dict.fromkeys(NOT_REPLAYABLE, "not replayable")}
    for record_id, rule in NOT_REPLAYABLE.items():
        [result_of] = [r for r in report["results"] if r["id"] == record_id]
        assert result_of["reason"].startswith(f"not replayable: decided by {rule}")
        assert result_of["nowAllowed"] is None
    assert report["decisionChanged"] is bool(fail_exit)
    assert report["notReplayable"] == len(NOT_REPLAYABLE)
    # Without --fail-on-change a changed decision is a report, not a failure.
    assert replay_cli(trail, policies).returncode == 0


def test_reasons_name_the_old_and_new_rules(trail: Path, tmp_path: Path) -> None:
    result = replay_cli(trail, candidate(tmp_path, drop_vllm_registry), "-o", "json")
    assert result.returncode == 0, result.stderr
    by_id = {r["id"]: r for r in json.loads(result.stdout)["results"]}
    # A dryrun finding is shown with its enforcement; it decided nothing either time.
    assert by_id[1]["reason"] == (
        "allowed (image-digest-pinned(dryrun)) -> "
        "denied (image-digest-pinned(dryrun), image-registry)"
    )
    assert by_id[1]["addedDenials"] == ["image-registry"]
    assert by_id[2]["reason"] == (
        "denied (image-digest-pinned(dryrun), model-allowed) -> "
        "denied (image-digest-pinned(dryrun), image-registry, model-allowed)"
    )
    assert by_id[2]["wasAllowed"] is by_id[2]["nowAllowed"] is False


def test_text_output_lists_changes_and_ends_with_the_summary(trail: Path, tmp_path: Path) -> None:
    result = replay_cli(trail, candidate(tmp_path, enforce("model-allowed", "warn")))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(
        line.startswith("#2 ")
        and line.endswith(
            "newly allowed: denied (image-digest-pinned(dryrun), model-allowed) -> "
            "allowed (image-digest-pinned(dryrun), model-allowed(warn))"
        )
        for line in lines
    )
    assert any(line.startswith("#4 ") and "decided by mutation-integrity" in line for line in lines)
    assert lines[-1].startswith("6 recorded admissions against revision ")
    assert lines[-1].endswith(
        "3 unchanged, 0 newly denied, 1 newly allowed, 0 rules changed, 2 not replayable"
    )


BROKEN_REGO = "package kube_intent.admission\n\nviolation contains v if {\n"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("no-db", "cannot open audit store", id="missing-store"),
        pytest.param("broken-policy", "candidate", id="policy-syntax-error"),
        pytest.param("bad-since", "neither a duration", id="bad-since"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    trail: Path, tmp_path: Path, setup: str, message: str
) -> None:
    policies = candidate(tmp_path, None)
    args: list[str] = []
    db = trail
    if setup == "no-db":
        db = tmp_path / "nothing.db"
    elif setup == "broken-policy":
        (policies / "broken.rego").write_text(BROKEN_REGO)
    else:
        args = ["--since", "last tuesday"]
    result = replay_cli(db, policies, "--fail-on-change", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- decisions the webhook made itself, rule by rule (no OPA needed to tell) ---------------------

POD_INPUT = {"pod": {"metadata": {"name": "p"}}}
# name -> (allowed, violations as (rule, enforcement), input recorded, what decided it or None)
WEBHOOK_DECISIONS: dict[str, tuple[bool, list[tuple[str, Enforcement]], bool, str | None]] = {
    "grant-integrity": (False, [("grant-integrity", "deny")], True, "grant-integrity"),
    "audit-unavailable-after-policy-allowed": (
        False,
        [("image-digest-pinned", "dryrun"), ("audit-unavailable", "deny")],
        True,
        "audit-unavailable",
    ),
    "fail-open-admission": (True, [("policy-engine", "warn")], True, "policy-engine"),
    "engine-down-denial": (False, [("policy-engine", "deny")], True, "policy-engine"),
    "claim-guard": (False, [("dra-claim-admitted-pods", "deny")], True, "dra-claim-admitted"),
    "intent-schema-under-dryrun-rollout": (
        True,
        [("intent-schema", "dryrun")],
        False,
        "intent-schema",
    ),
    "no-input-no-rule": (False, [], False, "the webhook (no policy input"),
    "policy-denial": (False, [("model-allowed", "deny")], True, None),
    "policy-denial-with-webhook-warning": (
        False,
        [("model-allowed", "deny"), ("mutation-integrity", "warn")],
        True,
        None,
    ),
}


@pytest.mark.parametrize("case", list(WEBHOOK_DECISIONS), ids=list(WEBHOOK_DECISIONS))
def test_what_decided_a_record(case: str) -> None:
    allowed, violations, has_input, expected = WEBHOOK_DECISIONS[case]
    record = full_record(
        allowed=allowed,
        violations=[Violation(rule=r, message="m", enforcement=e) for r, e in violations],
        input=POD_INPUT if has_input else None,
    ).chained(record_id=1, seq=1, prev_hash=GENESIS_HASH)
    found = decided_by(record)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(expected)
