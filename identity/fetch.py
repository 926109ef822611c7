"""`kube-intent token fetch`: exchange the pod's mounted SA token and grant for an access token.

Runs in the agent's container (or a sidecar): reads the two files the webhook mounted, POSTs
an RFC 8693 form to the token endpoint, writes the access token to a file (0600, replaced
atomically so a reader never sees half a token) or to stdout, and refreshes it at 80% of its
lifetime. The files are re-read for every exchange because the kubelet rotates the
ServiceAccount token.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from identity.exchange import GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_GRANT, TOKEN_TYPE_JWT
from identity.keys import write_private
from identity.verify import tls_context

log = logging.getLogger("kube_intent.fetch")

REFRESH_FRACTION = 0.8
MIN_REFRESH_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0

ERR_READ = "cannot read {what} {path}: {detail}"
ERR_EMPTY = "{what} {path} is empty"
ERR_REFUSED = "the token endpoint refused the exchange (HTTP {status}): {error}: {description}"
ERR_RESPONSE = "the token endpoint sent an unusable response (HTTP {status}): {detail}"
ERR_TRANSPORT = "cannot reach the token endpoint {url}: {detail}"


class FetchError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class FetchSettings:
    endpoint: str
    token_file: Path
    grant_file: Path
    audience: str
    scope: str | None = None
    out: Path | None = None  # None: stdout
    ca_file: Path | None = None
    timeout: float = REQUEST_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: str = field(repr=False)
    expires_in: int
    scope: str


def _read(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FetchError(ERR_READ.format(what=what, path=path, detail=exc.strerror)) from None
    if not value:
        raise FetchError(ERR_EMPTY.format(what=what, path=path))
    return value


def build_form(settings: FetchSettings) -> dict[str, str]:
    form = {
        "grant_type": GRANT_TYPE_TOKEN_EXCHANGE,
        "subject_token": _read(settings.token_file, "ServiceAccount token file"),
        "subject_token_type": TOKEN_TYPE_JWT,
        "actor_token": _read(settings.grant_file, "grant file"),
        "actor_token_type": TOKEN_TYPE_GRANT,
        "audience": settings.audience,
    }
    if settings.scope:
        form["scope"] = settings.scope
    return form


def parse_response(response: httpx.Response) -> TokenResponse:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise FetchError(
                ERR_REFUSED.format(
                    status=response.status_code,
                    error=body["error"],
                    description=body.get("error_description", ""),
                )
            )
        raise FetchError(ERR_RESPONSE.format(status=response.status_code, detail="not OAuth JSON"))
    if not isinstance(body, dict):
        raise FetchError(ERR_RESPONSE.format(status=200, detail="not a JSON object"))
    token, expires_in = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not token:
        raise FetchError(ERR_RESPONSE.format(status=200, detail="no access_token"))
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        raise FetchError(ERR_RESPONSE.format(status=200, detail="no positive expires_in"))
    if str(body.get("token_type", "")).lower() != "bearer":
        raise FetchError(ERR_RESPONSE.format(status=200, detail="token_type is not Bearer"))
    return TokenResponse(token, expires_in, str(body.get("scope", "")))


async def fetch_once(settings: FetchSettings, client: httpx.AsyncClient) -> TokenResponse:
    form = build_form(settings)
    try:
        response = await client.post(
            settings.endpoint,
            data=form,
            headers={"Accept": "application/json"},
            timeout=settings.timeout,
        )
    except httpx.HTTPError as exc:
        raise FetchError(
            ERR_TRANSPORT.format(url=settings.endpoint, detail=type(exc).__name__)
        ) from None
    return parse_response(response)


def write_token(path: Path, token: str) -> None:
    """0600, through a temporary file in the same directory and a rename."""
    write_private(Path(path), token.encode("utf-8"))


def refresh_delay(expires_in: int) -> float:
    return max(MIN_REFRESH_SECONDS, expires_in * REFRESH_FRACTION)


def deliver(settings: FetchSettings, token: TokenResponse, stdout: TextIO) -> None:
    if settings.out is None:
        stdout.write(token.access_token + "\n")
        stdout.flush()
    else:
        write_token(settings.out, token.access_token)


def client_for(settings: FetchSettings) -> httpx.AsyncClient:
    try:
        context = tls_context(settings.ca_file)
    except OSError as exc:
        raise FetchError(
            ERR_READ.format(what="CA file", path=settings.ca_file, detail=exc)
        ) from None
    return httpx.AsyncClient(verify=context, follow_redirects=False)


async def run(
    settings: FetchSettings,
    *,
    once: bool,
    client: httpx.AsyncClient | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stdout: TextIO | None = None,
    max_rounds: int | None = None,
) -> None:
    """Fetch, deliver, sleep until 80% of the lifetime, repeat; `once` raises on failure.

    A failed refresh is retried with exponential backoff (1s .. 60s); the last token stays in
    place meanwhile, since it may still be valid.
    """
    out = stdout or sys.stdout
    owned = client is None
    http = client or client_for(settings)
    backoff = MIN_REFRESH_SECONDS
    rounds = 0
    try:
        while max_rounds is None or rounds < max_rounds:
            rounds += 1
            try:
                token = await fetch_once(settings, http)
            except FetchError as exc:
                if once:
                    raise
                log.warning("token fetch failed, retrying in %.0fs: %s", backoff, exc)
                await sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            deliver(settings, token, out)
            log.info(
                "access token written to %s, expires in %ss",
                settings.out or "stdout",
                token.expires_in,
            )
            if once:
                return
            backoff = MIN_REFRESH_SECONDS
            await sleep(refresh_delay(token.expires_in))
    finally:
        if owned:
            await http.aclose()
