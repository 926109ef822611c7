"""The fast paths of the audit record are exact: the same values and the same hashed bytes.

``normalise_json`` handles the common members of a container in its loop instead of by a call
apiece, and ``canonical_bytes`` splices the already encoded pod (``encoded_json``) into the
hashed form through ``canonical_object`` instead of encoding it again. Both are checked here on
generated data against the plain implementations they replaced, copied below as references.
"""

from __future__ import annotations

import json
import math
import types
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.audit import BASE_TIME, HOSTILE_JSON, full_record
from webhook.audit import GENESIS_HASH, AcceleratorSummary, AuditRecord, StoredRecord
from webhook.audit.record import (
    JSON_TOO_DEEP,
    MAX_JSON_DEPTH,
    Kind,
    PolicyDirInfo,
    PolicyFileDigest,
    PolicyLoadInfo,
    _int_text,
    canonical_json,
    canonical_object,
    normalise_json,
)
from webhook.violations import Violation, clean_text

PROPERTIES = settings(max_examples=300, derandomize=True, database=None, deadline=None)

# -- the references: the implementations the fast paths replaced, verbatim ----------------------
# But for one line: the reference tested ``value in range(-(2**63), 2**63)``, which walks the
# range for an int subclass (practically forever); compared instead, which answers the same for
# every int the range answered for. ``_int_text`` (the text of an out-of-range int) is the
# module's own: it did not change.

_INT64 = range(-(2**63), 2**63)


def reference_normalise(value: Any, depth: int = 0) -> Any:
    kind = type(value)
    if kind is str:
        return value if value.isascii() and "\x00" not in value else clean_text(value)
    if kind is dict:
        if depth >= MAX_JSON_DEPTH:
            return JSON_TOO_DEEP
        return {_reference_key(k): reference_normalise(v, depth + 1) for k, v in value.items()}
    if kind is list:
        if depth >= MAX_JSON_DEPTH:
            return JSON_TOO_DEEP
        return [reference_normalise(v, depth + 1) for v in value]
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT64.start <= value < _INT64.stop else _int_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_JSON_DEPTH:
        return JSON_TOO_DEEP
    if isinstance(value, Mapping):
        return {_reference_key(k): reference_normalise(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reference_normalise(v, depth + 1) for v in value]
    return clean_text(str(value))


def _reference_key(key: Any) -> str:
    if type(key) is str and key.isascii() and "\x00" not in key:
        return key
    return clean_text(str(key))


def reference_canonical(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def reference_bytes(record: AuditRecord, *, seq: int, prev_hash: str) -> bytes:
    """The hashed form as it was built before splicing: the whole content, encoded at once."""
    return reference_canonical(record._content(seq=seq, prev_hash=prev_hash)).encode("utf-8")


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down, dict keys (and their order) included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return [(type(k), k) for k in a] == [(type(k), k) for k in b] and all(
            same(a[k], b[k]) for k in a
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


# -- what a lenient parser (or a caller) may hand the record -----------------------------------


class Tag(str):
    """A str subclass that prints as something else: normalise_json must call str() on it."""

    __slots__ = ()

    def __str__(self) -> str:
        return "tag:" + self


class Count(int):
    pass


HOSTILE_CHARS = ["\x00", "\ud800", "\udfff", "\ud83d", "\ude00", "é", "要", "\U0001f600", '"', "\\"]
texts = st.lists(st.one_of(st.characters(), st.sampled_from(HOSTILE_CHARS)), max_size=8).map(
    "".join
)
ints = st.one_of(
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, True, False]),
    # Beyond the 4,300 digits Python prints in decimal (made by map: Hypothesis cannot repr them).
    st.sampled_from([1, -1]).map(lambda sign: sign * 10**4300),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),  # NaN, infinities and -0.0 included
    texts,
    texts.map(Tag),
    st.integers(-5, 5).map(Count),
    st.sampled_from([Decimal("1.5"), b"bytes", object, 1 + 2j]),  # not JSON at all
)
keys: st.SearchStrategy[Any] = st.one_of(
    texts,
    texts.map(Tag),
    st.integers(),
    st.sampled_from([2**64, True, False, None, 1.5, float("nan"), (1, "x")]),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(keys, children, max_size=4),
        st.dictionaries(keys, children, max_size=4).map(OrderedDict),
        st.dictionaries(keys, children, max_size=4).map(types.MappingProxyType),
    )


