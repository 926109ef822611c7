"""Run and supervise a local OPA server on loopback (the default when no --opa-url is given)."""

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
from collections.abc import AsyncIterator
from pathlib import Path

from webhook.policy import OpaPolicyEngine, PolicyUnavailable
from webhook.settings import PACKAGE_ROOT

log = logging.getLogger("kube_intent.opa")

ERR_NO_BINARY = (
    "no OPA binary: pass --opa-bin, put opa on PATH, or run scripts/tools.sh opa "
    "(builds the pinned version into .tools/bin)"
)
ERR_NOT_READY = (
    "OPA at {url} did not become ready: check that {policies} holds a valid policy bundle "
    "(kube-intent policy test {policies})"
)
READY_TIMEOUT_SECONDS = 30.0
PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the webhook dies, even by SIGKILL (Linux prctl)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def find_opa(explicit: str | None = None) -> str:
    candidates = [explicit, str(PACKAGE_ROOT / ".tools" / "bin" / "opa"), shutil.which("opa")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(ERR_NO_BINARY)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OpaProcess:
    """`opa run --server` on 127.0.0.1, restarted with backoff if it dies, stopped on exit."""

    def __init__(self, binary: str, policies: Path, *, watch: bool = False) -> None:
        self.binary = binary
        self.policies = policies
        self.watch = watch
        self.port = free_port()
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        argv = [
            self.binary,
            "run",
            "--server",
            f"--addr=127.0.0.1:{self.port}",
            "--skip-version-check",
            "--log-level=error",
        ]
        if self.watch:
            argv.append("--watch")
        return [*argv, str(self.policies)]

    async def _spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self._argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.info("started OPA pid=%s on %s", self._process.pid, self.url)

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
            self.restarts += 1
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
    opa_url: str | None, policies: Path, *, opa_bin: str | None = None, request_timeout: float = 1.0
) -> AsyncIterator[OpaPolicyEngine]:
    """An OPA to ask: the one at `opa_url`, or a supervised local one loading `policies`."""
    process: OpaProcess | None = None
    if opa_url is None:
        process = OpaProcess(find_opa(opa_bin), policies)
        await process.start()
        opa_url = process.url
    engine = OpaPolicyEngine(opa_url, request_timeout)
    try:
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_SECONDS
        while not await engine.ready():
            if asyncio.get_running_loop().time() > deadline:
                raise PolicyUnavailable(ERR_NOT_READY.format(url=opa_url, policies=policies))
            await asyncio.sleep(0.05)
        yield engine
    finally:
        await engine.close()
        if process is not None:
            await process.stop()
