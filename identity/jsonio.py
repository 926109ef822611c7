"""JSON for hostile input: a bounded parse, a plain-data check, and an encoder that cannot fail.

Everything the webhook reads comes from an AdmissionReview body or an annotation inside it,
written by whoever can create pods. The standard library's `json` turns such input into
crashes: RecursionError on deep nesting, ValueError on integers of more than 4,300 digits,
NaN and Infinity literals that OPA then refuses, lone surrogates that no encoder can write
back. orjson refuses most of that while parsing (checked in tests/webhook/test_jsonio.py):
lone surrogates (raw or escaped), NaN/Infinity literals, numbers that overflow a double
(1e309, a 4,301-digit integer) and nesting beyond 1,024. It does *not* refuse integers above
64 bits (they become finite floats) or 1,024 levels of nesting, which recursive Python code
(`json.dumps`, the audit normaliser, orjson's own encoder) cannot walk: `loads` bounds the
depth, and `check_plain` re-checks everything in what a more lenient source (YAML) produced.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
from typing import Any

import orjson

log = logging.getLogger("kube_intent.jsonio")

# Deepest nesting accepted in an AdmissionReview body. Real pods stay below ~20 levels
# (managedFields of a pod affinity term are the deepest); Python's own walkers need < 1,000.
MAX_DEPTH = 64
# 64-bit signed and unsigned integers: what Kubernetes (int64) and OPA read exactly.
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1

ERR_TOO_DEEP = "nested deeper than {limit} levels"
ERR_NOT_FINITE = "{value} is not a finite number"
ERR_INT_RANGE = "integer of {digits} digits is outside the 64-bit range"
ERR_SURROGATE = "text is not valid UTF-8 (a lone surrogate at character {index})"
ERR_KEY = "object key {key} is not a string"
ERR_TYPE = "a {kind} value is not JSON data"
ERR_NOT_ENCODABLE = "not plain JSON data: {detail}"


class JsonError(ValueError):
    """The input is not plain, bounded JSON data; `path` names where (JSON-path-like)."""

    def __init__(self, problem: str, path: str = "", *, syntax: bool = False) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.problem = problem
        self.path = path
        # Not JSON at all (orjson's reading), as opposed to JSON we do not take.
        self.syntax = syntax


# Brackets (as `[` and `]`) and quotes only: what is left of a document to count its depth.
_BRACKETS_AND_QUOTES = (
    bytes.maketrans(b"{}", b"[]"),
    bytes(c for c in range(256) if c not in b'[]{}"'),
)


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text that is valid UTF-8, finite, 64-bit and at most `max_depth` deep."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    # The cyclic GC runs again and again while orjson allocates a million lists (5x the parse
    # time for a hostile 3 MB body); parsing creates no cycles, so it waits until the end.
    enabled = gc.isenabled()
    gc.disable()
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson's messages name the position and the problem, never Python internals.
        raise JsonError(str(exc.args[0]) if exc.args else "", syntax=True) from None
    finally:
        if enabled:
            gc.enable()
    if not _ORJSON_REFUSES_ALL:
        check_plain(document, max_depth=max_depth)
    # orjson has refused what `check_plain` looks for in scalars: only the depth is left.
    elif too_deep(raw, max_depth):
        raise JsonError(ERR_TOO_DEEP.format(limit=max_depth))
    return document


def _refuses(sample: bytes) -> bool:
    try:
        orjson.loads(sample)
    except orjson.JSONDecodeError:
        return True
    return False


# What the fast path relies on, checked against the orjson actually installed rather than
# assumed (an older release may read 1e309 as infinity): if any of it fails, every parsed
# document is walked in full instead.
_ORJSON_REFUSES_ALL = all(
    _refuses(sample) for sample in (b"1e309", b"-1e309", b"NaN", b'"\\ud800"', b'"\xed\xa0\x80"')
)


def too_deep(text: bytes, max_depth: int) -> bool:
    """Whether valid JSON `text` nests deeper than `max_depth`, found at C speed.

    Strings are cut out, everything but brackets dropped, then innermost pairs removed
    pass after pass: the passes needed are the depth. A walk over the parsed document in
    Python costs ten times as much for a body of a million small containers.
    """
    if text.count(b"[") + text.count(b"{") <= max_depth:
        return False  # the common small document: not even this many containers
    # Escapes out first. A run of backslashes pairs off from its start, as str.replace pairs
    # them (each pair one escaped backslash); after that only backslash-quote is an escaped
    # quote. Every quote left opens or closes a string: brackets between them are text.
    unescaped = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = unescaped.translate(*_BRACKETS_AND_QUOTES)
    brackets = b"".join(skeleton.split(b'"')[0::2])
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


# A container met during the walk, its parent's entry and its key there: the path is
# rebuilt from these links only when something is wrong.
_Entry = tuple[Any, Any, "str | int | None"]


def check_plain(document: Any, *, max_depth: int = MAX_DEPTH, root: str = "") -> None:
    """Raise JsonError unless `document` is JSON data a Go or Rego reader takes as it is.

    Breadth-first with an explicit queue, so a document of any depth is refused, not crashed
    on. Meant for documents from YAML and other lenient sources, which are small (an intent):
    `loads` checks what orjson produced far faster.
    """
    level: list[_Entry] = [(document, None, None)]
    _check_scalar(document, level[0], root)
    depth = 0
    while level:
        below: list[_Entry] = []
        for entry in level:
            value = entry[0]
            if value.__class__ is dict:
                pairs: Any = value.items()
            elif value.__class__ is list:
                pairs = enumerate(value)
            else:
                continue
            if depth >= max_depth:
                raise JsonError(ERR_TOO_DEEP.format(limit=max_depth), _path(entry, root))
            for key, item in pairs:
                if value.__class__ is dict:
                    _check_key(key, entry, root)
                if item.__class__ is dict or item.__class__ is list:
                    below.append((item, entry, key))
                else:
                    _check_scalar(item, (item, entry, key), root)
        level = below
        depth += 1


def _path(entry: _Entry, root: str) -> str:
    keys: list[str | int] = []
    while entry[1] is not None:
        keys.append(entry[2])  # type: ignore[arg-type]
        entry = entry[1]
    path = root
    for key in reversed(keys):
        path = f"{path}[{key}]" if isinstance(key, int) else child(path, key)
    return path


def _check_key(key: object, entry: _Entry, root: str) -> None:
    if not isinstance(key, str):
        raise JsonError(ERR_KEY.format(key=shown(key)), _path(entry, root))
    _check_text(key, entry, root)


def _check_scalar(value: object, entry: _Entry, root: str) -> None:
    cls = value.__class__
    if cls is str:
        _check_text(value, entry, root)  # type: ignore[arg-type]
    elif cls is bool or value is None or isinstance(value, dict | list):
        return
    elif isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise JsonError(ERR_INT_RANGE.format(digits=_digits(value)), _path(entry, root))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise JsonError(ERR_NOT_FINITE.format(value=shown(value)), _path(entry, root))
    elif isinstance(value, str):  # a str subclass
        _check_text(value, entry, root)
    else:
        raise JsonError(ERR_TYPE.format(kind=_kind(value)), _path(entry, root))


def _check_text(text: str, entry: _Entry, root: str) -> None:
    if text.isascii():  # the common case, and no surrogate is ASCII
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonError(ERR_SURROGATE.format(index=exc.start), _path(entry, root)) from None


def _digits(value: int) -> int:
    # len(str(value)) raises for more than 4,300 digits; the bit length bounds it well enough.
    return max(1, int(abs(value).bit_length() * math.log10(2)) + 1)


def _kind(value: object) -> str:
    # Named for the pod's author (YAML words), not by the Python class.
    if isinstance(value, bytes):
        return "binary"
    if isinstance(value, set | frozenset):
        return "set"
    if isinstance(value, tuple):
        return "pair"
    if hasattr(value, "isoformat"):
        return "timestamp"
    return "non-JSON"


def child(path: str, key: str) -> str:
    """`path.key`, or `path[<key>]` when the key is not a plain identifier (or is long)."""
    if key.isidentifier() and key.isascii() and len(key) <= SHOWN_CHARS:
        return f"{path}.{key}" if path else key
    return f"{path}[{shown(key)}]"


# User-controlled values longer than this are shown as a digest, never echoed.
SHOWN_CHARS = 64


def digest_of(text: str) -> str:
    data = text.encode("utf-8", "surrogatepass")
    return f"<{len(text)} characters, sha256:{hashlib.sha256(data).hexdigest()[:16]}>"


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A user-controlled value for a message: JSON-ish when short, a digest when long."""
    if isinstance(value, str) and len(value) > limit:
        return digest_of(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int) and not isinstance(value, bool) and _digits(value) > limit:
        return f"<integer of {_digits(value)} digits>"
    if not isinstance(value, str | int | float | dict | list) and value is not None:
        return f"<{_kind(value)} value>"
    text = orjson.dumps(scrub(value)).decode()
    return text if len(text) <= limit else digest_of(text)


