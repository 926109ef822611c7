"""A staged rollout (`--enforcement dryrun|warn`) refuses no pod and records every would-be denial.

Each denied example is one the bundled policies or the intent schema refuse. Under the override
the pod is admitted through /mutate and /validate (as the API server calls them), the audit row
keeps every violation with the override's enforcement, and no grant is minted or made
redeemable: a would-be denial was approved by nobody.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from identity.grants import GRANT_ANNOTATION, GrantIssuer
from identity.keys import KeySet, generate_keys
from identity.registry import AgentRegistry
from tests.support.admission import AppClient, apply_patch, patch_of, post, response_of, review
from tests.support.grants import ISSUER
from tests.support.manifests import example_pod
from tests.support.paths import EXAMPLES
from webhook.audit import AuditLog, open_store
from webhook.decision import Decider, RequestInfo
from webhook.grants import VerdictGrants
from webhook.metrics import Metrics
from webhook.policy import PolicyDecision
from webhook.recorder import AuditRecorder
from webhook.settings import Settings
from webhook.violations import Enforcement, Violation

DENIED = sorted(p.stem for p in (EXAMPLES / "pods").glob("denied-*.yaml"))
POD_UID = "6f1c2a7e-0d4b-4c55-9a43-2b8e7d1f0a11"


@pytest_asyncio.fixture
async def audit_log(tmp_path: Path) -> AsyncIterator[AuditLog]:
    log = AuditLog(await open_store(str(tmp_path / "audit.db")), required=True)
    yield log
    await log.close()


@pytest.mark.parametrize("enforcement", ["dryrun", "warn"])
@pytest.mark.parametrize("example", DENIED)
async def test_a_rollout_admits_records_and_grants_nothing(
    make_client: AppClient, audit_log: AuditLog, tmp_path: Path, example: str, enforcement: str
) -> None:
    generate_keys(tmp_path / "keys")
    keyset = KeySet.load(tmp_path / "keys")
    grants = VerdictGrants(GrantIssuer(lambda: keyset, ISSUER, policy_revision=lambda: "rev"))
    recorder = AuditRecorder(audit_log, Metrics(), lambda: "rev")
    rule = example.removeprefix("denied-")
    pod = example_pod(example)
    async with make_client(
        enforcement=enforcement,
        grants=grants,
        keys=lambda: keyset,
        issuer=ISSUER,
        recorder=recorder,
    ) as client:
        mutated = response_of(await post(client, "/mutate", review(pod)))
        assert mutated["allowed"] is True, mutated
        final = apply_patch(pod, patch_of(mutated)) if "patch" in mutated else pod
        assert GRANT_ANNOTATION not in final["metadata"].get("annotations", {})
        final["metadata"]["uid"] = POD_UID  # assigned by the API server before validation
        validated = response_of(await post(client, "/validate", review(final)))
    assert validated["allowed"] is True, validated
    shown = validated.get("warnings") or []
    if enforcement == "warn":
        assert any(f"[{rule}]" in w for w in shown), shown
    else:
        assert shown == []

    [row] = [r async for r in audit_log.store.iter_all()]
    assert row.allowed is True
    assert row.pod_uid == POD_UID
    assert row.grant_jti is None
    assert rule in {v.rule for v in row.violations}
    assert {v.enforcement for v in row.violations} == {enforcement}


async def test_a_rollout_does_not_relax_the_webhooks_own_guards(
    make_client: AppClient, tmp_path: Path
) -> None:
    # Grant integrity protects tokens, not policy: a dryrun rollout of the policies leaves it on.
    generate_keys(tmp_path)
    keyset = KeySet.load(tmp_path)
    async with make_client(enforcement="dryrun", keys=lambda: keyset, issuer=ISSUER) as client:
        pod = example_pod("allowed-vllm-llama")
        pod["metadata"]["annotations"][GRANT_ANNOTATION] = "forged.grant.value"
        response = response_of(await post(client, "/validate", review(pod)))
    assert response["allowed"] is False
    assert "[grant-integrity]" in response["status"]["message"]


class Answering:
    """A replacement policy set (`--policies DIR`) reduced to the answer it gives."""

    revision = "r"

    def __init__(self, answer: PolicyDecision) -> None:
        self.answer = answer

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        return self.answer

    async def ready(self) -> bool:
        return True

    async def put_agents(self, agents: dict[str, Any]) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("allowed", "found", "override", "admitted", "overridden"),
    [
        pytest.param(True, [], None, True, False, id="allowed"),
        pytest.param(True, ["warn"], None, True, False, id="allowed-with-a-warning"),
        pytest.param(False, ["deny"], None, False, False, id="denied"),
        # A policy that says no with only warnings has still said no.
        pytest.param(False, ["warn"], None, False, False, id="refused-with-only-warnings"),
        pytest.param(False, [], None, False, False, id="refused-naming-nothing"),
        pytest.param(False, ["deny"], "dryrun", True, True, id="dryrun-relaxes-a-denial"),
        pytest.param(False, ["warn"], "warn", True, True, id="warn-relaxes-a-refusal"),
        pytest.param(False, [], "dryrun", False, False, id="nothing-to-relax"),
        pytest.param(True, ["warn"], "deny", False, False, id="deny-override-hardens"),
    ],
)
async def test_the_override_relaxes_only_what_a_rollout_asks(
    agents: AgentRegistry,
    allowed: bool,
    found: list[Enforcement],
    override: Enforcement | None,
    admitted: bool,
    overridden: bool,
) -> None:
    answer = PolicyDecision(
        allowed=allowed,
        violations=[Violation(rule=f"r{i}", enforcement=e) for i, e in enumerate(found)],
    )
    decider = Decider(
        detector=Settings().accelerator_detector,
        registry=lambda: agents,
        policy=Answering(answer),
        trust_domain="cluster.local",
        enforcement=override,
    )
    pod = example_pod("allowed-vllm-llama")
    request = RequestInfo(uid="u", operation="CREATE", namespace="ml-serving", name="p")
    verdict = await decider.decide(request, pod, decider.detect(pod, "ml-serving"))
    assert (verdict.allowed, verdict.overridden) == (admitted, overridden)
