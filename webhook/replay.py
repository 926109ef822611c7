"""`kube-intent policy replay`: what a candidate policy would decide on recorded admissions.

Each record is compared on its recorded *decision* (allowed or denied), not only on the policy's
rules. A decision the webhook made itself (the intent failed its schema, OPA was down, the grant
or the mutation was tampered with, the audit store was down, ...) is not the policy's to redo:
such a record is reported as not replayable, with the rule that decided it, never as newly
allowed because the candidate policy alone would admit the pod.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from webhook.admit import RULE_INTERNAL
from webhook.audit.buffer import AUDIT_UNAVAILABLE_RULE
from webhook.audit.record import StoredRecord, format_time
from webhook.claim_guard import RULE as RULE_CLAIM_GUARD
from webhook.decision import RULE_DETECT, RULE_INTENT_SCHEMA, RULE_POLICY_ENGINE, RULE_POLICY_INPUT
from webhook.grants import RULE_GRANT
from webhook.limits import RULE_POD_LIMITS
from webhook.policy import PolicyEngine, PolicyInputRejected
from webhook.validate import RULE_EPHEMERAL, RULE_IMMUTABLE, RULE_INTEGRITY
from webhook.violations import Violation

Status = Literal["unchanged", "newly denied", "newly allowed", "rules changed", "not replayable"]
STATUSES: tuple[Status, ...] = get_args(Status)
# What changes a decision: `--fail-on-change` fails on these.
DECISION_CHANGES: tuple[Status, ...] = ("newly denied", "newly allowed")

# Rules the webhook enforces itself, not the policy, and what each means. A record they refused
# (or, for the engine rules, that the policy never answered) keeps that decision whatever the
# candidate says: the webhook's checks read what the record does not hold (the old pod, the
# grant as signed, the store's health at that moment).
WEBHOOK_RULES: dict[str, str] = {
    RULE_POD_LIMITS: "the pod exceeded the limits checked before the policy",
    RULE_DETECT: "the pod's resources could not be read",
    RULE_INTENT_SCHEMA: "the intent failed its schema, so the policy never saw the pod",
    RULE_POLICY_ENGINE: "the policy engine did not answer",
    RULE_POLICY_INPUT: "the policy engine refused the pod as input",
    RULE_INTERNAL: "an internal error",
    AUDIT_UNAVAILABLE_RULE: "the audit store was down and audit is required",
    RULE_IMMUTABLE: "a governed field was changed after admission",
    RULE_INTEGRITY: "the admitted mutation was altered",
    RULE_EPHEMERAL: "an ephemeral container reached the pod's credentials",
    RULE_GRANT: "the grant failed its integrity check",
    RULE_CLAIM_GUARD: "a DRA claim of admitted pods was changed",
}
# Whatever their enforcement, these say the policy did not decide (a fail-open warning too).
UNDECIDED_RULES = frozenset({RULE_POLICY_ENGINE, RULE_POLICY_INPUT})
NO_INPUT = "the webhook (no policy input was recorded: the policy never evaluated this request)"

RuleSet = tuple[tuple[str, str], ...]  # (rule, enforcement), sorted


def policy_rules(violations: Iterable[Violation]) -> RuleSet:
    """The policy's findings of a decision: (rule, enforcement), without the webhook's own."""
    return tuple(
        sorted({(v.rule, v.enforcement) for v in violations if v.rule not in WEBHOOK_RULES})
    )


def _denials(rules: RuleSet) -> set[str]:
    return {rule for rule, enforcement in rules if enforcement == "deny"}


def _show(rules: RuleSet) -> str:
    if not rules:
        return "no rule"
    return ", ".join(rule if e == "deny" else f"{rule}({e})" for rule, e in rules)


def decided_by(record: StoredRecord) -> str | None:
    """Why the webhook, not the policy, made this record's decision (None: the policy did)."""
    for violation in record.violations:
        if violation.rule in UNDECIDED_RULES or (
            violation.rule in WEBHOOK_RULES and violation.enforcement == "deny"
        ):
            return f"{violation.rule} ({WEBHOOK_RULES[violation.rule]})"
    if record.input is not None:
        return None
    # No input: the webhook stopped before the policy, under a rollout override too (an
    # intent-schema finding recorded as dryrun).
    own = next((v.rule for v in record.violations if v.rule in WEBHOOK_RULES), None)
    return f"{own} ({WEBHOOK_RULES[own]})" if own is not None else NO_INPUT


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """One recorded admission replayed: its recorded and candidate decision and rules."""

    record_id: int
    time: str
    namespace: str
    name: str
    agent: str | None
    revision: str
    status: Status
    was_allowed: bool
    now_allowed: bool | None = None  # None: not replayable
    old_rules: RuleSet = ()
    new_rules: RuleSet = ()
    decided_by: str | None = None

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(sorted(_denials(self.new_rules) - _denials(self.old_rules)))

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(sorted(_denials(self.old_rules) - _denials(self.new_rules)))

    @property
    def reason(self) -> str:
        if self.status == "not replayable":
            return f"not replayable: decided by {self.decided_by}"
        was = "allowed" if self.was_allowed else "denied"
        now = "allowed" if self.now_allowed else "denied"
        return f"{was} ({_show(self.old_rules)}) -> {now} ({_show(self.new_rules)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "time": self.time,
            "namespace": self.namespace,
            "name": self.name,
            "agent": self.agent,
            "revision": self.revision,
            "status": self.status,
            "reason": self.reason,
            "decidedBy": self.decided_by,
            "wasAllowed": self.was_allowed,
            "nowAllowed": self.now_allowed,
            "oldRules": [{"rule": r, "enforcement": e} for r, e in self.old_rules],
            "newRules": [{"rule": r, "enforcement": e} for r, e in self.new_rules],
            "addedDenials": list(self.added),
            "removedDenials": list(self.removed),
        }


