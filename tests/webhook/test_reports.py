"""Reports built from audit records: results per record, the bounded per-namespace book, the
report objects against the real CRD schemas, and the feed from a real SQLite audit store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.paths import DATA
from webhook.audit import AuditStore, open_store
from webhook.audit.record import AuditRecord, StoredRecord
from webhook.reports import (
    OPEN_REPORT,
    POLICY_REPORT,
    REPORT_KINDS,
    ReportBook,
    ReportKind,
    report_kinds,
    results_for,
)
from webhook.reports_owners import ObjectRef, OwnerResolver, controller_of
from webhook.reports_publisher import ReportFeed, report_publisher
from webhook.violations import Violation

CASES = yaml.safe_load((DATA / "reports" / "records.yaml").read_text())
CRDS = {
    POLICY_REPORT: DATA / "crds" / "wgpolicyk8s.io_policyreports.yaml",
    OPEN_REPORT: DATA / "crds" / "openreports.io_reports.yaml",
}
DEPLOYMENT = ObjectRef("apps/v1", "Deployment", "llama", "ml-serving", "uid-d")


def stored(seq: int, **fields: Any) -> StoredRecord:
    """A record as the store returns it (chain fields set), for the pure functions."""
    return AuditRecord(**fields).chained(record_id=seq, seq=seq, prev_hash="0" * 64)


def pod_input(*owners: dict[str, Any]) -> dict[str, Any]:
    return {"pod": {"metadata": {"ownerReferences": list(owners)}}}


REPLICA_SET_OWNER = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "llama-5d4f",
    "uid": "uid-rs",
    "controller": True,
}


# -- results of one record ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_each_record_gives_one_result_per_violation_or_one_for_the_decision(
    case: dict[str, Any],
) -> None:
    record = stored(7, **case["record"])
    subject = ObjectRef("v1", "Pod", record.name, record.namespace)
    results = results_for(record, subject)
    got = [[r["policy"], r["rule"], r["result"], r.get("severity")] for r in results]
    assert got == case["results"]
    for result in results:
        assert result["source"] == "kube-intent"
        assert result["resources"] == [subject.to_reference()]
        assert result["properties"]["auditRecordId"] == "7"
        assert result["timestamp"] == {
            "seconds": int(record.time.timestamp()),
            "nanos": record.time.microsecond * 1000,
        }


def test_a_result_names_the_rule_field_and_cross_references_of_the_audit_row() -> None:
    [case] = [c for c in CASES if c["id"].startswith("denied-by-a-rule")]
    record = stored(42, **case["record"])
    [fail, _] = results_for(record, DEPLOYMENT)
    assert fail["message"].startswith('[model-allowed] intent.models[0]: model "deepseek-ai')
    assert fail["properties"] == {
        "agent": "support-bot",
        "intentDigest": "sha256:4f0c",
        "auditRecordId": "42",
        "auditSeq": "42",
        "policyRevision": "rev-1",
        "pod": "ml-serving/unapproved-model",
        "enforcement": "deny",
        "field": "intent.models[0]",
    }
    [clean] = results_for(stored(43, **CASES[2]["record"]), DEPLOYMENT)
    assert clean["properties"]["grantId"] == "grant-8"


def test_a_long_message_is_cut_to_a_bounded_length() -> None:
    violation = {"rule": "r", "message": "x" * 10_000}
    [result] = results_for(
        stored(1, namespace="n", allowed=False, violations=[violation]), DEPLOYMENT
    )
    assert len(result["message"]) == 1024


# -- the bounded book ------------------------------------------------------------------------


def denial(
    seq: int, name: str, rule: str = "model-allowed", namespace: str = "ml-serving"
) -> StoredRecord:
    return stored(
        seq,
        namespace=namespace,
        name=name,
        allowed=False,
        violations=[{"rule": rule, "message": "no"}],
    )


def admission(seq: int, name: str, namespace: str = "ml-serving") -> StoredRecord:
    return stored(seq, namespace=namespace, name=name, allowed=True)


def outcomes(book: ReportBook, namespace: str = "ml-serving") -> list[tuple[str, str, str]]:
    return [(r["resources"][0]["name"], r["policy"], r["result"]) for r in book.results(namespace)]


def test_a_workload_that_now_passes_replaces_its_older_failure() -> None:
    book = ReportBook()
    assert book.add(denial(1, "llama-a"), DEPLOYMENT)
    assert outcomes(book) == [("llama", "model-allowed", "fail")]
    assert book.add(admission(2, "llama-b"), DEPLOYMENT)
    assert outcomes(book) == [("llama", "kube-intent", "pass")]
    report = book.report("ml-serving", POLICY_REPORT)
    assert report["summary"] == {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0}


def test_an_older_record_does_not_replace_a_newer_one_of_the_same_workload() -> None:
    book = ReportBook()
    book.add(admission(5, "llama-b"), DEPLOYMENT)
    assert not book.add(denial(3, "llama-a"), DEPLOYMENT)
    assert outcomes(book) == [("llama", "kube-intent", "pass")]


def test_records_that_are_not_admissions_are_skipped() -> None:
    book = ReportBook()
    token = stored(1, kind="token", namespace="ml-serving", name="p", allowed=False)
    assert not book.add(token, DEPLOYMENT)
    assert book.namespaces() == []


@pytest.mark.parametrize(
    ("bound", "kept"),
    [(1, ["p4"]), (3, ["p4", "p3", "p2"]), (10, ["p4", "p3", "p2", "p1", "p0"])],
    ids=["one", "three", "above-the-count"],
)
def test_a_namespace_report_is_pruned_to_its_bound_newest_kept(bound: int, kept: list[str]) -> None:
    book = ReportBook(max_results=bound)
    for seq in range(5):
        pod = ObjectRef("v1", "Pod", f"p{seq}", "ml-serving")
        book.add(denial(seq + 1, f"p{seq}"), pod)
    assert [name for name, _, _ in outcomes(book)] == kept
    report = book.report("ml-serving", POLICY_REPORT)
    assert len(report["results"]) == report["summary"]["fail"] == len(kept)


def test_namespaces_have_separate_reports() -> None:
    book = ReportBook()
    book.add(denial(1, "a", namespace="ml-serving"), ObjectRef("v1", "Pod", "a", "ml-serving"))
    book.add(admission(2, "b", namespace="ml-research"), ObjectRef("v1", "Pod", "b", "ml-research"))
    assert book.namespaces() == ["ml-research", "ml-serving"]
    assert outcomes(book, "ml-research") == [("b", "kube-intent", "pass")]


# -- the report objects against the real schemas ------------------------------------------------


def crd_schema(kind: ReportKind) -> dict[str, Any]:
    [crd] = yaml.safe_load_all(CRDS[kind].read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == kind.version]
    assert crd["spec"]["group"] == kind.group
    assert crd["spec"]["names"]["plural"] == kind.plural
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def strict(schema: Any) -> Any:
    """The structural schema with unknown fields refused: the API server prunes fields a schema
    does not declare, so a field we write and it drops must fail here."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@pytest.mark.parametrize("kind", REPORT_KINDS, ids=[k.setting for k in REPORT_KINDS])
