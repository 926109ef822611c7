"""The decision path shared by /mutate, /validate and `kube-intent review`.

detect accelerators -> parse intent -> bind identity -> evaluate policy -> verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from identity.binding import IdentityBinding, bind
from identity.intent import INTENT_ANNOTATION, ParsedIntent, parse_intent
from identity.registry import AgentRegistry
from webhook.admission import metadata_map
from webhook.decision_memo import DecisionMemo, input_digest
from webhook.detect import AcceleratorDetector, ClaimResolver, DetectError, Workload
from webhook.policy import PolicyDecision, PolicyEngine, PolicyInputRejected, PolicyUnavailable
from webhook.policy_view import policy_pod
from webhook.violations import Enforcement, Violation

RULE_DETECT = "pod-resources"
RULE_INTENT_SCHEMA = "intent-schema"
RULE_POLICY_ENGINE = "policy-engine"
RULE_POLICY_INPUT = "policy-input"

DENIAL_HEADER = "kube-intent denied pod {pod}: {count} violation(s): {details}"
FAIL_OPEN_WARNING = (
    "kube-intent admitted this GPU pod without a policy decision (fail-open): {error}"
)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the decision needs from the AdmissionRequest (or from a file, offline)."""

    uid: str
    operation: str
    namespace: str
    name: str
    username: str = ""
    groups: tuple[str, ...] = ()
    dry_run: bool = False
    # The pod's UID: assigned by the API server before validating admission (empty at /mutate).
    pod_uid: str = ""
    # The caller proved it is the API server (a client certificate from the configured CA).
    authenticated: bool = False

    def to_input(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "operation": self.operation,
            "namespace": self.namespace,
            "name": self.name,
            "userInfo": {"username": self.username, "groups": list(self.groups)},
            "dryRun": self.dry_run,
        }


NO_INTENT = ParsedIntent(present=False)


def _denies(violations: Iterable[Violation]) -> bool:
    return any(v.enforcement == "deny" for v in violations)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a step of the decision path concluded. Immutable: a later step (the webhook's own
    checks, the audit outcome) returns a new verdict, so no step changes another's result."""

    allowed: bool
    workload: Workload | None
    intent: ParsedIntent
    identity: IdentityBinding | None = None
    decision: PolicyDecision | None = None
    violations: tuple[Violation, ...] = ()
    policy_input: dict[str, Any] | None = None
    fail_open: bool = False
    # The decision was the one OPA gave for the same input moments ago (decision_memo).
    policy_reused: bool = False
    # The enforcement override (dryrun/warn rollout) let a refusal through: the pod is
    # admitted and recorded as a would-be denial, and is minted no grant (nothing approved it).
    overridden: bool = False

    @classmethod
    def refused(cls, *violations: Violation, workload: Workload | None = None) -> Verdict:
        """A refusal reached before any intent or identity was read."""
        return cls(allowed=False, workload=workload, intent=NO_INTENT, violations=violations)

    def adding(self, extra: Iterable[Violation]) -> Verdict:
        """This verdict with more violations; any `deny` among them refuses the pod."""
        extra = tuple(extra)
        if not extra:
            return self
        allowed = self.allowed and not _denies(extra)
        return replace(self, violations=(*self.violations, *extra), allowed=allowed)

    def with_violations(self, violations: Iterable[Violation]) -> Verdict:
        return replace(self, violations=tuple(violations))

    @property
    def gpu(self) -> bool:
        return self.workload is not None and self.workload.gpu

    @property
    def warnings(self) -> list[str]:
        return [str(v) for v in self.violations if v.enforcement == "warn"]

    @property
    def denials(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == "deny"]

    def denial_message(self, pod: str) -> str:
        details = "; ".join(str(v) for v in self.denials)
        return DENIAL_HEADER.format(pod=pod, count=len(self.denials), details=details)