values = st.recursive(leaves, containers, max_leaves=30)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value wrapped in dicts and lists to around MAX_JSON_DEPTH, where normalising cuts."""
    value = draw(values)
    for wrapper in draw(st.lists(st.sampled_from(["dict", "list", "tuple"]), min_size=58)):
        value = {draw(keys): value} if wrapper == "dict" else [value]
        if wrapper == "tuple":
            value = tuple(value)
    return value


json_values = st.one_of(values, deep())


# -- normalise_json ----------------------------------------------------------------------------


@PROPERTIES
@given(json_values, st.integers(0, MAX_JSON_DEPTH + 1))
def test_normalise_json_is_the_reference(value: Any, depth: int) -> None:
    fast = normalise_json(value, depth)
    assert same(fast, reference_normalise(value, depth))
    assert same(normalise_json(fast), fast)  # still idempotent


@pytest.mark.parametrize("case", list(HOSTILE_JSON), ids=list(HOSTILE_JSON))
def test_normalise_json_is_the_reference_on_the_hostile_cases(case: str) -> None:
    value, expected = HOSTILE_JSON[case]
    for document in ({"v": value}, [value], value, {"v": [{"w": value}]}):
        assert same(normalise_json(document), reference_normalise(document))
    assert same(normalise_json({"v": value}), {"v": expected})


def test_duplicate_keys_after_normalising_keep_the_first_place_and_the_last_value() -> None:
    value = dict([(1, "a"), ("x", "b"), ("1", "c"), (2.0, "d"), ("2.0", "e")])
    assert same(normalise_json(value), reference_normalise(value))
    assert list(normalise_json(value).items()) == [("1", "c"), ("x", "b"), ("2.0", "e")]


@pytest.mark.timeout(10)
def test_an_int_subclass_is_normalised_like_an_int() -> None:
    # It used to hang: ``in range(-(2**63), 2**63)`` walks the range for anything but an int.
    small, large = Count(5), Count(2**63)
    assert normalise_json({"a": [small]})["a"][0] is small
    assert normalise_json([large]) == [str(2**63)]
    assert normalise_json(Count(-(2**63) - 1)) == str(-(2**63) - 1)


def test_normalised_containers_are_copies() -> None:
    # The record owns its values: a caller changing its dict later changes nothing recorded.
    value = {"a": {"b": [1, {"c": "d"}]}}
    out = normalise_json(value)
    assert out == value
    assert out is not value
    assert out["a"] is not value["a"]
    assert out["a"]["b"] is not value["a"]["b"]


# -- the hashed bytes --------------------------------------------------------------------------


@PROPERTIES
@given(json_values)
def test_canonical_json_is_json_dumps(value: Any) -> None:
    # The shared encoder is what json.dumps builds for these arguments on every call.
    try:
        expected: str | type[BaseException] = reference_canonical(value)
    except (TypeError, ValueError) as exc:
        expected = type(exc)
    if isinstance(expected, str):
        assert canonical_json(value) == expected
    else:
        with pytest.raises(expected):
            canonical_json(value)


member_keys: st.SearchStrategy[Any] = st.one_of(
    texts, st.sampled_from(["input", "intent", "inputs", "in", "", "zz"])
)


@PROPERTIES
@given(
    st.dictionaries(member_keys, values.map(normalise_json), max_size=8),
    st.data(),
)
def test_canonical_object_is_canonical_json_of_the_whole(
    whole: dict[str, Any], data: st.DataObject
) -> None:
    pre = data.draw(st.sets(st.sampled_from(sorted(whole)))) if whole else set()
    members = {k: v for k, v in whole.items() if k not in pre}
    encoded = {k: canonical_json(whole[k]) for k in pre}
    assert canonical_object(members, encoded) == reference_canonical(whole)


def test_canonical_object_refuses_a_member_given_twice() -> None:
    with pytest.raises(ValueError, match="both"):
        canonical_object({"input": 1}, {"input": "1"})


times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
violations = st.builds(
    Violation,
    rule=texts,
    message=texts,
    enforcement=st.sampled_from(["deny", "warn", "dryrun"]),
    field=texts,
)
policy_loads = st.builds(
    PolicyLoadInfo,
    outcome=st.sampled_from(["loaded", "rejected"]),
    reason=texts,
    revision=st.none() | texts,
    previous=st.none() | texts,
    dirs=st.lists(
        st.builds(PolicyDirInfo, label=texts, path=texts, version=st.none() | texts), max_size=2
    ),
    opa_url=texts,
    files=st.lists(st.builds(PolicyFileDigest, source=texts, path=texts, sha256=texts), max_size=2),
    error=st.none() | texts,
    image_digest=st.none() | texts,
)
documents = st.dictionaries(keys, json_values, max_size=6)


@st.composite
def records(draw: st.DrawFn) -> AuditRecord:
    kind: Kind = draw(st.sampled_from(["admission", "token", "policy"]))
    return AuditRecord(
        time=draw(times),
        kind=kind,
        uid=draw(texts),
        operation=draw(texts),
        namespace=draw(texts),
        name=draw(texts),
        user=draw(texts),
        groups=draw(st.lists(texts, max_size=3)),
        agent=draw(st.none() | texts),
        service_account=draw(texts),
        spiffe_id=draw(st.none() | texts),
        intent=draw(st.none() | documents),
        intent_digest=draw(st.none() | texts),
        accelerators=AcceleratorSummary(
            total=draw(st.integers(0, 2**63 - 1)),
            resources=draw(st.dictionaries(texts, st.integers(-(2**63), 2**63 - 1), max_size=3)),
            claims=draw(st.integers(0, 10)),
        ),
        allowed=draw(st.booleans()),
        violations=draw(st.lists(violations, max_size=3)),
        policy_revision=draw(texts),
        grant_jti=draw(st.none() | texts),
        latency_ms=draw(st.floats(min_value=0, allow_infinity=False, allow_nan=False)),
        input=draw(st.none() | documents),
        message=draw(texts),
        pod_uid=draw(st.none() | texts),
        authenticated=draw(st.booleans()),
        policy_load=draw(policy_loads) if kind == "policy" else None,
    )


chain = st.tuples(st.integers(1, 2**63 - 1), st.text("0123456789abcdef", min_size=64, max_size=64))


@PROPERTIES
@given(records(), chain)
def test_the_hashed_bytes_are_the_whole_content_encoded_at_once(
    record: AuditRecord, position: tuple[int, str]
) -> None:
    seq, prev_hash = position
    expected = reference_bytes(record, seq=seq, prev_hash=prev_hash)
    assert record.canonical_bytes(seq=seq, prev_hash=prev_hash) == expected
    # Placed in the chain, and read back from a row (a StoredRecord validated from its values).
    stored = record.chained(record_id=1, seq=seq, prev_hash=prev_hash)
    assert stored.recompute_hash() == stored.hash
    assert stored.canonical_bytes(seq=seq, prev_hash=prev_hash) == expected
    again = StoredRecord.model_validate(stored.model_dump())
    assert again.canonical_bytes(seq=seq, prev_hash=prev_hash) == expected


@PROPERTIES
@given(
    st.dictionaries(
        texts,
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
            lambda c: st.lists(c, max_size=3) | st.dictionaries(texts, c, max_size=3),
            max_leaves=10,
        ),
        max_size=4,
    )
)
def test_rows_written_before_normalising_still_hash_as_written(document: dict[str, Any]) -> None:
    # A StoredRecord keeps its values as they were hashed (integers beyond 64 bits, say).
    row = full_record().chained(record_id=1, seq=1, prev_hash=GENESIS_HASH)
    try:
        reference_canonical(document)
    except ValueError:  # infinity: never written
        return
    old = StoredRecord.model_validate({**row.model_dump(), "input": document, "intent": document})
    assert old.input is not None
    assert old.canonical_bytes(seq=3, prev_hash=GENESIS_HASH) == reference_bytes(
        old, seq=3, prev_hash=GENESIS_HASH
    )


# Hashes of records with a pod and an intent, computed before the hashed form was spliced: rows
# written by earlier versions must keep verifying. (GOLDEN_CANONICAL in test_audit_record.py has
# neither an input nor an intent.)
FULL_RECORD_HASHES = {
    (1, GENESIS_HASH): "d2eaaaab4301b14c4ae16ecaddab3dc6a8665ddb48304d52fe13edbcf6bbde7e",
    (42, "ab" * 32): "7869d67db98eca35810c5eebac71e123b443fbe4032190be8b4d7cffe6943937",
}
HOSTILE_RECORD_HASH = "c297e91321385dfe2f50a7670fe7238743045088c7e6e817b537704a005e7a67"


@pytest.mark.parametrize(("position", "expected"), list(FULL_RECORD_HASHES.items()))
def test_the_hash_of_a_full_record_is_pinned(position: tuple[int, str], expected: str) -> None:
    seq, prev_hash = position
    assert full_record().compute_hash(seq=seq, prev_hash=prev_hash) == expected


def test_the_hash_of_a_hostile_record_is_pinned() -> None:
    hostile = [value for value, _ in HOSTILE_JSON.values()]
    record = AuditRecord(time=BASE_TIME, allowed=False, intent={"v": hostile}, input={"v": hostile})
    assert record.compute_hash(seq=7, prev_hash=GENESIS_HASH) == HOSTILE_RECORD_HASH


# -- the encoding kept on the record -----------------------------------------------------------


def test_a_copy_with_another_pod_encodes_and_hashes_its_own_pod() -> None:
    # model_copy hands the copy the original's private state, the encoding cache included.
    record = full_record()
    assert record.encoded_json("input") is not None
    other = {"pod": {"metadata": {"name": "other"}}}
    copy = record.model_copy(update={"input": other, "intent": None})
    assert copy.encoded_json("input") == canonical_json(other)
    assert copy.encoded_json("intent") is None
    fresh = full_record(input=other, intent=None)
    assert copy.compute_hash(seq=1, prev_hash=GENESIS_HASH) == fresh.compute_hash(
        seq=1, prev_hash=GENESIS_HASH
    )
    assert record.encoded_json("input") == canonical_json(record.input)  # the original's


def test_the_placed_record_reuses_the_encoding() -> None:
    record = full_record()
    text = record.encoded_json("input")
    stored = record.chained(record_id=1, seq=1, prev_hash=GENESIS_HASH)
    assert stored.encoded_json("input") is text
    assert stored.model_copy(update={"id": 2}).encoded_json("input") is text
