"""Past capacity the webhook refuses the excess at once (429) instead of queueing every review
past the API server's timeout; a pod already through /mutate is finished first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.support.admission import AppClient, post, response_of, review
from tests.support.manifests import example_pod
from webhook.capacity import Capacity
from webhook.metrics import Metrics
from webhook.policy import OpaPolicyEngine, PolicyDecision
from webhook.routes.admission import ERR_AT_CAPACITY


class Held:
    """The real OPA, answering only once released: reviews stay in flight until then."""

    def __init__(self, engine: OpaPolicyEngine) -> None:
        self.engine = engine
        self.revision = engine.revision
        self.release = asyncio.Event()
        self.waiting = 0

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        self.waiting += 1
        await self.release.wait()
        return await self.engine.evaluate(policy_input)

    async def ready(self) -> bool:
        return True

    async def put_agents(self, agents: dict[str, Any]) -> None:
        await self.engine.put_agents(agents)

    async def close(self) -> None:
        pass


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def shed(metrics: Metrics, webhook: str) -> float:
    labels = {"webhook": webhook, "operation": "", "decision": "shed"}
    return metrics.registry.get_sample_value("kube_intent_admission_requests_total", labels) or 0


async def test_the_excess_is_refused_at_once_and_the_rest_is_answered(
    make_client: AppClient, opa: OpaPolicyEngine
) -> None:
    engine, metrics = Held(opa), Metrics()
    pod = example_pod("allowed-vllm-llama")
    async with make_client(policy=engine, metrics=metrics, max_inflight_reviews=2) as client:
        held = [asyncio.create_task(post(client, "/mutate", review(pod))) for _ in range(2)]
        await until(lambda: engine.waiting == 2)

        # Answered now, not held with the others (without shedding this would wait).
        refused = await asyncio.wait_for(post(client, "/mutate", review(pod)), timeout=5)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == ERR_AT_CAPACITY.format(inflight=2)
        assert shed(metrics, "mutate") == 1
        # /validate has twice the room: a pod already mutated is finished, not refused.
        validating = asyncio.create_task(post(client, "/validate", review(pod)))
        await until(lambda: engine.waiting == 3)
        assert shed(metrics, "validate") == 0

        engine.release.set()
        answers: list[httpx.Response] = await asyncio.gather(*held, validating)
        assert all(response_of(a)["allowed"] for a in answers)
        # Below capacity again: reviews are answered as usual.
        assert response_of(await post(client, "/mutate", review(pod)))["allowed"] is True


def busy(seconds: float) -> None:
    """The CPU busy in the loop: nothing else in it runs meanwhile."""
    busy_until = time.perf_counter() + seconds
    while time.perf_counter() < busy_until:
        pass


async def test_a_backlog_is_measured_as_lag() -> None:
    capacity = Capacity(max_in_flight=10, max_lag_seconds=0.1)
    watch = asyncio.create_task(capacity.watch(interval=0.01))
    try:
        await asyncio.sleep(0.05)
        assert not capacity.full()
        for _ in range(3):  # timer after timer fires late: reviews are queueing
            busy(0.2)
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        assert capacity.lag >= 0.15
        assert capacity.full()
        await asyncio.sleep(0.5)  # the loop keeps up again: the lag decays away
        assert not capacity.full()
    finally:
        watch.cancel()


async def test_one_stall_is_not_a_backlog() -> None:
    # A process descheduled once (a CPU limit's throttled period) fires one timer late; refusing
    # reviews for it would fail pods on a webhook that has room.
    capacity = Capacity(max_in_flight=10, max_lag_seconds=0.1)
    watch = asyncio.create_task(capacity.watch(interval=0.01))
    try:
        await asyncio.sleep(0.05)
        busy(0.3)
        for _ in range(10):
            await asyncio.sleep(0.01)
            assert not capacity.full()
    finally:
        watch.cancel()


async def test_while_the_loop_lags_mutate_is_refused_and_validate_finishes_pods(
    make_client: AppClient,
) -> None:
    pod = example_pod("allowed-vllm-llama")
    async with make_client(max_queue_seconds=0.5) as client:
        capacity: Capacity = client._transport.app.state.kube_intent.capacity  # type: ignore[attr-defined]
        capacity.lag = 0.8  # reviews arriving now would wait 0.8 s before being read
        assert (await post(client, "/mutate", review(pod))).status_code == 429
        assert response_of(await post(client, "/validate", review(pod)))["allowed"] is True
        capacity.lag = 0.0
        assert response_of(await post(client, "/mutate", review(pod)))["allowed"] is True


async def test_a_stalled_body_holds_no_slot(make_client: AppClient) -> None:
    # A peer that opens a review and stops sending (no client CA configured) must not be able to
    # fill the slots and have every real review refused.
    stall = asyncio.Event()

    async def stalled_body() -> AsyncIterator[bytes]:
        yield b'{"apiVersion": "admission.k8s.io/v1", '
        await stall.wait()

    pod = example_pod("allowed-vllm-llama")
    async with make_client(max_inflight_reviews=1) as client:
        headers = {"content-type": "application/json"}
        stalled = asyncio.create_task(
            client.post("/mutate", content=stalled_body(), headers=headers)
        )
        await asyncio.sleep(0.1)
        answer = await asyncio.wait_for(post(client, "/mutate", review(pod)), timeout=5)
        assert response_of(answer)["allowed"] is True
        stall.set()
        stalled.cancel()