def test_the_report_object_is_valid_for_its_crd_and_names_its_owner(kind: ReportKind) -> None:
    book = ReportBook(max_results=50)
    for seq, case in enumerate(CASES, start=1):
        record = stored(seq, **case["record"])
        book.add(record, ObjectRef("v1", "Pod", record.name, record.namespace))
    report = book.report("ml-serving", kind)
    schema = strict(crd_schema(kind))
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.validate(report, schema)
    assert report["apiVersion"] == kind.api_version
    assert report["kind"] == kind.kind
    assert report["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kube-intent"}
    assert report["summary"] == {"pass": 2, "fail": 1, "warn": 2, "error": 0, "skip": 0}


# -- the setting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("false", None),
        ("auto", ((POLICY_REPORT, OPEN_REPORT), True)),
        ("true", ((POLICY_REPORT, OPEN_REPORT), True)),
        ("policyreport", ((POLICY_REPORT,), False)),
        (" openreports , policyreport ", ((OPEN_REPORT, POLICY_REPORT), False)),
        ("policyreport,policyreport", ((POLICY_REPORT,), False)),
    ],
    ids=["empty", "false", "auto", "true", "one", "both-spaced", "repeated"],
)
def test_the_reports_setting(value: str, expected: Any) -> None:
    assert report_kinds(value) == expected


@pytest.mark.parametrize("value", ["policyreports", "clusterpolicyreport", ","], ids=str)
def test_an_unknown_report_kind_is_refused_naming_the_known_ones(value: str) -> None:
    with pytest.raises(ValueError, match="policyreport, openreports"):
        report_kinds(value)


# -- owners --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (None, None),
        ({"metadata": {}}, None),
        ({"metadata": {"ownerReferences": [{**REPLICA_SET_OWNER, "controller": False}]}}, None),
        ({"metadata": {"ownerReferences": "nonsense"}}, None),
        ({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "controller": True}]}}, None),
        (
            {"metadata": {"ownerReferences": [REPLICA_SET_OWNER]}},
            ObjectRef("apps/v1", "ReplicaSet", "llama-5d4f", "ml-serving", "uid-rs"),
        ),
    ],
    ids=["no-pod", "no-owners", "not-a-controller", "malformed", "incomplete", "replicaset"],
)
def test_controller_of_a_pod(pod: dict[str, Any] | None, expected: ObjectRef | None) -> None:
    assert controller_of("ml-serving", pod) == expected


@pytest.mark.parametrize(
    ("pod", "name", "expected"),
    [
        (pod_input(REPLICA_SET_OWNER)["pod"], "p", ("ReplicaSet", "llama-5d4f")),
        ({"metadata": {}}, "p", ("Pod", "p")),
        (None, "", ("Namespace", "ml-serving")),
    ],
    ids=["controller", "bare-pod", "unnamed-pod"],
)
async def test_without_a_cluster_the_workload_is_the_direct_controller_or_the_pod(
    pod: dict[str, Any] | None, name: str, expected: tuple[str, str]
) -> None:
    ref = await OwnerResolver(None).workload("ml-serving", pod, name, None)
    assert (ref.kind, ref.name) == expected


