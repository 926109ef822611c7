from __future__ import annotations

import json

import pytest

from webhook.intent import INTENT_ANNOTATION, intent_digest, parse_intent, schema, ttl_seconds

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
