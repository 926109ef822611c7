"""The `kube-intent` command line.

`--help` must answer at once: this module imports only click and the settings, and every
command imports what it runs (the kubernetes client, FastAPI, uvicorn, aiohttp) inside its body.
The `audit` group lives in webhook/audit_cli.py and is imported only when it is run.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import typing
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.shell_completion import get_completion_class
from pydantic import ValidationError
from pydantic_settings import SettingsError

from identity.cli import keys as keys_group
from identity.cli import token as token_group
from webhook.settings import Settings

if TYPE_CHECKING:
    from identity.registry import AgentRegistry
    from webhook.review import Prepared, ReviewReport

EXIT_DENIED = 1
EXIT_BAD_INPUT = 2

PROG = "kube-intent"
ENV_PREFIX = "KUBE_INTENT_"
# click's shell completion: the variable its generated scripts set to ask the program.
COMPLETE_VAR = "_KUBE_INTENT_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
# webhook.review.COLOR_CHOICES (a test holds them equal): importing webhook.review here would
# import the whole decision path (aiohttp, FastAPI) just to print --help.
COLOR_CHOICES = ("auto", "always", "never")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}

ERR_SETTING = "{name}: {problem} (set by {flag} or {variable})"
ERR_SETTING_SOURCE = (
    '{variable} cannot be read ({detail}): a list is JSON, e.g. {variable}=\'["a", "b"]\''
)
ERR_UNKNOWN_SETTING = "no Settings field {name!r}: setting_option() builds flags for fields only"

# The flag of each list setting is singular and repeatable (--token-audience A --token-audience B).
LIST_FLAGS = {
    "client_cert_names": "--client-cert-name",
    "token_audiences": "--token-audience",
    "accelerator_resources": "--accelerator-resource",
    "accelerator_device_classes": "--accelerator-device-class",
    "accelerator_runtime_classes": "--accelerator-runtime-class",
    "accelerator_device_env": "--accelerator-device-env",
    "accelerator_device_host_paths": "--accelerator-device-host-path",
    "accelerator_sharing_annotations": "--accelerator-sharing-annotation",
    "accelerator_device_annotations": "--accelerator-device-annotation",
}
# Paths that must exist when given (a typo is a usage error, exit 2, not a failed start).
EXISTING_FILES = ("tls_cert", "tls_key", "client_ca", "agents", "kubeconfig", "audit_db_file")
EXISTING_DIRS = ("policies", "extra_policies", "keys_dir")
# What --help says for defaults that are not worth printing as they are.
DEFAULT_TEXT = {"policies": "the bundled policies (webhook/policies)"}
CHOICES: dict[str, click.ParamType[Any, Any]] = {
    "log_level": click.Choice(LOG_LEVELS, case_sensitive=False)
}


def env_var(name: str) -> str:
    """The environment variable of the Settings field `name`."""
    return f"{ENV_PREFIX}{name.upper()}"


def flag_name(name: str) -> str:
    return LIST_FLAGS.get(name, "--" + name.replace("_", "-"))


def _default_text(name: str, default: Any) -> str | None:
    if name in DEFAULT_TEXT:
        return DEFAULT_TEXT[name]
    if default is None:
        return None
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        return ", ".join(default) if default else "none"
    if default == "":
        return '""'
    return str(default)


def setting_help(name: str) -> str:
    """A field's description, then its variable and default, as every flag's help ends."""
    field = Settings.model_fields[name]
    notes = [f"env: {env_var(name)}" + (" (a JSON list)" if _is_list(name) else "")]
    default = _default_text(name, field.default)
    if default is not None:
        notes.append(f"default: {default}")
    repeat = "; repeatable" if _is_list(name) else ""
    return f"{field.description}{repeat} [{'; '.join(notes)}]"


def _is_list(name: str) -> bool:
    return typing.get_origin(Settings.model_fields[name].annotation) is tuple


def _click_type(name: str) -> click.ParamType[Any, Any] | type | None:
    """The click type of a field's annotation (`X | None` is X: None means "not given")."""
    if name in CHOICES:
        return CHOICES[name]
    annotation = Settings.model_fields[name].annotation
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = members[0] if typing.get_origin(annotation) is not None and members else annotation
    if typing.get_origin(base) is typing.Literal:
        return click.Choice([str(value) for value in typing.get_args(base)])
    if base is Path:
        return click.Path(
            exists=name in EXISTING_FILES + EXISTING_DIRS,
            dir_okay=name not in EXISTING_FILES,
            file_okay=name not in EXISTING_DIRS,
            path_type=Path,
        )
    if base in (int, float):
        return typing.cast(type, base)
    return None  # str, and the items of a list


