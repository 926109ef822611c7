"""Hypothesis strategies for hostile AdmissionReviews, intents and request bodies.

Everything starts from the example pods (examples/pods/*.yaml), so most inputs are close to
real ones and reach deep into the decision path; mutations then break them the ways the
first fuzz campaign found (wrong types, deep nesting, huge numbers, lone surrogates, NaN,
oversized lists and annotations) plus whatever Hypothesis combines from them.

Bodies are serialised by `encode` below, which writes what orjson refuses (NaN, Infinity,
integers of any size, lone surrogates as \\ud800 escapes, nesting of any depth): the webhook
must cope with every byte sequence, not only with what a well-behaved encoder produces.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import yaml
from hypothesis import strategies as st

from identity.intent import INTENT_ANNOTATION
from identity.intent import fields as intent_fields
from tests.support.admission import review
from tests.support.manifests import load_yaml
from tests.support.paths import EXAMPLES

Pod = dict[str, Any]
Body = dict[str, Any]

POD_EXAMPLES: dict[str, Pod] = {
    path.stem: next(d for d in load_yaml(path) if d.get("kind") == "Pod")
    for path in sorted((EXAMPLES / "pods").glob("*.yaml"))
}
INTENT_EXAMPLES: list[dict[str, Any]] = [
    yaml.safe_load(pod["metadata"]["annotations"][INTENT_ANNOTATION])
    for pod in POD_EXAMPLES.values()
    if isinstance(pod["metadata"].get("annotations", {}).get(INTENT_ANNOTATION), str)
]
INTENT_EXAMPLES = [d for d in INTENT_EXAMPLES if isinstance(d, dict)]

# --- values ------------------------------------------------------------------------------------


class Digits(str):
    """An integer Python will not print (more than 4,300 digits): `encode` writes its digits."""


LONE_SURROGATES = ["\ud800", "\udfff", "a\udc80b"]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]
HUGE_INTS = [2**64, -(2**63) - 1, 10**40, Digits("1" * 4301)]

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "1h\n",
            "\n",
            "\x00",
            "é" * 3,
            "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() says yes
            "${jndi:x}",
            "TypeError",
            "x" * 70_000,
            "1" * 4301,
            *LONE_SURROGATES,
        ]
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
hostile_scalars = st.one_of(
    json_scalars,
    hostile_text,
    st.sampled_from([*NON_FINITE, *HUGE_INTS, 1e308, 30.0, 1.0, -0.0, True, False]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile_values = st.one_of(hostile_scalars, json_values)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


# --- structural mutations of a pod -------------------------------------------------------------


def paths(value: Any, max_depth: int = 16) -> list[tuple[Any, ...]]:
    """Paths into a JSON-like value (the root excluded), down to `max_depth`; no recursion, as
    an earlier mutation may have nested the pod a thousand levels deep."""
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, prefix = stack.pop()
        if len(prefix) >= max_depth:
            continue
        children = (
            item.items()
            if isinstance(item, dict)
            else enumerate(item)
            if isinstance(item, list)
            else ()
        )
        for key, child in children:
            found.append((*prefix, key))
            stack.append((child, (*prefix, key)))
    found.sort(key=repr)
    return found


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        root = root[key]
    return root


Mutation = Callable[[Pod], None]


@st.composite
def replace_somewhere(draw: st.DrawFn) -> Mutation:
    choice = draw(st.integers(min_value=0, max_value=10_000))
    value = draw(hostile_values)

    def mutate(pod: Pod) -> None:
        every = paths(pod)
        if every:
            path = every[choice % len(every)]
            _parent(pod, path)[path[-1]] = copy.deepcopy(value)

    return mutate


@st.composite
def delete_somewhere(draw: st.DrawFn) -> Mutation:
    choice = draw(st.integers(min_value=0, max_value=10_000))

    def mutate(pod: Pod) -> None:
        every = paths(pod)
        if every:
            path = every[choice % len(every)]
            parent = _parent(pod, path)
            del parent[path[-1]]

    return mutate


@st.composite
def nest_somewhere(draw: st.DrawFn) -> Mutation:
    choice = draw(st.integers(min_value=0, max_value=10_000))
    depth = draw(st.sampled_from([1, 10, 63, 64, 65, 200, 1000, 1100]))

    def mutate(pod: Pod) -> None:
        every = paths(pod)
        if every:
            path = every[choice % len(every)]
            parent = _parent(pod, path)
            parent[path[-1]] = nested(depth, parent[path[-1]])

    return mutate


# Well-typed but pathological sizes: these must be refused by limits, not by OPA's timeout.
@st.composite
def grow(draw: st.DrawFn) -> Mutation:
    what = draw(st.sampled_from(["claims", "containers", "env", "annotations", "labels"]))
    count = draw(st.sampled_from([0, 1, 127, 128, 129, 256, 257, 1024, 1025, 5000]))

    def mutate(pod: Pod) -> None:
        spec = pod.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        containers = spec.get("containers")
        first = containers[0] if isinstance(containers, list) and containers else {}
        if what == "claims":
            spec["resourceClaims"] = [
                {"name": f"claim-{i}", "resourceClaimName": f"claim-{i}"} for i in range(count)
            ]
        elif what == "containers" and isinstance(first, dict):
            spec["containers"] = [{**first, "name": f"c{i}"} for i in range(min(count, 300))]
        elif what == "env" and isinstance(first, dict):
            first["env"] = [{"name": f"E{i}", "value": "v"} for i in range(count)]
        elif what == "annotations":
            metadata = pod.setdefault("metadata", {})
            if isinstance(metadata, dict) and isinstance(metadata.get("annotations", {}), dict):
                metadata.setdefault("annotations", {})["padding"] = "p" * (count * 256)
        elif what == "labels":
            metadata = pod.setdefault("metadata", {})
            if isinstance(metadata, dict):
                metadata["labels"] = {f"l{i}": "v" for i in range(count)}

    return mutate


# --- intents -----------------------------------------------------------------------------------

ttl_values = st.one_of(
    st.integers(min_value=-5, max_value=90_000),
    st.sampled_from(
        [
            30.0,
            60.0,
            1e2,
            True,
            "1h\n",
            "\n1h",
            "1h30m",
            "15m",
            "0s",
            "25h",
            "\u0661h",
            "1" * 4301 + "h",
            "9" * 40 + "s",
            "",
            None,
            [],
            {},
            *HUGE_INTS,
            *NON_FINITE,
        ]
    ),
)
list_entries = st.one_of(
    st.sampled_from(["meta-llama/Llama-3.1-8B-Instruct", "internal", "kb-search", "a"]),
    hostile_scalars,
)


@st.composite
def intent_documents(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(INTENT_EXAMPLES)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        key = draw(st.sampled_from([*intent_fields(), "extra"]))
        action = draw(st.sampled_from(["set", "delete", "list"]))
        if action == "delete":
            document.pop(key, None)
        elif key == "ttl":
            document["ttl"] = draw(ttl_values)
        elif key == "accelerators":
            document["accelerators"] = {"count": draw(hostile_scalars)}
        elif action == "list":
            document[key] = draw(st.lists(list_entries, max_size=5))
        else:
            document[key] = draw(hostile_values)
    if draw(st.booleans()):
        return document
    return draw(st.sampled_from([[document], nested(draw(st.sampled_from([17, 1000])))]))


YAML_SNIPPETS = [
    "a: &x [1]\nb: *x\n",
    "ttl: !!binary aGVsbG8=\n",
    "ttl: !!set {a, b}\n",
    "ttl: 2024-13-45\n",
    "ttl: 2024-01-01\n",
    "ttl: .inf\n",
    "ttl: .nan\n",
    "ttl: " + "1" * 4301 + "\n",
    'ttl: "\\ud800"\n',
    "a: " + "[" * 1000 + "]" * 1000 + "\n",
    "{purpose: [",
    "? [a, b]\n: c\n",
    "",
    "- a\n- b\n",
]


@st.composite
def intent_texts(draw: st.DrawFn) -> str:
    how = draw(st.sampled_from(["json", "yaml", "snippet", "text"]))
    if how == "snippet":
        return draw(st.sampled_from(YAML_SNIPPETS))
    if how == "text":
        return draw(hostile_text)
    document = draw(intent_documents())
    if how == "yaml":
        try:
            return yaml.safe_dump(document)
        except (yaml.YAMLError, ValueError, RecursionError):
            pass  # what PyYAML cannot write (Digits, a thousand levels): JSON is YAML too
    return encode(document).decode("ascii")


@st.composite
def set_intent(draw: st.DrawFn) -> Mutation:
    text = draw(intent_texts())

    def mutate(pod: Pod) -> None:
        metadata = pod.setdefault("metadata", {})
        if isinstance(metadata, dict):
            annotations = metadata.setdefault("annotations", {})
            if isinstance(annotations, dict):
                annotations[INTENT_ANNOTATION] = text

    return mutate


pod_mutations = st.one_of(
    replace_somewhere(), delete_somewhere(), nest_somewhere(), grow(), set_intent()
)


# --- whole requests ----------------------------------------------------------------------------

REQUEST_EDITS: dict[str, st.SearchStrategy[Any]] = {
    "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "create", "", 1]),
    "kind": st.one_of(
        st.just({"group": "", "version": "v1", "kind": "Pod"}),
        st.just({"group": "apps", "version": "v1", "kind": "Deployment"}),
        st.fixed_dictionaries(
            {"group": hostile_text, "version": st.just("v1"), "kind": hostile_text}
        ),
        hostile_values,
    ),
    "subResource": st.one_of(st.sampled_from(["", "ephemeralcontainers", "status"]), hostile_text),
    "dryRun": st.one_of(st.booleans(), hostile_scalars),
    "uid": st.one_of(hostile_text, hostile_scalars, st.just("u" * 200)),
    "namespace": st.one_of(st.just("ml-serving"), hostile_text),
    "name": hostile_text,
    "userInfo": st.one_of(st.just({"username": "alice", "groups": ["g"]}), hostile_values),
}


@st.composite
def admission_reviews(draw: st.DrawFn) -> Body:
    """A review of an example pod, its pod (and old pod) mutated, maybe its request edited."""
    pod = copy.deepcopy(draw(st.sampled_from(sorted(POD_EXAMPLES.items())))[1])
    operation = draw(st.sampled_from(["CREATE", "UPDATE"]))
    old = copy.deepcopy(pod) if operation == "UPDATE" else None
    # The review is built first (from well-formed metadata); the pods are mutated in place.
    body = review(pod, operation=operation, old=old, uid=str(uuid.uuid4()))
    for mutation in draw(st.lists(pod_mutations, min_size=1, max_size=3)):
        mutation(pod)
    if old is not None and draw(st.booleans()):
        for mutation in draw(st.lists(pod_mutations, max_size=2)):
            mutation(old)
    body["request"]["dryRun"] = draw(st.booleans()) and draw(st.booleans())
    for field in draw(st.lists(st.sampled_from(sorted(REQUEST_EDITS)), max_size=2, unique=True)):
        body["request"][field] = draw(REQUEST_EDITS[field])
    return body


@st.composite
def intent_reviews(draw: st.DrawFn) -> Body:
    """A review of an allowed example pod whose only change is its intent."""
    name = draw(st.sampled_from(["allowed-vllm-llama", "allowed-dra-triton"]))
    pod = copy.deepcopy(POD_EXAMPLES[name])
    body = review(pod, uid=str(uuid.uuid4()))
    draw(set_intent())(pod)
    return body


_RAW = object()


def encode(value: Any) -> bytes:
    """JSON as a careless writer makes it: NaN, Infinity, integers of any length, lone
    surrogates (as escapes) and any depth (iterative: the standard library's recursion stops
    near 1,000 levels)."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple) and item and item[0] is _RAW:
            parts.append(item[1])
        elif isinstance(item, Digits):
            parts.append(str.__str__(item))
        elif isinstance(item, dict | list):
            pairs = item.items() if isinstance(item, dict) else ((None, v) for v in item)
            sequence: list[Any] = []
            for index, (key, child) in enumerate(pairs):
                if index:
                    sequence.append((_RAW, ","))
                if key is not None or isinstance(item, dict):
                    sequence.append((_RAW, json.dumps(str(key)) + ":"))
                sequence.append(child)
            opening, closing = ("{", "}") if isinstance(item, dict) else ("[", "]")
            stack.extend(reversed([(_RAW, opening), *sequence, (_RAW, closing)]))
        else:
            # Scalars: json.dumps escapes surrogates and writes NaN and Infinity.
            parts.append(json.dumps(item))
    return "".join(parts).encode("ascii")


