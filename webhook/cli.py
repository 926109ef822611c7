"""The `kube-intent` command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from identity.cli import keys as keys_group
from identity.cli import token as token_group
from identity.intent import schema
from identity.registry import AgentRegistry, RegistryError, load_registry_file
from webhook.audit.store import AuditStore
from webhook.audit_cli import audit, build_filter, default_db, matching, run
from webhook.decision import Decider
from webhook.opa_process import find_opa, policy_engine
from webhook.policy import PolicyUnavailable
from webhook.policy_source import PolicyError, PolicySource
from webhook.replay import ReplayReport, replay
from webhook.review import ReviewInputError, render_json, render_text, review_files
from webhook.settings import Settings

EXIT_DENIED = 1
EXIT_BAD_INPUT = 2


def _settings(**overrides: Any) -> Settings:
    # Flags win over KUBE_INTENT_* variables, which win over defaults.
    return Settings(**{key: value for key, value in overrides.items() if value not in (None, ())})


policies_option = click.option(
    "--policies",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Rego policy directory [default: the bundled policies/]",
)
agents_option = click.option(
    "--agents",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML file of Agent registrations (used without a cluster)",
)
opa_url_option = click.option(
    "--opa-url", default=None, help="push the policies into this OPA instead of starting one"
)
extra_policies_option = click.option(
    "--extra-policies",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="an operator's Rego and data, loaded with the policies (data merged over theirs) "
    "and reloaded when changed [KUBE_INTENT_EXTRA_POLICIES]",
)
opa_bin_help = "OPA binary for the local subprocess [KUBE_INTENT_OPA_BIN; default: opa on PATH]"


@click.group()
@click.version_option(package_name="kube-intent")
def main() -> None:
    """Admission control for AI agents' GPU inference pods."""


