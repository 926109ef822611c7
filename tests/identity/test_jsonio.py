"""identity/jsonio.py, and the claims about orjson it relies on (checked, not assumed)."""

from __future__ import annotations

import contextlib
import gc
import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity import jsonio

DEEP_1024 = b"[" * 1024 + b"]" * 1024


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(b'{"a":"\\ud800"}', "surrogate", id="escaped-lone-surrogate"),
        pytest.param(b'{"a":"\\udc00\\ud800"}', "surrogate", id="escaped-reversed-pair"),
        pytest.param(b'{"a":"\xed\xa0\x80"}', "surrogate", id="raw-surrogate-bytes"),
        pytest.param(b'{"a":"\xff"}', "UTF-8", id="invalid-utf8"),
        pytest.param(b'{"a":NaN}', "unexpected character", id="nan-literal"),
        pytest.param(b'{"a":Infinity}', "unexpected character", id="infinity-literal"),
        pytest.param(b'{"a":1e309}', "infinity", id="overflowing-float"),
        pytest.param(b'{"a":-1e309}', "infinity", id="overflowing-negative-float"),
        pytest.param(b"1" * 4301, "infinity", id="4301-digit-integer"),
        pytest.param(b"[" * 1025 + b"]" * 1025, "depth", id="nesting-beyond-1024"),
    ],
)
def test_orjson_refuses_while_parsing(data: bytes, problem: str) -> None:
    with pytest.raises(orjson.JSONDecodeError, match=problem):
        orjson.loads(data)


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        # Beyond 64 bits an integer silently becomes a float: finite, so harmless to us.
        pytest.param(str(2**64).encode(), float(2**64), id="2**64-becomes-a-float"),
        pytest.param(str(-(2**63) - 1).encode(), float(-(2**63) - 1), id="below-int64-float"),
        pytest.param(str(2**64 - 1).encode(), 2**64 - 1, id="uint64-max-exact"),
        pytest.param(b"1e-400", 0.0, id="underflow-is-zero"),
        pytest.param(b'{"a":1,"a":2}', {"a": 2}, id="duplicate-keys-last-wins"),
    ],
)
def test_orjson_accepts_and_how(data: bytes, parsed: Any) -> None:
    assert orjson.loads(data) == parsed


def test_orjson_accepts_1024_levels_which_python_code_cannot_walk() -> None:
    document = orjson.loads(DEEP_1024)
    with pytest.raises(RecursionError):
        json.dumps(document)
    with pytest.raises(jsonio.JsonError, match="nested deeper than 64 levels"):
        jsonio.loads(DEEP_1024)


@pytest.mark.parametrize(
    ("depth", "too_deep"),
    [(1, False), (63, False), (64, False), (65, True), (1024, True)],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize("shape", ["objects", "lists", "mixed"])
def test_depth_limit_is_exact(depth: int, too_deep: bool, shape: str) -> None:
    text = ""
    for level in range(depth):
        array = shape == "lists" or (shape == "mixed" and level % 2)
        text = f"[{text}]" if array else f'{{"k":{text or 1}}}'
    assert jsonio.too_deep(text.encode(), jsonio.MAX_DEPTH) is too_deep


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"a":"[[[[[[[[[["}', id="brackets-in-a-string"),
        pytest.param('{"a":"\\"[[[[[[[[["}', id="after-an-escaped-quote"),
        pytest.param('{"[[[[[[[[[":"\\\\"}', id="brackets-in-a-key-then-escaped-backslash"),
    ],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    orjson.loads(text)  # valid JSON, as too_deep requires
    assert not jsonio.too_deep(text.encode(), 3)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