def bounded(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, ending with a digest of the whole."""
    if len(text) <= limit:
        return text
    tail = f"… (cut; whole message {digest_of(text)})"
    return text[: max(0, limit - len(tail))] + tail


def dumps_strict(value: Any) -> bytes:
    """Encode data for another JSON reader (OPA), refusing what it would refuse or misread.

    orjson refuses lone surrogates, integers beyond 64 bits, non-string keys, nesting beyond
    254 levels and non-JSON types, but writes NaN and Infinity as null: the C encoder of the
    standard library finds those (the document is shallow enough for it by then).
    """
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise JsonError(ERR_NOT_ENCODABLE.format(detail=_encode_problem(str(exc)))) from None
    try:
        json.dumps(value, allow_nan=False, check_circular=False)
    except ValueError:
        raise JsonError(ERR_NOT_FINITE.format(value="NaN or Infinity")) from None
    return encoded


def _encode_problem(message: str) -> str:
    # orjson's words, except where they name a Python type.
    return "a value of a non-JSON type" if "not JSON serializable" in message else message


def dumps(value: Any) -> bytes:
    """Encode a value the webhook built. Never raises: what orjson refuses is scrubbed first.

    Our responses hold only strings that came through `loads` (valid UTF-8) or from us, so the
    fallback should never run; it exists so that an encoding bug can never become a 500.
    """
    try:
        return orjson.dumps(value)
    except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
        log.error("a value needed scrubbing to encode", extra={"fields": {"problem": str(exc)}})
        return orjson.dumps(scrub(value))


def scrub(value: Any, depth: int = 0) -> Any:
    """Plain JSON data from anything: every string encodable, every number finite and 64-bit."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if MIN_INT <= value <= MAX_INT:
            return value
        # As text: Python refuses str() of more than 4,300 digits.
        return str(value) if _digits(value) < 4000 else f"<integer of {_digits(value)} digits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {scrub(str(k)): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, depth + 1) for v in value]
    return scrub(str(value))
