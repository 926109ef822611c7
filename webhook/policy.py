"""The policy engine: a real OPA, queried over its REST API with opa-python-client."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from opa_client.opa_async import AsyncOpaClient
from pydantic import BaseModel, Field, ValidationError

from identity import jsonio
from webhook.incidents import SEE_LOG, report
from webhook.policy_source import (
    AGENTS_PATH,
    MARKER_PATH,
    MODULE_PREFIX,
    RESERVED_DATA,
    Module,
    PolicyError,
    PolicyLoad,
    PolicySet,
    PolicySource,
)
from webhook.violations import Violation

log = logging.getLogger("kube_intent.policy")

DECISION_PACKAGE = "kube_intent/admission"
DECISION_RULE = "decision"
AGENTS_DATA_PATH = AGENTS_PATH
JSON = "application/json"
JSON_HEADERS = {"Content-Type": JSON}
# A push compiles the whole policy set in OPA (a few hundred ms for the bundle).
PUSH_TIMEOUT_SECONDS = 30.0
MAX_REPORTED_ERRORS = 20
_T = TypeVar("_T")
# Where a file with a syntax error is parsed alone (see _Push._parse_errors).
SCRATCH_PACKAGE = "kube_intent_scratch.parse_check"
SCRATCH_MODULE = "kube-intent-scratch/parse-check"
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
ERR_REFUSED = "OPA refused the policies ({sources}); revision {revision} was not loaded:\n{errors}"


class PolicyUnavailable(Exception):
    """OPA could not give a decision; GPU pods are denied unless fail-open is configured."""


class PolicyInputRejected(Exception):
    """This input cannot be evaluated (OPA answered 4xx, or it is not plain JSON data).

    A bad pod, not an unavailable engine: not a PolicyUnavailable, so fail-open never admits
    it (a pod must not be able to choose the failure mode that lets it in).
    """


class PolicyDecision(BaseModel):
    allowed: bool
    violations: list[Violation] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    grant_ttl_seconds: int = 0


class PolicyEngine(Protocol):
    revision: str

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision: ...

    async def ready(self) -> bool: ...

    async def put_agents(self, agents: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class PolicyLoadError(PolicyUnavailable):
    """A policy set was refused: bad Rego or data (the message names the file and line).

    Raised only by loading, never by an evaluation. The set OPA held before stays loaded.
    """


# Called with every load, accepted or refused (the audit trail can record them).
LoadHook = Callable[[PolicyLoad], Awaitable[None] | None]


class _Gate:
    """Evaluations share OPA; a push has it alone, so no decision sees half a policy set and the
    revision recorded with a decision is the one that decided."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight = 0
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return not self._open.is_set()

    async def enter(self, seconds: float) -> None:
        if not self._open.is_set():
            async with asyncio.timeout(seconds):
                # Re-checked after every wake-up: another push may have closed it again.
                while not self._open.is_set():
                    await self._open.wait()
        self._inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._lock:
            self._open.clear()
            try:
                await self._idle.wait()
                yield
            finally:
                self._open.set()


class _Refused(Exception):
    """OPA answered 4xx to a push: `errors` as it reported them."""

    def __init__(self, what: str, status: int, errors: list[dict[str, Any]], message: str) -> None:
        super().__init__(message)
        self.what = what
        self.status = status
        self.errors = errors


