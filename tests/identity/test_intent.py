from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator

import pytest

from identity.intent import (
    CACHE_BYTES,
    INTENT_ANNOTATION,
    INTENT_CACHE,
    MAX_INTENT_BYTES,
    MAX_PROBLEM_CHARS,
    MAX_PROBLEMS,
    IntentCache,
    intent_digest,
    parse_intent,
    schema,
    ttl_seconds,
)

VALID = {
    "purpose": "inference",
    "models": ["meta-llama/Llama-3.1-8B-Instruct"],
    "dataClasses": ["internal"],
    "accelerators": {"count": 1},
    "ttl": "15m",
}
VALID_YAML = """
purpose: inference
models: [meta-llama/Llama-3.1-8B-Instruct]
dataClasses: [internal]
accelerators: {count: 1}
ttl: 15m
"""


@pytest.mark.parametrize("raw", [json.dumps(VALID), VALID_YAML], ids=["json", "yaml"])
def test_json_and_yaml_parse_to_the_same_document_and_digest(raw: str) -> None:
    parsed = parse_intent(raw)
    assert parsed.valid
    assert parsed.document == VALID
    assert parsed.digest == intent_digest(VALID)
    assert parsed.to_input() == {**VALID, "ttlSeconds": 900}


def test_absent_annotation_is_not_present() -> None:
    parsed = parse_intent(None)
    assert not parsed.present
    assert not parsed.valid
    assert parsed.to_input() is None


def test_digest_is_canonical_over_key_order_and_whitespace() -> None:
    reordered = json.dumps(dict(reversed(list(VALID.items()))), indent=4)
    assert parse_intent(reordered).digest == parse_intent(json.dumps(VALID)).digest
    changed = {**VALID, "models": ["other/model"]}
    assert intent_digest(changed) != intent_digest(VALID)


def test_every_schema_problem_is_reported_at_once_with_its_path() -> None:
    raw = json.dumps(
        {
            "purpose": "mining",
            "models": [],
            "dataClasses": ["Internal!"],
            "accelerators": {"count": 0},
            "ttl": "15x",
            "extra": True,
        }
    )
    parsed = parse_intent(raw)
    assert not parsed.valid
    assert parsed.digest is None
    paths = {p.path for p in parsed.problems}
    assert paths == {
        "intent",  # additional property
        "intent.purpose",
        "intent.models",
        "intent.dataClasses[0]",
        "intent.accelerators.count",
        "intent.ttl",
    }
    assert any("extra" in p.message for p in parsed.problems)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("{purpose: [", "neither valid JSON nor valid YAML", id="syntax"),
        pytest.param("- a\n- b\n", "must be a JSON or YAML object", id="list"),
        pytest.param("", "empty value", id="empty"),
        pytest.param("a: &x [1]\nb: *x\n", "anchors and aliases are not allowed", id="alias"),
        pytest.param("x" * (64 * 1024 + 1), "larger than", id="too-large"),
    ],
)
def test_unreadable_intents_get_one_clear_problem(raw: str, expected: str) -> None:
    parsed = parse_intent(raw)
    assert parsed.present
    assert not parsed.valid
    assert len(parsed.problems) == 1
    assert expected in parsed.problems[0].message


@pytest.mark.parametrize(
    ("ttl", "problem"),
    [("0s", True), ("25h", True), (86400, False), ("1h30m", False), ("90s", False)],
    ids=["zero", "over-24h", "24h-int", "1h30m", "90s"],
)
def test_ttl_bounds(ttl: str | int, problem: bool) -> None:
    parsed = parse_intent(json.dumps({**VALID, "ttl": ttl}))
    assert bool(parsed.problems) is problem


@pytest.mark.parametrize(
    ("value", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400), (42, 42)]
)
def test_ttl_seconds(value: str | int, seconds: int) -> None:
    assert ttl_seconds(value) == seconds


def test_schema_is_shipped_with_the_package() -> None:
    assert schema()["title"].endswith(f"(annotation {INTENT_ANNOTATION})")
    assert set(schema()["required"]) == {"purpose", "models", "dataClasses", "accelerators", "ttl"}


