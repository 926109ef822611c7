"""Fixtures of the webhook tests: an empty OPA server, as the chart's sidecar starts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from tests.support.opa import eventually
from webhook.opa_process import OpaProcess


@pytest_asyncio.fixture
async def opa_server(opa_bin: str) -> AsyncIterator[OpaProcess]:
    """An empty OPA, as the chart's sidecar starts (and restarts)."""
    process = OpaProcess(opa_bin)
    await process.start()

    async def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{process.url}/health")).status_code == 200
        return False

    await eventually(healthy)
    yield process
    await process.stop()