@main.command()
@click.option(
    "--dev",
    is_flag=True,
    default=None,
    help="self-signed CA and serving certificate in the state dir",
)
@click.option("--host", default=None, help="listen address [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="listen port [default: 8443]")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="certificates, keys, audit.db",
)
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path), default=None)
@click.option(
    "--client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="mutual TLS: /mutate and /validate accept only callers with a client certificate "
    "from this CA (the API server's AdmissionConfiguration) [KUBE_INTENT_CLIENT_CA]",
)
@click.option(
    "--client-cert-name",
    "client_cert_names",
    multiple=True,
    default=None,
    help="mutual TLS: the client certificate must name one of these (CN or SAN); repeatable "
    "[KUBE_INTENT_CLIENT_CERT_NAMES]",
)
@click.option(
    "--trust-unauthenticated-admissions",
    is_flag=True,
    default=None,
    help="issue tokens for pods admitted by callers without a client certificate (only "
    "where the API server cannot present one; rely on a NetworkPolicy) "
    "[KUBE_INTENT_TRUST_UNAUTHENTICATED_ADMISSIONS]",
)
@policies_option
@extra_policies_option
@agents_option
@opa_url_option
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="watch Agents and resolve DRA claims in this cluster",
)
@click.option("--opa-bin", default=None, help=opa_bin_help)
@click.option(
    "--keys-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="signing keys (a mounted Secret): enables grants and /token",
)
@click.option("--issuer", default=None, help="grant and token issuer URL")
@click.option("--trust-domain", default=None, help="SPIFFE trust domain [default: cluster.local]")
@click.option(
    "--enforcement",
    type=click.Choice(["deny", "warn", "dryrun"]),
    default=None,
    help="override every rule's enforcement (roll a policy out in dryrun first)",
)
@click.option(
    "--fail-open", is_flag=True, default=None, help="admit GPU pods when OPA cannot answer"
)
@click.option("--log-level", default=None)
def serve(**options: Any) -> None:
    """Run the admission webhook (HTTPS)."""
    from webhook.logs import configure
    from webhook.serve import run

    settings = _settings(**options)
    configure(settings.log_level)
    try:
        run(settings)  # on uvloop
    except (RegistryError, FileNotFoundError, PolicyUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@policies_option
@extra_policies_option
@agents_option
@opa_url_option
@click.option(
    "--namespace", default="default", show_default=True, help="namespace for objects without one"
)
@click.option("--trust-domain", default=None)
@click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def review(
    files: tuple[Path, ...],
    policies: Path | None,
    extra_policies: Path | None,
    agents: Path | None,
    opa_url: str | None,
    namespace: str,
    trust_domain: str | None,
    output: str,
) -> None:
    """Decide offline: Pods, workload templates, custom resources and AdmissionReviews.

    Exit status: 0 all allowed, 1 any denied, 2 bad input.
    """
    settings = _settings(
        policies=policies,
        extra_policies=extra_policies,
        agents=agents,
        opa_url=opa_url,
        trust_domain=trust_domain,
    )
    try:
        registry = load_registry_file(settings.agents) if settings.agents else AgentRegistry()
        results = asyncio.run(_review(settings, registry, list(files), namespace))
    except (ReviewInputError, RegistryError, FileNotFoundError, PolicyUnavailable) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(render_json(results) if output == "json" else render_text(results))
    sys.exit(0 if all(r.allowed for r in results) else EXIT_DENIED)


async def _review(
    settings: Settings, registry: AgentRegistry, files: list[Path], namespace: str
) -> Any:
    async with policy_engine(
        settings.opa_url,
        settings.policies,
        extra=settings.extra_policies,
        opa_bin=settings.opa_bin,
    ) as policy:
        await policy.put_agents(registry.to_data())
        decider = Decider(
            detector=settings.accelerator_detector,
            registry=lambda: registry,
            policy=policy,
            trust_domain=settings.trust_domain,
            enforcement=settings.enforcement,
        )
        return await review_files(files, decider, namespace)


@main.group()
def intent() -> None:
    """The intent annotation (kube-intent.io/intent)."""


@intent.command("schema")
def intent_schema() -> None:
    """Print the intent's JSON Schema."""
    click.echo(json.dumps(schema(), indent=2))


@main.group()
def policy() -> None:
    """Rego policies."""


@policy.command("test")
@click.argument(
    "directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--extra-policies",
    "extra",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="an operator's extra directory, tested together with DIRECTORY as serve loads them",
)
@click.option("--opa-bin", default=None, help=opa_bin_help)
@click.option("--verbose", "-v", is_flag=True)
def policy_test(
    directory: Path | None, extra: Path | None, opa_bin: str | None, verbose: bool
) -> None:
    """Check (strict) and unit-test policies with the real OPA, then load them as serve does.

    DIRECTORY defaults to the bundled policies (webhook/policies). With --extra-policies, the
    two are checked as one set (the extra data merged over DIRECTORY's) and the extra
    directory's own *_test.rego run against it.
    """
    main_dir = directory or Settings().policies
    try:
        opa = find_opa(opa_bin)
        with tempfile.TemporaryDirectory(prefix="kube-intent-policy-") as scratch:
            target = str(main_dir)
            if extra is not None:
                # One tree with the data merged as the webhook merges it.
                PolicySource.of(main_dir, extra).write_tree(Path(scratch))
                target = scratch
            steps = [
                [opa, "check", "--strict", target],
                [opa, "test", target, *(["-v"] if verbose else [])],
            ]
            for argv in steps:
                click.echo(f"$ opa {' '.join(argv[1:])}", err=True)
                code = subprocess.run(argv, check=False).returncode
                if code != 0:
                    sys.exit(code)
        click.echo("$ (push into a fresh OPA, as kube-intent serve does)", err=True)
        revision = asyncio.run(_load_policies(main_dir, extra, opa))
    except (FileNotFoundError, PolicyError, PolicyUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"policies load: revision {revision}", err=True)


async def _load_policies(directory: Path, extra: Path | None, opa: str) -> str:
    async with policy_engine(None, directory, extra=extra, opa_bin=opa) as engine:
        return engine.revision


@policy.command("replay")
@click.option(
    "--policies",
    "candidate",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="the candidate policy directory",
)
@click.option("--since", default="7d", show_default=True, help="duration ago (7d, 12h) or ISO time")
@click.option("--until", default=None)
@click.option("--db", default=None, help="audit store [default: audit.db in the state dir]")
@click.option("--opa-bin", default=None)
@click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def policy_replay(
    candidate: Path, since: str, until: str | None, db: str | None, opa_bin: str | None, output: str
) -> None:
    """Re-decide recorded admissions with a candidate policy: what would change, per rule."""
    query = build_filter({"kind": "admission", "since": since, "until": until})

    async def action(store: AuditStore) -> ReplayReport:
        records = [r async for r in matching(store, query, None, order="asc")]
        async with policy_engine(None, candidate, opa_bin=opa_bin) as engine:
            return await replay(records, engine)

    try:
        report = run(db or default_db(), action)
    except (FileNotFoundError, PolicyUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report.to_json(), indent=2) if output == "json" else report.render())


main.add_command(audit)
main.add_command(keys_group)
main.add_command(token_group)

if __name__ == "__main__":  # pragma: no cover
    main()