class Decider:
    """Holds what is built once (compiled patterns, clients) and decides per request."""

    def __init__(
        self,
        *,
        detector: AcceleratorDetector,
        registry: Callable[[], AgentRegistry],
        policy: PolicyEngine,
        trust_domain: str,
        enforcement: Enforcement | None = None,
        fail_open: bool = False,
        memo: DecisionMemo | bool = True,
        lean_input: bool = False,
    ) -> None:
        self.detector = detector
        self.registry = registry
        self.policy = policy
        self.trust_domain = trust_domain
        self.enforcement = enforcement
        self.fail_open = fail_open
        # Pod CREATEs: /validate reuses /mutate's decision for the same input (one OPA query
        # per pod). False: ask OPA every time.
        self.memo = DecisionMemo() if memo is True else (memo or None)
        # Send OPA only the pod fields the bundled policies read (webhook/policy_view.py):
        # only when no other Rego is loaded. The verdict (and the audit row) keeps the whole pod.
        self.lean_input = lean_input

    def detect(
        self, pod: Mapping[str, Any], namespace: str, resolver: ClaimResolver | None = None
    ) -> Workload:
        # The request's namespace, not metadata.namespace (empty on CREATE, and not trusted).
        return self.detector.detect(pod, resolver, namespace=namespace)

    async def decide(
        self,
        request: RequestInfo,
        pod: Mapping[str, Any],
        workload: Workload,
        *,
        reuse: bool = False,
    ) -> Verdict:
        """Full decision for a GPU pod (callers short-circuit non-GPU pods before this).

        Every allowed CREATE decision is remembered; with `reuse` (/validate) one remembered
        for the same input is taken instead of asking OPA again (webhook/decision_memo.py).
        """
        raw_intent = metadata_map(pod, "annotations").get(INTENT_ANNOTATION)
        intent = parse_intent(
            raw_intent if isinstance(raw_intent, str) or raw_intent is None else str(raw_intent)
        )
        identity = bind(pod, request.namespace, self.registry(), self.trust_domain)
        base = Verdict(allowed=False, workload=workload, intent=intent, identity=identity)

        if intent.problems:
            # Policies see only schema-valid intents; report every schema problem at once.
            problems = [
                Violation(rule=RULE_INTENT_SCHEMA, field=p.path, message=f"{p.path}: {p.message}")
                for p in intent.problems
            ]
            return self._enforced(base, problems)

        policy_input = {
            "request": request.to_input(),
            "pod": pod,
            "workload": workload.to_input(),
            "identity": identity.to_input(),
            "intent": intent.to_input(),
        }
        base = replace(base, policy_input=policy_input)
        memo = self.memo if request.operation == "CREATE" else None
        revision = self.policy.revision if memo is not None else ""
        key = input_digest(policy_input, revision) if memo is not None else None
        found = memo.get(key) if memo is not None and reuse else None
        try:
            answer = found if found is not None else await self.policy.evaluate(self._sent(base))
        except PolicyInputRejected as exc:
            # A bad pod, not an engine outage: refused whatever the fail-open setting says, and
            # whatever a rollout override says (no policy looked at it).
            return base.adding([Violation(rule=RULE_POLICY_INPUT, message=str(exc))])
        except PolicyUnavailable as exc:
            # No policy decided, so there is nothing for a rollout override to relax.
            if not self.fail_open:
                return base.adding([Violation(rule=RULE_POLICY_ENGINE, message=str(exc))])
            message = FAIL_OPEN_WARNING.format(error=exc)
            warning = Violation(rule=RULE_POLICY_ENGINE, message=message, enforcement="warn")
            return replace(base, allowed=True, fail_open=True, violations=(warning,))

        decided = replace(base, decision=answer, policy_reused=found is not None)
        verdict = self._enforced(decided, answer.violations, allowed=answer.allowed)
        # Kept only for an allowed pod (a denied one never reaches /validate), and only when no
        # other policy set was loaded meanwhile (the key names the revision read before).
        if (
            memo is not None
            and found is None
            and verdict.allowed
            and self.policy.revision == revision
        ):
            memo.put(key, answer)
        return verdict

    def _enforced(
        self, verdict: Verdict, violations: Iterable[Violation], *, allowed: bool = False
    ) -> Verdict:
        """The policy's answer (`allowed`, `violations`) under the enforcement override.

        Without one, a `deny` violation refuses whatever the policy computed. With `dryrun` or
        `warn` (a staged rollout) every violation is kept with that enforcement and none refuses
        the pod: the refusal is recorded as a would-be denial, and the verdict is `overridden`.
        A refusal that names no violation stays a refusal: there is nothing to show or override.
        """
        found = tuple(violations)
        refused = not allowed or _denies(found)
        if self.enforcement is not None:
            found = tuple(
                v
                if v.enforcement == self.enforcement
                else v.model_copy(update={"enforcement": self.enforcement})
                for v in found
            )
        # A policy's refusal stands unless a rollout override relaxed at least one finding:
        # without one, `allowed: false` with only warnings is still a refusal.
        relaxed = self.enforcement not in (None, "deny") and bool(found)
        admitted = not _denies(found) and (not refused or relaxed)
        return replace(verdict, allowed=admitted, violations=found, overridden=refused and admitted)

    def _sent(self, verdict: Verdict) -> dict[str, Any]:
        """What OPA is asked about: the policy input, with the pod cut to the policies' view."""
        policy_input = verdict.policy_input or {}
        if not self.lean_input or not isinstance(policy_input.get("pod"), Mapping):
            return policy_input
        return {**policy_input, "pod": policy_pod(policy_input["pod"])}

    def detect_error_verdict(self, error: DetectError) -> Verdict:
        """Unreadable resources on a pod: deny (we cannot tell it is not a GPU pod)."""
        return Verdict.refused(Violation(rule=RULE_DETECT, message=str(error)))
