"""`kube-intent audit ...`: read, summarise, export and verify the audit trail.

Two ways to the same records: `--db` opens the store directly (a SQLite file or a PostgreSQL
DSN, from inside the webhook's pod or a machine that holds the database), `--server` reads the
webhook's RBAC-guarded audit API with the caller's kubeconfig credentials (`audit_client.py`).

Exit codes: 0 done; 1 a finding (`verify`: the chain is broken; `show`: no such id; a row that
does not read back as written); 2 a usage error or a trail that cannot be read (database
missing or unreadable, webhook unreachable, token rejected, access denied).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import click
import yaml
from pydantic import ValidationError

from identity.intent import fields as intent_fields
from identity.keys import KeySet
from webhook.audit import AuditFilter, AuditStore, Order, filter_from, open_store
from webhook.audit.checkpoint import check_checkpoints, make_checkpoint, read_checkpoint
from webhook.audit.errors import AuditError, CorruptRecord
from webhook.audit.export import (
    AuditStats,
    compute_stats,
    format_stats,
    iter_csv,
    iter_jsonl,
    record_to_json,
    rules_summary,
)
from webhook.audit.filters import KINDS, to_params
from webhook.audit.record import StoredRecord, format_time
from webhook.audit.store import MAX_PAGE, matching
from webhook.audit.verify import ChainVerifier, VerifyResult, verify_store
from webhook.audit_client import (
    AuditClient,
    AuditClientError,
    Credentials,
    kubeconfig,
    tls_verification,
    token_file,
)
from webhook.settings import Settings

T = TypeVar("T")
PAGE = 500

EXIT_BROKEN = 1
EXIT_UNREADABLE = 2

ERR_OPEN = "cannot open audit store {db}: {detail}"
ERR_BOTH_SOURCES = "--db and --server are mutually exclusive: read the store or the API, not both"
ERR_REMOTE_ONLY = "{flags} only apply with --server (the audit API); --db reads the store directly"
ERR_FILE_AND_CONTEXT = "--token-file replaces a kubeconfig: drop --context/--kubeconfig"
ERR_BOTH_DECISIONS = "--denied and --allowed are mutually exclusive (omit both for every decision)"
ERR_NOT_FOUND = "no decision with id {record_id}"
ERR_REMOTE_CHECKPOINT = (
    "--checkpoint/--keys-dir check the store itself: use them with --db (or verify an export "
    "with --file and compare its last seq and hash with the checkpoint's)"
)
ERR_SOURCES_VERIFY = "verify reads one trail: --db, --server or --file"
ERR_EXPORT_LINE = "{path} line {line} is not JSON ({detail}): is it a JSONL `audit export`?"
WARN_INSECURE = (
    "WARNING: --insecure-skip-tls-verify: the webhook's certificate is not checked, so whoever "
    "answers on that address gets your bearer token and can show you any trail. Use --ca-file."
)

ListFormat = Literal["table", "wide", "json", "jsonl", "yaml", "csv"]
LIST_FORMATS: tuple[ListFormat, ...] = ("table", "wide", "json", "jsonl", "yaml", "csv")
EXPORT_FORMATS = ("jsonl", "json", "yaml", "csv")
RECORD_FORMATS = ("text", "json", "yaml")

TABLE_HEADERS = ("ID", "TIME", "NAMESPACE/NAME", "USER", "AGENT", "GPUS", "MODELS", "DECISION")
WIDE_HEADERS = ("KIND", "OPERATION", "SERVICEACCOUNT", "POLICY", "GRANT", "HASH")
SHORT_HASH = 12


class Unreadable(click.ClickException):
    """The trail cannot be read at all (not a finding about it): exit 2."""

    exit_code = EXIT_UNREADABLE


def default_db() -> str:
    return Settings().audit_dsn


# -- where the records come from ----------------------------------------------------------------


def run(open_args: str, action: Callable[[AuditStore], Awaitable[T]]) -> T:
    """Open the store at `open_args`, run `action` on it, close it."""

    async def main() -> T:
        try:
            store = await open_store(open_args, create=False)
        except CorruptRecord as exc:  # e.g. a migration stopped by a row edited outside us
            raise click.ClickException(ERR_OPEN.format(db=open_args, detail=exc)) from None
        except (AuditError, ValueError, OSError) as exc:
            raise Unreadable(ERR_OPEN.format(db=open_args, detail=exc)) from None
        try:
            return await action(store)
        except CorruptRecord as exc:  # a row edited into something unreadable: say which
            raise click.ClickException(str(exc)) from None
        except AuditError as exc:  # locked, I/O error, connection lost
            raise Unreadable(str(exc)) from None
        finally:
            await store.close()

    return asyncio.run(main())


@dataclass(frozen=True)
class Remote:
    """`--server` and how to authenticate to it and verify it."""

    server: str
    credentials: Credentials
    ca_file: Path | None
    tls_server_name: str | None
    insecure: bool
    chunk_size: int = PAGE

    def client(self) -> AuditClient:
        try:
            verify = tls_verification(self.ca_file, self.insecure)
            return AuditClient(
                self.server,
                self.credentials,
                verify=verify,
                tls_server_name=self.tls_server_name,
                page_size=self.chunk_size,
            )
        except AuditClientError as exc:
            raise Unreadable(str(exc)) from None


Source = str | Remote  # a store DSN (--db) or the audit API (--server)


def remote_call(action: Callable[[], T]) -> T:
    """Run a client call with its failures as CLI errors."""
    try:
        return action()
    except AuditClientError as exc:
        raise Unreadable(str(exc)) from None
    except CorruptRecord as exc:
        raise click.ClickException(str(exc)) from None


def with_records(
    source: Source,
    filters: AuditFilter,
    limit: int | None,
    order: Order,
    consume: Callable[[Iterable[StoredRecord]], T],
) -> T:
    """`consume` the matching records, from the store or through every page of the API."""
    if isinstance(source, Remote):
        with source.client() as client:
            return remote_call(lambda: consume(client.records(to_params(filters), limit, order)))

    async def action(store: AuditStore) -> T:
        records = matching(store, filters, limit=limit, order=order, page=PAGE)
        return consume([r async for r in records])

    return run(source, action)


def get_record(source: Source, record_id: int) -> StoredRecord | None:
    if isinstance(source, Remote):
        with source.client() as client:
            return remote_call(lambda: client.get(record_id))
    return run(source, lambda store: store.get(record_id))


# -- options ------------------------------------------------------------------------------------

db_option = click.option(
    "--db",
    default=None,
    help="read the store directly: a SQLite path or a postgresql:// DSN [default: as serve's, "
    "KUBE_INTENT_AUDIT_DB_FILE, KUBE_INTENT_AUDIT_DB or audit.db in the state dir]",
)
REMOTE_OPTIONS = [
    click.option(
        "--server",
        default=None,
        metavar="URL",
        help="read the webhook's audit API instead, e.g. https://127.0.0.1:8443 through "
        "`kubectl -n kube-intent port-forward svc/kube-intent 8443:443`",
    ),
    click.option("--kubeconfig", default=None, help="with --server: kubeconfig [KUBECONFIG]"),
    click.option(
        "--context", default=None, help="with --server: whose bearer token to send [current]"
    ),
    click.option(
        "--token-file",
        type=click.Path(path_type=Path),
        default=None,
        help="with --server: send this bearer token instead of the kubeconfig's",
    ),
    click.option(
        "--ca-file",
        type=click.Path(path_type=Path),
        default=None,
        help="with --server: the WEBHOOK's CA (its caBundle, not the cluster's CA) "
        "[default: the system's CAs]",
    ),
    click.option(
        "--tls-server-name",
        default=None,
        help="with --server: the name the webhook's certificate carries, when the URL is a "
        "port-forward (e.g. kube-intent.kube-intent.svc)",
    ),
    click.option(
        "--chunk-size",
        type=click.IntRange(1, MAX_PAGE),
        default=PAGE,
        show_default=True,
        help="with --server: records per API request (every page is followed)",
    ),
    click.option(
        "--insecure-skip-tls-verify",
        "insecure",
        is_flag=True,
        help="with --server: do not verify the webhook's certificate (not for real use)",
    ),
]
REMOTE_KEYS = (
    "server",
    "kubeconfig",
    "context",
    "token_file",
    "ca_file",
    "tls_server_name",
    "insecure",
    "chunk_size",
)


def make_source(
    db: str | None,
    server: str | None,
    kubeconfig_path: str | None,
    context: str | None,
    token_path: Path | None,
    ca_file: Path | None,
    tls_server_name: str | None,
    insecure: bool,
    chunk_size: int = PAGE,
) -> Source:
    if db is not None and server is not None:
        raise click.UsageError(ERR_BOTH_SOURCES)
    if server is None:
        given = [
            flag
            for flag, value in (
                ("--kubeconfig", kubeconfig_path),
                ("--context", context),
                ("--token-file", token_path),
                ("--ca-file", ca_file),
                ("--tls-server-name", tls_server_name),
                ("--insecure-skip-tls-verify", insecure or None),
            )
            if value is not None
        ]
        if given:
            raise click.UsageError(ERR_REMOTE_ONLY.format(flags=", ".join(given)))
        return db or default_db()
    if token_path is not None and (context is not None or kubeconfig_path is not None):
        raise click.UsageError(ERR_FILE_AND_CONTEXT)
    if insecure:
        click.echo(WARN_INSECURE, err=True)
    try:
        credentials = token_file(token_path) if token_path else kubeconfig(kubeconfig_path, context)
    except AuditClientError as exc:
        raise Unreadable(str(exc)) from None
    return Remote(server, credentials, ca_file, tls_server_name, insecure, chunk_size)


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--db or --server (and its credentials): the command gets `source`."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        remote = {key: kwargs.pop(key) for key in REMOTE_KEYS}
        source = make_source(
            kwargs.pop("db"),
            remote["server"],
            remote["kubeconfig"],
            remote["context"],
            remote["token_file"],
            remote["ca_file"],
            remote["tls_server_name"],
            remote["insecure"],
            remote["chunk_size"],
        )
        return command(source=source, **kwargs)

    for option in reversed([db_option, *REMOTE_OPTIONS]):
        wrapper = option(wrapper)
    return wrapper


FILTER_OPTIONS = [
    click.option("--denied", is_flag=True, help="only denials"),
    click.option("--allowed", is_flag=True, help="only admissions"),
    click.option("--since", default=None, help="duration ago (7d, 12h) or ISO time"),
    click.option("--until", default=None, help="duration ago or ISO time (exclusive)"),
    click.option("--namespace", "-n", default=None, help="one namespace"),
    click.option("--agent", default=None, help="one agent (its Agent registration's name)"),
    click.option("--user", default=None, help="requesting user"),
    click.option("--rule", default=None, help="a violated rule id"),
    click.option("--kind", default=None, help=f"one kind of record: {', '.join(KINDS)}"),
]


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The filters of `list`, `stats` and `export`: the command gets `filters`."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        denied, allowed = kwargs.pop("denied"), kwargs.pop("allowed")
        if denied and allowed:
            raise click.UsageError(ERR_BOTH_DECISIONS)
        params = {key: kwargs.pop(key) for key in ("since", "until", "namespace", "agent")}
        params |= {key: kwargs.pop(key) for key in ("user", "rule", "kind")}
        params["decision"] = "denied" if denied else "allowed" if allowed else None
        return command(filters=build_filter(params), **kwargs)

    for option in reversed(FILTER_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def build_filter(params: Mapping[str, str | None]) -> AuditFilter:
    try:
        return filter_from(params)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def output_option(formats: tuple[str, ...], default: str) -> Callable[..., Any]:
    return click.option(
        "--output",
        "-o",
        type=click.Choice(formats),
        default=default,
        show_default=True,
        help="output format",
    )


# -- rendering ----------------------------------------------------------------------------------


def printable(text: str) -> str:
    """One line with no terminal control characters: a user name or an intent is whatever its
    author wrote, and an escape sequence must not rewrite the auditor's screen."""
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\n":
        return "\\n"
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


