"""Probes and metrics: /healthz (the process answers), /readyz (it can decide), /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.deps import MetricsDep, PolicyDep, StateDep

NOT_READY_POLICY = "policy engine not ready"
NOT_READY_AGENTS = "agent registrations not synced yet"

router = APIRouter()


@router.get("/healthz")
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")


@router.get("/readyz")
async def readyz(policy: PolicyDep, state: StateDep) -> PlainTextResponse:
    if not await policy.ready():
        return PlainTextResponse(NOT_READY_POLICY, status_code=503)
    if not all(check() for check in state.ready_checks):
        return PlainTextResponse(NOT_READY_AGENTS, status_code=503)
    return PlainTextResponse("ok")


@router.get("/metrics")
async def metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