@dataclass(slots=True)
class ReplayReport:
    candidate: str = ""  # the candidate's revision
    results: list[ReplayResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def replayed(self) -> int:
        return sum(1 for r in self.results if r.status != "not replayable")

    @property
    def changes(self) -> list[ReplayResult]:
        return [r for r in self.results if r.status not in ("unchanged", "not replayable")]

    @property
    def decision_changed(self) -> bool:
        return any(r.status in DECISION_CHANGES for r in self.results)

    def by_rule(self, which: Literal["added", "removed"]) -> Counter[str]:
        counts: Counter[str] = Counter()
        for result in self.changes:
            counts.update(result.added if which == "added" else result.removed)
        return counts

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in STATUSES)
        return (
            f"{len(self.results)} recorded admissions against revision {self.candidate}: {counts}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.candidate,
            "records": len(self.results),
            "replayed": self.replayed,
            "unchanged": self.count("unchanged"),
            "newlyDenied": self.count("newly denied"),
            "newlyAllowed": self.count("newly allowed"),
            "rulesChanged": self.count("rules changed"),
            "notReplayable": self.count("not replayable"),
            "decisionChanged": self.decision_changed,
            "addedDenialsByRule": dict(self.by_rule("added")),
            "removedDenialsByRule": dict(self.by_rule("removed")),
            "summary": self.summary(),
            "changes": [r.to_json() for r in self.changes],
            "results": [r.to_json() for r in self.results],
        }

    def render(self) -> str:
        """One line per record that is not unchanged, then the summary line."""
        lines = []
        for r in self.results:
            if r.status == "unchanged":
                continue
            where = f"{r.namespace}/{r.name}"
            lines.append(f"#{r.record_id} {r.time} {where} {r.status}: {r.reason}")
        for title, counts in (
            ("denials added", self.by_rule("added")),
            ("denials removed", self.by_rule("removed")),
        ):
            for rule, count in sorted(counts.items()):
                lines.append(f"  {title:<16} {rule:<28} {count}")
        lines.append(self.summary())
        return "\n".join(lines)


async def replay_one(record: StoredRecord, policy: PolicyEngine) -> ReplayResult:
    base: dict[str, Any] = {
        "record_id": record.id,
        "time": format_time(record.time),
        "namespace": record.namespace,
        "name": record.name,
        "agent": record.agent,
        "revision": record.policy_revision,
        "was_allowed": record.allowed,
        "old_rules": policy_rules(record.violations),
    }
    webhook = decided_by(record)
    if webhook is not None or record.input is None:
        return ReplayResult(status="not replayable", decided_by=webhook or NO_INPUT, **base)
    try:
        decision = await policy.evaluate(record.input)
    except PolicyInputRejected:
        # The candidate cannot read this input: the webhook would refuse the pod.
        new_rules: RuleSet = ((RULE_POLICY_INPUT, "deny"),)
        now_allowed = False
    else:
        new_rules = policy_rules(decision.violations)
        # As the webhook decides: a deny finding refuses whatever `allowed` the policy computed.
        now_allowed = decision.allowed and not _denials(new_rules)
    status: Status = "unchanged"
    if now_allowed != record.allowed:
        status = "newly allowed" if now_allowed else "newly denied"
    elif new_rules != base["old_rules"]:
        status = "rules changed"
    return ReplayResult(status=status, now_allowed=now_allowed, new_rules=new_rules, **base)


async def replay(
    records: Sequence[StoredRecord], policy: PolicyEngine, *, candidate: str = ""
) -> ReplayReport:
    """Replay the admission rows of ``records`` (other kinds are not decisions to redo)."""
    report = ReplayReport(candidate=candidate or policy.revision)
    for record in records:
        if record.kind == "admission":
            report.results.append(await replay_one(record, policy))
    return report