def setting_option(name: str, *decls: str, **overrides: Any) -> Callable[[Any], Any]:
    """A click option for the Settings field `name`: its type, help, variable and default come
    from the field, so that a flag and its KUBE_INTENT_* variable cannot drift apart.

    The option's value is None (or () for a list) when not given, so `_settings` leaves the
    variable, or the field's default, in force.
    """
    if name not in Settings.model_fields:
        raise KeyError(ERR_UNKNOWN_SETTING.format(name=name))
    flag = flag_name(name)
    kwargs: dict[str, Any] = {"default": None, "help": setting_help(name)}
    if Settings.model_fields[name].annotation is bool:
        # --x/--no-x: either can override a variable; neither given leaves it alone.
        decls = (f"{flag}/--no-{flag[2:]}", *decls)
    else:
        decls = (flag, *decls)
        kwargs["multiple"] = _is_list(name)
        click_type = _click_type(name)
        if click_type is not None:
            kwargs["type"] = click_type
    kwargs.update(overrides)
    return click.option(*decls, name, **kwargs)


def _settings(**overrides: Any) -> Settings:
    # Flags win over KUBE_INTENT_* variables, which win over defaults: a flag not given (None,
    # or () for a repeatable one) is left out so that the variable or the default holds.
    given = {key: value for key, value in overrides.items() if value is not None and value != ()}
    try:
        return Settings(**given)
    except ValidationError as exc:  # a flag or a variable that does not read
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            problems.append(
                ERR_SETTING.format(
                    name=name, problem=error["msg"], flag=flag_name(name), variable=env_var(name)
                )
            )
        raise click.UsageError("; ".join(problems)) from None
    except SettingsError as exc:  # a variable pydantic-settings cannot decode (a list not JSON)
        field = re.search(r'field "(\w+)"', str(exc))
        variable = env_var(field[1]) if field else f"a {ENV_PREFIX}* variable"
        raise click.UsageError(ERR_SETTING_SOURCE.format(variable=variable, detail=exc)) from None


