"""The admission template both webhooks follow: short-circuit, evaluate, record, respond.

Metrics and the decision log line are written in `finally`; they never change a verdict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from identity import jsonio
from identity.grants import GRANT_ANNOTATION
from identity.intent import INTENT_DIGEST_ANNOTATION
from webhook import admission
from webhook.admission import AdmissionRequest
from webhook.audit import AUDIT_UNAVAILABLE_RULE
from webhook.decision import NO_INTENT, RequestInfo, Verdict
from webhook.deps import Services
from webhook.detect import DetectError, Workload
from webhook.incidents import SEE_LOG, report
from webhook.limits import bound_violations, pod_limits
from webhook.logs import log_decision
from webhook.violations import Violation

log = logging.getLogger("kube_intent.admit")

Webhook = Literal["mutate", "validate"]
Checks = Callable[[AdmissionRequest, Verdict], list[Violation]]
Respond = Callable[[AdmissionRequest, RequestInfo, Verdict], dict[str, Any]]

ERR_AUDIT_DOWN = (
    "the audit store is unavailable and audit is required for GPU pods; retry shortly "
    "(operators: check the audit database, or set audit.required=false to admit while it is down)"
)
RULE_INTERNAL = "internal-error"
ERR_INTERNAL_ERROR = (
    "kube-intent could not evaluate this pod because of an internal error, and denied it "
    "to fail safe: " + SEE_LOG
)


def request_info(req: AdmissionRequest, *, authenticated: bool = False) -> RequestInfo:
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
        pod_uid=str(metadata.get("uid") or ""),
        authenticated=authenticated,
    )


# Annotations only the mutating webhook writes on a GPU pod it admitted.
GOVERNED_MARKERS = (INTENT_DIGEST_ANNOTATION, GRANT_ANNOTATION)


def was_governed(req: AdmissionRequest) -> bool:
    """An UPDATE of a pod that was admitted as a GPU pod."""
    annotations = admission.metadata_map(req.old_object, "annotations")
    return req.operation == "UPDATE" and any(key in annotations for key in GOVERNED_MARKERS)


async def decide(
    services: Services,
    info: RequestInfo,
    pod: dict[str, Any],
    workload: Workload,
    *,
    reuse: bool = False,
) -> Verdict:
    started = time.perf_counter()
    verdict = await services.decider.decide(info, pod, workload, reuse=reuse)
    if verdict.policy_input is not None and not verdict.policy_reused:  # OPA was asked
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
    authenticated: bool = False,
) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = "error"
    verdict: Verdict | None = None
    failure: Exception | None = None
    try:
        info = request_info(req, authenticated=authenticated)
    except Exception as exc:  # decided below (an audited denial), with what the request says
        failure = exc
        info = RequestInfo(
            uid=req.uid,
            operation=req.operation,
            namespace=req.namespace,
            name=req.name,
            username=req.user_info.username,
            groups=tuple(req.user_info.groups),
            dry_run=req.dry_run,
            authenticated=authenticated,
        )
    try:
        if not req.is_pod:
            outcome = "rejected"
            kind = f"{req.kind.group or 'core'}/{req.kind.version} {req.kind.kind}"
            if req.sub_resource:
                kind += f" (subresource {req.sub_resource})"
            if len(kind) > jsonio.SHOWN_CHARS * 2:
                kind = jsonio.digest_of(kind)
            return admission.deny(
                req.uid, admission.ERR_NOT_POD.format(kind=kind), code=400, reason="BadRequest"
            )
        if req.operation not in ("CREATE", "UPDATE") or req.object is None:
            outcome = "passthrough"
            return admission.allow(req.uid)

        pod = req.object
        try:
            if failure is not None:
                raise failure
            # /validate may reuse the decision /mutate got for the same input (decision_memo).
            reuse = webhook == "validate"
            verdict = await _evaluate(req, info, pod, services, checks, reuse=reuse)
        except Exception as exc:
            # A bug met on some input, anywhere on the decision path: the pod may be a GPU pod,
            # so it is denied, and audited, counted and reported like every other denial.
            verdict = _internal_error(webhook, info, services, exc)
        if verdict is None:
            outcome = "passthrough"
            return admission.allow(req.uid)
        # Policies and checks quote pod values (an image name) in their messages.
        verdict = verdict.with_violations(bound_violations(list(verdict.violations)))

        verdict = await _record(webhook, info, services, verdict, started)
        outcome = "allowed" if verdict.allowed else "denied"
        _event(info, pod, services, verdict)
        try:
            return respond(req, info, verdict)
        except Exception as exc:  # building the answer (the patch, a grant) failed
            verdict = _internal_error(webhook, info, services, exc)
            outcome = "denied"
            verdict = await _record(webhook, info, services, verdict, started)
            _event(info, pod, services, verdict)
            return respond_denial(req, info, verdict)
    finally:
        _observe(webhook, info, services, verdict, outcome, started)


async def _evaluate(
    req: AdmissionRequest,
    info: RequestInfo,
    pod: dict[str, Any],
    services: Services,
    checks: Checks | None,
    *,
    reuse: bool = False,
) -> Verdict | None:
    """The verdict for a pod CREATE or UPDATE; None when the pod is none of our business."""
    decider = services.decider
    # Before the claim lookups (a cluster read each), detection and OPA: a pathological pod is
    # refused for what it is, not by a timeout that reads like an outage.
    excess = pod_limits(pod)
    if excess:
        return Verdict.refused(*excess)
    try:
        resolver = (
            await services.claims.resolver_for(info.namespace, pod) if services.claims else None
        )
        workload = decider.detect(pod, info.namespace, resolver)
    except DetectError as exc:
        verdict = decider.detect_error_verdict(exc)
    else:
        if not workload.gpu and not was_governed(req):
            return None
        if not workload.gpu:
            # Admitted as a GPU pod, no longer one (a DRA claim re-created without an
            # accelerator class): no policy to ask, but the governed fields stay pinned.
            verdict = Verdict(allowed=True, workload=workload, intent=NO_INTENT)
        else:
            verdict = await decide(services, info, pod, workload, reuse=reuse)

    return verdict if checks is None else verdict.adding(checks(req, verdict))


def _internal_error(
    webhook: Webhook, info: RequestInfo, services: Services, exc: Exception
) -> Verdict:
    ref = report(log, "admission failed", exc=exc, webhook=webhook, uid=info.uid)
    try:
        services.metrics.internal_errors.labels(webhook).inc()
    except Exception:  # best effort: metrics never change a verdict
        log.exception("recording metrics failed")
    return Verdict.refused(
        Violation(rule=RULE_INTERNAL, message=ERR_INTERNAL_ERROR.format(ref=ref))
    )


async def _record(
    webhook: Webhook, info: RequestInfo, services: Services, verdict: Verdict, started: float
) -> Verdict:
    """The verdict as recorded: an allowed pod is refused when its record cannot be kept."""
    if services.recorder is None or info.dry_run:
        return verdict
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        await services.recorder.record(webhook, info, verdict, latency_ms)
    except Exception as exc:  # the recorder buffers; an exception means "required and down"
        log.error("audit record failed", exc_info=exc)
        if verdict.allowed and services.settings.audit_required:
            return verdict.adding([Violation(rule=AUDIT_UNAVAILABLE_RULE, message=ERR_AUDIT_DOWN)])
    return verdict


def _event(info: RequestInfo, pod: dict[str, Any], services: Services, verdict: Verdict) -> None:
    if services.events is None or verdict.allowed:
        return
    try:
        services.events.denied(info, pod, verdict)
    except Exception:  # best effort: an Event never changes the answer
        log.exception("denial event not queued")


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
        services.metrics.observe_admission(
            webhook,
            info.operation,
            outcome,
            elapsed,
            verdict.violations if verdict is not None else (),
            namespace=info.namespace,
            identity=verdict.identity if verdict is not None else None,
        )
        if verdict is None:
            return
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
                "policyRevision": services.decider.policy.revision,
                "latencyMs": round(elapsed * 1000, 3),
            }
        )
    except Exception:  # best effort: observability never changes or breaks a verdict
        log.exception("recording metrics failed")
