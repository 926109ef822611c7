"""POST /validate: the final object, after every mutator, re-decided and integrity-checked."""

from __future__ import annotations

import hashlib
from typing import Any

from identity import jsonio
from identity.binding import AGENT_LABEL, SPIFFE_ID_ANNOTATION
from identity.grants import GRANT_ANNOTATION, GRANT_VOLUME, TOKEN_VOLUME
from identity.intent import INTENT_ANNOTATION, INTENT_DIGEST_ANNOTATION
from webhook import admission
from webhook.admission import AdmissionRequest, metadata_map
from webhook.admit import admit, respond_denial
from webhook.decision import RequestInfo, Verdict
from webhook.deps import Services
from webhook.grants import entitlement, env_violations, grant_checks
from webhook.mutate import identity_annotations
from webhook.violations import Violation

RULE_IMMUTABLE = "immutable-governed-fields"
RULE_INTEGRITY = "mutation-integrity"
RULE_EPHEMERAL = "ephemeral-container-credentials"
CREDENTIAL_VOLUMES = (TOKEN_VOLUME, GRANT_VOLUME)
ERR_EPHEMERAL_MOUNT = (
    "{field} mounts {volume!r}, the pod's kube-intent credentials: debug without that mount"
)

# What identifies and authorises a governed pod: changing any of them after admission would
# let a running pod claim a different intent or agent than the one the policy approved.
IMMUTABLE_ANNOTATIONS = (
    INTENT_ANNOTATION,
    GRANT_ANNOTATION,
    INTENT_DIGEST_ANNOTATION,
    SPIFFE_ID_ANNOTATION,
)
ERR_IMMUTABLE = (
    "{field} cannot change after admission (was {old!r}, now {new!r}): delete and recreate the pod"
)
ERR_INTEGRITY = (
    "{field} is {actual!r} but the pod's intent and identity give {expected!r}: "
    "a later mutation or the pod's author changed it"
)


def _shown(field: str, value: object) -> object:
    """A user-controlled value as a message may show it: a grant (a signed statement) never,
    a long value (a 169 KB intent) by its length and digest, never echoed back."""
    if GRANT_ANNOTATION in field and isinstance(value, str):
        return f"<grant sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}>"
    if isinstance(value, str) and len(value) > jsonio.SHOWN_CHARS:
        return jsonio.digest_of(value)
    return value


def immutable_changes(req: AdmissionRequest) -> list[Violation]:
    if req.operation != "UPDATE" or req.old_object is None:
        return []
    old_ann, new_ann = (
        metadata_map(req.old_object, "annotations"),
        metadata_map(req.object, "annotations"),
    )
    pairs = [
        (f"metadata.annotations[{key}]", old_ann.get(key), new_ann.get(key))
        for key in IMMUTABLE_ANNOTATIONS
    ]
    pairs.append(
        (
            f"metadata.labels[{AGENT_LABEL}]",
            metadata_map(req.old_object, "labels").get(AGENT_LABEL),
            metadata_map(req.object, "labels").get(AGENT_LABEL),
        )
    )

    return [
        Violation(
            rule=RULE_IMMUTABLE,
            field=field,
            message=ERR_IMMUTABLE.format(
                field=field, old=_shown(field, old), new=_shown(field, new)
            ),
        )
        for field, old, new in pairs
        if old != new
    ]


def integrity(req: AdmissionRequest, verdict: Verdict) -> list[Violation]:
    """Our own annotations, when present, must match what the final pod says (mutated or forged)."""
    annotations = metadata_map(req.object, "annotations")
    violations = []
    for key, expected in identity_annotations(verdict).items():
        actual = annotations.get(key)
        if actual is not None and actual != expected:
            field = f"metadata.annotations[{key}]"
            violations.append(
                Violation(
                    rule=RULE_INTEGRITY,
                    field=field,
                    message=ERR_INTEGRITY.format(
                        field=field, actual=_shown(field, actual), expected=expected
                    ),
                )
            )
    return violations


def ephemeral_mounts(req: AdmissionRequest) -> list[Violation]:
    """A debug container must not walk off with the pod's token and grant."""
    spec = (req.object or {}).get("spec") or {}
    violations = []
    for i, container in enumerate(spec.get("ephemeralContainers") or []):
        for j, mount in enumerate((container or {}).get("volumeMounts") or []):
            if (mount or {}).get("name") in CREDENTIAL_VOLUMES:
                field = f"spec.ephemeralContainers[{i}].volumeMounts[{j}]"
                message = ERR_EPHEMERAL_MOUNT.format(field=field, volume=mount["name"])
                violations.append(Violation(rule=RULE_EPHEMERAL, field=field, message=message))
    return violations


def checks(req: AdmissionRequest, verdict: Verdict) -> list[Violation]:
    return [*immutable_changes(req), *integrity(req, verdict), *ephemeral_mounts(req)]


def respond(req: AdmissionRequest, info: RequestInfo, verdict: Verdict) -> dict[str, Any]:
    if not verdict.allowed:
        return respond_denial(req, info, verdict)
    return admission.allow(req.uid, warnings=verdict.warnings or None)


async def handle_validate(
    req: AdmissionRequest, services: Services, *, authenticated: bool = False
) -> dict[str, Any]:
    def all_checks(req: AdmissionRequest, verdict: Verdict) -> list[Violation]:
        found = checks(req, verdict)
        # CREATE only: on UPDATE immutable_changes pins the grant; re-verifying it would refuse
        # label edits on pods whose grant expired or whose signing key was retired.
        # Dry runs are minted no grant (nothing records them), so there is nothing to verify.
        if req.operation == "CREATE" and services.keys is not None and not req.dry_run:
            settings = services.settings
            found += grant_checks(
                metadata_map(req.object, "annotations"),
                verdict,
                services.keys(),
                settings.issuer,
                settings.token_endpoint,
            )
            if entitlement(verdict) is not None:
                found += env_violations(req.object or {}, settings.token_endpoint)
        return found

    return await admit(
        "validate", req, services, respond=respond, checks=all_checks, authenticated=authenticated
    )
