"""PolicyReports (wgpolicyk8s.io/v1alpha2) and openreports.io Reports built from audit records.

The audit store is the source of truth; a report is a bounded view of its newest admission
decisions, one report per namespace, one group of results per workload (reports_owners.py).
This module is pure: records in, report objects out. `reports_publisher.py` reads the store
and writes the objects (docs/reports.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.audit.record import StoredRecord
from webhook.reports_owners import ObjectRef
from webhook.violations import Violation

REPORT_NAME = "kube-intent"
SOURCE = "kube-intent"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "kube-intent"
CATEGORY = "GPU admission"
# The policy/rule of a result about the decision as a whole (a pass, a refusal naming no rule).
DECISION_POLICY = "kube-intent"
DECISION_RULE = "admission"
MAX_MESSAGE = 1024
DEFAULT_MAX_RESULTS = 500

Result = Literal["pass", "fail", "warn", "error", "skip"]
RESULTS: tuple[Result, ...] = ("pass", "fail", "warn", "error", "skip")

ERR_KINDS = (
    "KUBE_INTENT_REPORTS={value!r}: expected a comma-separated list of {kinds}, or "
    "true/auto (every kind the API server serves), or false/empty (off)"
)
_ON = {"true", "auto", "1", "yes", "on"}
_OFF = {"", "false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class ReportKind:
    """One report API: where its objects live and how a report of it looks."""

    setting: str
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


POLICY_REPORT = ReportKind(
    "policyreport", "wgpolicyk8s.io", "v1alpha2", "policyreports", "PolicyReport"
)
OPEN_REPORT = ReportKind("openreports", "openreports.io", "v1alpha1", "reports", "Report")
REPORT_KINDS = (POLICY_REPORT, OPEN_REPORT)


def report_kinds(value: str) -> tuple[tuple[ReportKind, ...], bool] | None:
    """The `reports` setting: None when off, else the kinds asked for and whether every kind
    was asked for (then a kind the API server does not serve is no reason to log a warning).

    Raises ValueError with a message for a person.
    """
    text = value.strip().lower()
    if text in _OFF:
        return None
    if text in _ON:
        return REPORT_KINDS, True
    by_setting = {k.setting: k for k in REPORT_KINDS}
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in by_setting]
    if unknown or not names:
        kinds = ", ".join(by_setting)
        raise ValueError(ERR_KINDS.format(value=value, kinds=kinds))
    return tuple(by_setting[name] for name in dict.fromkeys(names)), False


def _timestamp(record: StoredRecord) -> dict[str, int]:
    # metav1.Timestamp, what both schemas require (seconds and nanos).
    return {"seconds": int(record.time.timestamp()), "nanos": record.time.microsecond * 1000}


def _properties(record: StoredRecord, violation: Violation | None) -> dict[str, str]:
    values = {
        "agent": record.agent,
        "intentDigest": record.intent_digest,
        "auditRecordId": str(record.id),
        "auditSeq": str(record.seq),
        "policyRevision": record.policy_revision,
        "grantId": record.grant_jti,
        "pod": f"{record.namespace}/{record.name}" if record.name else None,
        "podUid": record.pod_uid,
        "operation": record.operation,
        "user": record.user,
        "enforcement": violation.enforcement if violation else None,
        "field": violation.field if violation else None,
    }
    return {key: value for key, value in values.items() if value}


# What a violation does to the pod -> (result, severity). A `deny` violation of an admitted
# pod (an enforcement override let it through) is reported as a warning: nothing was refused.
_SEVERITY = {"deny": "high", "warn": "medium", "dryrun": "low"}


def _outcome(record: StoredRecord, violation: Violation) -> Result:
    if violation.enforcement == "deny" and not record.allowed:
        return "fail"
    return "warn"


def results_for(record: StoredRecord, subject: ObjectRef) -> list[dict[str, Any]]:
    """The report results one admission record gives `subject`.

    One result per violation (rule id as `policy` and `rule`): `fail` for a denying rule of a
    refused pod, `warn` for a warning or a dry-run (would-be) denial. An admitted pod also gets
    one `pass` for the decision as a whole (policy `kube-intent`, rule `admission`): the rules
    that held are not listed one by one (OPA returns violations only), and a warning must not
    hide that the pod got in. A refusal that names no rule still yields a `fail`.
    """
    resources = [subject.to_reference()]
    base = {"source": SOURCE, "category": CATEGORY, "timestamp": _timestamp(record)}
    results: list[dict[str, Any]] = []
    for violation in dict.fromkeys(record.violations):
        results.append(
            {
                **base,
                "policy": violation.rule,
                "rule": violation.rule,
                "result": _outcome(record, violation),
                "severity": _SEVERITY[violation.enforcement],
                "message": str(violation)[:MAX_MESSAGE],
                "properties": _properties(record, violation),
                "resources": resources,
            }
        )
    if not record.allowed and not any(r["result"] == "fail" for r in results):
        results.append(
            {
                **base,
                "policy": DECISION_POLICY,
                "rule": DECISION_RULE,
                "result": "fail",
                "severity": "high",
                "message": (record.message or "denied")[:MAX_MESSAGE],
                "properties": _properties(record, None),
                "resources": resources,
            }
        )
    if record.allowed:
        pod = f"{record.namespace}/{record.name}" if record.name else record.namespace
        results.append(
            {
                **base,
                "policy": DECISION_POLICY,
                "rule": DECISION_RULE,
                "result": "pass",
                "message": (
                    f"pod {pod} admitted with {len(record.violations)} finding(s) that do not "
                    "deny (see this workload's warn results)"
                    if record.violations
                    else f"pod {pod} admitted: its intent satisfied every rule"
                ),
                "properties": _properties(record, None),
                "resources": resources,
            }
        )
    return results


@dataclass(slots=True)
class _Entry:
    seq: int
    results: list[dict[str, Any]]


@dataclass(slots=True)
class _Namespace:
    entries: dict[tuple[str, str, str], _Entry] = field(default_factory=dict)
    size: int = 0


class ReportBook:
    """The newest decision per workload, per namespace, within `max_results` per namespace.

    A newer record for a workload replaces every result the workload had (a pod that now
    passes replaces its older failure); past the bound, the workloads decided longest ago
    are pruned first.
    """

    def __init__(self, max_results: int = DEFAULT_MAX_RESULTS) -> None:
        if max_results < 1:
            raise ValueError("max_results must be at least 1")
        self.max_results = max_results
        self._namespaces: dict[str, _Namespace] = {}

    def forget(self, namespace: str) -> None:
        """Drop a namespace's report (the namespace is gone): the book stays bounded in total."""
        self._namespaces.pop(namespace, None)

    def add(self, record: StoredRecord, subject: ObjectRef) -> bool:
        """Take `record` into its namespace's report; False when it changes nothing (an
        admission record older than the one already held for its workload, or not one)."""
        if record.kind != "admission" or not record.namespace:
            return False
        book = self._namespaces.setdefault(record.namespace, _Namespace())
        held = book.entries.get(subject.key)
        if held is not None and held.seq >= record.seq:
            return False
        if held is not None:
            book.size -= len(held.results)
            del book.entries[subject.key]
        results = results_for(record, subject)[: self.max_results]
        book.entries[subject.key] = _Entry(record.seq, results)
        book.size += len(results)
        self._prune(book)
        return True

    def _prune(self, book: _Namespace) -> None:
        if book.size <= self.max_results:
            return
        for key, entry in sorted(book.entries.items(), key=lambda item: item[1].seq):
            if book.size <= self.max_results:
                return
            del book.entries[key]
            book.size -= len(entry.results)

    def namespaces(self) -> list[str]:
        return sorted(self._namespaces)

    def results(self, namespace: str) -> list[dict[str, Any]]:
        """Newest decision first."""
        book = self._namespaces.get(namespace)
        if book is None:
            return []
        entries = sorted(book.entries.values(), key=lambda entry: entry.seq, reverse=True)
        return [result for entry in entries for result in entry.results]

    def report(self, namespace: str, kind: ReportKind) -> dict[str, Any]:
        """The whole report object for `namespace` (to create, or to replace ours with)."""
        results = self.results(namespace)
        report: dict[str, Any] = {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {
                "name": REPORT_NAME,
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            },
            "results": results,
            "summary": summary(results),
        }
        if kind is OPEN_REPORT:
            report["source"] = SOURCE
            report["configuration"] = {"limits": {"maxResults": self.max_results}}
        return report


def summary(results: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(RESULTS, 0)
    for result in results:
        counts[result["result"]] += 1
    return counts