class OpaPolicyEngine:
    """Async OPA client: one pooled HTTP session for the life of the process.

    With a `source` the engine owns OPA's policies (kube-mgmt style): it pushes the policy set
    through OPA's REST API (one module per Rego package, PUT /v1/policies; the data documents,
    PUT /v1/data), records its revision, pushes again when the directories change or when OPA
    lost them (a restarted OPA starts empty), and is ready only while OPA holds what it pushed.
    """

    def __init__(
        self,
        url: str,
        timeout_seconds: float = 1.0,
        *,
        source: PolicySource | None = None,
        on_load: LoadHook | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        self.revision = "unknown"
        self.timeout_seconds = timeout_seconds
        self.source = source
        self.on_load = on_load
        # The set OPA was last seen to accept, and why the last load failed (if it did).
        self.loaded: PolicySet | None = None
        self.last_error: str | None = None
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
        self._seen: str | None = None  # fingerprint of the files last loaded or refused
        self._agents: dict[str, Any] | None = None
        self._gate = _Gate()
        self._wake = asyncio.Event()
        self._sync_problem: str | None = None

    async def _session(self) -> AsyncOpaClient:
        if not self._session_ready:
            await self._client._init_session()
            self._session_ready = True
        return self._client

    async def evaluate(self, policy_input: dict[str, Any]) -> PolicyDecision:
        await self._enter(quiet=False)
        try:
            return await self._evaluate(policy_input)
        finally:
            self._gate.leave()

    async def _enter(self, *, quiet: bool) -> None:
        try:
            await self._gate.enter(self.timeout_seconds)
        except TimeoutError:
            ref = self._failed(quiet, "policy engine busy loading policies")
            raise PolicyUnavailable(ERR_NO_ANSWER.format(ref=ref)) from None

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
            # A restarted OPA starts empty: have the keeper push the policies again now.
            self._wake.set()
            raise PolicyUnavailable(ERR_UNDEFINED)
        try:
            return PolicyDecision.model_validate(body["result"])
        except ValidationError as exc:
            raise PolicyUnavailable(ERR_MALFORMED.format(detail=exc.errors()[0]["msg"])) from None

    async def ready(self) -> bool:
        """Ready when OPA holds the policy set last pushed and the decision is defined.

        A push in progress is waited for (up to the OPA timeout), not reported as unready: a
        routine reload must not take the webhook out of its Service.
        """
        if self.source is not None and self.loaded is None:
            return False
        try:
            await self._enter(quiet=True)
            try:
                if self.loaded is not None:
                    marker = await self._marker(self.timeout_seconds)
                    if marker.get("revision") != self.loaded.revision:
                        self._wake.set()  # OPA lost them (restarted): push again now
                        return False
                await self._evaluate({}, quiet=True)
            finally:
                self._gate.leave()
        except (
            TimeoutError,
            PolicyUnavailable,
            PolicyInputRejected,
            aiohttp.ClientError,
            OSError,
            ValueError,
        ):
            return False
        return True

    async def put_agents(self, agents: dict[str, Any]) -> None:
        # Remembered: pushed again with the policies when OPA restarted empty.
        self._agents = agents
        client = await self._session()
        try:
            await client.update_or_create_data(agents, AGENTS_DATA_PATH)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PolicyUnavailable(ERR_UNREACHABLE.format(url=self.url, detail=exc)) from None

    async def close(self) -> None:
        await self._client.close_connection()
        self._session_ready = False

    # -- loading the policy set ------------------------------------------------------------------

    def wake(self) -> None:
        """Have `keep` check now (the supervisor calls it when it restarted OPA)."""
        self._wake.set()

    async def load(self, reason: str = "change") -> PolicySet:
        """Push the policy directories into OPA unless it already holds them as they are on disk.

        Raises PolicyLoadError when the set was refused (the message names file and line; the
        set loaded before stays), PolicyUnavailable when OPA did not answer (try again).
        """
        if self.source is None:
            raise PolicyLoadError("this policy engine has no policy directories to load")
        previous = self.loaded.revision if self.loaded else None
        try:
            snapshot = self.source.snapshot()
        except PolicyError as exc:
            refused = PolicyLoad("", previous, reason, self.source.sources, (), str(exc))
            await self._refused(None, refused)
            raise PolicyLoadError(str(exc)) from None
        except OSError as exc:
            # A file removed or replaced while it was read: the next tick retries.
            raise PolicyUnavailable(f"cannot read the policies ({self.source}): {exc}") from None
        if snapshot.fingerprint == self._seen:
            # Unchanged since the last load: its answer again (a refusal is not retried).
            if self.last_error is not None or self.loaded is None:
                raise PolicyLoadError(self.last_error or f"no policies loaded from {self.source}")
            return self.loaded
        try:
            candidate = snapshot.build()
        except PolicyError as exc:
            refused = PolicyLoad(
                "", previous, reason, self.source.sources, snapshot.files, str(exc)
            )
            await self._refused(snapshot.fingerprint, refused)
            raise PolicyLoadError(str(exc)) from None
        if self.loaded is not None and candidate.revision == self.loaded.revision:
            self._seen = snapshot.fingerprint
            self.last_error = None
            return self.loaded
        try:
            await self._push(candidate, reason)
        except PolicyLoadError as exc:
            refused = PolicyLoad(
                candidate.revision, previous, reason, candidate.sources, candidate.files, str(exc)
            )
            await self._refused(snapshot.fingerprint, refused)
            raise
        self._seen = snapshot.fingerprint
        self.last_error = None
        return candidate

    async def _refused(self, fingerprint: str | None, load: PolicyLoad) -> None:
        if load.error == self.last_error and fingerprint == self._seen:
            return  # already said (a missing directory has no fingerprint to remember)
        self._seen = fingerprint  # not retried until the files change again
        self.last_error = load.error
        log.error(
            "policies refused",
            extra={
                "fields": {
                    "error": load.error,
                    "candidate": load.revision,
                    "revision": self.revision,
                    "reason": load.reason,
                    "sources": list(load.sources),
                }
            },
        )
        await self._notify(load)

    async def sync(self) -> None:
        """One round of `keep`: push changed files, or the loaded set again if OPA lost it."""
        try:
            # A refusal is logged with the file and line; the loaded set stays.
            with contextlib.suppress(PolicyLoadError):
                await self.load("change")
            if self.loaded is not None:
                marker = await self._marker(self.timeout_seconds)
                if marker.get("revision") != self.loaded.revision:
                    log.warning(
                        "OPA does not hold the policies (restarted?): pushing them again",
                        extra={"fields": {"revision": self.loaded.revision}},
                    )
                    await self._push(self.loaded, "opa-restart")
        except PolicyLoadError as exc:  # the set OPA accepted before, refused now
            log.error("policies not pushed again: %s", exc)
        except (PolicyUnavailable, ValueError) as exc:
            # Once per distinct problem: while OPA restarts, every tick would log it.
            if str(exc) != self._sync_problem:
                log.warning("policies not synced: %s", exc)
            self._sync_problem = str(exc)
            return
        self._sync_problem = None

    async def keep(self, interval: float) -> None:
        """Poll the policy directories every `interval` seconds (and OPA's copy); runs until
        cancelled. `wake()` makes it check at once."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await self.sync()
            except Exception:  # the keeper must outlive any one bad round
                log.exception("policy sync failed")

    async def _notify(self, load: PolicyLoad) -> None:
        if self.on_load is None:
            return
        try:
            result = self.on_load(load)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a hook never stops policies from loading
            log.exception("policy load hook failed")

    async def _push(self, candidate: PolicySet, reason: str) -> None:
        previous = self.loaded.revision if self.loaded else None
        async with self._gate.exclusive():
            marker = await self._marker(PUSH_TIMEOUT_SECONDS)
            if marker.get("revision") != candidate.revision:
                held = (
                    self.loaded
                    if self.loaded is not None and marker.get("revision") == self.loaded.revision
                    else None
                )
                await _Push(self, candidate, held, marker).run()
            # else OPA holds this very set (the webhook restarted next to a running sidecar).
            self.loaded = candidate
            self.revision = candidate.revision
        log.info(
            "policies loaded",
            extra={
                "fields": {
                    "revision": candidate.revision,
                    "previous": previous,
                    "reason": reason,
                    "sources": list(candidate.sources),
                    "modules": [m.id for m in candidate.modules],
                    "data": sorted(candidate.data),
                    "files": len(candidate.files),
                }
            },
        )
        await self._notify(
            PolicyLoad(candidate.revision, previous, reason, candidate.sources, candidate.files)
        )

    async def _marker(self, seconds: float) -> dict[str, Any]:
        """What the webhook last pushed into this OPA ({} for an OPA that starts empty)."""
        status, answer = await self._call("GET", f"data/{MARKER_PATH}", seconds=seconds)
        if status != 200:
            raise PolicyUnavailable(
                ERR_UNREACHABLE.format(url=self.url, detail=f"HTTP {status} reading the policies")
            )
        result = orjson.loads(answer).get("result")
        return result if isinstance(result, dict) else {}

    async def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = "application/json",
        seconds: float = PUSH_TIMEOUT_SECONDS,
    ) -> tuple[int, bytes]:
        client = await self._session()
        try:
            async with client._session.request(
                method,
                f"{client.root_url}/{path}",
                data=body,
                headers={"Content-Type": content_type} if body is not None else None,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = str(exc) or repr(exc)
            raise PolicyUnavailable(ERR_UNREACHABLE.format(url=self.url, detail=detail)) from None


class _Push:
    """One push of a policy set, undone step by step if OPA refuses part of it.

    Every step OPA accepted compiled, so replaying the undo list backwards passes through states
    OPA accepted before and ends where it started. The marker (data.kube_intent.loaded) is
    cleared first and written last: a push cut short (OPA gone) leaves an unready engine, never a
    half-new set that looks loaded.
    """

    def __init__(
        self,
        engine: OpaPolicyEngine,
        new: PolicySet,
        held: PolicySet | None,
        marker: dict[str, Any],
    ) -> None:
        self.engine = engine
        self.new = new
        self.marker = marker
        self.old_modules = {m.id: m.text for m in held.modules} if held else {}
        self.old_data = dict(held.data) if held else {}
        self.undo: list[tuple[str, str, bytes | None, str]] = []

    def _listed(self, key: str) -> set[str]:
        value = self.marker.get(key)
        return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()

    async def run(self) -> None:
        new_ids = {m.id for m in self.new.modules}
        stale_ids = {
            i
            for i in self._listed("modules") | set(self.old_modules)
            if i.startswith(MODULE_PREFIX) and i not in new_ids
        }
        stale_paths = {
            p
            for p in self._listed("data") | set(self.old_data)
            if p not in self.new.data and p not in RESERVED_DATA
        }
        opa_was_empty = not self.marker
        try:
            await self._marker(
                {
                    "revision": None,
                    "modules": sorted(new_ids | stale_ids),
                    "data": sorted(set(self.new.data) | stale_paths),
                }
            )
            changed = [m for m in self.new.modules if self.old_modules.get(m.id) != m.text]
            await self._until_settled(changed, self._put_module)
            await self._until_settled(sorted(stale_ids), self._delete_module)
            for path, value in sorted(self.new.data.items()):
                if path not in self.old_data or self.old_data[path] != value:
                    await self._put_data(path, value)
            for path in sorted(stale_paths):
                await self._delete_data(path)
        except _Refused as exc:
            await self._rollback()
            errors = await self._parse_errors(exc) or [self._where(e, exc.what) for e in exc.errors]
            raise PolicyLoadError(self._explain(exc, errors)) from None
        if opa_was_empty and self.engine._agents is not None:
            await self._send("PUT", f"data/{AGENTS_DATA_PATH}", orjson.dumps(self.engine._agents))
        await self._send(
            "PUT",
            f"data/{MARKER_PATH}",
            orjson.dumps(
                {
                    "revision": self.new.revision,
                    "modules": sorted(new_ids),
                    "data": sorted(self.new.data),
                }
            ),
        )

    async def _until_settled(
        self, items: Sequence[_T], step: Callable[[_T], Awaitable[None]]
    ) -> None:
        """Apply `step` to every item, retrying refused ones while others get through (a package
        may need another one pushed or deleted first)."""
        pending = list(items)
        while pending:
            refused: list[tuple[_T, _Refused]] = []
            for item in pending:
                try:
                    await step(item)
                except _Refused as exc:
                    refused.append((item, exc))
            if not refused:
                return
            if len(refused) == len(pending):
                raise _Refused(
                    refused[0][1].what,
                    refused[0][1].status,
                    [e for _, exc in refused for e in exc.errors],
                    "; ".join(str(exc) for _, exc in refused),
                )
            pending = [item for item, _ in refused]

    async def _put_module(self, module: Module) -> None:
        path = f"policies/{quote(module.id, safe='/')}"
        await self._send("PUT", path, module.text.encode(), what=module.id, text=True)
        old = self.old_modules.get(module.id)
        if old is None:
            self.undo.append(("DELETE", path, None, ""))
        else:
            self.undo.append(("PUT", path, old.encode(), "text/plain"))

    async def _delete_module(self, module_id: str) -> None:
        path = f"policies/{quote(module_id, safe='/')}"
        await self._send("DELETE", path, what=module_id)
        old = self.old_modules.get(module_id)
        if old is not None:
            self.undo.append(("PUT", path, old.encode(), "text/plain"))

    async def _put_data(self, path: str, value: Any) -> None:
        await self._send("PUT", f"data/{path}", orjson.dumps(value), what=f"data.{path}")
        if path in self.old_data:
            self.undo.append(("PUT", f"data/{path}", orjson.dumps(self.old_data[path]), JSON))
        else:
            self.undo.append(("DELETE", f"data/{path}", None, ""))

    async def _delete_data(self, path: str) -> None:
        await self._send("DELETE", f"data/{path}", what=f"data.{path}")
        if path in self.old_data:
            self.undo.append(("PUT", f"data/{path}", orjson.dumps(self.old_data[path]), JSON))

    async def _marker(self, value: dict[str, Any]) -> None:
        await self._send("PUT", f"data/{MARKER_PATH}", orjson.dumps(value))
        if self.marker:
            self.undo.append(("PUT", f"data/{MARKER_PATH}", orjson.dumps(self.marker), JSON))
        else:
            self.undo.append(("DELETE", f"data/{MARKER_PATH}", None, ""))

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        what: str = "",
        text: bool = False,
    ) -> None:
        status, answer = await self.engine._call(
            method, path, body, content_type="text/plain" if text else JSON
        )
        if status < 300 or (method == "DELETE" and status == 404):
            return
        if 400 <= status < 500:
            try:
                document = orjson.loads(answer)
            except orjson.JSONDecodeError:
                document = {}
            errors = document.get("errors") if isinstance(document, dict) else None
            message = document.get("message", "") if isinstance(document, dict) else ""
            raise _Refused(
                what or path,
                status,
                [e for e in errors or [] if isinstance(e, dict)],
                str(message) or answer[:MAX_LOGGED_ANSWER].decode("utf-8", "replace"),
            )
        raise PolicyUnavailable(
            ERR_UNREACHABLE.format(
                url=self.engine.url,
                detail=f"HTTP {status} for {method} /v1/{path}: "
                + answer[:MAX_LOGGED_ANSWER].decode("utf-8", "replace"),
            )
        )

    async def _rollback(self) -> None:
        for method, path, body, content_type in reversed(self.undo):
            try:
                status, _ = await self.engine._call(
                    method, path, body, content_type=content_type or JSON
                )
            except PolicyUnavailable as exc:
                log.error("policy rollback failed: %s", exc)
                return
            if status >= 300 and not (method == "DELETE" and status == 404):
                log.error(
                    "policy rollback step refused",
                    extra={"fields": {"step": f"{method} /v1/{path}", "status": status}},
                )

    def _where(self, error: dict[str, Any], what: str) -> str:
        """`error` as "file:line:col: code: message", with the file the line came from."""
        location = error.get("location")
        where = what
        if isinstance(location, dict):
            module = self.new.module(str(location.get("file")))
            row, col = location.get("row"), location.get("col")
            if module is not None and isinstance(row, int):
                where = module.where(row, col if isinstance(col, int) else 0)
            elif location.get("file"):
                where = f"{location.get('file')}:{row}"
        code = f"{error['code']}: " if error.get("code") else ""
        return f"{where}: {code}{error.get('message', '')}"

    async def _parse_errors(self, refused: _Refused) -> list[str]:
        """Syntax errors, each in the file that has it.

        The parser of a module made of several files may stop in a later file than the one
        with the unclosed bracket or string, so every file of that module is parsed alone: OPA
        is given it under a scratch package (line for line), which answers a syntax error, or
        compiles it (then it is removed again) or fails to compile it without its package.
        """
        modules = {
            str(e["location"].get("file"))
            for e in refused.errors
            if e.get("code") == "rego_parse_error" and isinstance(e.get("location"), dict)
        }
        found: list[str] = []
        for module_id in sorted(modules):
            module = self.new.module(module_id)
            if module is None or len(module.parts) < 2:
                continue
            for part in module.parts:
                lines = part.text.split("\n")
                lines[part.package_line] = f"package {SCRATCH_PACKAGE}"
                path = f"policies/{SCRATCH_MODULE}"
                status, answer = await self.engine._call(
                    "PUT", path, "\n".join(lines).encode(), content_type="text/plain"
                )
                if status < 300:
                    await self.engine._call("DELETE", path)
                    continue
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    for error in orjson.loads(answer).get("errors") or []:
                        location = error.get("location") or {}
                        if error.get("code") == "rego_parse_error":
                            where = f"{part.file}:{location.get('row')}"
                            found.append(f"{where}: rego_parse_error: {error.get('message')}")
        return found

    def _explain(self, refused: _Refused, errors: list[str]) -> str:
        lines: list[str] = []
        for line in errors:
            if line not in lines:
                lines.append(line)
        if not lines:
            lines.append(f"{refused.what}: {refused}")
        shown = lines[:MAX_REPORTED_ERRORS]
        if len(lines) > len(shown):
            shown.append(f"... and {len(lines) - len(shown)} more")
        return ERR_REFUSED.format(
            revision=self.new.revision,
            sources=", ".join(self.new.sources),
            errors="\n".join(f"  {line}" for line in shown),
        )