class HelpFormatter(click.HelpFormatter):
    """click's, but a word is never cut across lines: click's wrapper splits a variable name
    longer than the column (KUBE_INTENT_TRUST_UNAUT / HENTICATED_ADMISSIONS) and URLs at their
    hyphens, and a name cut in two cannot be searched for or pasted."""

    def write_dl(
        self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        rows = list(rows)
        first_col = min(max((len(term) for term, _ in rows), default=0), col_max) + col_spacing
        indent = " " * (first_col + self.current_indent)
        wrapper = textwrap.TextWrapper(
            max(self.width - first_col - 2, 10), break_long_words=False, break_on_hyphens=False
        )
        for term, text in rows:
            self.write(f"{'':>{self.current_indent}}{term}")
            if len(term) > first_col - col_spacing:
                self.write("\n" + indent)
            elif text:
                self.write(" " * (first_col - len(term)))
            lines = wrapper.wrap(text) or [""]
            self.write(lines[0].rstrip() + "\n")
            for line in lines[1:]:
                self.write(f"{indent}{line}\n")


class HelpContext(click.Context):
    formatter_class = HelpFormatter


def _tidy_help(group: click.Group) -> None:
    """Give every command of `group` (and below) whole words in its help, and whole summaries
    in command lists: click cuts a summary to the terminal width with "...", so each command
    gets its whole first sentence instead (the list wraps it)."""
    for command in group.commands.values():
        command.context_class = HelpContext
        if command.short_help is None and command.help:
            command.short_help = command.get_short_help_str(sys.maxsize)
        if isinstance(command, click.Group):
            _tidy_help(command)


class LazyCommand(typing.NamedTuple):
    """A command imported when run; its summary is given here so that --help needs no import."""

    module: str
    attribute: str
    summary: str


class MainGroup(click.Group):
    """The root group: its `lazy` commands are imported only when run or completed."""

    context_class = HelpContext

    lazy: Mapping[str, LazyCommand] = {
        "audit": LazyCommand(
            "webhook.audit_cli", "audit", "The audit trail of admission and token decisions."
        ),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            target = self.lazy[cmd_name]
            command = getattr(importlib.import_module(target.module), target.attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{target.module}.{target.attribute} is not a click command")
            command.context_class = HelpContext
            if isinstance(command, click.Group):
                _tidy_help(command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy and name not in self.commands:
                rows.append((name, self.lazy[name].summary))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def package_version() -> str:
    try:
        return version(PROG)
    except PackageNotFoundError:  # run from a tree that was never installed
        return "unknown"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from webhook.policy_source import PolicyError, PolicySource

    try:
        revision = PolicySource.of(None, None).load().revision
    except PolicyError as exc:  # a broken install: still say which version it is
        revision = f"unreadable: {exc}"
    click.echo(f"{PROG} {package_version()} (policies {revision})")
    ctx.exit()


@click.group(cls=MainGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and the bundled policies' revision, and exit.",
)
def main() -> None:
    """Admission control for AI agents' GPU inference pods.

    Every serve option is also a KUBE_INTENT_* variable (serve -h names each one); a flag wins
    over its variable, which wins over the default. Exit codes: docs/cli.md.
    """


SERVE_EXAMPLES = """\b
Examples:
  # on your machine: dev CA, signing keys, a local OPA, SQLite audit in .kube-intent/
  kube-intent serve --dev --agents examples/agents.yaml

\b
  # as the chart runs it: mounted certificate and keys, OPA as a sidecar
  kube-intent serve --tls-cert /tls/tls.crt --tls-key /tls/tls.key \\
    --keys-dir /keys --opa-url http://127.0.0.1:8181 --client-ca /client-ca/ca.crt

\b
  # the same from variables; the audit DSN from a mounted Secret
  KUBE_INTENT_AUDIT_DB_FILE=/secrets/dsn KUBE_INTENT_ENFORCEMENT=warn kube-intent serve ...
"""


def _serve_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One flag per Settings field, in the fields' order (the help reads as settings.py)."""
    for name in reversed(Settings.model_fields):
        command = setting_option(name)(command)
    return command


@main.command(epilog=SERVE_EXAMPLES)
@_serve_options
def serve(**options: Any) -> None:
    """Run the admission webhook (HTTPS)."""
    from identity.keys import KeyDirError
    from identity.registry import RegistryError
    from webhook.logs import configure
    from webhook.policy import PolicyUnavailable
    from webhook.serve import run

    settings = _settings(**options)
    configure(settings.log_level)
    try:
        run(settings)  # on uvloop
    except (RegistryError, FileNotFoundError, PolicyUnavailable, KeyDirError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


REVIEW_EXAMPLES = """\b
Examples:
  kube-intent review --agents examples/agents.yaml examples/pods/
  kubectl kustomize overlays/prod | kube-intent review -
  kube-intent review -o json -f deploy/ -f jobs.yaml > decisions.json
"""


@main.command(epilog=REVIEW_EXAMPLES)
@click.argument("files", nargs=-1, type=str)
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    help="a manifest file, a directory (walked recursively for .yaml/.yml/.json) or - for "
    "stdin; repeatable, as with kubectl apply -f",
)
@setting_option("policies")
@setting_option("extra_policies")
@setting_option("agents")
@setting_option("opa_url")
@setting_option("opa_bin")
@click.option(
    "--namespace", default="default", show_default=True, help="namespace for objects without one"
)
@setting_option("trust_domain")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    show_default=True,
    help="json and yaml list the skipped documents too",
)
@click.option(
    "--color",
    type=click.Choice(COLOR_CHOICES),
    default="auto",
    show_default=True,
    help="colour the text output; auto: only on a terminal, and never with NO_COLOR set",
)
def review(
    files: tuple[str, ...],
    filenames: tuple[str, ...],
    policies: Path | None,
    extra_policies: Path | None,
    agents: Path | None,
    opa_url: str | None,
    opa_bin: str | None,
    namespace: str,
    trust_domain: str | None,
    output: str,
    color: str,
) -> None:
    """Decide offline what the webhook would decide for the pods in manifests.

    FILES and -f take files, directories (recursive, like kubectl apply -f DIR -R) and - for
    stdin. Pods, workloads (Deployment, Job, LeaderWorkerSet, ...), operators' custom
    resources (KServe InferenceService and LLMInferenceService, NVIDIA NIMService, KubeRay)
    and AdmissionReviews are reviewed; other documents are skipped; DeviceClasses, claims and
    claim templates in the input are used for detection. See docs/review.md.

    Exit status: 0 all allowed, 1 any denied, 2 bad input (reported; the other files are
    still reviewed).
    """
    from identity.registry import AgentRegistry, RegistryError, load_registry_file
    from webhook.policy import PolicyUnavailable
    from webhook.review import (
        prepare,
        render_errors,
        render_json,
        render_text,
        render_yaml,
        use_color,
    )

    arguments = [*filenames, *files]
    if not arguments:
        raise click.UsageError("give manifests: FILE..., -f FILE, a directory, or - for stdin")
    settings = _settings(
        policies=policies,
        extra_policies=extra_policies,
        agents=agents,
        opa_url=opa_url,
        opa_bin=opa_bin,
        trust_domain=trust_domain,
    )
    try:
        registry = load_registry_file(settings.agents) if settings.agents else AgentRegistry()
    except (RegistryError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    prepared = prepare(
        arguments,
        settings.accelerator_detector,
        stdin=sys.stdin,
        default_namespace=namespace,
    )
    if prepared.errors:
        click.echo(
            render_errors(prepared.errors, color=use_color(color, sys.stderr, os.environ)),
            err=True,
        )
    try:
        report = asyncio.run(_review(settings, registry, prepared, namespace))
    except (PolicyUnavailable, FileNotFoundError) as exc:  # OPA missing or not starting
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if output == "json":
        click.echo(render_json(report))
    elif output == "yaml":
        click.echo(render_yaml(report))
    else:
        click.echo(render_text(report, color=use_color(color, sys.stdout, os.environ)), color=True)
    sys.exit(report.exit_code)


async def _review(
    settings: Settings, registry: AgentRegistry, prepared: Prepared, namespace: str
) -> ReviewReport:
    from webhook.decision import Decider
    from webhook.opa_process import policy_engine
    from webhook.review import ReviewReport, decide_all

    if not prepared.expansion.pods:
        # Nothing to decide (only skipped or broken documents): no OPA to start.
        return ReviewReport([], prepared.skipped, prepared.errors)
    async with policy_engine(
        settings.opa_url,
        settings.policies,
        extra=settings.extra_policies,
        opa_bin=settings.opa_bin,
    ) as policy:
        await policy.put_agents(registry.to_data())
        decider = Decider(
            detector=prepared.detector,
            registry=lambda: registry,
            policy=policy,
            trust_domain=settings.trust_domain,
            enforcement=settings.enforcement,
        )
        return await decide_all(prepared, decider, namespace)


@main.group()
def intent() -> None:
    """The intent annotation (kube-intent.io/intent)."""


@intent.command("schema")
def intent_schema() -> None:
    """Print the intent's JSON Schema."""
    from identity.intent import schema

    click.echo(json.dumps(schema(), indent=2))


@main.group()
def policy() -> None:
    """Rego policies: test them, print their revision, replay recorded decisions."""


POLICY_TEST_EXAMPLES = """\b
Examples:
  kube-intent policy test                      # the bundled policies
  kube-intent policy test --extra-policies my-rules/ -v
  kube-intent policy test ./forked-policies
"""


@policy.command("test", epilog=POLICY_TEST_EXAMPLES)
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
@setting_option("opa_bin")
@click.option("--verbose", "-v", is_flag=True, help="print every test (opa test -v)")
def policy_test(
    directory: Path | None, extra: Path | None, opa_bin: str | None, verbose: bool
) -> None:
    """Check (strict) and unit-test policies with the real OPA, then load them as serve does.

    DIRECTORY defaults to the bundled policies (webhook/policies). With --extra-policies, the
    two are checked as one set (the extra data merged over DIRECTORY's) and the extra
    directory's own *_test.rego run against it.

    Exit status: 0 all passed; else OPA's (2: a test failed, 1: a file does not compile), or 1
    when the set does not load.
    """
    from webhook.opa_process import find_opa
    from webhook.policy import PolicyUnavailable
    from webhook.policy_source import PolicyError, PolicySource

    main_dir = directory or _settings().policies
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
    from webhook.opa_process import policy_engine

    async with policy_engine(None, directory, extra=extra, opa_bin=opa) as engine:
        return engine.revision


@policy.command("revision")
@click.argument(
    "directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--extra-policies",
    "extra",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="an operator's extra directory, loaded with DIRECTORY as serve loads them",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json adds the directories and every file's sha256",
)
def policy_revision(directory: Path | None, extra: Path | None, output: str) -> None:
    """Print the revision DIRECTORY would have once loaded (no OPA needed).

    The same digest serve computes and records with every decision and policy load: Rego and
    data (data.json/data.yaml, merged as serve merges them). DIRECTORY defaults to the bundled
    policies. -o json adds the directories and every file's sha256.
    """
    from webhook.policy_source import PolicyError, PolicySource

    try:
        policy_set = PolicySource.of(directory, extra).load()
    except PolicyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if output == "json":
        click.echo(json.dumps(policy_set.to_json(), indent=2))
    else:
        click.echo(policy_set.revision)


POLICY_REPLAY_EXAMPLES = """\b
Examples:
  # what a candidate would have changed over the last week
  kube-intent policy replay --policies ./candidate --since 7d

\b
  # a CI gate on a policy change, against a copy of the production trail
  kube-intent policy replay --policies ./candidate --db audit.db --fail-on-change -o json
"""


@policy.command("replay", epilog=POLICY_REPLAY_EXAMPLES)
@click.option(
    "--policies",
    "candidate",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="the candidate policy directory",
)
@click.option(
    "--extra-policies",
    "extra",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="the candidate's extra directory (as serve's --extra-policies)",
)
@click.option("--since", default="7d", show_default=True, help="duration ago (7d, 12h) or ISO time")
@click.option("--until", default=None, help="duration ago (7d, 12h) or ISO time [default: now]")
@click.option(
    "--db",
    default=None,
    help="audit store: a SQLite path or a postgresql:// DSN [default: as serve's, "
    f"{env_var('audit_db_file')}, {env_var('audit_db')} or audit.db in the state dir]",
)
@setting_option("opa_bin")
@click.option(
    "--fail-on-change",
    is_flag=True,
    help="exit 1 when any recorded decision would change (newly denied or newly allowed)",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per record and the summary, for tools",
)
def policy_replay(
    candidate: Path,
    extra: Path | None,
    since: str,
    until: str | None,
    db: str | None,
    opa_bin: str | None,
    fail_on_change: bool,
    output: str,
) -> None:
    """Re-decide recorded admissions with a candidate policy: per record unchanged, newly
    denied, newly allowed, rules changed, or not replayable (decided by the webhook itself).

    Exit status: 0, or 1 with --fail-on-change when a decision would change; 2 on bad input.
    """
    from webhook.audit.store import AuditStore, matching
    from webhook.audit_cli import build_filter, default_db, run
    from webhook.opa_process import policy_engine
    from webhook.policy import PolicyUnavailable
    from webhook.replay import ReplayReport, replay

    query = build_filter({"kind": "admission", "since": since, "until": until})

    async def action(store: AuditStore) -> ReplayReport:
        records = [r async for r in matching(store, query, order="asc")]
        async with policy_engine(None, candidate, extra=extra, opa_bin=opa_bin) as engine:
            return await replay(records, engine)

    try:
        report = run(db or default_db(), action)
    except (FileNotFoundError, PolicyUnavailable) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as exc:  # the store: missing, unreadable, a corrupt row
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(json.dumps(report.to_json(), indent=2) if output == "json" else report.render())
    sys.exit(EXIT_DENIED if fail_on_change and report.decision_changed else 0)


COMPLETION_EXAMPLES = """\b
Examples:
  # bash: in ~/.bashrc
  eval "$(kube-intent completion bash)"

\b
  # zsh: in ~/.zshrc
  eval "$(kube-intent completion zsh)"

\b
  # fish
  kube-intent completion fish > ~/.config/fish/completions/kube-intent.fish
"""


@main.command(epilog=COMPLETION_EXAMPLES)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish)."""
    completer = get_completion_class(shell)
    if completer is None:  # click.Choice lets only SHELLS through, and click has all three
        raise click.UsageError(f"no completion for {shell}")
    root = ctx.find_root().command
    click.echo(completer(root, {}, PROG, COMPLETE_VAR).source())


main.add_command(keys_group)
main.add_command(token_group)
_tidy_help(main)

if __name__ == "__main__":  # pragma: no cover
    main()
