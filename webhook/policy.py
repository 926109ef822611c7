"""The policy engine: a real OPA, queried over its REST API with opa-python-client."""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson
from opa_client.opa_async import AsyncOpaClient
from pydantic import BaseModel, Field, ValidationError

from webhook import jsonio
from webhook.incidents import SEE_LOG, report

log = logging.getLogger("kube_intent.policy")

DECISION_PACKAGE = "kube_intent/admission"
DECISION_RULE = "decision"
AGENTS_DATA_PATH = "kube_intent/agents"
JSON_HEADERS = {"Content-Type": "application/json"}
# How much of a refusing OPA's answer goes to the log.
MAX_LOGGED_ANSWER = 2048

# For operators (startup, `kube-intent` commands): names the address.
ERR_UNREACHABLE = "policy engine (OPA at {url}) is unreachable: {detail}"
# For admission answers, which the pod's author reads: no address, no exception; the log has it.
ERR_NO_ANSWER = "policy engine is unreachable or did not answer in time: " + SEE_LOG
ERR_ENGINE_FAILED = "policy engine failed to evaluate the pod (HTTP {status}): " + SEE_LOG
ERR_INPUT_REFUSED = "policy engine refused this pod as input (HTTP {status}): " + SEE_LOG
ERR_INPUT_NOT_DATA = "the pod cannot be evaluated by the policy engine: {detail}"
ERR_UNDEFINED = (
    "policy decision data.kube_intent.admission.decision is undefined: "
    "is the kube_intent.admission package loaded into OPA?"
)
ERR_MALFORMED = "policy decision does not match the contract: {detail}"

Enforcement = Literal["deny", "warn", "dryrun"]


class PolicyUnavailable(Exception):
    """OPA could not give a decision; GPU pods are denied unless fail-open is configured."""


class PolicyInputRejected(Exception):
    """This input cannot be evaluated (OPA answered 4xx, or it is not plain JSON data).

    A bad pod, not an unavailable engine: not a PolicyUnavailable, so fail-open never admits
    it (a pod must not be able to choose the failure mode that lets it in).
    """


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
        return await self._evaluate(policy_input)

    def _failed(self, quiet: bool, message: str, **fields: Any) -> str:
        # The readiness probe fails quietly (while OPA starts, every probe would log a line).
        if quiet:
            return "-"
        return report(log, message, url=self.url, **fields)

    async def _evaluate(
        self, policy_input: dict[str, Any], *, quiet: bool = False
    ) -> PolicyDecision:
        # Checked here too, not only where the webhook parses the body: `kube-intent review`
        # reads YAML (.nan, .inf), and OPA answers 400 to anything but plain JSON.
        try:
            payload = jsonio.dumps_strict({"input": policy_input})
        except jsonio.JsonError as exc:
            raise PolicyInputRejected(ERR_INPUT_NOT_DATA.format(detail=exc)) from None
        client = await self._session()
        url = f"{client.root_url}/data/{DECISION_PACKAGE}/{DECISION_RULE}"
        try:
            # Posted ourselves rather than with query_rule: it serialises with json.dumps (NaN,
            # recursion) and reports every status as a connection error.
            async with client._session.post(url, data=payload, headers=JSON_HEADERS) as response:
                status = response.status
                answer = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            ref = self._failed(quiet, "policy engine unreachable", error=str(exc) or repr(exc))
            raise PolicyUnavailable(ERR_NO_ANSWER.format(ref=ref)) from None
        if status != 200:
            ref = self._failed(
                quiet,
                "policy engine refused the evaluation",
                status=status,
                answer=answer[:MAX_LOGGED_ANSWER].decode("utf-8", "replace"),
            )
            if 400 <= status < 500:
                raise PolicyInputRejected(ERR_INPUT_REFUSED.format(status=status, ref=ref))
            raise PolicyUnavailable(ERR_ENGINE_FAILED.format(status=status, ref=ref))
        try:
            body = orjson.loads(answer)
        except orjson.JSONDecodeError:
            raise PolicyUnavailable(ERR_MALFORMED.format(detail="not JSON")) from None
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
            await self._evaluate({}, quiet=True)
        except (
            TimeoutError,
            PolicyUnavailable,
            PolicyInputRejected,
            aiohttp.ClientError,
            OSError,
            ValueError,
        ):
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
