"""POST /validate-claims: accelerator DRA claims only for pods admitted to hold them.

The pod webhooks decide once, at the pod's admission, from the claims it references *then*. A
ResourceClaim or ResourceClaimTemplate is a separate object: delete the NIC-class claim of an
admitted pod, re-create it under the same name with an accelerator device class, and the pod
gets a GPU that no intent, agent or grant covers (a time-of-check/time-of-use gap). This webhook
closes the gap from the claim's side. An accelerator claim or template is refused when a pod
that uses it

* was not admitted as a governed GPU pod, or
* would now hold more accelerators, other device classes, or allocationMode All, than its
  admission approved.

"Admitted" comes from the audit trail (the latest allowed admission row for the pod's UID),
never from the pod's annotations: anyone who can create a pod can write those. A claim no pod
uses yet is allowed: the admission of the pod that references it resolves it.

Handler shape as for pods: short-circuit, evaluate, record (denials), respond; metrics and the
decision log line in ``finally``. docs/dra-claims.md lists what this cannot see.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client

from webhook import admission
from webhook.admission import AdmissionRequest, metadata_map
from webhook.audit.record import AcceleratorSummary, AuditRecord, StoredRecord
from webhook.deps import ClaimLookup, Services
from webhook.detect import (
    AcceleratorDetector,
    ClaimKind,
    ClaimResolver,
    DetectError,
    Workload,
    claim_references,
)
from webhook.logs import log_decision
from webhook.violations import Violation

log = logging.getLogger("kube_intent.claim_guard")

CLAIMS_PATH = "/validate-claims"
WEBHOOK = "claims"  # the `webhook` label of metrics and decision lines
RULE = "dra-claim-admitted-pods"
GROUP = "resource.k8s.io"
CLAIM_KINDS: tuple[ClaimKind, ...] = ("ResourceClaim", "ResourceClaimTemplate")
# Set by the resourceclaim controller on the claims it generates from a pod's template entry:
# the name of that entry. The controller adopts an existing claim owned by the pod with this
# annotation instead of creating one, so it decides which entry a generated claim serves.
POD_CLAIM_ANNOTATION = "resource.kubernetes.io/pod-claim-name"
# A pod in these phases never starts a container again: its claims allocate nothing new.
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# The API server waits webhook.timeoutSeconds (3 s by default) for the whole answer.
LIST_DEADLINE_SECONDS = 1.5
LIST_PAGE_SIZE = 500
MAX_NAMED = 5  # device classes or pods named in one message

DENIAL_HEADER = "kube-intent denied {kind} {namespace}/{name}: {count} violation(s): {details}"
ERR_NOT_CLAIM = (
    "kube-intent's claim guard reviews only resource.k8s.io ResourceClaims and "
    "ResourceClaimTemplates, got {kind}: the webhook configuration's rules should select those only"
)
ERR_OBJECT = "the {kind} cannot be read: {error}"
ERR_NOT_ADMITTED = (
    "pod {pod} uses this {kind}, which requests accelerators ({classes}), but kube-intent never "
    "admitted that pod as a governed GPU pod (no allowed admission in the audit trail): "
    "accelerators reach a pod only through its own admission. Use a non-accelerator device "
    "class, or create a new pod, with an intent and an agent, that references this {kind}"
)
ERR_UNTRUSTED = (
    "pod {pod} uses this {kind}, which requests accelerators ({classes}), but its recorded "
    "admission came from a caller that did not authenticate as the API server, so it proves "
    "nothing: re-create the pod through the API server (operators: configure the API server's "
    "client certificate, or --trust-unauthenticated-admissions)"
)
ERR_OVER_BUDGET = (
    "pod {pod} would hold {total} accelerator(s) with this {kind}, but its admission approved "
    "{budget}: re-create the pod so that its admission decides on the new count"
)
ERR_NEW_CLASSES = (
    "pod {pod} would get device class(es) {classes} with this {kind}, but its admission approved "
    "{approved}: re-create the pod so that its admission decides on the new device classes"
)
ERR_ALL_DEVICES = (
    "pod {pod} would get every matching device on its node (allocationMode All) with this {kind}, "
    "which its admission did not approve: request an ExactCount"
)
ERR_POD_CLAIMS = "pod {pod}'s claims cannot be read with this {kind}: {error}"
ERR_LIST = (
    "kube-intent could not list the pods of namespace {namespace} to see which use this {kind} "
    "({error}); it was denied to fail safe: retry shortly"
)
ERR_HISTORY = (
    "kube-intent could not read pod {pod}'s admission from the audit trail ({error}); it was "
    "denied to fail safe: retry shortly (operators: check the audit database)"
)
ERR_NO_CLUSTER = (
    "kube-intent runs without cluster access, so it cannot see which pods use this {kind}; it "
    "was denied to fail safe (operators: run `kube-intent serve` in the cluster or with "
    "--kubeconfig)"
)
ERR_NO_AUDIT = (
    "kube-intent has no audit trail to read pod admissions from, so it cannot tell whether the "
    "pods using this {kind} were admitted for accelerators; it was denied to fail safe"
)


class PodSource(Protocol):
    """The pods of a namespace, read when asked (never cached: see KubePods)."""

    async def pods(self, namespace: str) -> list[dict[str, Any]]:
        """Every pod of `namespace` as API JSON; raises when the list cannot be read whole."""
        ...


class AdmissionHistory(Protocol):
    """The audit store's view of past admissions (webhook/audit/store.py AuditStore)."""

    async def admitted(
        self, pod_uid: str, *, grant_jti: str | None = None
    ) -> StoredRecord | None: ...


