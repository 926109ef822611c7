"""Signed checkpoints of the audit chain's head.

The hash chain shows an edited, deleted or reordered row, but not rows cut off at the end: the
shortened chain is still a valid chain. A checkpoint is the head (seq, hash) signed with the
grant signing key and kept somewhere else (the webhook logs one periodically, so it reaches
the log pipeline); `kube-intent audit verify --checkpoint` then proves the chain still holds
every row the checkpoint saw.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from identity.keys import KeySet
from webhook.audit.store import AuditFilter, AuditStore

CHECKPOINT_TYP = "kube-intent-audit-checkpoint+jwt"
ERR_TRUNCATED = (
    "the chain ends at seq {last} but a checkpoint signed at {when} saw seq {seq}: "
    "rows were removed from the end"
)
ERR_DIFFERENT = "row seq {seq} is not the row the checkpoint signed at {when} saw"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    issued_at: int

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.issued_at))


async def make_checkpoint(store: AuditStore, keys: KeySet, issuer: str) -> str | None:
    """A compact JWS over the current head; None while the chain is empty."""
    page = await store.query(AuditFilter(), None, 1)  # newest first
    if not page.records:
        return None
    head = page.records[0]
    claims = {"iss": issuer, "iat": int(time.time()), "seq": head.seq, "hash": head.hash}
    return keys.sign(claims, CHECKPOINT_TYP)


def read_checkpoint(token: str, keys: KeySet) -> Checkpoint:
    """Verify the signature (ES256, a kid of ours); raises ValueError when it does not hold."""
    try:
        claims: dict[str, Any] = keys.verify(token.strip(), CHECKPOINT_TYP)
        return Checkpoint(int(claims["seq"]), str(claims["hash"]), int(claims["iat"]))
    except Exception as exc:  # any failure means: this is not a checkpoint of ours
        raise ValueError(f"not a valid kube-intent audit checkpoint: {exc}") from None


async def check_checkpoints(store: AuditStore, checkpoints: Iterable[Checkpoint]) -> list[str]:
    """Problems found (empty: the chain holds every row each checkpoint saw, unchanged)."""
    wanted = {c.seq: c for c in checkpoints}
    found: dict[int, str | None] = {}
    last = 0
    async for record in store.iter_all():
        last = record.seq or last
        if record.seq in wanted:
            found[record.seq] = record.hash
    problems = []
    for seq, checkpoint in sorted(wanted.items()):
        if seq > last:
            problems.append(ERR_TRUNCATED.format(last=last, seq=seq, when=checkpoint.when))
        elif found.get(seq) != checkpoint.hash:
            problems.append(ERR_DIFFERENT.format(seq=seq, when=checkpoint.when))
    return problems
