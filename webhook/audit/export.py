"""Rendering and statistics over records: pure functions for ``kube-intent audit``.

The CLI fetches records from the store and hands them here; nothing in this module does I/O
beyond writing to a text stream it is given.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

from .record import AuditRecord, format_time

OutputFormat = Literal["table", "json", "jsonl", "csv"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("table", "json", "jsonl", "csv")

TABLE_COLUMNS = ("time", "decision", "namespace", "name", "agent", "rules")
CSV_COLUMNS = (
    "id",
    "seq",
    "time",
    "kind",
    "decision",
    "uid",
    "operation",
    "namespace",
    "name",
    "user",
    "groups",
    "agent",
    "service_account",
    "spiffe_id",
    "intent_digest",
    "accelerators",
    "rules",
    "policy_revision",
    "grant_jti",
    "latency_ms",
    "message",
    "hash",
)


def decision(record: AuditRecord) -> str:
    return "allowed" if record.allowed else "denied"


def rules_summary(record: AuditRecord) -> str:
    """Violated rules, in order; those that did not deny are marked with their enforcement."""
    seen: dict[str, None] = {}
    for v in record.violations:
        seen[v.rule if v.enforcement == "deny" else f"{v.rule}({v.enforcement})"] = None
    return ",".join(seen)


def record_to_json(record: AuditRecord) -> dict[str, Any]:
    """The full record as JSON-ready data (``show``, ``json``, ``jsonl``)."""
    return record.model_dump(mode="json")


def table_row(record: AuditRecord) -> tuple[str, ...]:
    return (
        format_time(record.time),
        decision(record),
        record.namespace,
        record.name,
        record.agent or "-",
        rules_summary(record) or "-",
    )


def format_table(records: Iterable[AuditRecord]) -> str:
    """Fixed columns (time, decision, namespace, name, agent, rules), aligned; never truncated."""
    rows = [tuple(c.upper() for c in TABLE_COLUMNS), *(table_row(r) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def iter_jsonl(records: Iterable[AuditRecord]) -> Iterator[str]:
    """One JSON object per line (SIEM export); streams, for exports of any size."""
    for record in records:
        yield json.dumps(record_to_json(record), ensure_ascii=False, sort_keys=True) + "\n"


def format_json(records: Iterable[AuditRecord]) -> str:
    return json.dumps([record_to_json(r) for r in records], ensure_ascii=False, indent=2) + "\n"


def csv_row(record: AuditRecord) -> dict[str, str]:
    acc = record.accelerators
    resources = ";".join(f"{k}={v}" for k, v in sorted(acc.resources.items()))
    return {
        "id": "" if record.id is None else str(record.id),
        "seq": "" if record.seq is None else str(record.seq),
        "time": format_time(record.time),
        "kind": record.kind,
        "decision": decision(record),
        "uid": record.uid,
        "operation": record.operation,
        "namespace": record.namespace,
        "name": record.name,
        "user": record.user,
        "groups": ";".join(record.groups),
        "agent": record.agent or "",
        "service_account": record.service_account,
        "spiffe_id": record.spiffe_id or "",
        "intent_digest": record.intent_digest or "",
        "accelerators": f"total={acc.total};claims={acc.claims}"
        + (f";{resources}" if resources else ""),
        "rules": rules_summary(record),
        "policy_revision": record.policy_revision,
        "grant_jti": record.grant_jti or "",
        "latency_ms": repr(record.latency_ms),
        "message": record.message,
        "hash": record.hash or "",
    }


def iter_csv(records: Iterable[AuditRecord]) -> Iterator[str]:
    """CSV with a header row (RFC 4180 quoting); intent and input are left to json/jsonl."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        writer.writerow(csv_row(record))
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.getvalue():  # only the header: no records
        yield buf.getvalue()


