"""`kube-intent serve`: wire the real parts together and run the HTTPS server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from identity.registry import AgentRegistry, load_registry_file
from webhook.app import create_app
from webhook.audit import AuditLog, open_store
from webhook.audit.recorder import AuditRecorder
from webhook.metrics import Metrics
from webhook.opa_process import policy_engine
from webhook.policy import PolicyEngine, PolicyUnavailable
from webhook.settings import Settings
from webhook.tls import CertReloader, cert_not_after, ensure_dev_certificates

log = logging.getLogger("kube_intent.serve")

ERR_TLS = "serving TLS needs --dev or both --tls-cert and --tls-key"
AGENT_SYNC_INTERVAL = 30.0


class AgentSource:
    """The current registrations; replaced whole when the file changes (read without locks)."""

    def __init__(self, registry: AgentRegistry) -> None:
        self.current = registry

    def __call__(self) -> AgentRegistry:
        return self.current


async def sync_agents(policy: PolicyEngine, agents: AgentSource) -> None:
    """Keep OPA's data.kube_intent.agents current, also after an OPA restart (kube-mgmt style)."""
    while True:
        with contextlib.suppress(PolicyUnavailable):
            await policy.put_agents(agents().to_data())
        await asyncio.sleep(AGENT_SYNC_INTERVAL)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM once it has shut down, which would kill the process
        # before our cleanup (stopping OPA) runs; serve() installs its own handlers instead.
        yield


async def run_until_signalled(server: uvicorn.Server) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    try:
        await server.serve()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def tls_files(settings: Settings) -> tuple[str, str]:
    if settings.dev:
        dev = ensure_dev_certificates(settings.state_dir / "tls", [settings.host])
        print(f"kube-intent: dev CA certificate: {dev.ca_cert}", file=sys.stderr, flush=True)
        return str(dev.cert), str(dev.key)
    if settings.tls_cert is None or settings.tls_key is None:
        raise SystemExit(ERR_TLS)
    return str(settings.tls_cert), str(settings.tls_key)


async def serve(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    cert, key = tls_files(settings)
    agents = AgentSource(
        load_registry_file(settings.agents) if settings.agents else AgentRegistry()
    )

    metrics = Metrics()
    tasks: list[asyncio.Task[None]] = []
    async with policy_engine(
        settings.opa_url,
        settings.policies,
        opa_bin=settings.opa_bin,
        request_timeout=settings.opa_timeout_seconds,
    ) as policy:
        audit = AuditLog(
            await open_store(settings.audit_dsn, lazy=not settings.audit_required),
            required=settings.audit_required,
        )
        recorder = AuditRecorder(audit, metrics, lambda: policy.revision)
        try:
            app = create_app(
                settings, policy=policy, registry=agents, metrics=metrics, recorder=recorder
            )
            config = uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                ssl_certfile=cert,
                ssl_keyfile=key,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
            )
            config.load()
            assert isinstance(config.ssl, ssl.SSLContext)
            reloader = CertReloader(config.ssl, Path(cert), Path(key), settings.tls_reload_seconds)
            metrics.cert_expiry.set_function(lambda: cert_not_after(reloader.cert).timestamp())
            tasks = [
                asyncio.create_task(reloader.run(), name="cert-reloader"),
                asyncio.create_task(sync_agents(policy, agents), name="agent-sync"),
            ]
            log.info(
                "serving on https://%s:%s (policies %s, OPA %s, revision %s)",
                settings.host,
                settings.port,
                settings.policies,
                policy.url,
                policy.revision,
            )
            await run_until_signalled(_Server(config))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await audit.close()