CORRUPTIONS = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e309",
    b"1" * 4400,
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b"[" * 1100,
    b"{" * 10,
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b'"\\u0000"',
    b"\xef\xbb\xbf",
    b'"uid": 5,',
    b'"uid": "x", "uid": "y",',
    b"",
]


@st.composite
def corrupted_bodies(draw: st.DrawFn) -> bytes:
    """A valid review's bytes with a hostile splice, or cut short, or bytes dropped."""
    data = encode(draw(admission_reviews()) if draw(st.booleans()) else draw(intent_reviews()))
    at = draw(st.integers(min_value=0, max_value=len(data)))
    how = draw(st.sampled_from(["splice", "replace", "truncate", "drop", "random"]))
    if how == "truncate":
        return data[:at]
    if how == "drop":
        return data[:at] + data[at + draw(st.integers(min_value=1, max_value=50)) :]
    if how == "random":
        return data[:at] + draw(st.binary(max_size=16)) + data[at:]
    splice = draw(st.sampled_from(CORRUPTIONS))
    if how == "replace":
        # Replace one JSON value: after a colon, up to the next comma or brace.
        colons = [i for i in range(len(data)) if data[i : i + 2] == b": "]
        if colons:
            start = colons[at % len(colons)] + 2
            ends = [e for e in (data.find(b",", start), data.find(b"}", start)) if e != -1]
            end = min(ends) if ends else len(data)
            return data[:start] + splice + data[end:]
    return data[:at] + splice + data[at:]