KIND_LABELS = {
    ("admission", True): "allowed",
    ("admission", False): "denied",
    ("token", True): "token-issued",
    ("token", False): "token-refused",
    ("policy", True): "policy-loaded",
    ("policy", False): "policy-rejected",
}


def decision_label(record: StoredRecord) -> str:
    """What the row says happened; a kind this version does not know: kind/allowed|denied."""
    label = KIND_LABELS.get((record.kind, record.allowed))
    return label or f"{record.kind}/{'allowed' if record.allowed else 'denied'}"


def gpus(record: StoredRecord) -> str:
    acc = record.accelerators
    if acc.claims:  # devices through DRA claims (one cell, no spaces: the table stays awk-able)
        return f"{acc.total}(dra)"
    return str(acc.total) if acc.total else "-"


def intent_list(record: StoredRecord, key: str) -> list[str]:
    value = (record.intent or {}).get(key)
    if isinstance(value, list):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def table_row(record: StoredRecord, wide: bool) -> tuple[str, ...]:
    where = f"{record.namespace}/{record.name}" if record.namespace else record.name
    row = (
        str(record.id),
        format_time(record.time) if wide else format_time(record.time)[:19] + "Z",
        where or "-",
        record.user or "-",
        record.agent or "-",
        gpus(record),
        ",".join(intent_list(record, "models")) or "-",
        decision_label(record),
        rules_summary(record) or "-",
    )
    if not wide:
        return row
    return (
        *row,
        record.kind,
        record.operation or "-",
        record.service_account or "-",
        record.policy_revision[:SHORT_HASH] or "-",
        record.grant_jti or "-",
        record.hash[:SHORT_HASH],
    )


