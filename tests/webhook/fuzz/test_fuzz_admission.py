"""Structure-aware fuzzing of /mutate and /validate: the real app, a real OPA, real SQLite audit.

Every answer, for any body, must be: not a 5xx; a well-formed AdmissionReview response (or a
JSON error with a 4xx when no uid can be read); free of internals (exception names, paths,
the OPA address); bounded in size. A GPU pod is never admitted unless the policy really
admits it and its intent really is valid (no fail-open), and every denial of a pod that went
through the decision path leaves exactly one audit row (none on dry-run).

The short run is part of the normal suite (about 2,000 examples, fixed seed). The long run:

    KUBE_INTENT_FUZZ_EXAMPLES=100000 .venv/bin/pytest tests/webhook/fuzz -q -p no:cacheprovider

gives each test that many examples with a random seed; a failure prints the example and a
`@reproduce_failure` blob to replay it.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from identity.intent import INTENT_ANNOTATION
from tests.support.fuzz import Target
from tests.webhook.fuzz import oracle
from tests.webhook.fuzz.strategies import (
    admission_reviews,
    corrupted_bodies,
    encode,
    intent_reviews,
)
from webhook.admission import MAX_WARNINGS
from webhook.policy import DECISION_PACKAGE, DECISION_RULE

EXAMPLES_ENV = "KUBE_INTENT_FUZZ_EXAMPLES"
_LONG_RUN = os.environ.get(EXAMPLES_ENV)
WEBHOOKS = st.sampled_from(["/mutate", "/validate"])


def budget(short_run: int) -> settings:
    return settings(
        max_examples=int(_LONG_RUN) if _LONG_RUN else short_run,
        # The normal suite replays the same examples every time: no flaky new finds in CI.
        derandomize=_LONG_RUN is None,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def _request(body: bytes) -> dict[str, Any]:
    document = oracle.decoded(body)
    request = document.get("request") if isinstance(document, dict) else None
    return request if isinstance(request, dict) else {}


def _hygiene(text: str, body: bytes, target: Target) -> None:
    problems = oracle.hygiene_problems(text, body.decode("utf-8", "replace"), target.opa.url)
    assert not problems, (problems, text[:2000])


async def _policy_allows(target: Target, policy_input: dict[str, Any]) -> bool:
    """Ask OPA itself, over its REST API, bypassing the webhook's client."""
    url = f"{target.opa.url}/v1/data/{DECISION_PACKAGE}/{DECISION_RULE}"
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(url, json={"input": policy_input})
    answer.raise_for_status()
    return answer.json()["result"]["allowed"] is True


def _decided_pod(webhook: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """The pod when the request must have been decided by policy if it was admitted."""
    kind = request.get("kind")
    pod = request.get("object")
    if (
        kind != {"group": "", "version": "v1", "kind": "Pod"}
        or request.get("subResource", "") not in ("", "ephemeralcontainers")
        or request.get("operation") not in ("CREATE", "UPDATE")
        # /mutate lets UPDATEs through untouched: /validate pins the governed fields.
        or (webhook == "/mutate" and request.get("operation") != "CREATE")
        or not isinstance(pod, dict)
    ):
        return None
    return pod


async def exchange(target: Target, webhook: str, body: bytes) -> None:
    http = await target.client.post(
        webhook, content=body, headers={"content-type": "application/json"}
    )
    rows = await target.new_rows()
    assert http.status_code < 500, http.text[:2000]
    if http.status_code != 200:
        event(f"HTTP {http.status_code}")
        assert http.status_code in (400, 413), http.status_code
        error = http.json()["error"]
        assert isinstance(error, str)
        _hygiene(error, body, target)
        assert rows == [], "an unreadable request left an audit row"
        return

    document = http.json()
    assert document["apiVersion"] == "admission.k8s.io/v1"
    assert document["kind"] == "AdmissionReview"
    response = document["response"]
    request = _request(body)
    assert isinstance(response["uid"], str)
    assert response["uid"] == request.get("uid")
    assert isinstance(response["allowed"], bool)
    warnings = response.get("warnings", [])
    assert len(warnings) <= MAX_WARNINGS
    for warning in warnings:
        _hygiene(warning, body, target)
    dry_run = request.get("dryRun") is True

    if not response["allowed"]:
        status = response["status"]
        # `--hypothesis-show-statistics` shows what the examples reached.
        rules = sorted({r.rule for row in rows for r in row.violations if r.enforcement == "deny"})
        event(f"denied {status['code']} {' '.join(rules)[:60]}")
        assert status["code"] in (400, 403), status
        _hygiene(status["message"], body, target)
        if status["code"] == 403 and not dry_run:
            # Decided (policy, limits, unreadable resources or an internal error): audited once.
            assert [(r.uid, r.allowed) for r in rows] == [(response["uid"], False)], rows
        else:
            assert rows == [], "a request answered 400, or a dry run, left an audit row"
        return

    pod = _decided_pod(webhook, request)
    event(f"allowed {'by policy' if pod is not None else 'without a decision'}")
    if pod is None:
        return
    try:
        workload = target.detector.detect(pod, None, namespace=str(request.get("namespace")))
    except Exception as exc:  # the webhook must have refused a pod it cannot read
        pytest.fail(f"admitted a pod whose resources cannot be read: {exc}")
    if not workload.gpu:
        return
    # No fail-open: an admitted GPU pod has a valid intent, and OPA itself admits it.
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    assert oracle.reference_intent_valid(annotations.get(INTENT_ANNOTATION)), annotations
    if webhook == "/validate" and not dry_run:
        [row] = rows
        assert row.allowed
        assert row.uid == response["uid"]
        assert row.input is not None
        assert await _policy_allows(target, row.input)


@budget(short_run=1000)
@given(body=admission_reviews(), webhook=WEBHOOKS)
async def test_mutated_reviews(target: Target, body: dict[str, Any], webhook: str) -> None:
    await exchange(target, webhook, encode(body))


@budget(short_run=600)
@given(body=intent_reviews(), webhook=WEBHOOKS)
async def test_hostile_intents(target: Target, body: dict[str, Any], webhook: str) -> None:
    await exchange(target, webhook, encode(body))


@budget(short_run=400)
@given(body=corrupted_bodies(), webhook=WEBHOOKS)
async def test_corrupted_bodies(target: Target, body: bytes, webhook: str) -> None:
    await exchange(target, webhook, body)
