"""`kube-intent serve`: wire the real parts together and run the HTTPS server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from kubernetes.client import ApiClient
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from identity.exchange import KubeAuth, KubernetesAuth, NoCluster, TokenExchange
from identity.grants import GrantIssuer
from identity.keys import KeyWatcher, ensure_keys
from identity.registry import AgentRegistry, load_registry_file
from identity.watch import AgentWatcher
from webhook.app import create_app
from webhook.audit import AuditLog, open_store
from webhook.audit.checkpoint import make_checkpoint
from webhook.audit_api import AccessReviewer
from webhook.claim_guard import ClaimGuard, KubePods
from webhook.claims import KubeClaimLookup
from webhook.client_auth import ClientCertificates, tracking_protocol
from webhook.eligibility import governed_by, recorded_admissions
from webhook.events import DenialEvents
from webhook.grants import VerdictGrants
from webhook.kube import api_client
from webhook.metrics import Metrics
from webhook.opa_process import policy_engine
from webhook.policy import PolicyEngine, PolicyUnavailable
from webhook.policy_audit import record_policy_loads
from webhook.recorder import AuditRecorder, TokenAuditor
from webhook.reports_publisher import report_publisher
from webhook.settings import Settings
from webhook.tls import CertReloader, cert_not_after, ensure_dev_certificates

log = logging.getLogger("kube_intent.serve")

ERR_AGENTS_AND_CLUSTER = (
    "--agents is for running without a cluster; with --kubeconfig (or in a pod) the Agent "
    "objects of the cluster are the registrations"
)
ERR_TLS = "serving TLS needs --dev or both --tls-cert and --tls-key"
DEV_KEYS_DIR = "keys"
DEV_KEYS_NOTICE = (
    "kube-intent: dev signing keys ({state}; for this machine only, in a cluster mount a "
    "Secret with --keys-dir): {directory} (active kid {kid})"
)
AGENT_SYNC_INTERVAL = 30.0


async def sync_agents(policy: PolicyEngine, agents: Callable[[], AgentRegistry]) -> None:
    """Keep OPA's data.kube_intent.agents current, also after an OPA restart (kube-mgmt style)."""
    while True:
        with contextlib.suppress(PolicyUnavailable):
            await policy.put_agents(agents().to_data())
        await asyncio.sleep(AGENT_SYNC_INTERVAL)


def run(settings: Settings) -> None:
    """`kube-intent serve`: serve() on uvloop (libuv: about half the per-request loop cost)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))


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


def freeze_startup_heap() -> None:
    """Keep what startup built (modules, the app, pydantic schemas, policies) out of the
    cyclic GC: a full collection walks every tracked object, and over that heap it stalled the
    event loop (every request in flight) for about 80 ms; what requests allocate is still
    collected."""
    gc.collect()
    gc.freeze()


def tls_files(settings: Settings) -> tuple[str, str]:
    if settings.dev:
        dev = ensure_dev_certificates(settings.state_dir / "tls", [settings.host])
        print(f"kube-intent: dev CA certificate: {dev.ca_cert}", file=sys.stderr, flush=True)
        return str(dev.cert), str(dev.key)
    if settings.tls_cert is None or settings.tls_key is None:
        raise SystemExit(ERR_TLS)
    return str(settings.tls_cert), str(settings.tls_key)


def signing_keys(settings: Settings) -> KeyWatcher | None:
    """The signing keys: --keys-dir (a mounted Secret) when given; with --dev and none, a set
    generated once in the state dir and reused on every restart (so grants, the JWKS and
    /token work on the embedded default, and grants minted before a restart still verify)."""
    directory = settings.keys_dir
    if directory is None and settings.dev:
        directory = settings.state_dir / DEV_KEYS_DIR
        keyset, generated = ensure_keys(directory)
        state = "generated" if generated else "reused"
        notice = DEV_KEYS_NOTICE.format(state=state, directory=directory, kid=keyset.signing_kid)
        print(notice, file=sys.stderr, flush=True)
    return KeyWatcher(directory) if directory is not None else None


def token_review(api: ApiClient | None) -> KubeAuth:
    """The API server that checks subject tokens; without one, /token says it needs one."""
    return KubernetesAuth(api) if api is not None else NoCluster()


@dataclass(slots=True)
class Registrations:
    """Where agent registrations come from: the cluster's Agents (watched) or a file."""

    source: Callable[[], AgentRegistry]
    claims: KubeClaimLookup | None = None
    watcher: AgentWatcher | None = None

    @property
    def ready_checks(self) -> tuple[Callable[[], bool], ...]:
        return (self.watcher.synced.is_set,) if self.watcher else ()


def registrations(settings: Settings, api: ApiClient | None, policy: PolicyEngine) -> Registrations:
    if api is None:
        registry = load_registry_file(settings.agents) if settings.agents else AgentRegistry()
        return Registrations(source=lambda: registry)
    if settings.agents is not None:
        raise SystemExit(ERR_AGENTS_AND_CLUSTER)
    watcher = AgentWatcher(api, on_change=lambda registry: policy.put_agents(registry.to_data()))
    return Registrations(source=watcher, claims=KubeClaimLookup(api), watcher=watcher)