def format_table(records: Iterable[StoredRecord], wide: bool = False) -> str:
    """kubectl-style columns, aligned; RULES is last in the table (it is the widest)."""
    headers = (*TABLE_HEADERS, "RULES", *(WIDE_HEADERS if wide else ()))
    rows = [headers, *(tuple(map(printable, table_row(r, wide))) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def format_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def iter_records(records: Iterable[StoredRecord], fmt: str) -> Iterator[str]:
    """Chunks of `records` rendered as `fmt`; json/jsonl/csv are those of `webhook.audit`."""
    if fmt in ("table", "wide"):
        yield format_table(records, wide=fmt == "wide")
    elif fmt == "json":
        yield json.dumps([record_to_json(r) for r in records], ensure_ascii=False, indent=2)
        yield "\n"
    elif fmt == "jsonl":
        yield from iter_jsonl(records)
    elif fmt == "yaml":
        yield format_yaml([record_to_json(r) for r in records])
    elif fmt == "csv":
        yield from iter_csv(records)
    else:  # a Choice makes this unreachable; a new format must be added above
        raise click.BadParameter(f"unknown output format {fmt!r}")


def write_records(records: Iterable[StoredRecord], fmt: str) -> None:
    for chunk in iter_records(records, fmt):
        sys.stdout.write(chunk)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    return str(value)


def intent_lines(intent: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not intent:
        return [("intent", "(none declared)")]
    order = intent_fields()
    keys = [k for k in order if k in intent] + sorted(set(intent) - set(order))
    return [("intent", "(declared)"), *((f"  {key}", _value(intent[key])) for key in keys)]


# Record fields `summary` shows itself; any other field (e.g. a policy load's details, or a field
# of a newer kind) is shown after them as it is in the JSON record.
SUMMARY_FIELDS = frozenset(
    {
        "id", "time", "kind", "uid", "operation", "namespace", "name", "user", "groups",
        "agent", "service_account", "spiffe_id", "intent", "intent_digest", "accelerators",
        "allowed", "violations", "policy_revision", "grant_jti", "latency_ms", "input",
        "message", "pod_uid", "authenticated", "seq", "prev_hash", "hash",
    }
)  # fmt: skip


def other_fields(record: StoredRecord) -> list[str]:
    data = record_to_json(record)
    rest = {k: v for k, v in data.items() if k not in SUMMARY_FIELDS and v not in (None, "", [])}
    if not rest:
        return []
    text = format_yaml(rest).rstrip("\n")
    return [f"  {printable(line)}" for line in text.splitlines()]


def summary(record: StoredRecord) -> str:
    """`audit show`: who asked for what, what was decided and why, and where it sits in the
    chain. Kinds this version does not know are shown with the same generic fields."""
    title = {"admission": "Admission", "token": "Token exchange", "policy": "Policy load"}.get(
        record.kind, f"{record.kind.capitalize()} record"
    )
    acc = record.accelerators
    resources = ", ".join(f"{k}={v}" for k, v in sorted(acc.resources.items()))
    fields: list[tuple[str, str]] = [
        ("time", format_time(record.time)),
        ("object", f"{record.namespace}/{record.name}" if record.namespace else record.name),
        ("operation", record.operation),
        ("request uid", record.uid),
        ("pod uid", record.pod_uid or ""),
        ("user", record.user),
        ("groups", ", ".join(record.groups)),
        ("agent", record.agent or ""),
        ("service account", record.service_account),
        ("spiffe id", record.spiffe_id or ""),
    ]
    if record.kind == "admission" or record.intent:
        fields += [*intent_lines(record.intent), ("intent digest", record.intent_digest or "")]
    if acc.total or acc.claims or record.kind == "admission":
        fields.append(("accelerators", f"{acc.total}" + (f" ({resources})" if resources else "")))
        if acc.claims:
            fields.append(("DRA claims", str(acc.claims)))
    fields += [
        ("message", record.message),
        ("policy revision", record.policy_revision),
        ("grant id", record.grant_jti or ""),
        ("latency", f"{record.latency_ms:.1f} ms" if record.latency_ms else ""),
        ("from API server", "yes (client certificate)" if record.authenticated else ""),
        ("chain", f"seq {record.seq}, hash {record.hash}"),
        ("previous hash", record.prev_hash),
    ]
    shown = [(k, v) for k, v in fields if v]
    width = max(len(k) for k, _ in shown) + 1
    lines = [f"{title} #{record.id}: {decision_label(record).upper()}"]
    lines += [f"  {(k + ':').ljust(width)}  {printable(v)}" for k, v in shown]
    if record.violations:
        lines.append("  rules:")
        rule_width = max(len(v.rule) for v in record.violations)
        for v in record.violations:
            reason = f"{v.field}: {v.message}" if v.field else v.message
            lines.append(
                f"    {v.enforcement.ljust(6)}  {printable(v.rule).ljust(rule_width)}  "
                f"{printable(reason)}"
            )
    elif record.kind != "policy":
        lines.append("  rules:  none violated")
    lines += other_fields(record)
    return "\n".join(lines) + "\n"


def stats_output(stats: AuditStats, fmt: str) -> str:
    if fmt == "json":
        return stats.model_dump_json(indent=2) + "\n"
    if fmt == "yaml":
        return format_yaml(stats.model_dump())
    return format_stats(stats)


# -- commands -----------------------------------------------------------------------------------


# `-h` too, as under `kube-intent`: set here as well because click remembers a command's help
# option from its first invocation, which may be as a root (tests, `python -m`).
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=HELP_OPTIONS)
def audit() -> None:
    """The audit trail of admission and token decisions.

    Read it with --db (the store itself) or --server (the webhook's audit API, with your
    kubeconfig's credentials and the kube-intent-auditor role). Exit codes: 0 ok, 1 a finding
    (broken chain, unknown id), 2 usage error or trail unreadable. See docs/audit.md.
    """


@audit.command("list")
@filter_options
@source_options
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="at most this many decisions, newest first",
)
@output_option(LIST_FORMATS, "table")
def list_decisions(source: Source, filters: AuditFilter, limit: int, output: str) -> None:
    """List decisions, newest first (-o wide for kind, policy, grant and hash)."""
    with_records(source, filters, limit, "desc", lambda records: write_records(records, output))


@audit.command()
@click.argument("record_id", type=click.IntRange(min=1, max=2**63 - 1))
@source_options
@output_option(RECORD_FORMATS, "text")
def show(record_id: int, source: Source, output: str) -> None:
    """One decision: who, what intent, which GPUs, which rules and why (-o json: the record)."""
    record = get_record(source, record_id)
    if record is None:
        raise click.ClickException(ERR_NOT_FOUND.format(record_id=record_id))
    if output == "json":
        click.echo(json.dumps(record_to_json(record), ensure_ascii=False, indent=2))
    elif output == "yaml":
        click.echo(format_yaml(record_to_json(record)), nl=False)
    else:
        click.echo(summary(record), nl=False)


@audit.command()
@filter_options
@source_options
@output_option(RECORD_FORMATS, "text")
def stats(source: Source, filters: AuditFilter, output: str) -> None:
    """Denials by rule, agent, namespace and day."""
    result = with_records(source, filters, None, "desc", compute_stats)
    click.echo(stats_output(result, output), nl=False)


@audit.command()
@filter_options
@source_options
@output_option(EXPORT_FORMATS, "jsonl")
def export(source: Source, filters: AuditFilter, output: str) -> None:
    """Every matching decision in chain order (JSONL for a SIEM by default).

    Without filters the export is the whole chain, and `audit verify --file` checks it.
    """
    with_records(source, filters, None, "asc", lambda records: write_records(records, output))


keys_dir_option = click.option(
    "--keys-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="the signing keys directory (checkpoints are signed and checked with it)",
)


@audit.command()
@db_option
@keys_dir_option
@click.option("--issuer", default=None, help="issuer claim [default: the webhook's issuer]")
def checkpoint(db: str | None, keys_dir: Path | None, issuer: str | None) -> None:
    """Print a signed checkpoint of the chain's head; keep it somewhere else."""
    if keys_dir is None:
        raise click.ClickException("--keys-dir is required to sign a checkpoint")
    keys = KeySet.load(keys_dir)
    token = run(db or default_db(), lambda s: make_checkpoint(s, keys, issuer or Settings().issuer))
    if token is None:
        raise click.ClickException("the audit trail is empty: nothing to checkpoint")
    click.echo(token)


def read_export(path: Path) -> Iterator[StoredRecord]:
    """Records of a JSONL export, in file order. A line that is JSON but not a record is a
    finding (raised as CorruptRecord); a file that is not JSONL cannot be read at all."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise Unreadable(
                        ERR_EXPORT_LINE.format(path=path, line=number, detail=exc)
                    ) from None
                try:
                    yield StoredRecord.model_validate(data)
                except ValidationError as exc:
                    seq = data.get("seq") if isinstance(data, dict) else None
                    record_id = data.get("id") if isinstance(data, dict) else None
                    reason = f"line {number} is not a record: {exc.errors()[0]['msg']}"
                    raise CorruptRecord(
                        seq if isinstance(seq, int) else None,
                        reason,
                        record_id=record_id if isinstance(record_id, int) else None,
                    ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Unreadable(f"cannot read the export {path}: {exc}") from None


def verify_iterable(records: Iterable[StoredRecord]) -> VerifyResult:
    verifier = ChainVerifier()
    try:
        for record in records:
            if not verifier.add(record):
                break
    except CorruptRecord as exc:
        verifier.corrupt(exc)
    return verifier.result()


@audit.command()
@source_options
@click.option(
    "--file",
    "export_file",
    type=click.Path(path_type=Path),
    default=None,
    help="verify a JSONL export (`audit export` without filters) instead of a live trail",
)
@keys_dir_option
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.File("r"),
    help="a signed checkpoint (file, - for stdin); shows rows cut off at the end (with --db)",
)
def verify(
    source: Source,
    export_file: Path | None,
    keys_dir: Path | None,
    checkpoints: tuple[TextIO, ...],
) -> None:
    """Walk the hash chain: exit 0 when intact, 1 at the first edited, deleted or reordered
    row, 2 when the trail cannot be read (missing database, server unreachable, no access).

    With --server the whole chain is fetched through the API and checked here; with --file an
    export kept as evidence is checked. The chain has no key: someone who can rewrite the
    database can rewrite every hash after an edit, or cut rows off the end. Signed checkpoints
    (audit checkpoint, kept elsewhere; --checkpoint with --db) are what catch that.
    """
    if export_file is not None and isinstance(source, Remote):
        raise click.UsageError(ERR_SOURCES_VERIFY)
    if (checkpoints or keys_dir) and (export_file is not None or isinstance(source, Remote)):
        raise click.UsageError(ERR_REMOTE_CHECKPOINT)
    if checkpoints and keys_dir is None:
        raise click.UsageError("--checkpoint needs --keys-dir to check its signature")
    try:
        signed = (
            [read_checkpoint(f.read(), KeySet.load(keys_dir)) for f in checkpoints]
            if keys_dir
            else []
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None

    problems: list[str] = []
    if export_file is not None:
        result = verify_iterable(read_export(export_file))
    elif isinstance(source, Remote):
        with source.client() as client:
            result = remote_call(lambda: verify_iterable(client.records({}, None, "asc")))
    else:

        async def action(store: AuditStore) -> tuple[VerifyResult, list[str]]:
            result = await verify_store(store)
            # A broken chain is the finding; reading it again for checkpoints would only fail.
            return result, await check_checkpoints(store, signed) if result.ok else []

        result, problems = run(source, action)
    report_verification(result, problems, len(signed))


def report_verification(result: VerifyResult, problems: list[str], checkpoints: int) -> None:
    if not result.ok:
        click.echo(
            f"BROKEN at seq {result.first_bad_seq} (id {result.first_bad_id}): {result.reason}; "
            f"{result.checked} decisions checked",
            err=True,
        )
        sys.exit(EXIT_BROKEN)
    if problems:
        for problem in problems:
            click.echo(f"BROKEN: {problem}", err=True)
        sys.exit(EXIT_BROKEN)
    suffix = f", {checkpoints} checkpoint(s) hold" if checkpoints else ""
    click.echo(f"ok: {result.checked} decisions, chain head {result.head_hash}{suffix}")
