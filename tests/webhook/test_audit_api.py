"""The audit API's routes without a cluster: there is nobody to authorise a caller, so nothing
is served (the RBAC path itself runs against a real API server in tests/e2e/test_remote_audit.py
and tests/e2e/test_serve_in_cluster.py)."""

from __future__ import annotations

import pytest

from tests.support.admission import AppClient
from webhook.audit_api import ERR_NO_CLUSTER


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/audit/decisions", 404, id="list"),
        pytest.param("/audit/decisions?decision=denied&order=asc", 404, id="list-filtered"),
        pytest.param("/audit/decisions/1", 404, id="one"),
    ],
)
async def test_without_a_cluster_the_trail_is_not_served(
    make_client: AppClient, path: str, status: int
) -> None:
    async with make_client() as client:
        response = await client.get(path, headers={"Authorization": "Bearer anything"})
    assert response.status_code == status
    assert response.json() == {"error": ERR_NO_CLUSTER}
    assert "--db" in ERR_NO_CLUSTER  # the message says what to use instead


@pytest.mark.parametrize(
    "record_id", ["0", "-1", "abc", str(2**63)], ids=["zero", "negative", "text", "beyond-int64"]
)
async def test_a_record_id_that_no_store_can_hold_is_refused_before_any_lookup(
    make_client: AppClient, record_id: str
) -> None:
    async with make_client() as client:
        response = await client.get(f"/audit/decisions/{record_id}")
    assert response.status_code == 422
