"""`kube-intent audit ...` with --db: every output format, every error and its exit code, on real
SQLite stores: a trail of every record kind (tests/data/audit/trail.yaml) written through the
store, and a trail the real webhook wrote for a known sequence of admissions.

The same commands with --server are tested against a real webhook and API server in
tests/e2e/test_remote_audit.py; here only the client's failures that need no cluster.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from tests.support.admission import AppClient
from tests.support.audit import write_trail
from tests.support.cli import run_cli
from tests.support.manifests import example_pod
from tests.support.paths import DATA
from webhook.audit import AuditRecord, open_store
from webhook.audit_cli import audit

TRAIL = DATA / "audit" / "trail.yaml"
NEWEST_FIRST = [6, 5, 4, 3, 2, 1]
TABLE_HEADER = ["ID", "TIME", "NAMESPACE/NAME", "USER", "AGENT", "GPUS", "MODELS", "DECISION"]
WIDE_EXTRA = ["KIND", "OPERATION", "SERVICEACCOUNT", "POLICY", "GRANT", "HASH"]


@pytest.fixture
async def kinds_db(tmp_path: Path) -> Path:
    """The fixture trail in a real SQLite store (ids and seqs 1..6, oldest first)."""
    db = tmp_path / "kinds.db"
    store = await open_store(str(db))
    records = [AuditRecord.model_validate(r) for r in yaml.safe_load(TRAIL.read_text())]
    await store.append_many(records)
    await store.close()
    return db


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(audit, [str(a) for a in args])


def ids_of_table(text: str) -> list[int]:
    lines = text.splitlines()
    assert lines[0].split()[: len(TABLE_HEADER)] == TABLE_HEADER
    return [int(line.split()[0]) for line in lines[1:]]


def ids_of_csv(text: str) -> list[int]:
    return [int(row["id"]) for row in csv.DictReader(io.StringIO(text))]


PARSERS = {
    "table": ids_of_table,
    "wide": ids_of_table,
    "json": lambda text: [r["id"] for r in json.loads(text)],
    "jsonl": lambda text: [json.loads(line)["id"] for line in text.splitlines()],
    "yaml": lambda text: [r["id"] for r in yaml.safe_load(text)],
    "csv": ids_of_csv,
}


@pytest.mark.parametrize("fmt", list(PARSERS), ids=list(PARSERS))
def test_list_every_format_newest_first(kinds_db: Path, fmt: str) -> None:
    result = invoke("list", "--db", kinds_db, "-o", fmt)
    assert result.exit_code == 0, result.output
    assert PARSERS[fmt](result.stdout) == NEWEST_FIRST


def test_table_columns_say_who_what_and_why(kinds_db: Path) -> None:
    lines = invoke("list", "--db", kinds_db).stdout.splitlines()
    assert lines[0].split() == [*TABLE_HEADER, "RULES"]
    row = {int(line.split()[0]): line.split() for line in lines[1:]}
    assert row[4] == [
        "4",
        "2026-03-01T11:00:00Z",
        "ml-serving/unapproved-model",
        "alice@example.com",
        "support-bot",
        "2",
        "deepseek-ai/DeepSeek-R1",
        "denied",
        "model-allowed,ttl-max(warn)",
    ]
    assert row[5][5] == "1(dra)"  # a GPU through a DRA claim
    # Every kind reads as what happened, not as an admission.
    assert [row[i][-2] for i in (6, 3, 1)] == ["token-refused", "token-issued", "policy-loaded"]


def test_wide_adds_kind_policy_grant_and_hash(kinds_db: Path) -> None:
    lines = invoke("list", "--db", kinds_db, "-o", "wide").stdout.splitlines()
    assert lines[0].split() == [*TABLE_HEADER, "RULES", *WIDE_EXTRA]
    allowed = next(line.split() for line in lines if line.startswith("2 "))
    assert allowed[1] == "2026-03-01T10:00:00.000000Z"
    assert allowed[-6:-1] == ["admission", "CREATE", "support-bot", "rev-1a2b3c4d", "grant-7f3e"]
    assert len(allowed[-1]) == 12


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        pytest.param(("--denied",), [6, 5, 4], id="denied-every-kind"),
        pytest.param(("--denied", "--kind", "admission"), [5, 4], id="denied-admissions"),
        pytest.param(("--allowed",), [3, 2, 1], id="allowed"),
        pytest.param(("--kind", "policy"), [1], id="kind-policy"),
        pytest.param(("--kind", "token"), [6, 3], id="kind-token"),
        pytest.param(("--rule", "model-allowed"), [4], id="rule"),
        pytest.param(("--namespace", "ml-research"), [5], id="namespace"),
        pytest.param(("--agent", "support-bot"), [6, 4, 3, 2], id="agent"),
        pytest.param(("--user", "alice@example.com"), [4], id="user"),
        pytest.param(("--since", "2026-03-02"), [6, 5], id="since"),
        pytest.param(("--until", "2026-03-01T10:30:00"), [3, 2, 1], id="until"),
        pytest.param(("--limit", "2"), [6, 5], id="limit"),
    ],
)
def test_list_filters(kinds_db: Path, args: tuple[str, ...], ids: list[int]) -> None:
    result = invoke("list", "--db", kinds_db, "-o", "json", *args)
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == ids


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("list", "--denied", "--allowed"),
            "--denied and --allowed are mutually exclusive",
            id="denied-and-allowed",
        ),
        pytest.param(
            ("stats", "--denied", "--allowed"),
            "--denied and --allowed are mutually exclusive",
            id="stats-denied-and-allowed",
        ),
        pytest.param(
            ("list", "--server", "https://127.0.0.1:1"),
            "--db and --server are mutually exclusive",
            id="db-and-server",
        ),
        pytest.param(
            ("list", "--context", "prod"),
            "--context only apply with --server",
            id="context-without-server",
        ),
        pytest.param(
            ("verify", "--insecure-skip-tls-verify"),
            "--insecure-skip-tls-verify only apply with --server",
            id="insecure-without-server",
        ),
        pytest.param(("list", "--since", "yesterday"), "'yesterday' is neither", id="bad-time"),
        pytest.param(("list", "--kind", "pod"), "kind must be one of", id="bad-kind"),
        pytest.param(("list", "-o", "xml"), "'xml' is not one of", id="bad-format"),
        pytest.param(("list", "--limit", "0"), "--limit", id="zero-limit"),
        pytest.param(("show", "0"), "0 is not in the range", id="show-id-zero"),
        pytest.param(("show", "4", "-o", "csv"), "'csv' is not one of", id="show-csv"),
    ],
)
def test_usage_errors_exit_2(kinds_db: Path, args: tuple[str, ...], message: str) -> None:
    result = invoke(*args, "--db", kinds_db)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def summary_of(db: Path, record_id: int) -> str:
    result = invoke("show", str(record_id), "--db", db)
    assert result.exit_code == 0, result.output
    return result.stdout


def field(text: str, name: str) -> str:
    """The value of the first line `name: value` (intent fields are indented under `intent:`)."""
    line = next(line for line in text.splitlines() if line.strip().startswith(f"{name}:"))
    return line.split(":", 1)[1].strip()


def test_show_a_denial_says_who_what_and_why(kinds_db: Path) -> None:
    text = summary_of(kinds_db, 4)
    assert text.splitlines()[0] == "Admission #4: DENIED"
    assert field(text, "user") == "alice@example.com"
    assert field(text, "object") == "ml-serving/unapproved-model"
    assert field(text, "agent") == "support-bot"
    assert field(text, "models") == "deepseek-ai/DeepSeek-R1"
    assert "\n    accelerators:   count=2, resource=nvidia.com/gpu\n" in text  # the intent's
    assert "\n  accelerators:     2 (nvidia.com/gpu=2)\n" in text  # what the pod asked for
    assert field(text, "policy revision") == "rev-1a2b3c4d5e6f7a8b"
    assert field(text, "intent digest") == "sha256:bb22"
    rules = text.split("  rules:\n", 1)[1].splitlines()
    assert rules[0].split(None, 2) == [
        "deny",
        "model-allowed",
        "intent.models: model deepseek-ai/DeepSeek-R1 is not on agent support-bot's allow list",
    ]
    assert rules[1].split(None, 2)[:2] == ["warn", "ttl-max"]
    assert field(text, "chain").startswith("seq 4, hash ")


@pytest.mark.parametrize(
    ("record_id", "title", "fields"),
    [
        pytest.param(
            2,
            "Admission #2: ALLOWED",
            {"grant id": "grant-7f3e", "latency": "4.5 ms", "pod uid": "pod-0001"},
            id="allowed-with-grant",
        ),
        pytest.param(
            6,
            "Token exchange #6: TOKEN-REFUSED",
            {"object": "ml-serving/support-bot-llama", "service account": "support-bot"},
            id="token-refused",
        ),
        pytest.param(
            1,
            "Policy load #1: POLICY-LOADED",
            {"outcome": "loaded", "reason": "start", "operation": "POLICY_LOAD"},
            id="policy-load",
        ),
    ],
)
def test_show_every_kind(
    kinds_db: Path, record_id: int, title: str, fields: dict[str, str]
) -> None:
    text = summary_of(kinds_db, record_id)
    assert text.splitlines()[0] == title
    for name, value in fields.items():
        assert field(text, name) == value


def test_terminal_escapes_in_a_record_are_shown_not_run(kinds_db: Path) -> None:
    for output in (summary_of(kinds_db, 5), invoke("list", "--db", kinds_db).stdout):
        assert "\x1b" not in output
        assert "mallory\\x1b[2J" in output


@pytest.mark.parametrize("fmt", ["json", "yaml"], ids=["json", "yaml"])
def test_show_raw_record(kinds_db: Path, fmt: str) -> None:
    result = invoke("show", "4", "--db", kinds_db, "-o", fmt)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout) if fmt == "json" else yaml.safe_load(result.stdout)
    [listed] = json.loads(
        invoke("list", "--db", kinds_db, "--rule", "model-allowed", "-o", "json").stdout
    )
    assert shown == listed
    assert shown["violations"][0]["rule"] == "model-allowed"


def test_show_unknown_id_exits_1(kinds_db: Path) -> None:
    result = invoke("show", "99", "--db", kinds_db)
    assert result.exit_code == 1
    assert "no decision with id 99" in result.stderr


# The trail's policy-load row is not a decision: stats leave it out.
STATS = {
    "total": 5,
    "allowed": 2,
    "denied": 3,
    "denials_by_rule": {"data-class-clearance": 1, "model-allowed": 1, "token-exchange": 1},
    "warnings_by_rule": {"ttl-max": 1},
    "dryrun_by_rule": {},
    "denials_by_agent": {"support-bot": 2, "research-agent": 1},
    "denials_by_namespace": {"ml-serving": 2, "ml-research": 1},
    "denials_by_day": {"2026-03-01": 1, "2026-03-02": 2},
}


@pytest.mark.parametrize("fmt", ["json", "yaml"], ids=["json", "yaml"])
def test_stats_machine_formats(kinds_db: Path, fmt: str) -> None:
    result = invoke("stats", "--db", kinds_db, "-o", fmt)
    assert result.exit_code == 0, result.output
    assert (json.loads if fmt == "json" else yaml.safe_load)(result.stdout) == STATS


def test_stats_text_and_filters(kinds_db: Path) -> None:
    text = invoke("stats", "--db", kinds_db, "--kind", "admission").stdout
    assert text.splitlines()[0] == "decisions: 3  allowed: 1  denied: 2"
    assert "denials by rule:\n  data-class-clearance  1\n  model-allowed         1\n" in text


@pytest.mark.parametrize("fmt", ["jsonl", "json", "yaml", "csv"], ids=str)
def test_export_is_in_chain_order(kinds_db: Path, fmt: str) -> None:
    result = invoke("export", "--db", kinds_db, "-o", fmt)
    assert result.exit_code == 0, result.output
    assert PARSERS[fmt](result.stdout) == sorted(NEWEST_FIRST)


@pytest.fixture
def export(kinds_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "evidence.jsonl"
    path.write_text(invoke("export", "--db", kinds_db).stdout)
    return path


def edit_line(path: Path, number: int, change: dict[str, Any] | None) -> None:
    lines = path.read_text().splitlines(keepends=True)
    if change is None:
        del lines[number - 1]
    else:
        lines[number - 1] = json.dumps({**json.loads(lines[number - 1]), **change}) + "\n"
    path.write_text("".join(lines))


def test_verify_an_export_kept_as_evidence(export: Path) -> None:
    result = invoke("verify", "--file", export)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 6 decisions, chain head ")


@pytest.mark.parametrize(
    ("line", "change", "broken"),
    [
        pytest.param(
            4, {"allowed": True}, "BROKEN at seq 4 (id 4): hash does not match", id="edited"
        ),
        pytest.param(3, None, "BROKEN at seq 3 (id None): row(s) seq 3 missing", id="deleted"),
        pytest.param(
            2,
            {"hash": "x"},
            "BROKEN at seq 2 (id 2): row id 2: line 2 is not a record",
            id="garbled",
        ),
    ],
)
def test_verify_a_tampered_export_exits_1(
    export: Path, line: int, change: dict[str, Any] | None, broken: str
) -> None:
    edit_line(export, line, change)
    result = invoke("verify", "--file", export)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(broken)


def not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "notes.db"
    path.write_text("these are not the rows you are looking for\n" * 200)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--db", "{tmp}/typo.db"), "cannot open audit store", id="missing-db"),
        pytest.param(("--db", "{tmp}/notes.db"), "cannot open audit store", id="not-a-db"),
        pytest.param(("--file", "{tmp}/missing.jsonl"), "cannot read the export", id="no-export"),
        pytest.param(("--file", "{tmp}/notes.db"), "line 1 is not JSON", id="not-jsonl"),
    ],
)
def test_verify_exits_2_when_the_trail_cannot_be_read(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    not_a_database(tmp_path)
    result = invoke("verify", *(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "typo.db").exists()  # a read never creates a store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kubeconfig(path: Path, user: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


SECRET = "s3cr3t-bearer-token-that-must-never-be-printed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--server", "http://127.0.0.1:{port}", "--token-file", "{tmp}/token"),
            "--server must be an https:// URL",
            id="plain-http",
        ),
        pytest.param(
            ("--server", "https://127.0.0.1:{port}", "--token-file", "{tmp}/token"),
            "cannot reach the webhook at https://127.0.0.1:",
            id="unreachable",
        ),
        pytest.param(
            ("--server", "https://127.0.0.1:{port}", "--token-file", "{tmp}/absent"),
            "cannot read the token file",
            id="no-token-file",
        ),
        pytest.param(
            ("--server", "https://127.0.0.1:{port}", "--kubeconfig", "{tmp}/cert.yaml"),
            "has no bearer token (it authenticates with a client certificate",
            id="client-cert-context",
        ),
        pytest.param(
            ("--server", "https://127.0.0.1:{port}", "--kubeconfig", "{tmp}/token.yaml",
             "--context", "nope"),
            "cannot read credentials from the kubeconfig",
            id="unknown-context",
        ),
        pytest.param(
            ("--server", "https://127.0.0.1:{port}", "--token-file", "{tmp}/token",
             "--ca-file", "{tmp}/absent.crt"),
            "cannot read the CA file",
            id="no-ca-file",
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["list", "verify"], ids=str)
def test_remote_failures_exit_2_and_never_print_the_token(
    tmp_path: Path, command: str, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "token").write_text(SECRET + "\n")
    kubeconfig(tmp_path / "cert.yaml", {"client-certificate-data": "", "client-key-data": ""})
    kubeconfig(tmp_path / "token.yaml", {"token": SECRET})
    port = free_port()
    result = invoke(command, *(a.format(tmp=tmp_path, port=port) for a in args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert SECRET not in result.output
    assert "Traceback" not in result.output


def test_insecure_skip_tls_verify_warns(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(SECRET)
    result = invoke(
        "list",
        "--server",
        f"https://127.0.0.1:{free_port()}",
        "--token-file",
        tmp_path / "token",
        "--insecure-skip-tls-verify",
    )
    assert result.exit_code == 2
    assert "WARNING: --insecure-skip-tls-verify" in result.stderr


# -- a trail the real webhook wrote -------------------------------------------------------------

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
    admissions = ((webhook, example_pod(example)) for webhook, example in SEQUENCE)
    return await write_trail(make_client, tmp_path / "audit.db", admissions)


def listed(db: Path, *args: str) -> list[dict[str, Any]]:
    result = run_cli("audit", "list", "--db", db, "-o", "json", *args)
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
def test_list_filters_on_a_webhook_written_trail(
    trail: Path, args: tuple[str, ...], names: list[str]
) -> None:
    assert [r["name"] for r in listed(trail, *args)] == names


def test_table_and_csv_outputs(trail: Path) -> None:
    table = run_cli("audit", "list", "--db", trail, "--denied")
    assert table.returncode == 0
    assert "unapproved-model" in table.stdout
    assert "model-allowed" in table.stdout
    rows = list(
        csv.DictReader(io.StringIO(run_cli("audit", "list", "--db", trail, "-o", "csv").stdout))
    )
    assert len(rows) == len(SEQUENCE)


def test_show_has_the_intent_and_every_violation(trail: Path) -> None:
    [record] = listed(trail, "--rule", "model-allowed")
    shown = json.loads(
        run_cli("audit", "show", str(record["id"]), "--db", trail, "-o", "json").stdout
    )
    assert shown["intent"]["models"] == ["deepseek-ai/DeepSeek-R1"]
    assert {v["rule"] for v in shown["violations"]} >= {"model-allowed"}
    assert shown["input"]["request"]["uid"] == shown["uid"]


def test_show_unknown_id_is_an_error(trail: Path) -> None:
    result = run_cli("audit", "show", "999", "--db", trail)
    assert result.returncode == 1
    assert "no decision with id 999" in result.stderr


def test_stats_count_denials_by_rule(trail: Path) -> None:
    result = run_cli("audit", "stats", "--db", trail)
    assert result.returncode == 0
    for rule in ("model-allowed", "intent-required", "data-class-clearance"):
        assert rule in result.stdout


def test_export_is_jsonl_in_chain_order(trail: Path) -> None:
    lines = run_cli("audit", "export", "--db", trail).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, len(SEQUENCE) + 1))


def test_verify_passes_then_catches_an_edited_row(trail: Path) -> None:
    ok = run_cli("audit", "verify", "--db", trail)
    assert ok.returncode == 0
    assert f"ok: {len(SEQUENCE)} decisions" in ok.stdout
    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        conn.execute("UPDATE audit_record SET allowed = 1 WHERE seq = 2")
    broken = run_cli("audit", "verify", "--db", trail)
    assert broken.returncode == 1
    assert "BROKEN at seq 2" in broken.stderr


def test_a_re_encoded_row_is_named_not_a_traceback(trail: Path) -> None:
    # The same values in other JSON text: the hash still matches, the stored form does not.
    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        conn.execute(
            "UPDATE audit_record SET violations = replace(violations, ',', ', ') WHERE seq = 2"
        )
    verify = run_cli("audit", "verify", "--db", trail)
    assert verify.returncode == 1
    assert "BROKEN at seq 2 (id 2): row id 2: column violations holds text" in verify.stderr
    listing = run_cli("audit", "list", "--db", trail)
    assert listing.returncode == 1
    assert "audit row seq=2 id=2 is corrupt: column violations" in listing.stderr
    assert "Traceback" not in verify.stderr + listing.stderr


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    result = run_cli("audit", "list", "--db", tmp_path / "typo.db")
    assert result.returncode == 2
    assert "cannot open audit store" in result.stderr
    assert not (tmp_path / "typo.db").exists()


def test_a_signed_checkpoint_catches_rows_cut_off_the_end(trail: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert run_cli("keys", "generate", keys).returncode == 0
    made = run_cli("audit", "checkpoint", "--db", trail, "--keys-dir", keys)
    assert made.returncode == 0, made.stderr
    checkpoint = tmp_path / "checkpoint.jwt"
    checkpoint.write_text(made.stdout)
    verified = run_cli(
        "audit", "verify", "--db", trail, "--keys-dir", keys, "--checkpoint", checkpoint
    )
    assert verified.returncode == 0
    assert "1 checkpoint(s) hold" in verified.stdout

    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_delete")
        conn.execute("DELETE FROM audit_record WHERE seq = (SELECT MAX(seq) FROM audit_record)")
    # The shortened chain is still a valid chain ...
    assert run_cli("audit", "verify", "--db", trail).returncode == 0
    # ... but not what the checkpoint signed.
    cut = run_cli("audit", "verify", "--db", trail, "--keys-dir", keys, "--checkpoint", checkpoint)
    assert cut.returncode == 1
    assert f"saw seq {len(SEQUENCE)}: rows were removed from the end" in cut.stderr


def test_a_forged_checkpoint_is_refused(trail: Path, tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for directory in (mine, theirs):
        assert run_cli("keys", "generate", directory).returncode == 0
    forged = tmp_path / "forged.jwt"
    forged.write_text(run_cli("audit", "checkpoint", "--db", trail, "--keys-dir", theirs).stdout)
    result = run_cli("audit", "verify", "--db", trail, "--keys-dir", mine, "--checkpoint", forged)
    assert result.returncode == 1
    assert "not a valid kube-intent audit checkpoint" in result.stderr