# --- hostile intents: the schema's semantics, bounded work, bounded messages, bounded cache ----


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("ttl", 30.0, id="ttl-float-with-integral-value"),
        pytest.param("ttl", 60.0, id="ttl-60.0"),
        pytest.param("ttl", 1e2, id="ttl-1e2"),
        pytest.param("ttl", True, id="ttl-boolean"),
        pytest.param("ttl", "1h\n", id="ttl-trailing-newline"),
        pytest.param("ttl", "\n1h", id="ttl-leading-newline"),
        pytest.param("ttl", "1h\n\n", id="ttl-two-newlines"),
        pytest.param("ttl", "\u0661h", id="ttl-arabic-indic-digit"),
        pytest.param("ttl", "1" * 4301 + "h", id="ttl-4301-digit-duration"),
        pytest.param("ttl", "9" * 20 + "s", id="ttl-20-digit-duration"),
        pytest.param("accelerators", {"count": 1.0}, id="count-float"),
        pytest.param("accelerators", {"count": True}, id="count-boolean"),
        pytest.param("models", ["meta-llama/Llama-3.1-8B\n"], id="model-trailing-newline"),
        pytest.param("dataClasses", ["internal\n"], id="data-class-trailing-newline"),
        pytest.param("egress", ["api.example.com:443\n"], id="egress-trailing-newline"),
    ],
)
def test_schema_takes_json_semantics_not_pythons(field: str, value: object) -> None:
    parsed = parse_intent(json.dumps({**VALID, field: value}))
    assert not parsed.valid
    assert parsed.digest is None
    assert parsed.problems[0].path.startswith(f"intent.{field}")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("ttl: " + "1" * 4301, "a number too large", id="yaml-4301-digit-int"),
        pytest.param('{"ttl": ' + "1" * 4301 + "}", "a number too large", id="json-4301-digits"),
        pytest.param("ttl: 2024-13-45", "an invalid date", id="yaml-impossible-date"),
        pytest.param("ttl: 2024-01-01", "timestamp value is not JSON data", id="yaml-date"),
        pytest.param("ttl: .inf", "Infinity is not a finite number", id="yaml-infinity"),
        pytest.param("ttl: .nan", "NaN is not a finite number", id="yaml-nan"),
        pytest.param("ttl: !!binary aGk=", "binary value is not JSON data", id="yaml-binary"),
        pytest.param("ttl: !!set {a}", "set value is not JSON data", id="yaml-set"),
        pytest.param("? [a]\n: b\n", "neither valid JSON nor valid YAML", id="yaml-list-key"),
        pytest.param('ttl: "\\ud800"', "neither valid JSON nor valid YAML", id="yaml-surrogate"),
        pytest.param("ttl: " + "1" * 30, "outside the 64-bit range", id="yaml-30-digit-int"),
        pytest.param('{"a":' * 1000 + "1" + "}" * 1000, "nested deeper than 16", id="json-deep"),
        pytest.param("a: " + "[" * 1000 + "]" * 1000, "nesting depth", id="yaml-deep"),
        pytest.param("a: " + "[" * 17 + "]" * 17, "nested deeper than 16", id="yaml-17-deep"),
        pytest.param("\ud800", "neither valid JSON nor valid YAML", id="lone-surrogate"),
        pytest.param("[1]", "got a list", id="json-list"),
        pytest.param("3", "got a number", id="json-number"),
    ],
)
def test_hostile_annotations_get_one_problem_not_an_exception(raw: str, expected: str) -> None:
    parsed = parse_intent(raw)
    assert not parsed.valid
    assert [expected in p.message for p in parsed.problems] == [True], parsed.problems
    assert "Error" not in parsed.problems[0].message