async def log_checkpoints(audit: AuditLog, keys: KeyWatcher, settings: Settings) -> None:
    """A signed checkpoint of the chain's head in the log: the log pipeline keeps it off-box."""
    while True:
        await asyncio.sleep(settings.audit_checkpoint_seconds)
        try:
            token = await make_checkpoint(audit.store, keys(), settings.issuer)
        except Exception as exc:  # best effort; the next tick tries again
            log.warning("audit checkpoint failed: %s", exc)
            continue
        if token is not None:
            log.info("audit checkpoint", extra={"fields": {"checkpoint": token}})


def client_tls(settings: Settings, certificates: ClientCertificates) -> dict[str, Any]:
    """uvicorn options that ask for (not require) a client certificate from the client CA."""
    if settings.client_ca is None:
        if not settings.trust_unauthenticated_admissions:
            log.warning(
                "no --client-ca: admission callers are not authenticated, so no pod is eligible "
                "for tokens (configure mutual TLS, or --trust-unauthenticated-admissions)"
            )
        return {}
    return {
        "ssl_ca_certs": str(settings.client_ca),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "http": tracking_protocol(AutoHTTPProtocol, certificates),
    }


def token_audiences(settings: Settings) -> Callable[[], frozenset[str]] | None:
    allowed = frozenset(settings.token_audiences)
    return (lambda: allowed) if allowed else None


async def serve(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    cert, key = tls_files(settings)
    keys = signing_keys(settings)
    metrics = Metrics(max_namespaces=settings.metrics_max_namespaces)
    async with policy_engine(
        settings.opa_url,
        settings.policies,
        extra=settings.extra_policies,
        opa_bin=settings.opa_bin,
        request_timeout=settings.opa_timeout_seconds,
        reload_seconds=settings.policy_reload_seconds,
    ) as policy:
        api = api_client(settings.kubeconfig)
        agents = registrations(settings, api, policy)
        audit = AuditLog(
            await open_store(settings.audit_dsn, lazy=not settings.audit_required),
            required=settings.audit_required,
        )
        record_policy_loads(policy, audit)  # every policy load is an audit row
        events = DenialEvents(api) if api is not None else None
        grants = tokens = None
        if keys is not None:
            grants = VerdictGrants(
                GrantIssuer(
                    keys,
                    settings.issuer,
                    settings.token_endpoint,
                    policy_revision=lambda: policy.revision,
                    on_mint=lambda _claims: metrics.grants_issued.inc(),
                )
            )
        if keys is not None:
            tokens = TokenExchange(
                keys,
                settings.issuer,
                token_review(api),
                agents.source,
                token_endpoint=settings.token_endpoint,
                on_event=TokenAuditor(audit, metrics),
                audiences=token_audiences(settings),
                admitted=recorded_admissions(
                    audit.store,
                    trust_unauthenticated=settings.trust_unauthenticated_admissions,
                ),
                governed=governed_by(settings.accelerator_detector, agents.claims),
            )
        client_certificates = ClientCertificates(settings.client_cert_names)
        app = create_app(
            settings,
            policy=policy,
            registry=agents.source,
            metrics=metrics,
            recorder=AuditRecorder(audit, metrics, lambda: policy.revision),
            claims=agents.claims,
            ready_checks=agents.ready_checks,
            grants=grants,
            keys=keys,
            tokens=tokens,
            events=events,
            audit_store=audit.store,
            audit_access=AccessReviewer(api) if api is not None else None,
            claim_guard=ClaimGuard(KubePods(api) if api is not None else None, audit.store, audit),
            client_certificates=client_certificates,
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
            # serve() runs on the loop run() made; uvicorn reads this only in its own run().
            # The HTTP parser ("auto", or client_tls's wrapper of AutoHTTPProtocol) is
            # httptools, a dependency like uvloop.
            loop="uvloop",
            **client_tls(settings, client_certificates),
        )
        config.load()
        assert isinstance(config.ssl, ssl.SSLContext)
        reloader = CertReloader(config.ssl, Path(cert), Path(key), settings.tls_reload_seconds)
        metrics.cert_expiry.set_function(lambda: cert_not_after(reloader.cert).timestamp())
        background = [reloader.run(), sync_agents(policy, agents.source)]
        if agents.watcher is not None:
            background.append(agents.watcher.run())
        if events is not None:
            background.append(events.run())
        if keys is not None:
            background.append(log_checkpoints(audit, keys, settings))
        reports = report_publisher(
            settings.reports,
            api,
            audit.store,
            max_results=settings.reports_max_results,
            interval_seconds=settings.reports_interval_seconds,
            registry=metrics.registry,
        )
        if reports is not None:
            background.append(reports.run())
        tasks = [asyncio.create_task(job) for job in background]
        log.info(
            "serving on https://%s:%s (policies %s, OPA %s, revision %s)",
            settings.host,
            settings.port,
            policy.source,
            policy.url,
            policy.revision,
        )
        freeze_startup_heap()
        try:
            await run_until_signalled(_Server(config))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await audit.close()
