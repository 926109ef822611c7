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
from typing import Annotated, Any, Literal, cast

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
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


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
        return JSON_TOO_DEEP if depth >= MAX_JSON_DEPTH else _normalise_dict(value, depth + 1)
    if kind is list:
        return JSON_TOO_DEEP if depth >= MAX_JSON_DEPTH else _normalise_list(value, depth + 1)
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Compared, not ``value in range(...)``: a range tests only an exact int in constant
        # time, and walks its 2**64 members for a subclass (an IntEnum, say).
        return value if _INT64_MIN <= value <= _INT64_MAX else _int_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_JSON_DEPTH:
        return JSON_TOO_DEEP
    if isinstance(value, Mapping):
        return _normalise_dict(value, depth + 1)
    if isinstance(value, list | tuple):
        return _normalise_list(value, depth + 1)
    return clean_text(str(value))  # not a JSON type at all: keep what it says


# The members of a container at ``depth``: every key becomes a clean string, every member
# exactly ``normalise_json(member, depth)``. The commonest members are handled in the loop, not
# by a call apiece, because a pod is hundreds of small values and the calls cost a third of the
# walk, on the event loop, for every admission: a plain ``str`` is kept (normalise_json's first
# test), so are ``bool`` and None (its general path returns them), and a ``dict`` or ``list``
# goes straight to its helper after normalise_json's depth check. Anything else is left to
# normalise_json. tests/webhook/audit/test_record_speedups.py holds the walk this replaced.


def _normalise_dict(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, member in value.items():
        # The key first, as in the dict comprehension this loop replaced.
        if type(key) is str and key.isascii() and "\x00" not in key:
            name = key
        else:
            name = clean_text(str(key))
        kind = type(member)
        if kind is str:
            out[name] = member if member.isascii() and "\x00" not in member else clean_text(member)
        elif kind is dict:
            out[name] = (
                JSON_TOO_DEEP if depth >= MAX_JSON_DEPTH else _normalise_dict(member, depth + 1)
            )
        elif kind is list:
            out[name] = (
                JSON_TOO_DEEP if depth >= MAX_JSON_DEPTH else _normalise_list(member, depth + 1)
            )
        elif kind is bool or member is None:
            out[name] = member
        else:
            out[name] = normalise_json(member, depth)
    return out


def _normalise_list(value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
    out: list[Any] = []
    for member in value:
        kind = type(member)
        if kind is str:
            out.append(member if member.isascii() and "\x00" not in member else clean_text(member))
        elif kind is dict:
            out.append(
                JSON_TOO_DEEP if depth >= MAX_JSON_DEPTH else _normalise_dict(member, depth + 1)
            )
        elif kind is list:
            out.append(
                JSON_TOO_DEEP if depth >= MAX_JSON_DEPTH else _normalise_list(member, depth + 1)
            )
        elif kind is bool or member is None:
            out.append(member)
        else:
            out.append(normalise_json(member, depth))
    return out


# What ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
# allow_nan=False)`` builds on every call and then encodes with (json.dumps is exactly that):
# built once, it saves a microsecond per call. An encoder keeps no state between calls.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII (hence valid UTF-8), no NaN/Infinity.

    ASCII escaping makes the bytes identical for any Python string, lone surrogates included,
    and lets the same text be stored verbatim in SQLite and PostgreSQL.
    """
    return _CANONICAL.encode(value)


def canonical_object(members: Mapping[str, Any], encoded: Mapping[str, str]) -> str:
    """``canonical_json`` of an object, some of whose members come already encoded.

    ``encoded`` maps keys to the ``canonical_json`` of their values; ``members`` holds the other
    members, as values. The text is that of ``canonical_json`` of the whole object, but the
    encoded values (the pod, kilobytes of it) are not encoded a second time.

    This holds for the canonical form (sorted keys, no whitespace, no indentation): an object
    is ``{`` + the members in sorted key order, each ``key:value``, joined by ``,`` + ``}``, and
    the text of a value inside it is the text of that value encoded alone. So the members
    between two encoded ones, in key order, are encoded together as one object whose braces are
    dropped, and the pieces are joined. The test suite checks the equality on generated records.
    """
    if not encoded.keys().isdisjoint(members.keys()):
        raise ValueError("a member is given both as a value and encoded")
    pieces: list[str] = []
    run: dict[str, Any] = {}  # members to encode, consecutive in key order
    for key in sorted([*members, *encoded]):
        if key not in encoded:
            run[key] = members[key]
            continue
        if run:
            pieces.append(canonical_json(run)[1:-1])
            run = {}
        pieces.append(canonical_json(key) + ":" + encoded[key])
    if run:
        pieces.append(canonical_json(run)[1:-1])
    return "{" + ",".join(pieces) + "}"


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
    # Canonical JSON of `input` and `intent`, filled once (encoded_json), each beside the value
    # it encodes: a copy with another value (model_copy(update=...)) shares this dict.
    _encoded: dict[str, tuple[Any, str]] = PrivateAttr(default_factory=dict)

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
        once: for the construction check, the row's column, and the hash, which splices it into
        the content (canonical_bytes) rather than encoding the pod again."""
        value = getattr(self, field)
        if value is None:
            return None
        cache = self._encoded_cache()
        cached = cache.get(field)
        # By identity: model_copy(update={"input": ...}) hands the copy this same cache. (The
        # entry holds the value, so no other object can take its id.)
        if cached is not None and cached[0] is value:
            return cached[1]
        text = canonical_json(value)
        cache[field] = (value, text)
        return text

    def _encoded_cache(self) -> dict[str, tuple[Any, str]]:
        # ``self._encoded``, without pydantic's __getattr__ for private attributes (two
        # microseconds a time, several times a record, partly on the writer thread): their
        # values live in __pydantic_private__, set by every constructor and model_construct.
        private = self.__pydantic_private__
        assert private is not None
        return cast(dict[str, tuple[Any, str]], private["_encoded"])

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
        """The exact bytes that are hashed for this record at position ``seq``:
        ``canonical_json`` of the content."""
        content = self._content(seq=seq, prev_hash=prev_hash)
        # The pod and the intent were encoded when the record was built (encoded_json): the
        # same text goes into the hashed form, which canonical_object leaves unchanged.
        encoded: dict[str, str] = {}
        for field in ("input", "intent"):
            text = self.encoded_json(field)
            if text is not None:
                del content[field]
                encoded[field] = text
        return canonical_object(content, encoded).encode("utf-8")

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
        stored._encoded_cache().update(self._encoded_cache())
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
