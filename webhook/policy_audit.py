"""Policy loads on the record: every load of a policy set (at start, on a change, after an OPA
restart, and every refused attempt) is a ``kind="policy"`` row in the audit hash chain.

A decision row names the policy revision that decided it; the policy row says what that
revision was made of (each file's sha256), where it came from (the directories, the ConfigMap
projection, the OPA it was pushed to), what ran it (the image digest the chart passes) and what
it replaced. A refused load is recorded too: the set that kept serving is its ``previous``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from webhook.audit.buffer import AuditLog
from webhook.audit.errors import AuditError
from webhook.audit.record import AuditRecord, PolicyDirInfo, PolicyFileDigest, PolicyLoadInfo
from webhook.policy import OpaPolicyEngine
from webhook.policy_source import PolicyLoad, projection

log = logging.getLogger("kube_intent.policy_audit")

# Set by the chart from `image.digest` (the image the webhook runs, as pulled).
IMAGE_DIGEST_ENV = "KUBE_INTENT_IMAGE_DIGEST"
POLICY_OPERATION = "POLICY_LOAD"


def image_digest(environ: Mapping[str, str] | None = None) -> str | None:
    value = (os.environ if environ is None else environ).get(IMAGE_DIGEST_ENV, "").strip()
    return value or None


def _dir_info(source: str) -> PolicyDirInfo:
    # PolicyLoad.sources are PolicyDir strings: "<label>:<path>".
    label, _, path = source.partition(":")
    return PolicyDirInfo(label=label, path=path, version=projection(Path(path)) if path else None)


def policy_load_record(
    load: PolicyLoad, *, opa_url: str = "", digest: str | None = None
) -> AuditRecord:
    """The audit row of one policy load (accepted or refused).

    ``policy_revision`` is the revision serving once the load is over: the new one when it was
    accepted, the previous one when it was refused (a refusal changes nothing that decides).
    """
    outcome: Literal["loaded", "rejected"] = "loaded" if load.accepted else "rejected"
    serving = load.revision if load.accepted else (load.previous or "")
    message = (
        f"policies loaded ({load.reason}): revision {load.revision}"
        + (f", replacing {load.previous}" if load.previous else "")
        if load.accepted
        else f"policies refused ({load.reason}); {serving or 'no revision'} keeps serving: "
        f"{load.error}"
    )
    return AuditRecord(
        kind="policy",
        operation=POLICY_OPERATION,
        name=load.revision,
        allowed=load.accepted,
        policy_revision=serving,
        message=message,
        policy_load=PolicyLoadInfo(
            outcome=outcome,
            reason=load.reason,
            revision=load.revision or None,
            previous=load.previous,
            dirs=[_dir_info(s) for s in load.sources],
            opa_url=opa_url,
            files=[
                PolicyFileDigest(source=f.source, path=f.path, sha256=f.sha256) for f in load.files
            ],
            error=load.error,
            image_digest=digest,
        ),
    )


class PolicyLoadRecorder:
    """``OpaPolicyEngine.on_load`` → the audit log.

    Queued, never awaited: a policy load has happened whether or not the store is up, so the row
    must neither delay it nor be turned into a refusal the way a decision is when audit is
    required (``AuditLog.record``); the log writes it in order once the store answers.
    """

    def __init__(self, audit: AuditLog, *, opa_url: str = "", digest: str | None = None) -> None:
        self.audit = audit
        self.opa_url = opa_url
        self.digest = digest

    def __call__(self, load: PolicyLoad) -> None:
        try:
            self.audit.enqueue(policy_load_record(load, opa_url=self.opa_url, digest=self.digest))
        except AuditError as exc:  # buffer full or closed: the loss is counted and logged
            log.error("policy load not recorded: %s", exc)


def record_policy_loads(engine: OpaPolicyEngine, audit: AuditLog) -> PolicyLoadRecorder:
    """Record every policy load of ``engine`` from now on, and the one already done at start.

    The webhook opens the audit store after the first load (OPA must be ready first), so that
    load is recorded here, from what the engine holds. A set refused at start stops the webhook
    before the store is opened: that refusal is in the log and the exit status, not the trail.
    """
    recorder = PolicyLoadRecorder(audit, opa_url=engine.url, digest=image_digest())
    if engine.loaded is not None:
        loaded = engine.loaded
        recorder(PolicyLoad(loaded.revision, None, "startup", loaded.sources, loaded.files))
    engine.on_load = recorder
    return recorder
