"""The real OPA in tests: a counting wrapper, policy directories to load, engines around them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from webhook.policy import OpaPolicyEngine, PolicyDecision
from webhook.policy_source import (
    PolicyLoad,
    PolicySource,
)
from webhook.settings import BUNDLED_POLICIES


class Counting:
    """The real OPA, counting the evaluations (and able to pretend another revision loaded)."""

    def __init__(self, engine: OpaPolicyEngine) -> None:
        self.engine = engine
        self.inputs: list[dict[str, Any]] = []
        self.revision_override: str | None = None

    @property
    def revision(self) -> str:
        return self.revision_override or self.engine.revision

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        self.inputs.append(policy_input)
        return await self.engine.evaluate(policy_input)

    async def ready(self) -> bool:
        return await self.engine.ready()

    async def put_agents(self, agents: dict[str, Any]) -> None:
        await self.engine.put_agents(agents)

    async def close(self) -> None:
        pass


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bundle_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(BUNDLED_POLICIES, tmp_path / "policies"))


def set_data(policies: Path, update: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads((policies / "data.json").read_text())
    update(document)
    (policies / "data.json").write_text(json.dumps(document))


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def opa_get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(f"/v1/{path}")
        response.raise_for_status()
        return response.json().get("result")


@contextlib.asynccontextmanager
async def engine_for(
    url: str, source: PolicySource, loads: list[PolicyLoad] | None = None
) -> AsyncIterator[OpaPolicyEngine]:
    engine = OpaPolicyEngine(
        url, 2.0, source=source, on_load=loads.append if loads is not None else None
    )
    try:
        yield engine
    finally:
        await engine.close()
