"""The webhook's audit trail: one durable row per decision, none on dry-run, outage modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from identity.intent import ParsedIntent
from tests.support.admission import AppClient, post, response_of, review
from tests.support.audit import HOSTILE_JSON, PgCluster, stopped
from tests.support.manifests import example_pod
from webhook.audit import GENESIS_HASH, AuditLog, StoredRecord, open_store, verify_store
from webhook.decision import RequestInfo, Verdict
from webhook.metrics import Metrics
from webhook.policy import OpaPolicyEngine
from webhook.recorder import AuditRecorder, admission_record


@pytest_asyncio.fixture
async def sqlite_log(tmp_path: Path) -> AsyncIterator[AuditLog]:
    log = AuditLog(await open_store(str(tmp_path / "audit.db")), required=True)
    yield log
    await log.close()


async def rows(log: AuditLog) -> list[StoredRecord]:
    return [r async for r in log.store.iter_all()]


async def test_a_denial_is_recorded_with_every_field(
    make_client: AppClient, sqlite_log: AuditLog, opa: OpaPolicyEngine
) -> None:
    metrics = Metrics()
    recorder = AuditRecorder(sqlite_log, metrics, lambda: opa.revision)
    async with make_client(recorder=recorder, metrics=metrics) as client:
        response = response_of(
            await post(client, "/mutate", review(example_pod("denied-model-allowed")))
        )
    assert response["allowed"] is False
    [row] = await rows(sqlite_log)
    assert row.kind == "admission"
    assert row.uid == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert (row.operation, row.namespace, row.name) == ("CREATE", "ml-serving", "unapproved-model")
    assert row.user == "system:serviceaccount:agents:orchestrator"
    assert row.groups == ["system:serviceaccounts"]
    assert (row.agent, row.service_account) == ("support-bot", "support-bot")
    assert row.spiffe_id == "spiffe://cluster.local/ns/ml-serving/sa/support-bot"
    assert row.intent is not None
    assert row.intent["models"] == ["deepseek-ai/DeepSeek-R1"]
    assert row.intent_digest is not None
    assert row.intent_digest.startswith("sha256:")
    assert row.accelerators.total == 1
    assert row.accelerators.resources == {"nvidia.com/gpu": 1}
    assert row.allowed is False
    assert [(v.rule, v.enforcement) for v in row.violations if v.enforcement == "deny"] == [
        ("model-allowed", "deny")
    ]
    assert row.policy_revision == opa.revision
    assert len(row.policy_revision) == 12
    assert row.latency_ms > 0
    assert row.input is not None
    assert row.input["identity"]["agent"] == "support-bot"
    assert "[model-allowed]" in row.message
    assert (await verify_store(sqlite_log.store)).ok


async def test_one_row_per_pod_creation_and_none_on_dry_run(
    make_client: AppClient, sqlite_log: AuditLog
) -> None:
    recorder = AuditRecorder(sqlite_log, Metrics(), lambda: "rev")
    pod = example_pod("allowed-vllm-llama")
    pod["metadata"]["uid"] = "0b5e1e34-8d3f-4f7e-9c1a-5d2f3e4a5b6c"  # set by the API server
    async with make_client(recorder=recorder) as client:
        for webhook in ("/mutate", "/validate"):  # the API server calls both for one pod
            assert response_of(await post(client, webhook, review(pod)))["allowed"]
        for webhook in ("/mutate", "/validate"):
            assert response_of(await post(client, webhook, review(pod, dry_run=True)))["allowed"]
        denied = example_pod("denied-intent-required")
        assert not response_of(await post(client, "/mutate", review(denied, dry_run=True)))[
            "allowed"
        ]
        assert response_of(await post(client, "/validate", review(example_pod("passthrough-cpu"))))[
            "allowed"
        ]
    [row] = await rows(sqlite_log)
    assert row.allowed
    assert row.name == "support-bot-llama"
    assert row.pod_uid == "0b5e1e34-8d3f-4f7e-9c1a-5d2f3e4a5b6c"
    assert await sqlite_log.store.admitted(row.pod_uid) == row


def decision(allowed: bool, policy_input: dict[str, Any] | None = None) -> Verdict:
    return Verdict(
        allowed=allowed,
        workload=None,
        intent=ParsedIntent(present=False),
        policy_input=policy_input,
    )


# name -> (RequestInfo.pod_uid, .authenticated, record.pod_uid, .authenticated)
REQUEST_FIELDS = {
    "validate-from-the-api-server": ("0b5e1e34", True, "0b5e1e34", True),
    "unauthenticated-caller": ("0b5e1e34", False, "0b5e1e34", False),
    "mutate-has-no-pod-uid": ("", True, None, True),
}


@pytest.mark.parametrize("case", list(REQUEST_FIELDS), ids=list(REQUEST_FIELDS))
def test_record_carries_pod_uid_and_authentication(case: str) -> None:
    pod_uid, authenticated, want_uid, want_authenticated = REQUEST_FIELDS[case]
    request = RequestInfo(
        uid="r",
        operation="CREATE",
        namespace="ns",
        name="p",
        pod_uid=pod_uid,
        authenticated=authenticated,
    )
    record = admission_record(request, decision(True), 1.0, "rev")
    assert (record.pod_uid, record.authenticated) == (want_uid, want_authenticated)


@pytest.mark.parametrize("case", list(HOSTILE_JSON), ids=list(HOSTILE_JSON))
def test_a_hostile_pod_still_leaves_its_denial(case: str) -> None:
    value, expected = HOSTILE_JSON[case]
    request = RequestInfo(uid="r", operation="CREATE", namespace="ns", name="p")
    record = admission_record(request, decision(False, {"v": value}), 1.0, "rev")
    assert record.input == {"v": expected}
    assert not record.chained(record_id=1, seq=1, prev_hash=GENESIS_HASH).allowed


@pytest.mark.parametrize("required", [True, False], ids=["required", "not-required"])
async def test_store_outage(
    make_client: AppClient, pg_control: PgCluster, pg_control_dsn: str, required: bool
) -> None:
    log = AuditLog(await open_store(pg_control_dsn), required=required, retry_max=0.3)
    metrics = Metrics()
    recorder = AuditRecorder(log, metrics, lambda: "rev")
    try:
        async with make_client(
            recorder=recorder, metrics=metrics, audit_required=required
        ) as client:
            with stopped(pg_control):
                gpu = response_of(
                    await post(client, "/validate", review(example_pod("allowed-vllm-llama")))
                )
                cpu = response_of(
                    await post(client, "/validate", review(example_pod("passthrough-cpu")))
                )
                failures = metrics.registry.get_sample_value(
                    "kube_intent_audit_write_failures_total"
                )
                assert (failures or 0) >= 1
                assert metrics.registry.get_sample_value("kube_intent_audit_queue_depth") == 1
            assert cpu["allowed"] is True
            if required:
                assert gpu["allowed"] is False
                assert "[audit-unavailable]" in gpu["status"]["message"]
            else:
                assert gpu["allowed"] is True
            assert await log.flush(max_wait=30)
        [row] = [r async for r in log.store.iter_all()]
        # The trail shows what the API server was told.
        assert row.allowed is (not required)
    finally:
        await log.close(max_wait=10)


async def test_a_decision_the_full_buffer_could_not_keep_is_counted(
    make_client: AppClient, pg_control: PgCluster, pg_control_dsn: str
) -> None:
    # audit.required=false: pods are admitted through an outage, but a decision that does not
    # fit in the outage buffer is lost, and that must show (the KubeIntentAuditRecordsDropped
    # alert reads this counter).
    log = AuditLog(await open_store(pg_control_dsn), required=False, max_buffer=1, retry_max=0.3)
    metrics = Metrics()
    recorder = AuditRecorder(log, metrics, lambda: "rev")
    try:
        async with make_client(recorder=recorder, metrics=metrics, audit_required=False) as client:
            with stopped(pg_control):
                for name in ("kept", "lost"):
                    pod = example_pod("allowed-vllm-llama")
                    pod["metadata"]["name"] = name
                    answer = response_of(await post(client, "/validate", review(pod)))
                    assert answer["allowed"] is True
                dropped = metrics.registry.get_sample_value(
                    "kube_intent_audit_records_dropped_total"
                )
                assert dropped == 1
            assert await log.flush(max_wait=30)
        assert [r.name for r in await rows(log)] == ["kept"]
    finally:
        await log.close(max_wait=10)
