"""`kube-intent audit ...`: read, summarise, export and verify the audit trail."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from identity.keys import KeySet
from webhook.audit import AuditFilter, AuditStore, Order, filter_from, open_store
from webhook.audit.checkpoint import check_checkpoints, make_checkpoint, read_checkpoint
from webhook.audit.errors import AuditError
from webhook.audit.export import (
    OUTPUT_FORMATS,
    OutputFormat,
    compute_stats,
    format_stats,
    iter_render,
    record_to_json,
    render,
)
from webhook.audit.record import StoredRecord
from webhook.audit.verify import VerifyResult, verify_store
from webhook.settings import Settings

T = TypeVar("T")
PAGE = 500


def default_db() -> str:
    return Settings().audit_dsn


def run(open_args: str, action: Callable[[AuditStore], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            store = await open_store(open_args, create=False)
        except (AuditError, ValueError, OSError) as exc:
            raise click.ClickException(f"cannot open audit store {open_args}: {exc}") from None
        try:
            return await action(store)
        except AuditError as exc:  # e.g. a row edited into something unreadable: say which
            raise click.ClickException(str(exc)) from None
        finally:
            await store.close()

    return asyncio.run(main())


async def matching(
    store: AuditStore, filters: AuditFilter, limit: int | None, order: Order = "desc"
) -> AsyncIterator[StoredRecord]:
    """Matching records across pages (newest first by default), up to `limit`."""
    cursor: str | None = None
    seen = 0
    while True:
        size = PAGE if limit is None else min(PAGE, limit - seen)
        page = await store.query(filters, cursor, size, order=order)
        for record in page.records:
            yield record
            seen += 1
        cursor = page.next_cursor
        if cursor is None or (limit is not None and seen >= limit):
            return


db_option = click.option(
    "--db",
    default=None,
    help="audit store: a SQLite path or a postgresql:// DSN [default: audit.db in the state dir]",
)


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--denied", "decision", flag_value="denied", help="only denials"),
        click.option("--allowed", "decision", flag_value="allowed", help="only admissions"),
        click.option("--since", default=None, help="duration ago (7d, 12h) or ISO time"),
        click.option("--until", default=None, help="duration ago or ISO time (exclusive)"),
        click.option("--namespace", "-n", default=None),
        click.option("--agent", default=None),
        click.option("--user", default=None, help="requesting user"),
        click.option("--rule", default=None, help="a violated rule id"),
        db_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_filter(params: Mapping[str, str | None]) -> AuditFilter:
    try:
        return filter_from(params)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def audit() -> None:
    """The audit trail of admission and token decisions."""


@audit.command("list")
@filter_options
@click.option("--limit", type=int, default=100, show_default=True)
@click.option(
    "--output", "-o", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True
)
def list_decisions(db: str | None, limit: int, output: OutputFormat, **filters: Any) -> None:
    """List decisions, newest first."""
    query = build_filter(filters)

    async def action(store: AuditStore) -> str:
        return render([r async for r in matching(store, query, limit)], output)

    click.echo(run(db or default_db(), action))


@audit.command()
@click.argument("record_id", type=int)
@db_option
def show(record_id: int, db: str | None) -> None:
    """One decision in full: the intent, every violation, the policy input."""
    record = run(db or default_db(), lambda store: store.get(record_id))
    if record is None:
        raise click.ClickException(f"no decision with id {record_id}")
    click.echo(json.dumps(record_to_json(record), indent=2))


@audit.command()
@filter_options
def stats(db: str | None, **filters: Any) -> None:
    """Denials by rule, agent, namespace and day."""
    query = build_filter(filters)

    async def action(store: AuditStore) -> str:
        return format_stats(compute_stats([r async for r in matching(store, query, None)]))

    click.echo(run(db or default_db(), action))


@audit.command()
@filter_options
@click.option(
    "--output", "-o", type=click.Choice(OUTPUT_FORMATS), default="jsonl", show_default=True
)
def export(db: str | None, output: OutputFormat, **filters: Any) -> None:
    """Every matching decision in chain order (JSONL for a SIEM by default)."""
    query = build_filter(filters)

    async def action(store: AuditStore) -> None:
        records = [r async for r in matching(store, query, None, order="asc")]
        for chunk in iter_render(records, output):
            sys.stdout.write(chunk)

    run(db or default_db(), action)


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


@audit.command()
@db_option
@keys_dir_option
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.File("r"),
    help="a signed checkpoint (file, - for stdin); shows rows cut off at the end",
)
def verify(db: str | None, keys_dir: Path | None, checkpoints: tuple[TextIO, ...]) -> None:
    """Walk the hash chain; exit 1 at the first edited, deleted or reordered row."""
    if checkpoints and keys_dir is None:
        raise click.ClickException("--checkpoint needs --keys-dir to check its signature")
    try:
        signed = (
            [read_checkpoint(f.read(), KeySet.load(keys_dir)) for f in checkpoints]
            if keys_dir
            else []
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None

    async def action(store: AuditStore) -> tuple[VerifyResult, list[str]]:
        result = await verify_store(store)
        # A broken chain is the finding; reading it again for the checkpoints would only fail.
        return result, await check_checkpoints(store, signed) if result.ok else []

    result, problems = run(db or default_db(), action)
    if not result.ok:
        click.echo(
            f"BROKEN at seq {result.first_bad_seq} (id {result.first_bad_id}): {result.reason}; "
            f"{result.checked} decisions checked",
            err=True,
        )
        sys.exit(1)
    if problems:
        for problem in problems:
            click.echo(f"BROKEN: {problem}", err=True)
        sys.exit(1)
    suffix = f", {len(signed)} checkpoint(s) hold" if signed else ""
    click.echo(f"ok: {result.checked} decisions, chain head {result.head_hash}{suffix}")
