"""The declared intent: parse the annotation (JSON or YAML), check its schema, digest it.

The annotation is written by whoever creates the pod, so everything here assumes hostile text:
the size is checked before parsing, the parsed document must be plain JSON data of bounded
depth (see identity/jsonio.py), the schema's keywords run in linear time, every problem message
is bounded, and only valid intents are cached (in a cache bounded in bytes).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import orjson
import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from identity import jsonio

INTENT_ANNOTATION = "kube-intent.io/intent"
# Written by /mutate on admitted GPU pods: the digest the grant is bound to.
INTENT_DIGEST_ANNOTATION = "kube-intent.io/intent-digest"
MAX_INTENT_BYTES = 64 * 1024
MAX_TTL_SECONDS = 86400
# The schema is three levels deep; anything much deeper is not an intent.
MAX_INTENT_DEPTH = 16
# Problems reported for one intent: enough to fix a real one, bounded for a hostile one.
MAX_PROBLEMS = 20
# Characters of one problem message (values inside are shown as digests when long).
MAX_PROBLEM_CHARS = 300
# Digits of one duration component: 24h is 86400 s, so more digits can only be out of range
# (and int() of thousands of digits is slow, then refused by Python altogether).
_MAX_DURATION_DIGITS = 9

ERR_TOO_LARGE = f"is larger than {MAX_INTENT_BYTES} bytes"
ERR_SYNTAX = "is neither valid JSON nor valid YAML: {detail}"
ERR_NOT_OBJECT = "must be a JSON or YAML object (mapping), got {kind}"
ERR_ALIAS = "YAML anchors and aliases are not allowed"
ERR_YAML_TOO_DEEP = f"nested deeper than {MAX_INTENT_DEPTH} levels"
ERR_YAML_VALUE = "a value cannot be read (a number too large, or an invalid date)"
ERR_NOT_DATA = "is not plain JSON data: {detail}"
ERR_TTL = "must be between 1s and 24h, got {value}"
ERR_TTL_FORM = "{value} is not a number of seconds or a duration such as 90s, 15m, 2h, 1h30m"
ERR_MORE_PROBLEMS = f"more problems not listed (at most {MAX_PROBLEMS} are); fix these first"
ERR_UNIQUE = "{value} has non-unique elements"
ERR_PATTERN = "{value} does not match {pattern!r}"
ERR_ADDITIONAL = "Additional properties are not allowed ({keys} {verb} unexpected)"

# Full-match: fullmatch() below, and [0-9] rather than \d, which also takes non-ASCII digits.
_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?", re.ASCII)

# Bytes the cache may hold, and what an entry costs per character of annotation text: the
# text itself (the key) and the parsed document, about twice the text for a large intent;
# the overhead covers the ParsedIntent and the bookkeeping, which dominate a small one.
# tests/webhook/test_intent.py measures that the estimate covers what is really retained.
CACHE_BYTES = 8 * 1024 * 1024
CACHE_COST_PER_CHAR = 4
CACHE_ENTRY_OVERHEAD = 2048


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
_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _load_yaml(raw: str) -> Any:
    """Safe YAML without anchors, aliases or deep nesting (checked on the event stream first:
    an alias bomb must never be expanded, and the constructor recurses once per level)."""
    depth = 0
    for event in yaml.parse(raw, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.YAMLError(ERR_ALIAS)
        if isinstance(event, _OPENING):
            depth += 1
            if depth > MAX_INTENT_DEPTH:
                raise yaml.YAMLError(ERR_YAML_TOO_DEEP)
        elif isinstance(event, _CLOSING):
            depth -= 1
    return yaml.load(raw, Loader=_Loader)  # noqa: S506 - a safe loader


def _yaml_detail(exc: yaml.YAMLError) -> str:
    # Problem and position only: PyYAML's full text quotes the input and names its own reader.
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{where}"
    return str(exc).replace("\n", " ")


@cache
def schema() -> dict[str, Any]:
    text = resources.files("identity").joinpath("intent.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def fields() -> tuple[str, ...]:
    """The intent's fields in the schema's order (the order people read them in)."""
    return tuple(schema()["properties"])


# --- schema semantics ------------------------------------------------------------------------
# The schema is published (`kube-intent intent schema`) and read by other tools, so it keeps
# JSON Schema's ECMA-262 semantics; the validator is made to honour them in Python:
#  * `$` ends the string: Python's `$` also matches before a trailing newline ("1h\n");
#  * `\d`, `\w` are ASCII only;
#  * an integer is a JSON integer: jsonschema also takes 30.0 (and would let it reach code
#    that needs an int), and never a boolean;
#  * uniqueItems in linear time: jsonschema falls back to comparing every pair when the items
#    are not sortable, which a 60 KB intent turns into half a minute of CPU.


@lru_cache(maxsize=64)  # the schema's own patterns: a handful
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return re.compile("".join(out), re.ASCII)


def _pattern(
    validator: Any, pattern: str, instance: Any, _schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield ValidationError(ERR_PATTERN.format(value=jsonio.shown(instance), pattern=pattern))


def _unique_key(item: Any) -> Any:
    # JSON Schema equality: 1 == 1.0, true != 1, objects compare regardless of key order.
    if isinstance(item, bool) or item is None:
        return ("literal", item)
    if isinstance(item, int | float):
        return ("number", item)
    if isinstance(item, str):
        return ("string", item)
    return ("json", orjson.dumps(item, option=orjson.OPT_SORT_KEYS))


def _unique_items(
    _validator: Any, unique: bool, instance: Any, _schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not unique or not isinstance(instance, list):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _unique_key(item)
        if key in seen:
            yield ValidationError(ERR_UNIQUE.format(value=jsonio.shown(instance)))
            return
        seen.add(key)


def _is_integer(_checker: Any, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_IntentValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    validators={"pattern": _pattern, "uniqueItems": _unique_items},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def _validator() -> Any:
    return _IntentValidator(schema())


def _digest_form(document: Any) -> bytes:
    # The intent digest's own form (UTF-8, not ASCII-escaped): grants already carry digests of
    # it, so it must never change. The audit chain's hash form is webhook.audit canonical_json.
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def intent_digest(document: Any) -> str:
    return "sha256:" + hashlib.sha256(_digest_form(document)).hexdigest()


def ttl_seconds(value: int | str) -> int:
    """Seconds of a ttl (an int, or a duration such as 1h30m); ValueError for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(ERR_TTL_FORM.format(value=jsonio.shown(value)))
    match = _DURATION.fullmatch(value)
    parts = match.groups() if match else ()
    if match is None or any(
        part is not None and len(part.lstrip("0")) > _MAX_DURATION_DIGITS for part in parts
    ):
        raise ValueError(ERR_TTL_FORM.format(value=jsonio.shown(value)))
    hours, minutes, seconds = (int(part or 0) for part in parts)
    return hours * 3600 + minutes * 60 + seconds


