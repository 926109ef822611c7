"""The webhook's side of grants: what an allowed verdict entitles a pod to, and the checks
/validate runs on the final pod. Minting, verifying and the pod patch live in identity.grants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.grants import (
    ERR_REASONS,
    GRANT_ANNOTATION,
    Entitlement,
    GrantError,
    GrantIssuer,
    covers,
    grant_env,
    verify_grant,
)
from identity.intent import ttl_seconds
from identity.keys import KeySet
from webhook.decision import RequestInfo, Verdict
from webhook.violations import Violation

RULE_GRANT = "grant-integrity"

ERR_GRANT_MISSING = (
    "metadata.annotations[" + GRANT_ANNOTATION + "] is missing: kube-intent's mutating webhook "
    "did not run for this pod, or a later mutating webhook removed the grant"
)
ERR_GRANT_INVALID = "metadata.annotations[" + GRANT_ANNOTATION + "] {problem}: {hint}"
HINT_RECREATE = "delete the annotation and recreate the pod so that kube-intent mints a new grant"
ERR_ENV_OWNED = (
    "{field} is set by kube-intent and must appear once with its value (found {count}): "
    "remove it from the pod spec, and check that no later mutating webhook adds it"
)
ERR_GRANT_SCOPE = (
    "metadata.annotations[" + GRANT_ANNOTATION + "] holds scopes {extra} that the policy no "
    "longer allows: recreate the pod so that kube-intent mints a grant for the current policy"
)


def entitlement(verdict: Verdict) -> Entitlement | None:
    """A grant is due for an allowed pod with a policy decision, a valid intent and an agent.

    Fail-open admissions (no decision) and would-be denials admitted by a dryrun/warn rollout
    (overridden) get none: nothing approved any scope.
    """
    decision, identity, intent = verdict.decision, verdict.identity, verdict.intent
    if not verdict.allowed or verdict.fail_open or verdict.overridden or decision is None:
        return None
    if identity is None or identity.agent is None or not intent.valid:
        return None
    if intent.document is None or intent.digest is None:
        return None
    ttl = min(ttl_seconds(intent.document["ttl"]), decision.grant_ttl_seconds)
    if ttl <= 0:
        return None
    return Entitlement(
        agent=identity.agent,
        namespace=identity.namespace,
        service_account=identity.service_account,
        spiffe_id=identity.spiffe_id,
        intent_digest=intent.digest,
        scopes=tuple(dict.fromkeys(decision.scopes)),  # keep order, drop duplicates
        ttl_seconds=ttl,
    )


class VerdictGrants:
    """deps.GrantMinter: the grant, volumes and env an allowed verdict entitles a pod to."""

    def __init__(self, issuer: GrantIssuer) -> None:
        self.issuer = issuer

    def patch(
        self, pod: dict[str, Any], request: RequestInfo, verdict: Verdict
    ) -> list[dict[str, Any]]:
        return self.issuer.patch(pod, entitlement(verdict), dry_run=request.dry_run)


def env_violations(pod: Mapping[str, Any], token_endpoint: str) -> list[Violation]:
    """The final pod (after every mutator) has each of our env names once, with our value."""
    wanted = {item["name"]: item for item in grant_env(token_endpoint)}
    violations = []
    for index, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        env = container.get("env") if isinstance(container, Mapping) else None
        entries = [e for e in env or [] if isinstance(e, Mapping) and e.get("name") in wanted]
        for name, item in wanted.items():
            mine = [e for e in entries if e.get("name") == name]
            if len(mine) != 1 or not covers(mine[0], item):
                field = f"spec.containers[{index}].env[{name}]"
                message = ERR_ENV_OWNED.format(field=field, count=len(mine))
                violations.append(Violation(rule=RULE_GRANT, field=field, message=message))
    return violations


def grant_checks(
    annotations: Mapping[str, Any],
    verdict: Verdict,
    keyset: KeySet,
    issuer: str,
    audience: str,
    *,
    now: float | None = None,
) -> list[Violation]:
    """Violations (rule `grant-integrity`) for the final pod of a CREATE, after every mutator.

    A pod that is entitled to a grant must carry one that verifies and matches its final
    intent digest, namespace and ServiceAccount, with no scope beyond what the policy allows
    now. A grant on a pod that is not entitled to one must still be genuine and match.
    """
    if not verdict.allowed:
        return []
    due = entitlement(verdict)
    token = annotations.get(GRANT_ANNOTATION)
    if token is None:
        if due is None:
            return []
        return [_violation(ERR_GRANT_MISSING)]
    identity, digest = verdict.identity, verdict.intent.digest
    if not isinstance(token, str) or identity is None or digest is None:
        return [
            _violation(
                ERR_GRANT_INVALID.format(problem=ERR_REASONS["malformed"], hint=HINT_RECREATE)
            )
        ]
    try:
        claims = verify_grant(
            token,
            keyset,
            issuer=issuer,
            audience=audience,
            namespace=identity.namespace,
            service_account=identity.service_account,
            intent_digest=digest,
            now=now,
        )
    except GrantError as exc:
        problem = ERR_REASONS.get(exc.reason, exc.reason)
        return [_violation(ERR_GRANT_INVALID.format(problem=problem, hint=HINT_RECREATE))]
    # Without a decision (fail-open) there is nothing to compare the scopes with.
    if verdict.decision is not None:
        extra = sorted(set(claims.scopes) - set(verdict.decision.scopes))
        if extra:
            return [_violation(ERR_GRANT_SCOPE.format(extra=extra))]
    return []


def _violation(message: str) -> Violation:
    return Violation(
        rule=RULE_GRANT, field=f"metadata.annotations[{GRANT_ANNOTATION}]", message=message
    )
