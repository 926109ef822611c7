"""`kube-intent policy replay`: what a candidate policy would decide on recorded admissions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from webhook.audit.buffer import AUDIT_UNAVAILABLE_RULE
from webhook.audit.record import StoredRecord
from webhook.decision import RULE_DETECT, RULE_INTENT_SCHEMA, RULE_POLICY_ENGINE
from webhook.grants import RULE_GRANT
from webhook.policy import PolicyEngine
from webhook.validate import RULE_EPHEMERAL, RULE_IMMUTABLE, RULE_INTEGRITY

# Rules the webhook adds itself (not the policy): a policy change cannot alter them.
WEBHOOK_RULES = frozenset(
    {
        RULE_INTENT_SCHEMA,
        RULE_DETECT,
        RULE_POLICY_ENGINE,
        AUDIT_UNAVAILABLE_RULE,
        RULE_IMMUTABLE,
        RULE_INTEGRITY,
        RULE_EPHEMERAL,
        RULE_GRANT,
    }
)


@dataclass(frozen=True, slots=True)
class ReplayChange:
    record_id: int
    time: str
    namespace: str
    name: str
    agent: str | None
    was_allowed: bool
    now_allowed: bool
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "time": self.time,
            "namespace": self.namespace,
            "name": self.name,
            "agent": self.agent,
            "wasAllowed": self.was_allowed,
            "nowAllowed": self.now_allowed,
            "addedDenials": list(self.added),
            "removedDenials": list(self.removed),
        }


@dataclass(slots=True)
class ReplayReport:
    replayed: int = 0
    skipped: int = 0
    changes: list[ReplayChange] = field(default_factory=list)
    added_by_rule: Counter[str] = field(default_factory=Counter)
    removed_by_rule: Counter[str] = field(default_factory=Counter)

    @property
    def newly_denied(self) -> list[ReplayChange]:
        return [c for c in self.changes if c.was_allowed and not c.now_allowed]

    @property
    def newly_allowed(self) -> list[ReplayChange]:
        return [c for c in self.changes if not c.was_allowed and c.now_allowed]

    def to_json(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "skipped": self.skipped,
            "newlyDenied": len(self.newly_denied),
            "newlyAllowed": len(self.newly_allowed),
            "addedDenialsByRule": dict(self.added_by_rule),
            "removedDenialsByRule": dict(self.removed_by_rule),
            "changes": [c.to_json() for c in self.changes],
        }

    def render(self) -> str:
        lines = [
            f"replayed {self.replayed} recorded admissions "
            f"({self.skipped} without a policy input skipped)",
            f"newly denied: {len(self.newly_denied)}   newly allowed: {len(self.newly_allowed)}",
        ]
        for title, counts in (
            ("denials added", self.added_by_rule),
            ("denials removed", self.removed_by_rule),
        ):
            for rule, count in sorted(counts.items()):
                lines.append(f"  {title:<16} {rule:<28} {count}")
        for c in self.changes:
            verdict = (
                f"{'ALLOW' if c.was_allowed else 'DENY'} -> {'ALLOW' if c.now_allowed else 'DENY'}"
            )
            delta = " ".join([*(f"+{r}" for r in c.added), *(f"-{r}" for r in c.removed)])
            lines.append(f"#{c.record_id} {c.time} {c.namespace}/{c.name} {verdict} {delta}")
        return "\n".join(lines)


def _policy_denials(violations: list[dict[str, Any]]) -> set[str]:
    return {
        v["rule"]
        for v in violations
        if v["enforcement"] == "deny" and v["rule"] not in WEBHOOK_RULES
    }


async def replay(records: list[StoredRecord], policy: PolicyEngine) -> ReplayReport:
    report = ReplayReport()
    for record in records:
        if record.kind != "admission" or record.input is None:
            report.skipped += 1
            continue
        before = _policy_denials([v.model_dump() for v in record.violations])
        decision = await policy.evaluate(record.input)
        after = _policy_denials([v.model_dump() for v in decision.violations])
        report.replayed += 1
        if before == after:
            continue
        added, removed = tuple(sorted(after - before)), tuple(sorted(before - after))
        report.added_by_rule.update(added)
        report.removed_by_rule.update(removed)
        report.changes.append(
            ReplayChange(
                record_id=record.id or 0,
                time=record.time.isoformat(timespec="seconds"),
                namespace=record.namespace,
                name=record.name,
                agent=record.agent,
                was_allowed=not before,
                now_allowed=not after,
                added=added,
                removed=removed,
            )
        )
    return report
