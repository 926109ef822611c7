"""The declared intent: parse the annotation (JSON or YAML), check its schema, digest it."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

INTENT_ANNOTATION = "kube-intent.io/intent"
# Written by /mutate on admitted GPU pods: the digest the grant is bound to.
INTENT_DIGEST_ANNOTATION = "kube-intent.io/intent-digest"
MAX_INTENT_BYTES = 64 * 1024
MAX_TTL_SECONDS = 86400

ERR_TOO_LARGE = f"is larger than {MAX_INTENT_BYTES} bytes"
ERR_SYNTAX = "is neither valid JSON nor valid YAML: {detail}"
ERR_NOT_OBJECT = "must be a JSON or YAML object (mapping), got {kind}"
ERR_ALIAS = "YAML anchors and aliases are not allowed"
ERR_TTL = "must be between 1s and 24h, got {value!r}"

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True, slots=True)
class IntentProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class ParsedIntent:
    """Outcome of reading the annotation: `present` is False when the pod declares nothing."""

    present: bool
    document: dict[str, Any] | None = None
    digest: str | None = None
    problems: tuple[IntentProblem, ...] = field(default_factory=tuple)

    @property
    def valid(self) -> bool:
        return self.present and not self.problems

    def to_input(self) -> dict[str, Any] | None:
        """The policy's view: the document plus derived fields (the digest is of the document)."""
        if not self.valid or self.document is None:
            return None
        return {**self.document, "ttlSeconds": ttl_seconds(self.document["ttl"])}


# libyaml when PyYAML was built with it (the wheels are): the pure-Python loader costs
# milliseconds per pod on the admission path.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(raw: str) -> Any:
    """Safe YAML without anchors or aliases: an alias bomb must never reach JSON or OPA."""
    for event in yaml.parse(raw, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.YAMLError(ERR_ALIAS)
    return yaml.load(raw, Loader=_Loader)  # noqa: S506 - a safe loader


@cache
def schema() -> dict[str, Any]:
    text = resources.files("webhook").joinpath("intent.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def intent_digest(document: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


def ttl_seconds(value: int | str) -> int:
    if isinstance(value, int):
        return value
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError(value)
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _path(error: ValidationError) -> str:
    path = "intent"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: ValidationError) -> str:
    # oneOf/anyOf errors read badly verbatim; the schema's description says what is allowed.
    if error.validator in ("oneOf", "anyOf"):
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        return f"{error.instance!r} is not valid: {description or 'no alternative matched'}"
    return error.message


@lru_cache(maxsize=1024)
def parse_intent(raw: str | None) -> ParsedIntent:
    """Read the annotation value; every problem is reported at once, each with its path.

    Cached by the annotation text: a Deployment's pods, and the mutate and validate calls for
    one pod, carry the same intent. Results are immutable by convention (never edit them).
    """
    if raw is None:
        return ParsedIntent(present=False)
    if len(raw.encode("utf-8")) > MAX_INTENT_BYTES:
        return ParsedIntent(present=True, problems=(IntentProblem("intent", ERR_TOO_LARGE),))
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        try:
            document = _load_yaml(raw)
        except yaml.YAMLError as exc:
            detail = str(exc).replace("\n", " ")
            return ParsedIntent(
                present=True, problems=(IntentProblem("intent", ERR_SYNTAX.format(detail=detail)),)
            )
    if not isinstance(document, dict):
        kind = "empty value" if document is None else type(document).__name__
        return ParsedIntent(
            present=True, problems=(IntentProblem("intent", ERR_NOT_OBJECT.format(kind=kind)),)
        )
    problems = [
        IntentProblem(_path(error), _message(error))
        for error in sorted(
            _validator().iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
        )
    ]
    ttl = document.get("ttl")
    if not problems and not (1 <= ttl_seconds(document["ttl"]) <= MAX_TTL_SECONDS):
        problems.append(IntentProblem("intent.ttl", ERR_TTL.format(value=ttl)))
    # Only a schema-valid document is plain JSON data (YAML may yield dates or non-string keys).
    digest = None if problems else intent_digest(document)
    return ParsedIntent(present=True, document=document, digest=digest, problems=tuple(problems))
