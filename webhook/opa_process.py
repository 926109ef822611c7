"""Run and supervise a local OPA server on loopback (the default when no --opa-url is given),
and `policy_engine`: an OPA (local or the chart's sidecar) with the policy set pushed into it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from webhook.policy import LoadHook, OpaPolicyEngine, PolicyLoadError, PolicyUnavailable
from webhook.policy_source import PolicyError, PolicySource

log = logging.getLogger("kube_intent.opa")

OPA_BIN_ENV = "KUBE_INTENT_OPA_BIN"
ERR_NO_BINARY = (
    "no OPA binary: pass --opa-bin, set KUBE_INTENT_OPA_BIN, or put opa on PATH "
    "(in a checkout, scripts/tools.sh opa builds the pinned version into .tools/bin)"
)
ERR_NOT_EXECUTABLE = "OPA binary {path} (from {origin}) is not an executable file"
ERR_NOT_READY = (
    "OPA at {url} did not become ready with the policies of {source}: {detail} "
    "(check them with kube-intent policy test)"
)
READY_TIMEOUT_SECONDS = 30.0
UNDEFINED_GRACE_SECONDS = 3.0
PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the webhook dies, even by SIGKILL (Linux prctl)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def find_opa(explicit: str | None = None) -> str:
    """--opa-bin, else $KUBE_INTENT_OPA_BIN, else `opa` on PATH (a name is looked up on PATH)."""
    for value, origin in ((explicit, "--opa-bin"), (os.environ.get(OPA_BIN_ENV), OPA_BIN_ENV)):
        if value:
            found = shutil.which(value)
            if found is None:
                raise FileNotFoundError(ERR_NOT_EXECUTABLE.format(path=value, origin=origin))
            return found
    found = shutil.which("opa")
    if found is None:
        raise FileNotFoundError(ERR_NO_BINARY)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OpaProcess:
    """`opa run --server` on 127.0.0.1, restarted with backoff if it dies, stopped on exit.

    It starts with no policies: the webhook pushes them (`on_spawn` tells it OPA is new).
    """

    def __init__(self, binary: str, *, on_spawn: Callable[[], None] | None = None) -> None:
        self.binary = binary
        self.on_spawn = on_spawn
        self.port = free_port()
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "run",
            "--server",
            f"--addr=127.0.0.1:{self.port}",
            "--skip-version-check",
            "--log-level=error",
        ]

    async def _spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self._argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.info("started OPA pid=%s on %s", self._process.pid, self.url)
        if self.on_spawn is not None:
            self.on_spawn()

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="opa-supervisor")

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            delay = RESTART_BACKOFF_SECONDS[min(failures, len(RESTART_BACKOFF_SECONDS) - 1)]
            log.warning("OPA exited with %s; restarting in %.1fs", code, delay)
            failures += 1
            await asyncio.sleep(delay)
            await self._spawn()

    def kill(self) -> None:
        """Kill the current OPA process (the supervisor restarts it); used by tests."""
        if self._process and self._process.returncode is None:
            self._process.kill()

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        process = self._process
        if process and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def policy_engine(
    opa_url: str | None,
    policies: Path | None = None,
    *,
    extra: Path | None = None,
    opa_bin: str | None = None,
    request_timeout: float = 1.0,
    reload_seconds: float | None = None,
    on_load: LoadHook | None = None,
) -> AsyncIterator[OpaPolicyEngine]:
    """An OPA to ask, with the policy set pushed into it: the OPA at `opa_url` (the chart's
    sidecar), or a supervised local one. `policies` defaults to the bundled set; `extra` adds an
    operator's directory. With `reload_seconds`, a background task pushes again when the files
    change or OPA lost them (restarted), until the context exits.

    A policy set OPA refuses raises PolicyLoadError naming the file and line.
    """
    try:
        source = PolicySource.of(policies, extra)
    except PolicyError as exc:
        raise PolicyLoadError(str(exc)) from None
    process: OpaProcess | None = None
    if opa_url is None:
        process = OpaProcess(find_opa(opa_bin))
        await process.start()
        opa_url = process.url
    engine = OpaPolicyEngine(opa_url, request_timeout, source=source, on_load=on_load)
    if process is not None:
        # A restarted OPA is empty: push at once rather than at the next poll.
        process.on_spawn = engine.wake
    keeper: asyncio.Task[None] | None = None
    try:
        await _first_load(engine, source)
        if reload_seconds:
            keeper = asyncio.create_task(engine.keep(reload_seconds), name="policy-keeper")
        yield engine
    finally:
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await engine.close()
        if process is not None:
            await process.stop()


async def _first_load(engine: OpaPolicyEngine, source: PolicySource) -> None:
    """Push the policies and wait until the engine is ready (OPA may still be starting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_SECONDS
    detail = "it did not answer"
    loaded_at: float | None = None
    while True:
        try:
            await engine.load("startup")
            if await engine.ready():
                return
            detail = "data.kube_intent.admission.decision is undefined or not a decision"
            loaded_at = loaded_at or loop.time()
        except PolicyLoadError:
            raise
        except PolicyUnavailable as exc:
            detail = str(exc)
        # Loaded but no decision: not something waiting fixes.
        if loop.time() > deadline or (
            loaded_at is not None and loop.time() - loaded_at > UNDEFINED_GRACE_SECONDS
        ):
            raise PolicyUnavailable(
                ERR_NOT_READY.format(url=engine.url, source=source, detail=detail)
            )
        await asyncio.sleep(0.05)
