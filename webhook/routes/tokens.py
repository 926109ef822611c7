"""POST /token (the grant exchange) and the documents verifiers read: JWKS and discovery."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from identity.exchange import (
    DETAIL_TOO_LARGE,
    JWKS_PATH,
    MAX_FORM_BYTES,
    NO_STORE_HEADERS,
    OPENID_CONFIGURATION_PATH,
    Refusal,
    openid_configuration,
)
from webhook.deps import KeysDep, SettingsDep, TokensDep
from webhook.routes.body import BodyTooLarge, read_body

log = logging.getLogger("kube_intent.app")

ERR_NO_KEYS = "no signing keys configured (--keys-dir)"

router = APIRouter()


@router.get(JWKS_PATH)
async def jwks(keys: KeysDep) -> Response:
    if keys is None:
        return JSONResponse({"error": ERR_NO_KEYS}, status_code=404)
    # Verifiers may cache it: a key is published (as next) long before it signs.
    return JSONResponse(keys().jwks(), headers={"Cache-Control": "max-age=300"})


@router.get(OPENID_CONFIGURATION_PATH)
async def discovery(settings: SettingsDep) -> Response:
    return JSONResponse(openid_configuration(settings.issuer, settings.token_endpoint))


@router.post("/token")
async def token(request: Request, tokens: TokensDep) -> Response:
    if tokens is None:
        return _refused(Refusal("temporarily_unavailable", "disabled", status=503))
    try:
        body = await read_body(request, MAX_FORM_BYTES)
    except BodyTooLarge:
        return _refused(Refusal("invalid_request", "too-large", detail=DETAIL_TOO_LARGE))
    except ClientDisconnect:
        log.info("client disconnected before sending the whole token request")
        return Response(status_code=400)
    content_type = request.headers.get("content-type", "")
    status, payload = await tokens.exchange_body(content_type, body)
    return JSONResponse(payload, status_code=status, headers=NO_STORE_HEADERS)


def _refused(refusal: Refusal) -> Response:
    return JSONResponse(refusal.body(), status_code=refusal.status, headers=NO_STORE_HEADERS)
