"""One OPA query per pod: /validate reuses /mutate's decision only for the same policy input.

Both branches against the real OPA and the bundled policies: the patched pod as the API server
creates it is decided once; a pod that a later mutating webhook changed is evaluated again
(and denied when the policy says so). The /validate checks still run on a reused decision.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from identity.binding import SPIFFE_ID_ANNOTATION
from identity.grants import GRANT_ANNOTATION, GrantIssuer
from identity.keys import KeySet, generate_keys
from tests.support.admission import AppClient, apply_patch, patch_of, post, response_of, review
from tests.support.grants import ISSUER
from tests.support.manifests import example_pod
from tests.support.opa import Counting
from webhook.decision import RequestInfo, Verdict
from webhook.decision_memo import DecisionMemo, comparable_pod, input_digest
from webhook.grants import VerdictGrants
from webhook.policy import OpaPolicyEngine, PolicyDecision
from webhook.violations import Violation

MUTATE_UID = "0b8c4a56-0000-4000-8000-000000000001"
VALIDATE_UID = "0b8c4a56-0000-4000-8000-000000000002"


class Recorder:
    """The /validate verdicts (what its audit row is made of)."""

    def __init__(self) -> None:
        self.rows: list[Verdict] = []

    async def record(
        self, webhook: str, request: RequestInfo, verdict: Verdict, latency_ms: float
    ) -> None:
        if webhook == "validate":
            self.rows.append(verdict)

    async def healthy(self) -> bool:
        return True


@pytest.fixture
def keyset(tmp_path: Path) -> KeySet:
    generate_keys(tmp_path)
    return KeySet.load(tmp_path)


@pytest.fixture
def engine(opa: OpaPolicyEngine) -> Counting:
    return Counting(opa)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(
    make_client: AppClient, keyset: KeySet, engine: Counting, recorder: Recorder
) -> httpx.AsyncClient:
    grants = VerdictGrants(GrantIssuer(lambda: keyset, ISSUER, policy_revision=lambda: "rev"))
    return make_client(
        policy=engine, recorder=recorder, grants=grants, keys=lambda: keyset, issuer=ISSUER
    )


def generated(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod as a ReplicaSet submits it: a generateName, no name."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["generateName"] = pod["metadata"].pop("name") + "-7d9f8-"
    return pod


def created(patched: dict[str, Any]) -> dict[str, Any]:
    """What the API server does between mutating and validating admission."""
    pod = copy.deepcopy(patched)
    meta = pod["metadata"]
    if meta.get("generateName"):
        meta["name"] = meta["generateName"] + "x2k4q"
    meta["uid"] = "d5e3f0c2-1111-4222-8333-444455556666"
    meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
    meta["resourceVersion"] = "4242"
    pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
    return pod


async def mutated(client: httpx.AsyncClient, pod: dict[str, Any]) -> dict[str, Any]:
    answer = response_of(await post(client, "/mutate", review(pod, uid=MUTATE_UID)))
    assert answer["allowed"] is True, answer
    patched: dict[str, Any] = apply_patch(pod, patch_of(answer))
    return patched


async def validate(client: httpx.AsyncClient, pod: dict[str, Any]) -> dict[str, Any]:
    return response_of(await post(client, "/validate", review(pod, uid=VALIDATE_UID)))


@pytest.mark.parametrize("name_kind", ["generateName", "name"])
async def test_validate_of_the_created_pod_reuses_the_mutate_decision(
    client: httpx.AsyncClient, engine: Counting, recorder: Recorder, name_kind: str
) -> None:
    pod = example_pod("allowed-vllm-llama")
    if name_kind == "generateName":
        pod = generated(pod)
    async with client:
        final = created(await mutated(client, pod))
        assert (await validate(client, final))["allowed"] is True
    assert len(engine.inputs) == 1  # /mutate only
    [verdict] = recorder.rows
    assert verdict.policy_reused
    assert verdict.allowed
    # The audit row holds the final pod's own input, and the decision's findings.
    assert verdict.policy_input is not None
    assert verdict.policy_input["pod"] == final
    assert verdict.policy_input["request"]["uid"] == VALIDATE_UID
    assert [v.rule for v in verdict.violations] == ["image-digest-pinned"]
    assert verdict.decision is not None
    assert verdict.decision.scopes


async def test_the_reused_decision_is_the_one_a_full_evaluation_gives(
    make_client: AppClient, keyset: KeySet, opa: OpaPolicyEngine
) -> None:
    verdicts = []
    for memo in (True, False):
        engine, recorder = Counting(opa), Recorder()
        grants = VerdictGrants(GrantIssuer(lambda: keyset, ISSUER, policy_revision=lambda: "r"))
        client = make_client(
            policy=engine, recorder=recorder, grants=grants, keys=lambda: keyset, issuer=ISSUER
        )
        client._transport.app.state.kube_intent.admission.decider.memo = (  # type: ignore[attr-defined]
            DecisionMemo() if memo else None
        )
        async with client:
            final = created(await mutated(client, generated(example_pod("allowed-warn-ttl"))))
            assert (await validate(client, final))["allowed"] is True
        assert len(engine.inputs) == (1 if memo else 2)
        [verdict] = recorder.rows
        assert verdict.policy_reused is memo
        verdicts.append(verdict)
    reused, full = verdicts
    assert reused.decision == full.decision
    assert reused.violations == full.violations
    assert {v.rule for v in reused.violations} >= {"grant-ttl-cap"}


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        # A later mutating webhook swaps the image for one from a registry the policy refuses.
        (
            lambda pod: pod["spec"]["containers"][0].update(image="quay.io/evil/vllm:latest"),
            "image-registry",
        ),
        # ... adds a device env that exposes every GPU on the node (a side door).
        (
            lambda pod: pod["spec"]["containers"][0]["env"].append(
                {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}
            ),
            "accelerator-side-door",
        ),
        # ... raises the GPU count past the intent (and the agent's budget).
        (
            lambda pod: pod["spec"]["containers"][0]["resources"]["limits"].update(
                {"nvidia.com/gpu": 3}
            ),
            "accelerator-declared",
        ),
        # ... switches the pod to another ServiceAccount.
        (
            lambda pod: pod["spec"].update(serviceAccountName="default"),
            "serviceaccount-bound",
        ),
    ],
)
async def test_a_pod_changed_by_a_later_mutator_is_evaluated_again_and_denied(
    client: httpx.AsyncClient, engine: Counting, recorder: Recorder, change: Any, rule: str
) -> None:
    async with client:
        final = created(await mutated(client, generated(example_pod("allowed-vllm-llama"))))
        change(final)
        answer = await validate(client, final)
    assert answer["allowed"] is False
    assert f"[{rule}]" in answer["status"]["message"]
    assert len(engine.inputs) == 2  # /mutate, then /validate again on the changed pod
    [verdict] = recorder.rows
    assert not verdict.policy_reused


async def test_a_harmless_later_change_is_evaluated_again_and_admitted(
    client: httpx.AsyncClient, engine: Counting, recorder: Recorder
) -> None:
    async with client:
        final = created(await mutated(client, generated(example_pod("allowed-vllm-llama"))))
        final["metadata"]["labels"]["sidecar.example.com/injected"] = "true"
        assert (await validate(client, final))["allowed"] is True
    assert len(engine.inputs) == 2
    assert not recorder.rows[0].policy_reused


async def test_the_validate_checks_still_run_on_a_reused_decision(
    client: httpx.AsyncClient, engine: Counting
) -> None:
    async with client:
        final = created(await mutated(client, generated(example_pod("allowed-vllm-llama"))))
        # Only kube-intent's own annotations changed: the policy input is the same (a hit)...
        final["metadata"]["annotations"][SPIFFE_ID_ANNOTATION] = "spiffe://evil/ns/x/sa/y"
        tampered = await validate(client, final)
        # ...and a grant minted for another pod is refused by the grant check.
        other = created(await mutated(client, generated(example_pod("allowed-vllm-llama"))))
        other["metadata"]["annotations"][GRANT_ANNOTATION] = "not.a.grant"
        forged = await validate(client, other)
    # /mutate always asks OPA (a reused decision is for /validate only); both /validate hit.
    assert len(engine.inputs) == 2
    assert tampered["allowed"] is False
    assert "[mutation-integrity]" in tampered["status"]["message"]
    assert forged["allowed"] is False
    assert "[grant-integrity]" in forged["status"]["message"]


async def test_another_policy_revision_is_evaluated_again(
    client: httpx.AsyncClient, engine: Counting, recorder: Recorder
) -> None:
    async with client:
        final = created(await mutated(client, generated(example_pod("allowed-vllm-llama"))))
        engine.revision_override = "another-revision"
        assert (await validate(client, final))["allowed"] is True
    assert len(engine.inputs) == 2
    assert not recorder.rows[0].policy_reused


async def test_updates_are_always_evaluated(
    client: httpx.AsyncClient, engine: Counting, recorder: Recorder
) -> None:
    async with client:
        final = created(await mutated(client, generated(example_pod("allowed-vllm-llama"))))
        body = review(final, operation="UPDATE", old=final, uid=VALIDATE_UID)
        for _ in range(2):
            assert response_of(await post(client, "/validate", body))["allowed"] is True
    assert len(engine.inputs) == 3
    assert not any(verdict.policy_reused for verdict in recorder.rows)


def test_comparable_pod_drops_exactly_the_patch_and_the_server_fields() -> None:
    pod = generated(example_pod("allowed-vllm-llama"))
    pod["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    pod["spec"]["volumes"] = [{"name": "cache", "emptyDir": {}}]
    patched = copy.deepcopy(pod)
    meta = patched["metadata"]
    meta["annotations"].update(
        {SPIFFE_ID_ANNOTATION: "s", "kube-intent.io/intent-digest": "d", GRANT_ANNOTATION: "g"}
    )
    patched["spec"]["volumes"] += [{"name": "kube-intent-token"}, {"name": "kube-intent-grant"}]
    container = patched["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "x", "mountPath": "/var/run/kube-intent/token"}]
    container["env"] += [{"name": "KUBE_INTENT_GRANT_FILE", "value": "/f"}]
    final = created(patched)
    before = copy.deepcopy(final)
    assert comparable_pod(final) == comparable_pod(pod)
    assert final == before  # never changed in place
    # What the author wrote is kept: a changed env value or volume is a difference.
    changed = copy.deepcopy(final)
    changed["spec"]["containers"][0]["env"][0]["value"] = "2"
    assert comparable_pod(changed) != comparable_pod(pod)
    changed = copy.deepcopy(final)
    changed["spec"]["volumes"][0] = {"name": "cache", "hostPath": {"path": "/dev"}}
    assert comparable_pod(changed) != comparable_pod(pod)


def test_a_pod_name_counts_unless_the_server_generates_it() -> None:
    pod = example_pod("allowed-vllm-llama")
    request = {"uid": "a", "operation": "CREATE", "namespace": "ml-serving", "name": "p"}
    policy_input = {"request": request, "pod": pod}
    renamed = copy.deepcopy(policy_input)
    renamed["pod"]["metadata"]["name"] = "q"
    assert input_digest(policy_input, "r") != input_digest(renamed, "r")
    assert input_digest(policy_input, "r") != input_digest(policy_input, "s")
    # Another admission uid is the same input.
    assert input_digest(policy_input, "r") == input_digest(
        {**policy_input, "request": {**request, "uid": "b"}}, "r"
    )
    # An input that is not plain JSON data (an integer past 64 bits) is never memoised.
    huge = copy.deepcopy(policy_input)
    huge["pod"]["spec"]["priority"] = 2**70
    assert input_digest(huge, "r") is None


def test_entries_expire_and_the_memo_is_bounded() -> None:
    now = [0.0]
    memo = DecisionMemo(size=2, ttl_seconds=10, clock=lambda: now[0])
    decision = PolicyDecision(allowed=True, violations=[Violation(rule="r", message="m")])
    memo.put(b"a", decision)
    got = memo.get(b"a")
    assert got == decision
    assert got is not None
    assert got.violations is not decision.violations
    memo.put(b"b", decision)
    memo.put(b"c", decision)
    assert len(memo) == 2
    assert memo.get(b"a") is None
    now[0] = 10.0
    assert memo.get(b"b") is None
    assert memo.get(b"c") is None
    assert memo.get(None) is None