def iter_render(records: Iterable[AuditRecord], fmt: OutputFormat) -> Iterator[str]:
    """Chunks of ``records`` rendered as ``fmt``; write them out as they come."""
    if fmt == "table":
        yield format_table(records)
    elif fmt == "json":
        yield format_json(records)
    elif fmt == "jsonl":
        yield from iter_jsonl(records)
    elif fmt == "csv":
        yield from iter_csv(records)
    else:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {OUTPUT_FORMATS}")


def render(records: Iterable[AuditRecord], fmt: OutputFormat) -> str:
    return "".join(iter_render(records, fmt))


# -- stats --------------------------------------------------------------------------------------


class AuditStats(BaseModel):
    """``kube-intent audit stats``. Denials count denied records; by-rule counts violations."""

    total: int = 0
    allowed: int = 0
    denied: int = 0
    denials_by_rule: dict[str, int] = Field(default_factory=dict)
    warnings_by_rule: dict[str, int] = Field(default_factory=dict)
    # What a rule in dry-run would have denied: the evidence for switching it to deny.
    dryrun_by_rule: dict[str, int] = Field(default_factory=dict)
    denials_by_agent: dict[str, int] = Field(default_factory=dict)
    denials_by_namespace: dict[str, int] = Field(default_factory=dict)
    denials_by_day: dict[str, int] = Field(default_factory=dict)  # UTC, YYYY-MM-DD


class StatsAccumulator:
    """Streaming stats: ``add`` records one by one, then ``result()``."""

    def __init__(self) -> None:
        self.total = 0
        self.allowed = 0
        self._by_enforcement: dict[str, Counter[str]] = {
            "deny": Counter(),
            "warn": Counter(),
            "dryrun": Counter(),
        }
        self._agent: Counter[str] = Counter()
        self._namespace: Counter[str] = Counter()
        self._day: Counter[str] = Counter()

    def add(self, record: AuditRecord) -> None:
        if record.kind == "policy":  # a policy load is not a decision about a pod or a token
            return
        self.total += 1
        for rule, enforcement in {(v.rule, v.enforcement) for v in record.violations}:
            self._by_enforcement[enforcement][rule] += 1
        if record.allowed:
            self.allowed += 1
            return
        self._agent[record.agent or "-"] += 1
        self._namespace[record.namespace] += 1
        self._day[format_time(record.time)[:10]] += 1

    def result(self) -> AuditStats:
        def ranked(counter: Counter[str]) -> dict[str, int]:
            return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

        return AuditStats(
            total=self.total,
            allowed=self.allowed,
            denied=self.total - self.allowed,
            denials_by_rule=ranked(self._by_enforcement["deny"]),
            warnings_by_rule=ranked(self._by_enforcement["warn"]),
            dryrun_by_rule=ranked(self._by_enforcement["dryrun"]),
            denials_by_agent=ranked(self._agent),
            denials_by_namespace=ranked(self._namespace),
            denials_by_day=dict(sorted(self._day.items())),
        )


def compute_stats(records: Iterable[AuditRecord]) -> AuditStats:
    acc = StatsAccumulator()
    for record in records:
        acc.add(record)
    return acc.result()


def format_stats(stats: AuditStats) -> str:
    """Human-readable stats; for machines, ``stats.model_dump_json()``."""
    lines = [f"decisions: {stats.total}  allowed: {stats.allowed}  denied: {stats.denied}"]
    sections = (
        ("denials by rule", stats.denials_by_rule),
        ("denials by agent", stats.denials_by_agent),
        ("denials by namespace", stats.denials_by_namespace),
        ("denials by day (UTC)", stats.denials_by_day),
        ("warnings by rule", stats.warnings_by_rule),
        ("dry-run (would deny) by rule", stats.dryrun_by_rule),
    )
    for title, counts in sections:
        if not counts:
            continue
        lines.append("")
        lines.append(f"{title}:")
        width = max(len(k) for k in counts)
        lines.extend(f"  {k.ljust(width)}  {v}" for k, v in counts.items())
    return "\n".join(lines) + "\n"
