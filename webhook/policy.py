"""The policy engine: a real OPA, queried over its REST API with opa-python-client."""

from __future__ import annotations

import hashlib
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
from opa_client.opa_async import AsyncOpaClient
from pydantic import BaseModel, Field, ValidationError

DECISION_PACKAGE = "kube_intent/admission"
DECISION_RULE = "decision"
AGENTS_DATA_PATH = "kube_intent/agents"

ERR_UNREACHABLE = "policy engine (OPA at {url}) is unreachable: {detail}"
ERR_UNDEFINED = (
    "policy decision data.kube_intent.admission.decision is undefined: "
    "is the kube_intent.admission package loaded into OPA?"
)
ERR_MALFORMED = "policy decision does not match the contract: {detail}"

Enforcement = Literal["deny", "warn", "dryrun"]


class PolicyUnavailable(Exception):
    """OPA could not give a decision; GPU pods are denied unless fail-open is configured."""


class Violation(BaseModel):
    rule: str
    message: str
    enforcement: Enforcement = "deny"
    field: str = ""

    def __str__(self) -> str:
        # "[rule] field: message": the rule, the field, and in the policy's words what is allowed.
        where = f"{self.field}: " if self.field and self.field not in self.message else ""
        return f"[{self.rule}] {where}{self.message}"


class PolicyDecision(BaseModel):
    allowed: bool
    violations: list[Violation] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    grant_ttl_seconds: int = 0

    def with_enforcement(self, override: Enforcement | None) -> PolicyDecision:
        """Apply the global enforcement override (staged rollout of a whole policy set)."""
        if override is None:
            return self
        violations = [v.model_copy(update={"enforcement": override}) for v in self.violations]
        return self.model_copy(
            update={
                "violations": violations,
                "allowed": all(v.enforcement != "deny" for v in violations),
            }
        )


class PolicyEngine(Protocol):
    revision: str

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision: ...

    async def ready(self) -> bool: ...

    async def put_agents(self, agents: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class OpaPolicyEngine:
    """Async OPA client: one pooled HTTP session for the life of the process."""

    def __init__(self, url: str, timeout_seconds: float = 1.0) -> None:
        parts = urlsplit(url)
        self.url = url
        self.revision = "unknown"
        # No client-side retries: the API server's webhook timeout is short, and an
        # unreachable OPA must turn into a clear denial quickly.
        self._client = AsyncOpaClient(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (443 if parts.scheme == "https" else 8181),
            ssl=parts.scheme == "https",
            retries=0,
            timeout=timeout_seconds,
        )
        self._session_ready = False

    async def _session(self) -> AsyncOpaClient:
        if not self._session_ready:
            await self._client._init_session()
            self._session_ready = True
        return self._client

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        client = await self._session()
        try:
            body = await client.query_rule(policy_input, DECISION_PACKAGE, DECISION_RULE)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PolicyUnavailable(
                ERR_UNREACHABLE.format(url=self.url, detail=str(exc) or type(exc).__name__)
            ) from None
        if not isinstance(body, dict) or "result" not in body:
            raise PolicyUnavailable(ERR_UNDEFINED)
        try:
            return PolicyDecision.model_validate(body["result"])
        except ValidationError as exc:
            raise PolicyUnavailable(ERR_MALFORMED.format(detail=exc.errors()[0]["msg"])) from None

    async def ready(self) -> bool:
        """Ready when OPA answers, policies are loaded and the decision is defined."""
        client = await self._session()
        try:
            # GET /v1/policies carries each module's source; opa-python-client only exposes
            # ids and rule names, so read it through the client's own pooled session.
            async with client._session.get(f"{client.root_url}/policies") as response:
                response.raise_for_status()
                modules = (await response.json()).get("result") or []
            await self.evaluate({})
        except (TimeoutError, PolicyUnavailable, aiohttp.ClientError, OSError, ValueError):
            return False
        if not modules:
            return False
        self.revision = _revision(modules)
        return True

    async def put_agents(self, agents: dict[str, Any]) -> None:
        client = await self._session()
        try:
            await client.update_or_create_data(agents, AGENTS_DATA_PATH)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PolicyUnavailable(ERR_UNREACHABLE.format(url=self.url, detail=exc)) from None

    async def close(self) -> None:
        await self._client.close_connection()
        self._session_ready = False


def _revision(modules: list[dict[str, Any]]) -> str:
    """A short digest of the loaded policy sources: recorded with every decision."""
    digest = hashlib.sha256()
    # Sources only, not ids: ids are file paths, which differ between checkouts and pods.
    for raw in sorted(str(module.get("raw")) for module in modules):
        digest.update(raw.encode() + b"\0")
    return digest.hexdigest()[:12]
