"""The admission template both webhooks follow: short-circuit, evaluate, record, respond.

Metrics and the decision log line are written in `finally`; they never change a verdict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from identity.grants import GRANT_ANNOTATION
from webhook import admission
from webhook.admission import AdmissionRequest
from webhook.audit import AUDIT_UNAVAILABLE_RULE
from webhook.decision import RequestInfo, Verdict
from webhook.deps import Services
from webhook.detect import DetectError, Workload
from webhook.intent import INTENT_DIGEST_ANNOTATION, ParsedIntent
from webhook.logs import log_decision
from webhook.policy import Violation

log = logging.getLogger("kube_intent.admit")

Webhook = Literal["mutate", "validate"]
Checks = Callable[[AdmissionRequest, Verdict], list[Violation]]
Respond = Callable[[AdmissionRequest, RequestInfo, Verdict], dict[str, Any]]

ERR_AUDIT_DOWN = (
    "the audit store is unavailable and audit is required for GPU pods; retry shortly "
    "(operators: check the audit database, or set audit.required=false to admit while it is down)"
)


def request_info(req: AdmissionRequest) -> RequestInfo:
    obj = req.object or {}
    metadata = obj.get("metadata") or {}
    name = req.name or metadata.get("name") or metadata.get("generateName") or ""
    return RequestInfo(
        uid=req.uid,
        operation=req.operation,
        namespace=req.namespace or metadata.get("namespace") or "",
        name=str(name),
        username=req.user_info.username,
        groups=tuple(req.user_info.groups),
        dry_run=req.dry_run,
    )


# Annotations only the mutating webhook writes on a GPU pod it admitted.
GOVERNED_MARKERS = (INTENT_DIGEST_ANNOTATION, GRANT_ANNOTATION)


def was_governed(req: AdmissionRequest) -> bool:
    """An UPDATE of a pod that was admitted as a GPU pod."""
    annotations = admission.metadata_map(req.old_object, "annotations")
    return req.operation == "UPDATE" and any(key in annotations for key in GOVERNED_MARKERS)


async def decide(
    services: Services, info: RequestInfo, pod: dict[str, Any], workload: Workload
) -> Verdict:
    started = time.perf_counter()
    verdict = await services.decider.decide(info, pod, workload)
    if verdict.policy_input is not None:  # OPA was asked
        services.metrics.opa_latency.observe(time.perf_counter() - started)
        if verdict.decision is None:
            services.metrics.opa_errors.inc()
    return verdict


async def admit(
    webhook: Webhook,
    req: AdmissionRequest,
    services: Services,
    *,
    respond: Respond,
    checks: Checks | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = "error"
    verdict: Verdict | None = None
    info = request_info(req)
    try:
        if not req.is_pod:
            outcome = "rejected"
            kind = f"{req.kind.group or 'core'}/{req.kind.version} {req.kind.kind}"
            if req.sub_resource:
                kind += f" (subresource {req.sub_resource})"
            return admission.deny(
                req.uid, admission.ERR_NOT_POD.format(kind=kind), code=400, reason="BadRequest"
            )
        if req.operation not in ("CREATE", "UPDATE") or req.object is None:
            outcome = "passthrough"
            return admission.allow(req.uid)

        pod = req.object
        decider = services.decider
        try:
            resolver = (
                await services.claims.resolver_for(info.namespace, pod) if services.claims else None
            )
            workload = decider.detect(pod, info.namespace, resolver)
        except DetectError as exc:
            verdict = decider.detect_error_verdict(exc)
        else:
            if not workload.gpu and not was_governed(req):
                outcome = "passthrough"
                return admission.allow(req.uid)
            if not workload.gpu:
                # Admitted as a GPU pod, no longer one (a DRA claim re-created without an
                # accelerator class): no policy to ask, but the governed fields stay pinned.
                verdict = Verdict(allowed=True, workload=workload, intent=ParsedIntent(False))
            else:
                verdict = await decide(services, info, pod, workload)

        if checks is not None:
            extra = checks(req, verdict)
            verdict.violations = [*verdict.violations, *extra]
            verdict.allowed = verdict.allowed and not any(v.enforcement == "deny" for v in extra)

        if services.recorder is not None and not info.dry_run:
            latency_ms = (time.perf_counter() - started) * 1000
            try:
                await services.recorder.record(webhook, info, verdict, latency_ms)
            except Exception as exc:  # the recorder buffers; an exception means "required and down"
                log.error("audit record failed", exc_info=exc)
                if verdict.allowed and services.settings.audit_required:
                    verdict.violations = [
                        *verdict.violations,
                        Violation(rule=AUDIT_UNAVAILABLE_RULE, message=ERR_AUDIT_DOWN),
                    ]
                    verdict.allowed = False

        outcome = "allowed" if verdict.allowed else "denied"
        if services.events is not None and not verdict.allowed:
            try:
                services.events.denied(info, pod, verdict)
            except Exception:  # best effort: an Event never changes the answer
                log.exception("denial event not queued")
        return respond(req, info, verdict)
    finally:
        _observe(webhook, info, services, verdict, outcome, started)


def respond_denial(req: AdmissionRequest, info: RequestInfo, verdict: Verdict) -> dict[str, Any]:
    pod = f"{info.namespace}/{info.name}"
    return admission.deny(req.uid, verdict.denial_message(pod), warnings=verdict.warnings or None)


def _observe(
    webhook: Webhook,
    info: RequestInfo,
    services: Services,
    verdict: Verdict | None,
    outcome: str,
    started: float,
) -> None:
    elapsed = time.perf_counter() - started
    try:
        metrics = services.metrics
        metrics.requests.labels(webhook, info.operation, outcome).inc()
        metrics.latency.labels(webhook).observe(elapsed)
        if verdict is None:
            return
        for violation in verdict.violations:
            metrics.violations.labels(webhook, violation.rule, violation.enforcement).inc()
        identity = verdict.identity
        log_decision(
            {
                "webhook": webhook,
                "uid": info.uid,
                "operation": info.operation,
                "namespace": info.namespace,
                "name": info.name,
                "user": info.username,
                "dryRun": info.dry_run,
                "agent": identity.agent if identity else None,
                "spiffeId": identity.spiffe_id if identity else None,
                "accelerators": verdict.workload.total if verdict.workload else None,
                "intentDigest": verdict.intent.digest,
                "allowed": verdict.allowed,
                "violations": [
                    {"rule": v.rule, "enforcement": v.enforcement} for v in verdict.violations
                ],
                "policyRevision": services.policy.revision,
                "latencyMs": round(elapsed * 1000, 3),
            }
        )
    except Exception:  # best effort: observability never changes or breaks a verdict
        log.exception("recording metrics failed")