def test_non_unique_check_is_linear_and_problems_are_bounded() -> None:
    # Unsortable items made jsonschema compare every pair: 30 s of CPU for this annotation.
    tools = [[i] if i % 2 else {"a": i} for i in range(6000)]
    parsed = parse_intent(json.dumps({**VALID, "tools": tools}))
    assert len(parsed.problems) == MAX_PROBLEMS + 1
    assert "more problems not listed" in parsed.problems[-1].message
    assert all(len(p.message) <= MAX_PROBLEM_CHARS for p in parsed.problems)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({**VALID, "models": ["m" * 100_000]}, id="huge-model"),
        pytest.param({**VALID, "justification": ["x" * 1000] * 40}, id="huge-list"),
        pytest.param({**VALID, "k" * 5000: 1, "other": 2}, id="huge-unknown-key"),
        pytest.param({**VALID, "tools": ["a"] * 5000}, id="many-duplicates"),
    ],
)
def test_problem_messages_show_digests_not_values(document: dict[str, object]) -> None:
    raw = json.dumps(document)[: MAX_INTENT_BYTES - 1]
    parsed = parse_intent(raw if raw.endswith("}") else json.dumps(document))
    for problem in parsed.problems:
        assert len(problem.message) <= MAX_PROBLEM_CHARS
        assert "x" * 100 not in problem.message
        assert "m" * 100 not in problem.message


@pytest.mark.parametrize(
    "value",
    ["1" * 20 + "h", "\u0661h", 3.5, None, [1]],
    ids=["too-many-digits", "non-ascii-digit", "float", "null", "list"],
)
def test_ttl_seconds_refuses_with_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="is not a number of seconds or a duration"):
        ttl_seconds(value)  # type: ignore[arg-type]


@pytest.fixture
def cache() -> Iterator[IntentCache]:
    INTENT_CACHE.clear()
    yield INTENT_CACHE
    INTENT_CACHE.budget = CACHE_BYTES
    INTENT_CACHE.clear()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("x" * (MAX_INTENT_BYTES + 1), id="oversized"),
        pytest.param(json.dumps({**VALID, "ttl": "25h"}), id="invalid"),
        pytest.param("{purpose: [", id="unreadable"),
    ],
)
def test_rejected_intents_are_not_cached(cache: IntentCache, raw: str) -> None:
    assert not parse_intent(raw).valid
    assert len(cache) == 0
    assert cache.used_bytes == 0


def test_valid_intents_are_cached_and_shared(cache: IntentCache) -> None:
    raw = json.dumps(VALID)
    assert parse_intent(raw) is parse_intent(raw)
    assert len(cache) == 1
    assert cache.used_bytes == IntentCache.cost(raw)


def big_valid_intent(i: int) -> str:
    """A distinct, valid intent of about 60 KB (tools and egress at their maximum count)."""
    return json.dumps(
        {
            **VALID,
            "tools": [f"tool-{i}-{j}-" + "t" * 100 for j in range(256)],
            "egress": [f"h{i}-{j}.example.com" for j in range(256)],
        }
    )


def test_cache_is_bounded_in_bytes_and_its_estimate_covers_real_memory(
    cache: IntentCache,
) -> None:
    # Measured, not timed: what the cache keeps alive must stay within its byte budget.
    cache.budget = 2 * 1024 * 1024  # a smaller budget: eviction after a dozen intents
    raws = [big_valid_intent(i) for i in range(40)]
    assert all(len(raw) < MAX_INTENT_BYTES for raw in raws)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for raw in raws:
            assert parse_intent(raw).valid
        retained = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert cache.used_bytes <= cache.budget
    assert 0 < len(cache) < len(raws)  # evicted, not refused
    # The texts are held by `raws` here (by the cache alone in the webhook): add them back.
    per_entry = retained / len(cache) + len(raws[0])
    assert per_entry <= IntentCache.cost(raws[0]), (per_entry, IntentCache.cost(raws[0]))
    assert retained <= cache.budget, (retained, len(cache))


def test_cost_estimate_covers_small_intents_too(cache: IntentCache) -> None:
    count = 500  # an average: the first parse also fills the validator's own caches
    raws = [json.dumps({**VALID, "models": [f"org/model-{i}"]}) for i in range(count)]
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for raw in raws:
            parse_intent(raw)
        retained = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert len(cache) == count
    assert retained / count + len(raws[0]) <= IntentCache.cost(raws[0])
