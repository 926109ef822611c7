"""The audit record (DESIGN.md "Audit record") and its canonical, hash-chained form.

The hash covers every field except ``id`` (assigned by the database) and ``hash`` itself, and it
includes ``prev_hash`` and ``seq``: that is what chains rows together and what makes an edited,
deleted or reordered row detectable.

The canonical form is frozen on purpose: it is built from an explicit field list with an
explicit time format, never from ``model_dump``, so that a pydantic upgrade or a new optional
field cannot change the hash of rows written years ago.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)

from webhook.violations import CleanStr, Violation, clean_text

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first row of a chain."""

Kind = Literal["admission", "token", "policy"]
"""``admission``: a pod decision; ``token``: a token exchange; ``policy``: a policy set load
(accepted or refused, see ``PolicyLoadInfo``)."""

ERR_POLICY_LOAD = (
    "policy_load is set on kind=policy records and only there: build policy rows with "
    "webhook.policy_audit.policy_load_record"
)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


HexHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def format_time(value: datetime) -> str:
    """Fixed-width UTC timestamp with microseconds: sorts lexically, round-trips exactly."""
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)


def to_utc(value: datetime) -> datetime:
    # A naive datetime is taken to be UTC: the webhook only ever produces UTC times.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


MAX_JSON_DEPTH = 64
JSON_TOO_DEEP = f"<cut: nested deeper than {MAX_JSON_DEPTH} levels>"
_INT64 = range(-(2**63), 2**63)


def _int_text(value: int) -> str:
    # Decimal for a reader. Python refuses to print integers of more than 4,300 digits in
    # decimal (a guard against quadratic conversion); hex has no such limit.
    try:
        return str(value)
    except ValueError:
        return hex(value)