# -- from a real audit store ---------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AuditStore]:
    store = await open_store(str(tmp_path / "audit.db"))
    yield store
    await store.close()


def feed(store: AuditStore, max_results: int = 500) -> ReportFeed:
    return ReportFeed(store, OwnerResolver(None), ReportBook(max_results))


def rs_denial(name: str, **fields: Any) -> AuditRecord:
    return AuditRecord(
        namespace="ml-serving",
        name=name,
        allowed=False,
        input=pod_input(REPLICA_SET_OWNER),
        violations=[Violation(rule="model-allowed", message="no")],
        **fields,
    )


async def test_the_feed_rebuilds_from_the_store_then_tails_new_rows(store: AuditStore) -> None:
    await store.append(rs_denial("llama-5d4f-a"))
    await store.append(AuditRecord(kind="token", namespace="ml-serving", name="x", allowed=False))
    await store.append(AuditRecord(namespace="ml-research", name="solo", allowed=True))

    first = feed(store)
    await first.rebuild()
    assert outcomes(first.book) == [("llama-5d4f", "model-allowed", "fail")]
    assert outcomes(first.book, "ml-research") == [("solo", "kube-intent", "pass")]
    assert await first.tail() == set()

    await store.append(AuditRecord(namespace="ml-serving", name="bare", allowed=True))
    await store.append(rs_denial("llama-5d4f-b", message="again"))
    assert await first.tail() == {"ml-serving"}
    assert outcomes(first.book) == [
        ("llama-5d4f", "model-allowed", "fail"),
        ("bare", "kube-intent", "pass"),
    ]
    [rs_result, _] = first.book.results("ml-serving")
    assert rs_result["properties"]["auditSeq"] == "5"  # the newest denial of the workload

    # A restart: a new feed over the same store says the same.
    again = feed(store)
    await again.rebuild()
    for namespace in ("ml-serving", "ml-research"):
        assert again.book.results(namespace) == first.book.results(namespace)


async def test_the_rebuild_looks_back_a_bounded_window(store: AuditStore) -> None:
    old = datetime.now(UTC) - timedelta(hours=25)
    await store.append(AuditRecord(time=old, namespace="ml-serving", name="old", allowed=True))
    for i in range(10):
        await store.append(AuditRecord(namespace="ml-serving", name=f"p{i}", allowed=True))
    small = feed(store, max_results=2)  # looks at the newest 2 * 4 rows
    await small.rebuild()
    assert [name for name, _, _ in outcomes(small.book)] == ["p9", "p8"]

    wide = feed(store)
    await wide.rebuild()
    names = [name for name, _, _ in outcomes(wide.book)]
    assert "old" not in names
    assert len(names) == 10


async def test_rows_written_during_the_rebuild_are_tailed_once(store: AuditStore) -> None:
    reader = feed(store)
    await reader.rebuild()  # an empty store
    await store.append(rs_denial("llama-5d4f-a"))
    assert await reader.tail() == {"ml-serving"}
    assert await reader.tail() == set()
    assert len(reader.book.results("ml-serving")) == 1


# -- what serve runs ---------------------------------------------------------------------------


async def test_reports_are_off_without_a_setting_or_without_a_cluster(store: AuditStore) -> None:
    options: dict[str, Any] = {"max_results": 10, "interval_seconds": 1.0}
    assert report_publisher("", None, store, **options) is None
    assert report_publisher("auto", None, store, **options) is None


async def test_an_unreadable_reports_setting_stops_serve_with_the_fix(store: AuditStore) -> None:
    with pytest.raises(SystemExit, match="KUBE_INTENT_REPORTS='policyreports': expected"):
        report_publisher("policyreports", None, store, max_results=10, interval_seconds=1.0)


@pytest.mark.parametrize(
    ("case", "says"),
    [
        pytest.param("admitted-clean", "its intent satisfied every rule", id="clean"),
        pytest.param("admitted-with-a-warning", "with 1 finding(s) that do not deny", id="warned"),
    ],
)
def test_a_pass_does_not_contradict_the_warnings_beside_it(case: str, says: str) -> None:
    [record] = [c["record"] for c in CASES if c["id"] == case]
    [passed] = [r for r in results_for(stored(44, **record), DEPLOYMENT) if r["result"] == "pass"]
    assert says in passed["message"]


def test_a_namespace_that_is_gone_is_forgotten() -> None:
    book = ReportBook(max_results=10)
    [record] = [c["record"] for c in CASES if c["id"] == "admitted-clean"]
    assert book.add(stored(45, **record), DEPLOYMENT)
    book.forget(record["namespace"])
    assert book.report(record["namespace"], REPORT_KINDS[0])["results"] == []