class AuditSink(Protocol):
    """Where denials are recorded (an AuditLog: it buffers while the store is down)."""

    async def record(self, record: AuditRecord) -> object: ...


class KubePods:
    """PodSource over the API server: one list per review, a consistent (quorum) read.

    Not a watch cache: the attack creates the pod and swaps its claim within milliseconds, and
    a cache that has not seen the pod yet would wave the swapped claim through.
    """

    def __init__(self, api: client.ApiClient, *, deadline: float = LIST_DEADLINE_SECONDS) -> None:
        self._core = client.CoreV1Api(api)
        self._deadline = deadline

    async def pods(self, namespace: str) -> list[dict[str, Any]]:
        # The client blocks: run it in a thread, and stop waiting at the deadline.
        return await asyncio.wait_for(
            asyncio.to_thread(self._list, namespace), timeout=self._deadline
        )

    def _list(self, namespace: str) -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            # Raw JSON (no model objects): the detector reads pods as the API serves them.
            # With _preload_content=False the client returns the urllib3 response, not the
            # V1PodList its annotation promises.
            response: Any = self._core.list_namespaced_pod(
                namespace,
                limit=LIST_PAGE_SIZE,
                _continue=token,
                _preload_content=False,
                _request_timeout=self._deadline,
            )
            body = json.loads(response.data)
            pods.extend(item for item in body.get("items") or [] if isinstance(item, dict))
            token = (body.get("metadata") or {}).get("continue") or None
            if token is None:
                return pods


@dataclass(frozen=True, slots=True)
class Subject:
    """The ResourceClaim or ResourceClaimTemplate under review."""

    kind: ClaimKind
    namespace: str
    name: str
    obj: Mapping[str, Any]
    # UIDs of the Pods in metadata.ownerReferences (template-generated claims name their pod).
    owners: frozenset[str] = frozenset()
    pod_claim: str | None = None  # the POD_CLAIM_ANNOTATION value

    @classmethod
    def of(cls, req: AdmissionRequest) -> Subject:
        obj = req.object or {}
        metadata = obj.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        refs = metadata.get("ownerReferences")
        owners = frozenset(
            ref["uid"]
            for ref in (refs if isinstance(refs, list) else [])
            if isinstance(ref, Mapping)
            and ref.get("apiVersion") == "v1"
            and ref.get("kind") == "Pod"
            and isinstance(ref.get("uid"), str)
        )
        pod_claim = metadata_map(obj, "annotations").get(POD_CLAIM_ANNOTATION)
        kind: ClaimKind = (
            "ResourceClaimTemplate" if req.kind.kind == "ResourceClaimTemplate" else "ResourceClaim"
        )
        return cls(
            kind=kind,
            # The request's namespace is the authoritative one (metadata may omit it on CREATE).
            namespace=req.namespace or str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or req.name or ""),
            obj=obj,
            owners=owners,
            pod_claim=pod_claim if isinstance(pod_claim, str) and pod_claim else None,
        )

    def references(self, kind: ClaimKind, name: str) -> bool:
        return (kind, name) == (self.kind, self.name)


