"""The webhook's audit trail: one durable row per decision, none on dry-run, outage modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import AppClient, example_pod, review
from tests.webhook.audit.audit_testlib import PgCluster
from tests.webhook.audit.test_audit_outage import stopped
from tests.webhook.test_webhook import post, response_of
from webhook.audit import AuditLog, StoredRecord, open_store, verify_store
from webhook.audit.recorder import AuditRecorder
from webhook.metrics import Metrics
from webhook.policy import OpaPolicyEngine


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
                assert (
                    metrics.registry.get_sample_value("kube_intent_audit_write_failures_total") >= 1
                )
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
