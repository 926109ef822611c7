"""`kube-intent audit ...` and `kube-intent policy replay` on a trail the real webhook wrote."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, AppClient, example_pod, review
from tests.webhook.test_webhook import post
from webhook.audit import AuditLog, open_store
from webhook.metrics import Metrics
from webhook.opa_process import find_opa
from webhook.recorder import AuditRecorder
from webhook.settings import BUNDLED_POLICIES

SEQUENCE = [
    ("/validate", "allowed-vllm-llama"),
    ("/mutate", "denied-model-allowed"),
    ("/mutate", "denied-intent-required"),
    ("/validate", "allowed-warn-ttl"),
    ("/mutate", "denied-data-class-clearance"),
    ("/mutate", "denied-agent-registered"),
]
# Pod names, newest first.
ALL = [
    "wrong-namespace",
    "restricted-data",
    "support-bot-long-ttl",
    "no-intent",
    "unapproved-model",
    "support-bot-llama",
]


@pytest.fixture
async def trail(tmp_path: Path, make_client: AppClient) -> Path:
    """An audit database written by the webhook for a known sequence of admissions."""
    db = tmp_path / "audit.db"
    log = AuditLog(await open_store(str(db)), required=True)
    async with make_client(recorder=AuditRecorder(log, Metrics(), lambda: "rev-1")) as client:
        for webhook, example in SEQUENCE:
            await post(client, webhook, review(example_pod(example)))
    await log.close()
    return db


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def listed(db: Path, *args: str) -> list[dict[str, Any]]:
    result = cli("audit", "list", "--db", db, "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


@pytest.mark.parametrize(
    ("args", "names"),
    [
        pytest.param((), ALL, id="all-newest-first"),
        pytest.param(
            ("--denied",),
            ["wrong-namespace", "restricted-data", "no-intent", "unapproved-model"],
            id="denied",
        ),
        pytest.param(("--allowed",), ["support-bot-long-ttl", "support-bot-llama"], id="allowed"),
        pytest.param(("--rule", "model-allowed"), ["unapproved-model"], id="rule"),
        pytest.param(("--namespace", "ml-research"), [], id="namespace"),
        pytest.param(("--agent", "research-agent"), ["wrong-namespace"], id="agent"),
        pytest.param(("--user", "nobody"), [], id="user"),
        pytest.param(("--since", "1h"), ALL, id="since"),
        pytest.param(("--until", "2000-01-01T00:00:00"), [], id="until"),
        pytest.param(("--limit", "2"), ALL[:2], id="limit"),
    ],
)
def test_list_filters(trail: Path, args: tuple[str, ...], names: list[str]) -> None:
    assert [r["name"] for r in listed(trail, *args)] == names


def test_table_and_csv_outputs(trail: Path) -> None:
    table = cli("audit", "list", "--db", trail, "--denied")
    assert table.returncode == 0
    assert "unapproved-model" in table.stdout
    assert "model-allowed" in table.stdout
    rows = list(
        csv.DictReader(io.StringIO(cli("audit", "list", "--db", trail, "-o", "csv").stdout))
    )
    assert len(rows) == len(SEQUENCE)


def test_show_has_the_intent_and_every_violation(trail: Path) -> None:
    [record] = listed(trail, "--rule", "model-allowed")
    shown = json.loads(cli("audit", "show", str(record["id"]), "--db", trail).stdout)
    assert shown["intent"]["models"] == ["deepseek-ai/DeepSeek-R1"]
    assert {v["rule"] for v in shown["violations"]} >= {"model-allowed"}
    assert shown["input"]["request"]["uid"] == shown["uid"]


def test_show_unknown_id_is_an_error(trail: Path) -> None:
    result = cli("audit", "show", "999", "--db", trail)
    assert result.returncode == 1
    assert "no decision with id 999" in result.stderr


def test_stats_count_denials_by_rule(trail: Path) -> None:
    result = cli("audit", "stats", "--db", trail)
    assert result.returncode == 0
    for rule in ("model-allowed", "intent-required", "data-class-clearance"):
        assert rule in result.stdout


def test_export_is_jsonl_in_chain_order(trail: Path) -> None:
    lines = cli("audit", "export", "--db", trail).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, len(SEQUENCE) + 1))


def test_verify_passes_then_catches_an_edited_row(trail: Path) -> None:
    ok = cli("audit", "verify", "--db", trail)
    assert ok.returncode == 0
    assert f"ok: {len(SEQUENCE)} decisions" in ok.stdout
    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        conn.execute("UPDATE audit_record SET allowed = 1 WHERE seq = 2")
    broken = cli("audit", "verify", "--db", trail)
    assert broken.returncode == 1
    assert "BROKEN at seq 2" in broken.stderr


def test_a_re_encoded_row_is_named_not_a_traceback(trail: Path) -> None:
    # The same values in other JSON text: the hash still matches, the stored form does not.
    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        conn.execute(
            "UPDATE audit_record SET violations = replace(violations, ',', ', ') WHERE seq = 2"
        )
    verify = cli("audit", "verify", "--db", trail)
    assert verify.returncode == 1
    assert "BROKEN at seq 2 (id 2): row id 2: column violations holds text" in verify.stderr
    listing = cli("audit", "list", "--db", trail)
    assert listing.returncode == 1
    assert "audit row seq=2 id=2 is corrupt: column violations" in listing.stderr
    assert "Traceback" not in verify.stderr + listing.stderr


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    result = cli("audit", "list", "--db", tmp_path / "typo.db")
    assert result.returncode == 1
    assert "cannot open audit store" in result.stderr
    assert not (tmp_path / "typo.db").exists()


def test_replay_shows_exactly_what_a_candidate_policy_changes(trail: Path, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate"
    shutil.copytree(BUNDLED_POLICIES, candidate)
    data = json.loads((candidate / "data.json").read_text())
    config = data["kube_intent"]["config"]
    # Two edits: drop the vLLM registry (denies the llama pod), and roll model-allowed back
    # to warn (admits the unapproved model).
    config["allowed_registries"] = [r for r in config["allowed_registries"] if "vllm" not in r]
    config["enforcement"] = {"model-allowed": "warn"}
    (candidate / "data.json").write_text(json.dumps(data))

    result = cli(
        "policy",
        "replay",
        "--policies",
        candidate,
        "--db",
        trail,
        "--since",
        "1h",
        "-o",
        "json",
        "--opa-bin",
        find_opa(),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["replayed"] == len(SEQUENCE)
    changes = {c["name"]: c for c in report["changes"]}
    assert set(changes) == set(ALL)  # the registry change touches every pod
    assert changes["support-bot-llama"]["addedDenials"] == ["image-registry"]
    assert changes["support-bot-llama"]["nowAllowed"] is False
    assert changes["unapproved-model"]["removedDenials"] == ["model-allowed"]
    assert changes["unapproved-model"]["addedDenials"] == ["image-registry"]
    assert changes["restricted-data"]["addedDenials"] == ["image-registry"]
    assert report["newlyDenied"] == 2  # the two allowed pods
    assert report["newlyAllowed"] == 0
    assert report["addedDenialsByRule"] == {"image-registry": len(ALL)}
    assert report["removedDenialsByRule"] == {"model-allowed": 1}


def test_replay_with_the_same_policy_changes_nothing(trail: Path) -> None:
    result = cli(
        "policy", "replay", "--policies", BUNDLED_POLICIES, "--db", trail, "--opa-bin", find_opa()
    )
    assert result.returncode == 0, result.stderr
    assert "newly denied: 0   newly allowed: 0" in result.stdout


def test_a_signed_checkpoint_catches_rows_cut_off_the_end(trail: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert cli("keys", "generate", keys).returncode == 0
    made = cli("audit", "checkpoint", "--db", trail, "--keys-dir", keys)
    assert made.returncode == 0, made.stderr
    checkpoint = tmp_path / "checkpoint.jwt"
    checkpoint.write_text(made.stdout)
    verified = cli("audit", "verify", "--db", trail, "--keys-dir", keys, "--checkpoint", checkpoint)
    assert verified.returncode == 0
    assert "1 checkpoint(s) hold" in verified.stdout

    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_delete")
        conn.execute("DELETE FROM audit_record WHERE seq = (SELECT MAX(seq) FROM audit_record)")
    # The shortened chain is still a valid chain ...
    assert cli("audit", "verify", "--db", trail).returncode == 0
    # ... but not what the checkpoint signed.
    cut = cli("audit", "verify", "--db", trail, "--keys-dir", keys, "--checkpoint", checkpoint)
    assert cut.returncode == 1
    assert f"saw seq {len(SEQUENCE)}: rows were removed from the end" in cut.stderr


def test_a_forged_checkpoint_is_refused(trail: Path, tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for directory in (mine, theirs):
        assert cli("keys", "generate", directory).returncode == 0
    forged = tmp_path / "forged.jwt"
    forged.write_text(cli("audit", "checkpoint", "--db", trail, "--keys-dir", theirs).stdout)
    result = cli("audit", "verify", "--db", trail, "--keys-dir", mine, "--checkpoint", forged)
    assert result.returncode == 1
    assert "not a valid kube-intent audit checkpoint" in result.stderr
