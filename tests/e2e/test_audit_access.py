"""Who may read the audit API, asked of the real API server: answers are remembered briefly per
token, so a caller cannot turn every request into a TokenReview on the admission path's threads."""

from __future__ import annotations

import asyncio

from kubernetes import client

from tests.support.kube import ensure_namespace, ensure_service_account, service_account_token
from webhook.audit_api import REVIEWS_AT_ONCE, AccessReviewer

NAMESPACE = "audit-access"


def token_of(api: client.ApiClient, account: str) -> str:
    ensure_namespace(api, NAMESPACE)
    ensure_service_account(api, NAMESPACE, account)
    spec = client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    return service_account_token(client.CoreV1Api(api), NAMESPACE, account, spec)


async def test_answers_are_remembered_per_token(api: client.ApiClient) -> None:
    reviewer = AccessReviewer(api)
    token = token_of(api, "curious")
    answers = [await reviewer.review(f"Bearer {token}") for _ in range(5)]
    # A ServiceAccount bound to nothing: authenticated, not allowed.
    assert {a.status for a in answers} == {403}
    assert reviewer.reviews == 1
    assert (await reviewer.review("Bearer not-a-token")).status == 401
    assert reviewer.reviews == 2


async def test_a_burst_of_distinct_callers_is_bounded(api: client.ApiClient) -> None:
    reviewer = AccessReviewer(api)
    tokens = [f"forged-{i}" for i in range(REVIEWS_AT_ONCE * 3)]
    answers = await asyncio.gather(*(reviewer.review(f"Bearer {t}") for t in tokens))
    statuses = [a.status for a in answers]
    assert statuses.count(429) >= len(tokens) - REVIEWS_AT_ONCE
    assert set(statuses) <= {401, 429}
    assert reviewer.reviews <= REVIEWS_AT_ONCE
