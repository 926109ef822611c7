"""The decision path shared by /mutate, /validate and `kube-intent review`.

detect accelerators -> parse intent -> bind identity -> evaluate policy -> verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Verdict:
    allowed: bool
    workload: Workload | None
    intent: ParsedIntent
    identity: IdentityBinding | None = None
    decision: PolicyDecision | None = None
    violations: list[Violation] = field(default_factory=list)
    policy_input: dict[str, Any] | None = None
    fail_open: bool = False
    # The decision was the one OPA gave for the same input moments ago (decision_memo).
    policy_reused: bool = False

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
        verdict = Verdict(allowed=False, workload=workload, intent=intent, identity=identity)

        if intent.problems:
            # Policies see only schema-valid intents; report every schema problem at once.
            verdict.violations = [
                Violation(rule=RULE_INTENT_SCHEMA, field=p.path, message=f"{p.path}: {p.message}")
                for p in intent.problems
            ]
            return verdict

        verdict.policy_input = {
            "request": request.to_input(),
            "pod": pod,
            "workload": workload.to_input(),
            "identity": identity.to_input(),
            "intent": intent.to_input(),
        }
        memo = self.memo if request.operation == "CREATE" else None
        revision = self.policy.revision if memo is not None else ""
        key = input_digest(verdict.policy_input, revision) if memo is not None else None
        found = memo.get(key) if memo is not None and reuse else None
        try:
            answer = found if found is not None else await self.policy.evaluate(self._sent(verdict))
        except PolicyInputRejected as exc:
            # A bad pod, not an engine outage: denied whatever the fail-open setting says.
            verdict.violations = [Violation(rule=RULE_POLICY_INPUT, message=str(exc))]
            return verdict
        except PolicyUnavailable as exc:
            verdict.violations = [Violation(rule=RULE_POLICY_ENGINE, message=str(exc))]
            if self.fail_open:
                message = FAIL_OPEN_WARNING.format(error=exc)
                verdict.violations = [
                    Violation(rule=RULE_POLICY_ENGINE, message=message, enforcement="warn")
                ]
                verdict.allowed = verdict.fail_open = True
            return verdict

        verdict.policy_reused = found is not None
        decision = answer.with_enforcement(self.enforcement)
        verdict.decision = decision
        verdict.violations = decision.violations
        # Never trust `allowed` alone: a deny violation denies whatever the policy computed.
        verdict.allowed = decision.allowed and not verdict.denials
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

    def _sent(self, verdict: Verdict) -> dict[str, Any]:
        """What OPA is asked about: the policy input, with the pod cut to the policies' view."""
        policy_input = verdict.policy_input or {}
        if not self.lean_input or not isinstance(policy_input.get("pod"), Mapping):
            return policy_input
        return {**policy_input, "pod": policy_pod(policy_input["pod"])}

    def detect_error_verdict(self, error: DetectError) -> Verdict:
        """Unreadable resources on a pod: deny (we cannot tell it is not a GPU pod)."""
        return Verdict(
            allowed=False,
            workload=None,
            intent=ParsedIntent(present=False),
            violations=[Violation(rule=RULE_DETECT, message=str(error))],
        )