class _WithSubject:
    """A ClaimResolver that answers with the object under review, else asks `base`.

    The object is not stored yet (CREATE) or stored in its old form (UPDATE): what matters is
    what the pods would get once it is.
    """

    def __init__(self, subject: Subject, base: ClaimResolver | None = None) -> None:
        self._subject = subject
        self._base = base

    def lookup(self, namespace: str, kind: ClaimKind, name: str) -> Mapping[str, Any] | None:
        if self._subject.references(kind, name):
            return self._subject.obj
        return self._base.lookup(namespace, kind, name) if self._base is not None else None


def _source_key(kind: ClaimKind) -> str:
    return "resourceClaimName" if kind == "ResourceClaim" else "resourceClaimTemplateName"


def subject_workload(detector: AcceleratorDetector, subject: Subject) -> Workload:
    """What the object alone asks for, counted by the pod detector (one claim entry using it).

    Raises DetectError for an object the detector cannot read.
    """
    pod = {"spec": {"resourceClaims": [{"name": "subject", _source_key(subject.kind): "subject"}]}}
    named = Subject(subject.kind, subject.namespace, "subject", subject.obj)
    return detector.detect(pod, _WithSubject(named), namespace=subject.namespace)


def _entry_ref(entry: object) -> tuple[ClaimKind, str] | None:
    refs = claim_references({"spec": {"resourceClaims": [entry]}})
    return refs[0] if refs else None


def _recorded_claims(pod: Mapping[str, Any]) -> dict[str, str]:
    """pod.status.resourceClaimStatuses: entry name -> the claim the controller made for it."""
    status = pod.get("status")
    entries = status.get("resourceClaimStatuses") if isinstance(status, Mapping) else None
    recorded: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        name, claim = entry.get("name"), entry.get("resourceClaimName")
        if isinstance(name, str) and isinstance(claim, str) and claim:
            recorded[name] = claim
    return recorded


