"""GET /audit/decisions and /audit/decisions/{id}: the audit trail over HTTP for auditors
(`kube-intent audit --server`), authorised by the cluster's RBAC (webhook/audit_api.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from webhook.audit_api import get_decision, list_decisions
from webhook.deps import StateDep

router = APIRouter(prefix="/audit")

# A row id is a signed 64-bit integer in both backends; anything else is a 422, not a 500.
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/decisions")
async def decisions(request: Request, state: StateDep) -> JSONResponse:
    return await list_decisions(request, state.audit_store, state.audit_access)


@router.get("/decisions/{record_id}")
async def decision(request: Request, record_id: RecordId, state: StateDep) -> JSONResponse:
    return await get_decision(request, record_id, state.audit_store, state.audit_access)
