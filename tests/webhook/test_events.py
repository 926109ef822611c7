"""Denial Events: the target object, dry runs, and the per-object rate limit (no API calls here;
tests/e2e/test_serve_in_cluster.py sends them to a real API server)."""

from __future__ import annotations

import pytest
from kubernetes import client

from identity.intent import ParsedIntent
from tests.support.manifests import example_pod
from webhook.decision import RequestInfo, Verdict
from webhook.events import DenialEvents, involved_object
from webhook.violations import Violation

DENIED = Verdict(
    allowed=False,
    workload=None,
    intent=ParsedIntent(present=False),
    violations=(Violation(rule="intent-required", message="declare an intent"),),
)


def request(*, dry_run: bool = False) -> RequestInfo:
    return RequestInfo(
        uid="u", operation="CREATE", namespace="ml-serving", name="p", dry_run=dry_run
    )


def test_event_goes_to_the_controller_that_keeps_retrying() -> None:
    pod = example_pod("denied-intent-required")
    pod["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "vllm-7d9",
            "uid": "1",
            "controller": True,
        }
    ]
    assert involved_object("ml-serving", pod) == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "vllm-7d9",
        "uid": "1",
        "namespace": "ml-serving",
    }


def test_a_bare_pod_is_reported_on_its_namespace() -> None:
    target = involved_object("ml-serving", example_pod("denied-intent-required"))
    assert (target["kind"], target["name"], target["namespace"]) == (
        "Namespace",
        "ml-serving",
        "ml-serving",
    )


@pytest.fixture
def events() -> DenialEvents:
    return DenialEvents(client.ApiClient())  # never called: only the queue is inspected


def test_dry_runs_and_allowed_pods_leave_no_event(events: DenialEvents) -> None:
    events.denied(request(dry_run=True), example_pod("denied-intent-required"), DENIED)
    allowed = Verdict(allowed=True, workload=None, intent=ParsedIntent(present=False))
    events.denied(request(), example_pod("allowed-vllm-llama"), allowed)
    assert events._queue.qsize() == 0


def test_one_event_per_object_per_interval(events: DenialEvents) -> None:
    for _ in range(5):
        events.denied(request(), example_pod("denied-intent-required"), DENIED)
    assert events._queue.qsize() == 1
    event = events._queue.get_nowait()
    assert event["reason"] == "AdmissionDenied"
    assert event["type"] == "Warning"
    assert "[intent-required]" in event["message"]