def _path(error: ValidationError) -> str:
    path = "intent"
    for part in error.absolute_path:
        path = f"{path}[{part}]" if isinstance(part, int) else jsonio.child(path, str(part))
    return path


def _message(error: ValidationError) -> str:
    instance = error.instance
    if error.validator in ("oneOf", "anyOf"):
        # Their messages read badly verbatim; the schema's description says what is allowed.
        description = error.schema.get("description") if isinstance(error.schema, dict) else None
        message = (
            f"{jsonio.shown(instance)} is not valid: {description or 'no alternative matched'}"
        )
    elif error.validator == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = [key for key in instance if key not in known]
        keys = ", ".join(jsonio.shown(key) for key in extra[:5])
        if len(extra) > 5:
            keys += f" and {len(extra) - 5} more"
        message = ERR_ADDITIONAL.format(keys=keys, verb="was" if len(extra) == 1 else "were")
    else:
        message = error.message
        # jsonschema quotes the whole instance (a 60 KB string, a list of thousands).
        text = repr(instance)
        if len(text) > jsonio.SHOWN_CHARS and text in message:
            message = message.replace(text, jsonio.shown(instance))
    return jsonio.bounded(message, MAX_PROBLEM_CHARS)


def _problem(message: str, path: str = "intent") -> ParsedIntent:
    return ParsedIntent(present=True, problems=(IntentProblem(path, message),))


