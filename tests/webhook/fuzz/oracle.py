"""What every answer must satisfy, checked independently of the webhook's own code.

The reference intent check re-reads the schema's rules from scratch (JSON Schema semantics as
ECMA-262 and JSON define them, full-match patterns, integers that are integers), so a webhook
that admits an intent the schema does not allow is caught even if both share a bug in
identity/intent.py.
"""

from __future__ import annotations

import builtins
import json
import re
from pathlib import Path
from typing import Any, TypeGuard

import yaml

import identity
from tests.support.paths import REPO
from webhook.admission import MAX_MESSAGE

# Python's exception class names: none may appear in an answer unless the request said it.
_BUILTIN_EXCEPTIONS = (
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type)
    and issubclass(value, BaseException)
    and not issubclass(value, Warning)
)
EXCEPTION_NAMES = [
    *sorted(_BUILTIN_EXCEPTIONS),
    "ValidationError",
    "JSONDecodeError",
    "JSONEncodeError",
    "ClientError",
    "ClientConnectorError",
]
INTERNAL_MARKERS = ["Traceback", "site-packages", '.py"', ".py:", str(REPO), "127.0.0.1"]

# The published schema file itself, not the module that validates with it.
_SCHEMA = json.loads((Path(identity.__file__).parent / "intent.schema.json").read_text())
_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?\Z", re.ASCII)
_PATTERNS = {
    key: re.compile(_SCHEMA["properties"][key]["items"]["pattern"].rstrip("$") + r"\Z", re.ASCII)
    for key in ("models", "dataClasses", "tools", "egress")
}
_LIMITS = {  # (min items, max items) of each list
    key: (
        _SCHEMA["properties"][key].get("minItems", 0),
        _SCHEMA["properties"][key].get("maxItems", 10**9),
    )
    for key in ("models", "dataClasses", "tools", "egress")
}


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _reference_ttl(value: object) -> bool:
    if _is_int(value):
        return 1 <= value <= 86400
    if not isinstance(value, str) or not 2 <= len(value) <= 32:
        return False
    match = _DURATION.match(value)
    if match is None:
        return False
    h, m, s = (int(part or 0) for part in match.groups())
    return 1 <= h * 3600 + m * 60 + s <= 86400


def _reference_list(key: str, value: object) -> bool:
    low, high = _LIMITS[key]
    if not isinstance(value, list) or not low <= len(value) <= high:
        return False
    if not all(isinstance(v, str) and _PATTERNS[key].match(v) for v in value):
        return False
    if key == "models" and not all(1 <= len(v) <= 253 for v in value):
        return False
    return len(set(value)) == len(value)


def reference_intent_valid(raw: object) -> bool:
    """Would a strict reading of identity/intent.schema.json accept this annotation?"""
    if not isinstance(raw, str):
        return False
    try:
        document = json.loads(raw)
    except ValueError:
        try:
            document = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
        except (yaml.YAMLError, ValueError, RecursionError):
            return False
    if not isinstance(document, dict):
        return False
    properties = _SCHEMA["properties"]
    if set(document) - set(properties) or set(_SCHEMA["required"]) - set(document):
        return False
    if document["purpose"] not in properties["purpose"]["enum"]:
        return False
    for key in ("models", "dataClasses", "tools", "egress"):
        if key in document and not _reference_list(key, document[key]):
            return False
    accelerators = document["accelerators"]
    if not isinstance(accelerators, dict) or set(accelerators) - {"count", "resource"}:
        return False
    count = accelerators.get("count")
    if not _is_int(count) or not 1 <= count <= 1024:
        return False
    resource = accelerators.get("resource", "r")
    if not isinstance(resource, str) or not 1 <= len(resource) <= 253:
        return False
    justification = document.get("justification", "j" * 10)
    if not isinstance(justification, str) or not 10 <= len(justification) <= 2000:
        return False
    return _reference_ttl(document["ttl"])


def hygiene_problems(text: str, request_text: str, opa_url: str) -> list[str]:
    """Internals in an answer: exception names (not quoted from the request), paths, OPA."""
    problems = [
        f"names the exception {name}"
        for name in EXCEPTION_NAMES
        if re.search(rf"\b{name}\b", text) and name not in request_text
    ]
    problems += [
        f"contains {marker!r}"
        for marker in [*INTERNAL_MARKERS, opa_url]
        if marker in text and marker not in request_text
    ]
    if len(text) > MAX_MESSAGE:
        problems.append(f"message of {len(text)} characters exceeds {MAX_MESSAGE}")
    return problems


def decoded(body: bytes) -> Any:
    """The request as a lenient reader sees it (None when not even that can read it)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
