"""docs/cli.md's exit-code table is what the commands do: each row is run for real.

The table (between `<!-- exit-codes:begin -->` and `<!-- exit-codes:end -->`) is the expected
side: a row is `| `command` | case | code |`. CASES below says how to produce each case (the
argv, with {placeholders} for files built in a temporary directory); the test runs
`python -m webhook ...` (what the `kube-intent` script runs) and compares the exit status with
the doc's. Rows without a case, cases without a row, and commands without a row all fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import string
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from identity.keys import generate_keys
from tests.support.admission import AppClient, review
from tests.support.cli import run_cli
from tests.support.manifests import example_pod
from tests.support.paths import REPO
from webhook.audit import AuditLog, open_store
from webhook.cli import main
from webhook.metrics import Metrics
from webhook.recorder import AuditRecorder
from webhook.settings import BUNDLED_POLICIES

DOC = REPO / "docs" / "cli.md"
_TABLE = re.compile(r"<!-- exit-codes:begin -->\n(?P<table>.*?)<!-- exit-codes:end -->", re.DOTALL)
_ROW = re.compile(r"^\| `(?P<command>[^`]+)` \| (?P<case>.+?) \| (?P<code>\d+) \|$")


@dataclass(frozen=True)
class Case:
    command: str
    case: str
    argv: str  # words split on spaces; {name} is a file of the workspace

    @property
    def key(self) -> tuple[str, str]:
        return (self.command, self.case)


ALLOWED = "examples/pods/allowed-vllm-llama.yaml"
DENIED = "examples/pods/denied-model-allowed.yaml"
AGENTS = "--agents examples/agents.yaml"
JWKS = "--jwks {jwks} --issuer https://kube-intent.kube-intent.svc --audience https://llm.example"

CASES = [
    Case("kube-intent", "`--help` of any command", "review --help"),
    Case("kube-intent", "an unknown option", "review --no-such-option x.yaml"),
    Case("kube-intent", "`--version`", "--version"),
    Case("completion", "the script was printed", "completion bash"),
    Case("completion", "a shell it does not know", "completion tcsh"),
    Case(
        "serve",
        "it cannot start (here: the OPA binary is missing)",
        "serve --dev --state-dir {tmp}/state --port 0 --opa-bin {tmp}/no-opa",
    ),
    Case("serve", "an option's file does not exist", "serve --tls-cert {tmp}/missing.pem"),
    Case("review", "every object allowed", f"review {AGENTS} {ALLOWED}"),
    Case("review", "any object denied", f"review {AGENTS} {ALLOWED} {DENIED}"),
    Case("review", "a file cannot be read", f"review {AGENTS} {{tmp}}/missing.yaml"),
    Case("review", "a file is not valid YAML", f"review {AGENTS} {{broken_yaml}}"),
    Case("review", "the `--agents` file is not valid", "review --agents {broken_yaml} " + ALLOWED),
    Case("intent schema", "always", "intent schema"),
    Case("policy test", "every policy test passes", "policy test"),
    Case("policy test", "a policy test fails", "policy test {failing_policies}"),
    Case("policy test", "a Rego file does not compile", "policy test {broken_policies}"),
    Case("policy revision", "the revision was printed", "policy revision"),
    Case("policy revision", "a data file cannot be read", "policy revision {broken_data}"),
    Case(
        "policy replay", "the replay ran", "policy replay --policies webhook/policies --db {trail}"
    ),
    Case(
        "policy replay",
        "`--fail-on-change` and a decision would change",
        "policy replay --policies {lenient_policies} --db {trail} --fail-on-change",
    ),
    Case(
        "policy replay",
        "the database does not exist",
        "policy replay --policies webhook/policies --db {tmp}/missing.db",
    ),
    Case("audit list", "the trail was read", "audit list --db {trail}"),
    Case("audit list", "a filter cannot be read", "audit list --db {trail} --since yesterday"),
    Case("audit list", "the database does not exist", "audit list --db {tmp}/missing.db"),
    Case("audit show", "the decision exists", "audit show 1 --db {trail}"),
    Case("audit show", "no decision with that id", "audit show 999 --db {trail}"),
    Case("audit stats", "the trail was read", "audit stats --db {trail}"),
    Case("audit export", "the trail was read", "audit export --db {trail}"),
    Case(
        "audit checkpoint", "the head was signed", "audit checkpoint --db {trail} --keys-dir {keys}"
    ),
    Case("audit checkpoint", "no `--keys-dir`", "audit checkpoint --db {trail}"),
    Case("audit verify", "the chain is intact", "audit verify --db {trail}"),
    Case("audit verify", "a row was edited, deleted or reordered", "audit verify --db {tampered}"),
    Case("audit verify", "the database does not exist", "audit verify --db {tmp}/missing.db"),
    Case("keys generate", "the keys were created", "keys generate {tmp}/new-keys"),
    Case("keys generate", "keys exist already (no `--force`)", "keys generate {keys}"),
    Case("keys rotate", "the keys were rotated", "keys rotate {keys}"),
    Case("keys rotate", "the directory holds no key set", "keys rotate {tmp}"),
    Case("keys jwks", "the JWKS was printed", "keys jwks {keys}"),
    Case("keys jwks", "the directory holds no key set", "keys jwks {tmp}"),
    Case(
        "token verify",
        "the token is refused (malformed, expired, ...)",
        f"token verify x.y.z {JWKS}",
    ),
    Case(
        "token verify",
        "the JWKS cannot be read",
        "token verify x.y.z --jwks {tmp}/missing.json --issuer https://i --audience https://a",
    ),
    Case("token verify", "a required option is missing", "token verify x.y.z"),
    Case(
        "token fetch",
        "a token or grant file cannot be read",
        "token fetch --endpoint https://127.0.0.1:1/token --token-file {tmp}/no-token "
        "--grant-file {tmp}/no-grant --audience https://llm.example --once",
    ),
    Case(
        "token fetch", "no endpoint (flag or variable)", "token fetch --audience https://a --once"
    ),
]


def doc_table() -> dict[tuple[str, str], int]:
    found = _TABLE.search(DOC.read_text())
    assert found, "docs/cli.md has no exit-codes table"
    rows: dict[tuple[str, str], int] = {}
    for line in found["table"].splitlines()[2:]:
        row = _ROW.match(line.strip())
        assert row, f"docs/cli.md: cannot read exit-code row {line!r}"
        key = (row["command"], row["case"])
        assert key not in rows, f"docs/cli.md lists {key} twice"
        rows[key] = int(row["code"])
    return rows


def commands(group: click.Group, prefix: str = "") -> Iterator[str]:
    # list_commands/get_command, not group.commands: the root imports `audit` only when asked.
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, f"{prefix}{name} is listed but cannot be loaded"
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands(command, f"{path} ")
        else:
            yield path


def test_every_documented_row_is_run_and_every_case_documented() -> None:
    documented = set(doc_table())
    run = {case.key for case in CASES}
    assert documented - run == set(), "rows of docs/cli.md that no test case runs"
    assert run - documented == set(), "test cases that docs/cli.md does not list"


@pytest.mark.parametrize("command", sorted(commands(main)))
def test_every_command_has_a_section_and_exit_codes(command: str) -> None:
    assert f"### `kube-intent {command}`" in DOC.read_text(), f"document `kube-intent {command}`"
    assert any(c == command for c, _ in doc_table()), f"give `{command}` rows in the exit table"


# -- the workspace: the files the cases name, built only when a case names them


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


async def audit_trail(db: Path, make_client: AppClient) -> Path:
    """A database the webhook wrote: an allowed and a denied admission."""
    log = AuditLog(await open_store(str(db)), required=True)
    async with make_client(recorder=AuditRecorder(log, Metrics(), lambda: "rev-1")) as client:
        for path, pod in (("/validate", "allowed-vllm-llama"), ("/mutate", "denied-model-allowed")):
            body = review(example_pod(pod))
            answer = await client.post(path, json=body)
            assert answer.status_code == 200, answer.text
    await log.close()
    return db


def tamper(db: Path) -> Path:
    """Edit a row as someone holding the file would (the store's trigger dropped first)."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        conn.execute("UPDATE audit_record SET allowed = 1 WHERE seq = 2")
    return db


async def build(name: str, tmp: Path, make_client: AppClient) -> Path:
    builders: dict[str, Callable[[], Path]] = {
        "tmp": lambda: tmp,
        "broken_yaml": lambda: write(tmp / "broken.yaml", "kind: Pod\nmetadata: [unclosed\n"),
        "failing_policies": lambda: (
            write(
                tmp / "failing" / "demo_test.rego", "package demo\n\ntest_fails if {\n\tfalse\n}\n"
            ).parent
        ),
        "broken_data": lambda: write(tmp / "data" / "data.json", '{"kube_intent": ').parent,
        "broken_policies": lambda: (
            write(tmp / "broken" / "demo.rego", "package demo\n\nallow if {\n").parent
        ),
    }
    if name in builders:
        return builders[name]()
    if name == "lenient_policies":
        # The bundled set with model-allowed only warning: the recorded denial would be allowed.
        candidate = tmp / "lenient"
        shutil.copytree(BUNDLED_POLICIES, candidate)
        data = json.loads((candidate / "data.json").read_text())
        data["kube_intent"]["config"]["enforcement"]["model-allowed"] = "warn"
        (candidate / "data.json").write_text(json.dumps(data))
        return candidate
    if name == "keys":
        if not (tmp / "keys").exists():
            generate_keys(tmp / "keys")
        return tmp / "keys"
    if name == "jwks":
        keys = await build("keys", tmp, make_client)
        run = cli(f"keys jwks {keys}")
        assert run.returncode == 0, run.stderr
        return write(tmp / "jwks.json", run.stdout)
    if name == "trail":
        return await audit_trail(tmp / "audit.db", make_client)
    if name == "tampered":
        return tamper(await audit_trail(tmp / "tampered.db", make_client))
    raise KeyError(f"no workspace file {{{name}}}")


def cli(argv: str) -> subprocess.CompletedProcess[str]:
    # No KUBE_INTENT_* from the caller's shell: every case says what it sets.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_INTENT_")}
    return run_cli(*argv.split(), env=env)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.command}: {c.case}" for c in CASES])
async def test_exit_code_is_the_documented_one(
    case: Case, tmp_path: Path, make_client: AppClient
) -> None:
    expected = doc_table().get(case.key)
    assert expected is not None, f"docs/cli.md has no row for {case.key}"
    names = {field for _, field, _, _ in string.Formatter().parse(case.argv) if field}
    files = {name: str(await build(name, tmp_path, make_client)) for name in names}
    result = cli(case.argv.format(**files))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == expected, (
        f"`kube-intent {case.argv}` exited {result.returncode}, docs/cli.md says {expected}\n"
        f"{result.stderr}"
    )
