"""The webhook's side of the audit trail: one record per admission decision.

`/mutate` records only its denials (an allowed pod is recorded once, by `/validate`, on the
final object), so each pod creation leaves one row. Dry-run requests leave none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from identity import jws
from identity.grants import GRANT_ANNOTATION
from webhook.admission import metadata_map
from webhook.audit.buffer import AuditLog
from webhook.audit.record import AcceleratorSummary, AuditRecord
from webhook.decision import RequestInfo, Verdict
from webhook.metrics import Metrics
from webhook.violations import Violation


def grant_jti(annotations: Mapping[str, Any]) -> str | None:
    """The jti of the pod's grant, for cross-reference only (/validate verifies the grant)."""
    token = annotations.get(GRANT_ANNOTATION)
    if not isinstance(token, str):
        return None
    try:
        claims = jws.unverified_claims(token)
    except jws.JwsError:
        return None
    jti = claims.get("jti")
    return jti if isinstance(jti, str) else None


def admission_record(
    request: RequestInfo, verdict: Verdict, latency_ms: float, policy_revision: str
) -> AuditRecord:
    identity = verdict.identity
    workload = verdict.workload
    annotations = metadata_map((verdict.policy_input or {}).get("pod"), "annotations")
    return AuditRecord(
        uid=request.uid,
        operation=request.operation,
        namespace=request.namespace,
        name=request.name,
        user=request.username,
        groups=list(request.groups),
        agent=identity.agent if identity else None,
        service_account=identity.service_account if identity else "",
        spiffe_id=identity.spiffe_id if identity else None,
        intent=verdict.intent.document if verdict.intent.valid else None,
        intent_digest=verdict.intent.digest,
        accelerators=AcceleratorSummary.from_workload(workload.to_input())
        if workload
        else AcceleratorSummary(),
        allowed=verdict.allowed,
        violations=list(verdict.violations),
        policy_revision=policy_revision,
        # A would-be denial (admitted by a dryrun/warn rollout) never makes a carried grant
        # redeemable: /token needs a row naming the grant's jti.
        grant_jti=None if verdict.overridden else grant_jti(annotations),
        latency_ms=round(latency_ms, 3),
        input=verdict.policy_input,
        message=""
        if verdict.allowed
        else verdict.denial_message(f"{request.namespace}/{request.name}"),
        pod_uid=request.pod_uid or None,
        authenticated=request.authenticated,
    )


class AuditRecorder:
    """deps.DecisionRecorder over an AuditLog, which buffers and enforces `audit.required`."""

    def __init__(self, log: AuditLog, metrics: Metrics, policy_revision: Callable[[], str]) -> None:
        self.log = log
        self.policy_revision = policy_revision
        metrics.watch_audit(log.counters)

    async def record(
        self, webhook: str, request: RequestInfo, verdict: Verdict, latency_ms: float
    ) -> None:
        if webhook == "mutate" and verdict.allowed:
            return
        record = admission_record(request, verdict, latency_ms, self.policy_revision())
        await self.log.record(record)


class TokenAuditor:
    """Every token issuance and refusal goes to the audit trail (and the metrics).

    When audit is required and the store is down, `record` raises and the exchange withholds
    the token: nothing is handed out that the trail does not show.
    """

    def __init__(self, log: AuditLog, metrics: Metrics) -> None:
        self.log = log
        self.metrics = metrics

    async def __call__(self, result: str, details: dict[str, Any]) -> None:
        self.metrics.token_exchanges.labels(result).inc()
        refused = result != "issued"
        violations = (
            [
                Violation(
                    rule="token-exchange",
                    message=f"{details.get('error')}: {details.get('reason')}",
                )
            ]
            if refused
            else []
        )
        scope = details.get("scope", details.get("requested_scope", ""))
        await self.log.record(
            AuditRecord(
                kind="token",
                uid=str(details.get("jti") or ""),
                operation="TOKEN_EXCHANGE",
                namespace=str(details.get("namespace", "")),
                name=str(details.get("pod", "")),
                agent=details.get("agent"),
                service_account=str(details.get("service_account", "")),
                allowed=not refused,
                grant_jti=details.get("grant_jti"),
                violations=violations,
                message=f"audience={details.get('audience', '')} scope={scope}",
            )
        )