# Text made of what the depth count must see through: quotes, backslashes, brackets, escapes.
_TRICKY_TEXT = st.text(alphabet=st.sampled_from('"\\[]{}a\n\u005bé'), max_size=8)
_DOCUMENTS = st.recursive(
    st.none() | st.integers() | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY_TEXT, inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(document=_DOCUMENTS, ascii_only=st.booleans(), limit=st.integers(0, 6))
def test_too_deep_agrees_with_a_walk_of_the_document(
    document: Any, ascii_only: bool, limit: int
) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert jsonio.too_deep(text, limit) is (_depth(document) > limit)


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        pytest.param({"a": [{"b": math.inf}]}, "input.a[0].b", "Infinity", id="infinity"),
        pytest.param({"a": math.nan}, "input.a", "NaN", id="nan"),
        pytest.param({"a": {"b\ud800": 1}}, "input.a", "surrogate", id="surrogate-in-key"),
        pytest.param({"a": ["ok", "x\udfff"]}, "input.a[1]", "surrogate", id="surrogate-in-text"),
        pytest.param({"x": [1, 2**70]}, "input.x[1]", "64-bit", id="int-beyond-64-bits"),
        pytest.param({1: 2}, "input", "key 1 is not a string", id="int-key"),
        pytest.param({"s": {1, 2}}, "input.s", "set", id="set"),
        pytest.param({"b": b"x"}, "input.b", "binary", id="bytes"),
        pytest.param({"weird key": [[1]]}, 'input["weird key"][0]', "nested", id="path-quoting"),
    ],
)
def test_check_plain_names_the_problem_and_where(value: Any, path: str, problem: str) -> None:
    with pytest.raises(jsonio.JsonError) as caught:
        jsonio.check_plain(value, root="input", max_depth=2 if problem == "nested" else 64)
    assert caught.value.path == path
    assert problem in str(caught.value)


def test_check_plain_takes_plain_data() -> None:
    jsonio.check_plain({"a": [1, 2.5, "é", None, True, {"b": -(2**63)}], "c": 2**64 - 1})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"uid": "\ud800"}, id="surrogate"),
        pytest.param({"n": math.nan, "i": -math.inf}, id="non-finite"),
        pytest.param({"big": 2**200}, id="big-int"),
        pytest.param({1: "int key", None: "null key"}, id="non-string-keys"),
        pytest.param({"set": {1}, "bytes": b"\xff", "obj": object()}, id="non-json-types"),
    ],
)
def test_dumps_never_fails_and_writes_valid_json(value: Any) -> None:
    orjson.loads(jsonio.dumps(value))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param({"a": math.nan}, "finite", id="nan"),
        pytest.param({"a": "\ud800"}, "surrogates", id="surrogate"),
        pytest.param({"a": 2**64}, "64-bit", id="big-int"),
        pytest.param({"a": {1}}, "non-JSON type", id="set"),
    ],
)
def test_dumps_strict_refuses_what_opa_would(value: Any, problem: str) -> None:
    with pytest.raises(jsonio.JsonError, match=problem):
        jsonio.dumps_strict(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("short", '"short"', id="short-text"),
        pytest.param("x" * 65, "<65 characters, sha256:", id="long-text-digest"),
        pytest.param(math.inf, "Infinity", id="infinity"),
        pytest.param(10**70, "<integer of 71 digits>", id="long-integer"),
        pytest.param(["a"] * 100, "characters, sha256:", id="long-list-digest"),
        pytest.param({1, 2}, "<set value>", id="set"),
        pytest.param("\ud800", '"?"', id="surrogate-replaced"),
    ],
)
def test_shown_is_bounded(value: object, expected: str) -> None:
    text = jsonio.shown(value)
    assert expected in text
    assert len(text) <= 64


def test_bounded_cuts_and_names_the_whole() -> None:
    assert jsonio.bounded("short", 10) == "short"
    cut = jsonio.bounded("m" * 10_000, 300)
    assert len(cut) <= 300
    assert cut.startswith("mmm")
    assert "10000 characters, sha256:" in cut


def test_the_installed_orjson_refuses_all_the_fast_path_relies_on() -> None:
    assert jsonio._ORJSON_REFUSES_ALL


def test_a_full_walk_stands_in_for_a_more_lenient_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonio, "_ORJSON_REFUSES_ALL", False)
    assert jsonio.loads(b'{"a": [1, "x", null]}') == {"a": [1, "x", None]}
    with pytest.raises(jsonio.JsonError, match="nested deeper than 64 levels"):
        jsonio.loads(DEEP_1024)


@pytest.mark.parametrize("data", [b"{}", b"{"], ids=["parsed", "refused"])
def test_loads_leaves_the_garbage_collector_enabled(data: bytes) -> None:
    assert gc.isenabled()
    with contextlib.suppress(jsonio.JsonError):
        jsonio.loads(data)
    assert gc.isenabled()