def _load(raw: str) -> Any:
    """The annotation as data (JSON first, else YAML); raises _Unreadable with the problem."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return _load_yaml(raw)
    except yaml.YAMLError as exc:
        raise _Unreadable(ERR_SYNTAX.format(detail=_yaml_detail(exc))) from None
    except (ValueError, OverflowError):
        # From a constructor: int() of > 4,300 digits, a timestamp such as 2024-13-45.
        raise _Unreadable(ERR_SYNTAX.format(detail=ERR_YAML_VALUE)) from None


class _Unreadable(Exception):
    pass


def _kind(document: Any) -> str:
    if document is None:
        return "empty value"
    if isinstance(document, bool):
        return "a boolean"
    if isinstance(document, int | float):
        return "a number"
    if isinstance(document, str):
        return "a string"
    if isinstance(document, list):
        return "a list"
    return "a non-JSON value"


def _parse(raw: str) -> ParsedIntent:
    if len(raw) > MAX_INTENT_BYTES or len(raw.encode("utf-8", "surrogatepass")) > MAX_INTENT_BYTES:
        return _problem(ERR_TOO_LARGE)
    try:
        document = _load(raw)
    except _Unreadable as exc:
        return _problem(jsonio.bounded(str(exc), MAX_PROBLEM_CHARS))
    if not isinstance(document, dict):
        return _problem(ERR_NOT_OBJECT.format(kind=_kind(document)))
    try:
        # YAML yields dates, sets, binary, huge integers, NaN; text may hold lone surrogates.
        jsonio.check_plain(document, max_depth=MAX_INTENT_DEPTH, root="intent")
    except jsonio.JsonError as exc:
        return _problem(ERR_NOT_DATA.format(detail=exc.problem), exc.path or "intent")
    errors = _validator().iter_errors(document)
    found = list(itertools.islice(errors, MAX_PROBLEMS + 1))
    problems = [
        IntentProblem(_path(error), _message(error))
        for error in sorted(found[:MAX_PROBLEMS], key=lambda e: [str(p) for p in e.absolute_path])
    ]
    if len(found) > MAX_PROBLEMS:
        # Counting the rest would cost what the bound saves: say only that there are more.
        problems.append(IntentProblem("intent", ERR_MORE_PROBLEMS))
    if not problems:
        ttl = document["ttl"]
        try:
            seconds = ttl_seconds(ttl)
        except ValueError:
            seconds = 0
        if not 1 <= seconds <= MAX_TTL_SECONDS:
            problems.append(IntentProblem("intent.ttl", ERR_TTL.format(value=jsonio.shown(ttl))))
    # Only a schema-valid document is plain JSON data (YAML may yield dates or non-string keys).
    digest = None if problems else intent_digest(document)
    return ParsedIntent(present=True, document=document, digest=digest, problems=tuple(problems))


class IntentCache:
    """LRU of valid parses, bounded in (estimated) bytes rather than entries.

    Keyed by the annotation text: a Deployment's pods, and the mutate and validate calls for
    one pod, carry the same intent. Rejected intents are never stored, so a stream of distinct
    bad (or oversized) annotations costs parsing time but no memory.
    """

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self._entries: OrderedDict[str, tuple[ParsedIntent, int]] = OrderedDict()
        self._used = 0
        # kube-intent review and tests call parse_intent from threads; the app from one loop.
        self._lock = threading.Lock()

    @staticmethod
    def cost(raw: str) -> int:
        return CACHE_ENTRY_OVERHEAD + CACHE_COST_PER_CHAR * len(raw)

    def get(self, raw: str) -> ParsedIntent | None:
        with self._lock:
            entry = self._entries.get(raw)
            if entry is None:
                return None
            self._entries.move_to_end(raw)
            return entry[0]

    def put(self, raw: str, parsed: ParsedIntent) -> None:
        cost = self.cost(raw)
        if not parsed.valid or cost > self.budget:
            return
        with self._lock:
            if raw in self._entries:
                return
            self._entries[raw] = (parsed, cost)
            self._used += cost
            while self._used > self.budget:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._used -= evicted

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._used = 0

    @property
    def used_bytes(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._entries)


INTENT_CACHE = IntentCache()


def parse_intent(raw: str | None) -> ParsedIntent:
    """Read the annotation value; every problem is reported at once, each with its path.

    Results are shared through INTENT_CACHE and immutable by convention (never edit them).
    """
    if raw is None:
        return ParsedIntent(present=False)
    cached = INTENT_CACHE.get(raw)
    if cached is not None:
        return cached
    parsed = _parse(raw)
    INTENT_CACHE.put(raw, parsed)
    return parsed
