"""Output formats and stats (pure functions), plus one pass over a real store."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from tests.support.audit import BASE_TIME, dataset, full_record
from webhook.audit import (
    TABLE_COLUMNS,
    AuditFilter,
    AuditRecord,
    AuditStore,
    StoredRecord,
    compute_stats,
    format_stats,
    record_to_json,
    render,
)
from webhook.audit.export import CSV_COLUMNS, rules_summary
from webhook.violations import Violation


def chained(records: list[AuditRecord]) -> list[StoredRecord]:
    out: list[StoredRecord] = []
    prev = "0" * 64
    for i, record in enumerate(records, start=1):
        out.append(record.chained(record_id=i, seq=i, prev_hash=prev))
        prev = out[-1].hash
    return out


@pytest.fixture
def rows() -> list[StoredRecord]:
    return chained([full_record(), *dataset()])


def test_table_has_the_fixed_columns(rows: list[StoredRecord]) -> None:
    text = render(rows, "table")
    lines = text.splitlines()
    assert lines[0].split() == [c.upper() for c in TABLE_COLUMNS]
    assert len(lines) == len(rows) + 1
    first = lines[1].split()
    assert first == [
        "2025-03-01T12:00:00.123456Z",
        "denied",
        "team-a",
        "llm-7b-xk2p",
        "summarizer",
        "image-registry,ttl(warn),egress(dryrun)",
    ]
    # Columns are aligned: every row's "decision" starts at the same offset.
    offset = lines[0].index("DECISION")
    assert all(line[offset:].startswith(("allowed", "denied")) for line in lines[1:])


def test_table_without_records_is_just_the_header() -> None:
    assert render([], "table").split() == [c.upper() for c in TABLE_COLUMNS]


def test_csv_parses_back(rows: list[StoredRecord]) -> None:
    text = render(rows, "csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(rows)
    assert tuple(parsed[0]) == CSV_COLUMNS
    first = parsed[0]
    record = rows[0]
    assert first["id"] == "1"
    assert first["decision"] == "denied"
    assert first["groups"] == "system:serviceaccounts;system:authenticated"
    assert first["rules"] == rules_summary(record)
    assert first["accelerators"] == "total=3;claims=1;nvidia.com/gpu=2;nvidia.com/mig-1g.10gb=1"
    assert float(first["latency_ms"]) == record.latency_ms
    assert first["message"] == record.message
    assert first["hash"] == record.hash
    assert [p["name"] for p in parsed] == [r.name for r in rows]


def test_csv_quotes_awkward_values() -> None:
    record = full_record(message='line one\nline "two", three', name="a,b")
    parsed = list(csv.DictReader(io.StringIO(render(chained([record]), "csv"))))
    assert parsed[0]["message"] == 'line one\nline "two", three'
    assert parsed[0]["name"] == "a,b"


def test_jsonl_lines_are_json_records(rows: list[StoredRecord]) -> None:
    lines = render(rows, "jsonl").splitlines()
    assert len(lines) == len(rows)
    for line, record in zip(lines, rows, strict=True):
        data = json.loads(line)
        assert data == record_to_json(record)
        assert StoredRecord.model_validate(data) == record  # a SIEM copy can be re-verified


def test_json_is_an_array_of_full_records(rows: list[StoredRecord]) -> None:
    data = json.loads(render(rows, "json"))
    assert [StoredRecord.model_validate(d) for d in data] == rows
    assert data[0]["intent"]["purpose"] == "résumé des tickets — 要約"
    assert data[0]["violations"][0] == {
        "rule": "image-registry",
        "message": "image docker.io/x is not from an allowed registry",
        "enforcement": "deny",
        "field": "spec.containers[0].image",
    }


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="format"):
        render([], "xml")  # type: ignore[arg-type]


def test_stats() -> None:
    records = [
        AuditRecord(
            time=BASE_TIME,
            namespace="a",
            agent="x",
            allowed=False,
            violations=[Violation(rule="r1"), Violation(rule="r2"), Violation(rule="r1")],
        ),
        AuditRecord(
            time=BASE_TIME + timedelta(days=1),
            namespace="b",
            agent=None,
            allowed=False,
            violations=[Violation(rule="r1")],
        ),
        AuditRecord(
            time=BASE_TIME,
            namespace="a",
            agent="x",
            allowed=True,
            violations=[Violation(rule="w", enforcement="warn")],
        ),
        AuditRecord(
            time=BASE_TIME,
            namespace="a",
            allowed=True,
            violations=[Violation(rule="d", enforcement="dryrun")],
        ),
    ]
    stats = compute_stats(records)
    assert (stats.total, stats.allowed, stats.denied) == (4, 2, 2)
    assert stats.denials_by_rule == {"r1": 2, "r2": 1}  # a rule counts once per decision
    assert stats.warnings_by_rule == {"w": 1}
    assert stats.dryrun_by_rule == {"d": 1}
    assert stats.denials_by_agent == {"-": 1, "x": 1}
    assert stats.denials_by_namespace == {"a": 1, "b": 1}
    assert stats.denials_by_day == {"2025-03-01": 1, "2025-03-02": 1}
    text = format_stats(stats)
    assert "decisions: 4  allowed: 2  denied: 2" in text
    assert "denials by rule:\n  r1  2\n  r2  1" in text
    assert json.loads(stats.model_dump_json())["denials_by_rule"] == {"r1": 2, "r2": 1}


async def test_render_records_from_a_store(store: AuditStore) -> None:
    await store.append_many(dataset())
    page = await store.query(AuditFilter(allowed=False), limit=100)
    parsed = list(csv.DictReader(io.StringIO(render(page.records, "csv"))))
    assert {p["decision"] for p in parsed} == {"denied"}
    assert len(parsed) == 7
    all_records = [r async for r in store.iter_all()]
    assert compute_stats(all_records).denied == 7