def _uid(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata")
    return str(metadata.get("uid") or "") if isinstance(metadata, Mapping) else ""


def pod_label(pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"


def uses(pod: Mapping[str, Any], subject: Subject) -> bool:
    """Would `pod` get devices through the subject: by reference, or as its generated claim?"""
    if any(subject.references(kind, name) for kind, name in claim_references(pod)):
        return True
    if subject.kind != "ResourceClaim":
        return False
    return _uid(pod) in subject.owners or subject.name in _recorded_claims(pod).values()


def consumers(subject: Subject, pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found = []
    for pod in pods:
        status = pod.get("status")
        phase = status.get("phase") if isinstance(status, Mapping) else None
        if phase not in TERMINAL_PHASES and uses(pod, subject):
            found.append(pod)
    return found


def as_it_would_be(pod: Mapping[str, Any], subject: Subject) -> dict[str, Any]:
    """The pod with spec.resourceClaims naming the objects it would really hold.

    A template entry the controller has served stands for the claim it generated (recorded in
    the pod's status). A generated claim under review takes the place of the template entry it
    serves; when that cannot be told, it is counted on top (never under-count).
    """
    result = copy.deepcopy(dict(pod))
    spec = result.get("spec")
    if not isinstance(spec, dict):
        return result
    raw = spec.get("resourceClaims")
    entries: list[Any] = list(raw) if isinstance(raw, list) else []
    recorded = _recorded_claims(pod)
    pending: set[str] = set()  # template entries no claim was recorded for yet
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not entry.get("resourceClaimTemplateName"):
            continue
        name = entry.get("name")
        if isinstance(name, str) and name in recorded:
            entries[i] = {"name": name, "resourceClaimName": recorded[name]}
        elif isinstance(name, str):
            pending.add(name)
    if subject.kind == "ResourceClaim" and not any(
        _entry_ref(entry) == ("ResourceClaim", subject.name) for entry in entries
    ):
        # Only for the owner pod: the controller adopts an owned claim for an entry it has
        # not served yet, so that entry's template no longer counts; the claim does.
        target = subject.pod_claim if _uid(pod) in subject.owners else None
        replacement = {"name": target or subject.name, "resourceClaimName": subject.name}
        index = next(
            (
                i
                for i, entry in enumerate(entries)
                if target in pending and isinstance(entry, Mapping) and entry.get("name") == target
            ),
            None,
        )
        if index is None:
            entries.append(replacement)
        else:
            entries[index] = replacement
    spec["resourceClaims"] = entries
    return result


def _without_subject(pod: Mapping[str, Any], subject: Subject) -> dict[str, Any]:
    """The pod minus the entries naming the subject: what must be read from the cluster."""
    spec = pod.get("spec")
    entries = spec.get("resourceClaims") if isinstance(spec, Mapping) else None
    kept = [
        e
        for e in (entries if isinstance(entries, list) else [])
        if (ref := _entry_ref(e)) is None or not subject.references(*ref)
    ]
    return {"metadata": pod.get("metadata") or {}, "spec": {"resourceClaims": kept}}


def _accelerator_classes(workload: Workload, detector: AcceleratorDetector) -> set[str]:
    return {
        device_class
        for claim in workload.claims
        if claim.accelerator
        for device_class in claim.device_classes
        if detector.is_accelerator_class(device_class)
    }


def _admitted_claims(record: StoredRecord) -> list[Mapping[str, Any]]:
    policy_input = record.input if isinstance(record.input, Mapping) else {}
    workload = policy_input.get("workload")
    claims = workload.get("claims") if isinstance(workload, Mapping) else None
    return [c for c in (claims if isinstance(claims, list) else []) if isinstance(c, Mapping)]


def approved_classes(record: StoredRecord, detector: AcceleratorDetector) -> frozenset[str] | None:
    """Accelerator device classes the admission's policy saw; None: any (it saw an unknown one).

    An accelerator claim that was unresolved at admission (its object did not exist yet) was
    judged with unknown classes: whatever class it turns out to have is what was approved.
    """
    classes: set[str] = set()
    for claim in _admitted_claims(record):
        if claim.get("accelerator") is not True:
            continue
        if claim.get("resolved") is not True:
            return None
        seen = claim.get("deviceClasses")
        classes.update(c for c in (seen if isinstance(seen, list) else []) if isinstance(c, str))
    return frozenset(c for c in classes if detector.is_accelerator_class(c))


def _named(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:MAX_NAMED])
    more = len(names) - MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def budget_violations(
    pod: str,
    subject: Subject,
    workload: Workload,
    record: StoredRecord,
    detector: AcceleratorDetector,
) -> list[Violation]:
    """What the pod would hold with the subject, against what its admission approved."""
    found = []
    budget = record.accelerators.total
    if workload.total > budget:
        message = ERR_OVER_BUDGET.format(
            pod=pod, total=workload.total, kind=subject.kind, budget=budget
        )
        found.append(Violation(rule=RULE, message=message))
    approved = approved_classes(record, detector)
    if approved is not None:
        extra = sorted(_accelerator_classes(workload, detector) - approved)
        if extra:
            message = ERR_NEW_CLASSES.format(
                pod=pod,
                classes=_named(extra),
                kind=subject.kind,
                approved=_named(sorted(approved)) if approved else "none",
            )
            found.append(Violation(rule=RULE, message=message))
    if any(c.all_devices for c in workload.claims) and not any(
        c.get("allDevices") is True for c in _admitted_claims(record)
    ):
        found.append(
            Violation(rule=RULE, message=ERR_ALL_DEVICES.format(pod=pod, kind=subject.kind))
        )
    return found


def is_claim(req: AdmissionRequest) -> bool:
    return req.kind.group == GROUP and req.kind.kind in CLAIM_KINDS and not req.sub_resource


def spec_unchanged(req: AdmissionRequest) -> bool:
    """An UPDATE that leaves the spec alone (metadata, finalizers) changes no device."""
    return (
        req.operation == "UPDATE"
        and req.old_object is not None
        and (req.object or {}).get("spec") == req.old_object.get("spec")
    )


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def denial_message(subject: Subject, violations: Sequence[Violation]) -> str:
    return DENIAL_HEADER.format(
        kind=subject.kind,
        namespace=subject.namespace,
        name=subject.name,
        count=len(violations),
        details="; ".join(str(v) for v in violations),
    )


ClaimsHandler = Callable[[AdmissionRequest, Services], Awaitable[dict[str, Any]]]


class ClaimGuard:
    """The /validate-claims handler and what it reads: pods (the cluster), admissions (audit).

    Without either (no cluster, no audit store), accelerator claims that reach it are denied.
    """

    def __init__(
        self,
        pods: PodSource | None,
        history: AdmissionHistory | None,
        audit: AuditSink | None = None,
    ) -> None:
        self.pods = pods
        self.history = history
        self.audit = audit

    async def review(self, req: AdmissionRequest, services: Services) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "error"
        subject: Subject | None = None
        violations: list[Violation] = []
        checked: list[str] = []
        try:
            if not is_claim(req):
                outcome = "rejected"
                kind = f"{req.kind.group or 'core'}/{req.kind.version} {req.kind.kind}"
                if req.sub_resource:
                    kind += f" (subresource {req.sub_resource})"
                message = ERR_NOT_CLAIM.format(kind=kind)
                return admission.deny(req.uid, message, code=400, reason="BadRequest")
            if req.operation not in ("CREATE", "UPDATE") or req.object is None:
                outcome = "passthrough"
                return admission.allow(req.uid)
            if spec_unchanged(req):
                outcome = "passthrough"
                return admission.allow(req.uid)

            subject = Subject.of(req)
            detector = services.settings.accelerator_detector
            own: Workload | None = None
            try:
                own = subject_workload(detector, subject)
            except DetectError as exc:
                error = ERR_OBJECT.format(kind=subject.kind, error=exc)
                violations = [Violation(rule=RULE, message=error)]
            if own is not None and not own.gpu:
                outcome = "passthrough"  # the matchCondition over-selected (a glob class)
                return admission.allow(req.uid)
            if own is not None:
                violations = await self.evaluate(subject, own, services, checked)
            if not violations:
                outcome = "allowed"
                return admission.allow(req.uid)

            outcome = "denied"
            message = denial_message(subject, violations)
            if not req.dry_run:
                latency_ms = (time.perf_counter() - started) * 1000
                await self._record(req, subject, own, violations, message, latency_ms, services)
            return admission.deny(req.uid, message)
        finally:
            self._observe(req, subject, services, violations, checked, outcome, started)

    async def evaluate(
        self, subject: Subject, own: Workload, services: Services, checked: list[str]
    ) -> list[Violation]:
        """Violations of every live pod that uses the subject (an accelerator object)."""
        if self.pods is None:
            return [Violation(rule=RULE, message=ERR_NO_CLUSTER.format(kind=subject.kind))]
        try:
            pods = await self.pods.pods(subject.namespace)
        except Exception as exc:  # any failure to read: fail closed
            log.warning("cannot list pods in %s: %s", subject.namespace, _error(exc))
            message = ERR_LIST.format(
                namespace=subject.namespace, kind=subject.kind, error=_error(exc)
            )
            return [Violation(rule=RULE, message=message)]
        users = consumers(subject, pods)
        checked.extend(pod_label(pod) for pod in users)
        classes = _named(sorted(_accelerator_classes(own, services.settings.accelerator_detector)))
        results = await asyncio.gather(
            *(self._check(subject, pod, classes, services) for pod in users)
        )
        return [v for found in results for v in found]

    async def _check(
        self, subject: Subject, pod: Mapping[str, Any], classes: str, services: Services
    ) -> list[Violation]:
        label = pod_label(pod)
        if self.history is None:
            return [Violation(rule=RULE, message=ERR_NO_AUDIT.format(kind=subject.kind))]
        try:
            record = await self.history.admitted(_uid(pod))
        except Exception as exc:  # "cannot tell" is never "yes"
            log.warning("audit lookup for pod %s failed: %s", label, _error(exc))
            return [Violation(rule=RULE, message=ERR_HISTORY.format(pod=label, error=_error(exc)))]
        if record is None:
            message = ERR_NOT_ADMITTED.format(pod=label, kind=subject.kind, classes=classes)
            return [Violation(rule=RULE, message=message)]
        if not (record.authenticated or services.settings.trust_unauthenticated_admissions):
            # Anyone who reaches the webhook's port can send a review that writes such a row.
            message = ERR_UNTRUSTED.format(pod=label, kind=subject.kind, classes=classes)
            return [Violation(rule=RULE, message=message)]

        detector = services.settings.accelerator_detector
        future = as_it_would_be(pod, subject)
        try:
            base = await _resolver(services.claims, subject.namespace, future, subject)
            resolver = _WithSubject(subject, base)
            workload = detector.detect(future, resolver, namespace=subject.namespace)
        except DetectError as exc:
            message = ERR_POD_CLAIMS.format(pod=label, kind=subject.kind, error=exc)
            return [Violation(rule=RULE, message=message)]
        except Exception as exc:  # the pod's other claims cannot be read: fail closed
            log.warning("claims of pod %s unreadable: %s", label, _error(exc))
            message = ERR_POD_CLAIMS.format(pod=label, kind=subject.kind, error=_error(exc))
            return [Violation(rule=RULE, message=message)]
        return budget_violations(label, subject, workload, record, detector)

    async def _record(
        self,
        req: AdmissionRequest,
        subject: Subject,
        own: Workload | None,
        violations: list[Violation],
        message: str,
        latency_ms: float,
        services: Services,
    ) -> None:
        if self.audit is None:
            return
        record = AuditRecord(
            uid=req.uid,
            operation=req.operation,
            namespace=subject.namespace,
            name=subject.name,
            user=req.user_info.username,
            groups=list(req.user_info.groups),
            accelerators=AcceleratorSummary.from_workload(own.to_input())
            if own is not None
            else AcceleratorSummary(),
            allowed=False,
            violations=list(violations),
            policy_revision=services.decider.policy.revision,
            latency_ms=round(latency_ms, 3),
            input={
                "kind": subject.kind,
                "apiVersion": f"{req.kind.group}/{req.kind.version}",
                "name": subject.name,
                "spec": subject.obj.get("spec"),
            },
            message=message,
        )
        try:
            await self.audit.record(record)
        except Exception as exc:  # the answer is a denial either way; the log line keeps it
            log.error("claim denial not recorded in the audit trail", exc_info=exc)

    def _observe(
        self,
        req: AdmissionRequest,
        subject: Subject | None,
        services: Services,
        violations: list[Violation],
        checked: list[str],
        outcome: str,
        started: float,
    ) -> None:
        elapsed = time.perf_counter() - started
        try:
            # A claim has no agent of its own: its denials count under agent "none".
            services.metrics.observe_admission(
                WEBHOOK,
                req.operation,
                outcome,
                elapsed,
                violations,
                namespace=subject.namespace if subject is not None else req.namespace,
            )
            if subject is None:
                return
            # `uid` is the AdmissionReview's: the API server's audit log carries the same id.
            log_decision(
                {
                    "webhook": WEBHOOK,
                    "uid": req.uid,
                    "operation": req.operation,
                    "kind": subject.kind,
                    "namespace": subject.namespace,
                    "name": subject.name,
                    "user": req.user_info.username,
                    "dryRun": req.dry_run,
                    "pods": checked,
                    "allowed": outcome in ("allowed", "passthrough"),
                    "violations": [
                        {"rule": v.rule, "enforcement": v.enforcement, "message": v.message}
                        for v in violations
                    ],
                    "latencyMs": round(elapsed * 1000, 3),
                }
            )
        except Exception:  # best effort: observability never changes or breaks a verdict
            log.exception("recording metrics failed")


async def _resolver(
    claims: ClaimLookup | None, namespace: str, pod: Mapping[str, Any], subject: Subject
) -> ClaimResolver | None:
    """The pod's other claim objects, read from the cluster (the subject is not read)."""
    if claims is None:
        return None  # every other claim stays unresolved: one accelerator each (fail closed)
    return await claims.resolver_for(namespace, _without_subject(pod, subject))


def claims_handler(guard: ClaimGuard | None) -> ClaimsHandler:
    """The route's handler; without a guard (no cluster, no audit) accelerator claims are denied."""
    return (guard or ClaimGuard(pods=None, history=None)).review
