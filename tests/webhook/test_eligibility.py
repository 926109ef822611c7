"""Who the token endpoint may serve: resolved detection and the recorded, allowed admission."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from identity.exchange import LedgerUnavailable
from tests.support.paths import DATA
from webhook.audit import open_store
from webhook.audit.record import AuditRecord
from webhook.audit.store import AuditStore
from webhook.detect import StaticClaimResolver
from webhook.eligibility import governed_by, recorded_admissions
from webhook.settings import Settings

MANIFESTS = DATA / "manifests"


class ClaimsFromFile:
    """ClaimLookup over the claim objects of a manifest (what the cluster would return)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects

    async def resolver_for(self, namespace: str, pod: dict[str, Any]) -> StaticClaimResolver:
        return StaticClaimResolver(self.objects, default_namespace=namespace)


def manifest(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    documents = list(yaml.safe_load_all((MANIFESTS / f"{name}.yaml").read_text()))
    [pod] = [d for d in documents if d["kind"] == "Pod"]
    return pod, [d for d in documents if d["kind"] != "Pod"]


@pytest.mark.parametrize(
    ("name", "resolved", "governed"),
    [
        # The hole the adversarial review used: a NIC-only pod is never reviewed, so a grant
        # copied onto it must not pass for a governed pod's.
        pytest.param("dra-nic-only", True, False, id="nic-claim-resolved"),
        # Without the claim objects every claim counts as an accelerator (admission fails closed).
        pytest.param("dra-nic-only", False, True, id="nic-claim-unresolved"),
        pytest.param("dra-v1-exactly-template", True, True, id="gpu-claim-resolved"),
        pytest.param("cpu-only", True, False, id="cpu-only"),
    ],
)
async def test_governed_uses_the_same_resolved_detection_as_admission(
    name: str, resolved: bool, governed: bool
) -> None:
    pod, claims = manifest(name)
    lookup = ClaimsFromFile(claims) if resolved else None
    check = governed_by(Settings().accelerator_detector, lookup)
    assert await check(pod) is governed


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AuditStore]:
    opened = await open_store(str(tmp_path / "audit.db"))
    yield opened
    await opened.close()


def admission(**fields: Any) -> AuditRecord:
    defaults: dict[str, Any] = {
        "uid": "review-1",
        "operation": "CREATE",
        "namespace": "ml-serving",
        "name": "support-bot-llama",
        "allowed": True,
        "pod_uid": "pod-1",
        "grant_jti": "jti-1",
        "authenticated": True,
    }
    return AuditRecord(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("rows", "trust_unauthenticated", "eligible"),
    [
        pytest.param([admission()], False, True, id="allowed-authenticated"),
        pytest.param([], False, False, id="never-recorded"),
        pytest.param([admission(allowed=False)], False, False, id="denied"),
        pytest.param([admission(grant_jti="jti-2")], False, False, id="another-grant"),
        pytest.param([admission(pod_uid="pod-2")], False, False, id="another-pod"),
        pytest.param([admission(kind="token")], False, False, id="token-row"),
        pytest.param([admission(authenticated=False)], False, False, id="unauthenticated"),
        pytest.param([admission(authenticated=False)], True, True, id="unauthenticated-trusted"),
    ],
)
async def test_only_an_allowed_recorded_admission_makes_a_pod_eligible(
    store: AuditStore, rows: list[AuditRecord], trust_unauthenticated: bool, eligible: bool
) -> None:
    for row in rows:
        await store.append(row)
    admitted = recorded_admissions(store, trust_unauthenticated=trust_unauthenticated)
    assert await admitted("pod-1", "jti-1") is eligible


async def test_an_unreadable_store_is_cannot_tell_not_yes(
    store: AuditStore, tmp_path: Path
) -> None:
    await store.append(admission())
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        conn.execute("ALTER TABLE audit_record RENAME TO moved_away")
    with pytest.raises(LedgerUnavailable):
        await recorded_admissions(store)("pod-1", "jti-1")