def normalise_json(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON that every consumer can read, and ``canonical_json`` always encodes.

    The intent and the policy input are whatever the pod's author wrote, as a lenient parser
    read it: NaN and Infinity (``1e309``, YAML ``.nan``), lone surrogates, integers no 64-bit
    reader can hold (or of thousands of digits), nesting deep enough to exhaust the recursion
    limit. Refusing such a record would lose the decision (usually a denial), so each is
    replaced by a string instead. Idempotent.
    """
    # Exact types first: nearly every value of a parsed pod is one, and most strings are plain
    # ASCII without NUL (nothing to clean). Subclasses and other types take the general path.
    kind = type(value)
    if kind is str:
        return value if value.isascii() and "\x00" not in value else clean_text(value)
    if kind is dict:
        if depth >= MAX_JSON_DEPTH:
            return JSON_TOO_DEEP
        return {_key(k): normalise_json(v, depth + 1) for k, v in value.items()}
    if kind is list:
        if depth >= MAX_JSON_DEPTH:
            return JSON_TOO_DEEP
        return [normalise_json(v, depth + 1) for v in value]
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value in _INT64 else _int_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_JSON_DEPTH:
        return JSON_TOO_DEEP
    if isinstance(value, Mapping):
        return {_key(k): normalise_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise_json(v, depth + 1) for v in value]
    return clean_text(str(value))  # not a JSON type at all: keep what it says


def _key(key: Any) -> str:
    if type(key) is str and key.isascii() and "\x00" not in key:
        return key
    return clean_text(str(key))


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII (hence valid UTF-8), no NaN/Infinity.

    ASCII escaping makes the bytes identical for any Python string, lone surrogates included,
    and lets the same text be stored verbatim in SQLite and PostgreSQL.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


class AcceleratorSummary(BaseModel):
    """What the pod asked for: total devices, extended resources by name, DRA claims."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total: int = Field(default=0, ge=0)
    resources: dict[str, int] = Field(default_factory=dict)
    claims: int = Field(default=0, ge=0)

    @classmethod
    def from_workload(cls, workload: Mapping[str, Any]) -> AcceleratorSummary:
        """Summarise the policy input's ``workload`` section."""
        resources: dict[str, int] = {}
        for acc in workload.get("accelerators") or []:
            name = str(acc.get("resource", ""))
            resources[name] = resources.get(name, 0) + int(acc.get("count", 0))
        return cls(
            total=int(workload.get("total", sum(resources.values()))),
            resources=resources,
            claims=len(workload.get("claims") or []),
        )


class PolicyFileDigest(BaseModel):
    """One file of a loaded policy set: its directory's label, its path there, its sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: CleanStr
    path: CleanStr
    sha256: CleanStr


class PolicyDirInfo(BaseModel):
    """A policy directory as it was read: ``version`` names the ConfigMap projection when the
    directory is a mounted ConfigMap (the kubelet's timestamped ``..data`` target), else None."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: CleanStr
    path: CleanStr
    version: CleanStr | None = None


class PolicyLoadInfo(BaseModel):
    """What a ``kind="policy"`` record says about one attempt to load a policy set into OPA.

    ``revision`` is the candidate's revision (None when the files could not even be built into
    a set), ``previous`` the revision OPA served before; a ``rejected`` load did not replace it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Literal["loaded", "rejected"]
    reason: CleanStr
    revision: CleanStr | None = None
    previous: CleanStr | None = None
    dirs: list[PolicyDirInfo] = Field(default_factory=list)
    opa_url: CleanStr = ""
    files: list[PolicyFileDigest] = Field(default_factory=list)
    error: CleanStr | None = None
    image_digest: CleanStr | None = None


class AuditRecord(BaseModel):
    """One admission (or token) decision, or one policy load (``kind="policy"``).

    ``id``, ``seq``, ``prev_hash`` and ``hash`` are assigned by the store when the row is
    written; leave them unset when building a record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    kind: Kind = "admission"
    uid: CleanStr = ""
    operation: CleanStr = ""
    namespace: CleanStr = ""
    name: CleanStr = ""
    user: CleanStr = ""
    groups: list[CleanStr] = Field(default_factory=list)
    agent: CleanStr | None = None
    service_account: CleanStr = ""
    spiffe_id: CleanStr | None = None
    intent: dict[str, Any] | None = None
    intent_digest: CleanStr | None = None
    accelerators: AcceleratorSummary = Field(default_factory=AcceleratorSummary)
    allowed: bool
    violations: list[Violation] = Field(default_factory=list)
    policy_revision: CleanStr = ""
    grant_jti: CleanStr | None = None
    latency_ms: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    input: dict[str, Any] | None = None
    message: CleanStr = ""
    pod_uid: CleanStr | None = None
    authenticated: bool = False
    # Only on policy rows; left out of dumps while unset, so admission and token rows (and
    # their JSON exports) look exactly as they did before policy rows existed.
    policy_load: PolicyLoadInfo | None = Field(default=None, exclude_if=lambda v: v is None)
    seq: int | None = Field(default=None, ge=1)
    prev_hash: HexHash | None = None
    hash: HexHash | None = None
    # Canonical JSON of `input` and `intent`, filled once (encoded_json).
    _encoded: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @field_serializer("time", when_used="json")
    def _time_json(self, value: datetime) -> str:
        # The stored, fixed-width form everywhere: CLI, API and exports agree to the microsecond.
        return format_time(value)

    @field_validator("intent", "input", mode="before")
    @classmethod
    def _normalise_json(cls, value: Any) -> Any:
        # Before validation: keys that are not strings are made strings, not refused.
        return normalise_json(value)

    @field_validator("latency_ms")
    @classmethod
    def _no_negative_zero(cls, value: float) -> float:
        # SQLite stores a whole REAL as an integer and returns -0.0 as 0.0; the hash would then
        # no longer match, so -0.0 is normalised away before hashing.
        return value + 0.0

    @model_validator(mode="after")
    def _policy_load_on_policy_rows(self) -> AuditRecord:
        # One meaning per kind: the details of a load never ride on a decision row.
        if (self.kind == "policy") != (self.policy_load is not None):
            raise ValueError(ERR_POLICY_LOAD)
        return self

    @model_validator(mode="after")
    def _serialisable(self) -> AuditRecord:
        # Fail when the record is built (in the handler), not later in the write path where a
        # record that cannot be serialised would be retried forever. The free-form fields are
        # the only ones that could fail; their encoding is kept for the row (encoded_json).
        self.encoded_json("input")
        self.encoded_json("intent")
        return self

    def encoded_json(self, field: Literal["input", "intent"]) -> str | None:
        """The canonical JSON of a free-form field (the bulk of a row: the whole pod), encoded
        once for the construction check and the row's column. The hash encodes the whole
        content again: splicing this text into it would tie the frozen hash form to string
        surgery."""
        value = getattr(self, field)
        if value is None:
            return None
        text = self._encoded.get(field)
        if text is None:
            text = self._encoded[field] = canonical_json(value)
        return text

    def _content(self, *, seq: int, prev_hash: str) -> dict[str, Any]:
        # The frozen list of hashed fields. Adding a field here changes every hash: a new field
        # must be omitted from the content while it has its default value.
        content: dict[str, Any] = {
            "time": format_time(self.time),
            "kind": self.kind,
            "uid": self.uid,
            "operation": self.operation,
            "namespace": self.namespace,
            "name": self.name,
            "user": self.user,
            "groups": list(self.groups),
            "agent": self.agent,
            "service_account": self.service_account,
            "spiffe_id": self.spiffe_id,
            "intent": self.intent,
            "intent_digest": self.intent_digest,
            "accelerators": self.accelerators.model_dump(),
            "allowed": self.allowed,
            "violations": [v.model_dump() for v in self.violations],
            "policy_revision": self.policy_revision,
            "grant_jti": self.grant_jti,
            "latency_ms": self.latency_ms,
            "input": self.input,
            "message": self.message,
            "seq": seq,
            "prev_hash": prev_hash,
        }
        if self.pod_uid is not None:
            content["pod_uid"] = self.pod_uid
        if self.authenticated:
            content["authenticated"] = True
        if self.policy_load is not None:
            content["policy_load"] = self.policy_load.model_dump()
        return content

    def canonical_bytes(self, *, seq: int, prev_hash: str) -> bytes:
        """The exact bytes that are hashed for this record at position ``seq``."""
        return canonical_json(self._content(seq=seq, prev_hash=prev_hash)).encode("utf-8")

    def compute_hash(self, *, seq: int, prev_hash: str) -> str:
        return hashlib.sha256(self.canonical_bytes(seq=seq, prev_hash=prev_hash)).hexdigest()

    def chained(self, *, record_id: int, seq: int, prev_hash: str) -> StoredRecord:
        """This record placed in the chain after ``prev_hash``, as the store will return it."""
        # Every field was validated when this record was built, and a StoredRecord takes its
        # values as they are: constructed, not dumped and validated again (the writer thread
        # holds the GIL for every microsecond of it).
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fields.update(
            id=record_id,
            seq=seq,
            prev_hash=prev_hash,
            hash=self.compute_hash(seq=seq, prev_hash=prev_hash),
        )
        stored = StoredRecord.model_construct(**fields)
        stored._encoded.update(self._encoded)
        return stored

    @property
    def denied_rules(self) -> list[str]:
        """Rules whose violation denied the request, in order, without duplicates."""
        return list(dict.fromkeys(v.rule for v in self.violations if v.enforcement == "deny"))


class StoredRecord(AuditRecord):
    """A record as read back from a store: every chain field is set."""

    id: int
    seq: int = Field(ge=1)
    prev_hash: HexHash
    hash: HexHash

    @field_validator("intent", "input", mode="before")
    @classmethod
    def _normalise_json(cls, value: Any) -> Any:
        # Replaces AuditRecord's validator of the same name: a stored row is taken exactly as it
        # was hashed. Rows written before normalisation existed may hold values it would change
        # (an integer above 2**63), and their hash must still verify.
        return value

    def recompute_hash(self) -> str:
        return self.compute_hash(seq=self.seq, prev_hash=self.prev_hash)
