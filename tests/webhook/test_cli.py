"""The command line as a user meets it: help everywhere, every setting a flag, completion, version.

Walks the real click tree, so a new command or setting is covered without editing this file.
What is about the process (start time, completion through the environment variables click's
scripts set) runs the installed `kube-intent` in a subprocess; the rest runs in CliRunner.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.support.paths import REPO
from webhook import review as review_module
from webhook.cli import (
    COMPLETE_VAR,
    MainGroup,
    _settings,
    env_var,
    flag_name,
    main,
    package_version,
    serve,
)
from webhook.policy_source import PolicySource
from webhook.settings import Settings

PROGRAM = Path(sys.executable).with_name("kube-intent")


def command_paths(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command under `command` (itself included), as the words that invoke it."""
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None, f"{' '.join((*path, name))} is listed but cannot be loaded"
            yield from command_paths(sub, (*path, name))


PATHS = dict(command_paths(main))
IDS = [" ".join(path) or "kube-intent" for path in PATHS]
GROUPS = {path: cmd for path, cmd in PATHS.items() if isinstance(cmd, click.Group)}


def invoke(args: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
    # No KUBE_INTENT_* from the caller's shell: each test sets what it means.
    clean = {key: None for key in os.environ if key.startswith("KUBE_INTENT_")}
    return CliRunner().invoke(
        main, args, env={**clean, **(env or {})}, terminal_width=80, prog_name="kube-intent"
    )


@pytest.mark.parametrize("path", list(PATHS), ids=IDS)
@pytest.mark.parametrize("option", ["-h", "--help"])
def test_help_on_every_command(path: tuple[str, ...], option: str) -> None:
    result = invoke([*path, option])
    assert result.exit_code == 0, result.output
    assert "\b" not in result.output, "a \\b line inside a paragraph: start it after a blank line"
    assert result.output.startswith(f"Usage: kube-intent {' '.join(path)}".rstrip()), result.output


@pytest.mark.parametrize("path", list(GROUPS), ids=[" ".join(p) or "kube-intent" for p in GROUPS])
def test_command_lists_show_whole_summaries(path: tuple[str, ...]) -> None:
    output = invoke([*path, "--help"]).output
    commands = output.split("Commands:", 1)[1]
    assert "..." not in commands, f"a cut summary in `{' '.join(path)} --help`:\n{commands}"
    for name in GROUPS[path].list_commands(click.Context(GROUPS[path])):
        assert re.search(rf"^  {re.escape(name)}\s+\S", commands, re.M), (name, commands)


def test_lazy_command_summaries_are_the_commands_own() -> None:
    # The root lists `audit` without importing it: its summary is written down in webhook.cli.
    for name, lazy in MainGroup.lazy.items():
        command = main.get_command(click.Context(main), name)
        assert command is not None
        assert lazy.summary == command.get_short_help_str(sys.maxsize), name


OPTIONS = [
    (path, param)
    for path, command in PATHS.items()
    for param in command.params
    if isinstance(param, click.Option)
]


@pytest.mark.parametrize(
    ("path", "option"),
    OPTIONS,
    ids=[f"{' '.join(path) or 'kube-intent'} {option.opts[0]}" for path, option in OPTIONS],
)
def test_every_option_has_help(path: tuple[str, ...], option: click.Option) -> None:
    assert option.help, f"{' '.join(path)} {option.opts[0]} has no help"
    assert option.help.strip()


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_a_serve_flag_naming_its_variable(name: str) -> None:
    options = {param.name: param for param in serve.params if isinstance(param, click.Option)}
    assert name in options, f"Settings.{name} has no `serve` flag (add it: webhook/cli.py)"
    option = options[name]
    assert flag_name(name) in option.opts
    assert option.help
    assert env_var(name) in option.help
    description = Settings.model_fields[name].description
    assert description, f"Settings.{name} has no Field(description=...): it is the flag's help"
    assert description in option.help
    # ...and `serve --help` prints it whole, however long the name is.
    assert env_var(name) in invoke(["serve", "--help"]).output


def test_serve_help_prints_defaults() -> None:
    output = " ".join(invoke(["serve", "--help"]).output.split())
    for expected in (
        "[env: KUBE_INTENT_PORT; default: 8443]",
        "[env: KUBE_INTENT_AUDIT_REQUIRED; default: on]",
        "--audit-required / --no-audit-required",
        "[env: KUBE_INTENT_TOKEN_AUDIENCES (a JSON list); default: none]",
        "default: the bundled policies (webhook/policies)",
        "[debug|info|warning|error|critical]",
    ):
        assert expected in output


def settings_for(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """What `serve ARGS` would run with, under `env`: click's parsing, then webhook.cli's merge."""
    for key in os.environ:
        if key.startswith("KUBE_INTENT_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    context = serve.make_context("serve", args)
    return _settings(**context.params)


KEYS = str(REPO / "tests")  # any existing directory: --keys-dir must exist
PRECEDENCE = [
    # (setting, flag arguments, env, expected value)
    ("audit_required", [], {}, True),
    ("audit_required", [], {"KUBE_INTENT_AUDIT_REQUIRED": "false"}, False),
    ("audit_required", ["--audit-required"], {"KUBE_INTENT_AUDIT_REQUIRED": "false"}, True),
    ("audit_required", ["--no-audit-required"], {}, False),
    ("dev", [], {"KUBE_INTENT_DEV": "true"}, True),
    ("dev", ["--no-dev"], {"KUBE_INTENT_DEV": "true"}, False),
    ("token_audiences", [], {}, ()),
    ("token_audiences", [], {"KUBE_INTENT_TOKEN_AUDIENCES": '["https://env"]'}, ("https://env",)),
    (
        "token_audiences",
        ["--token-audience", "https://a", "--token-audience", "https://b"],
        {"KUBE_INTENT_TOKEN_AUDIENCES": '["https://env"]'},
        ("https://a", "https://b"),
    ),
    ("keys_dir", [], {}, None),
    ("keys_dir", [], {"KUBE_INTENT_KEYS_DIR": "/from/env"}, Path("/from/env")),
    ("keys_dir", ["--keys-dir", KEYS], {"KUBE_INTENT_KEYS_DIR": "/from/env"}, Path(KEYS)),
    ("state_dir", [], {}, Path(".kube-intent")),
    ("port", ["--port", "9443"], {"KUBE_INTENT_PORT": "7443"}, 9443),
    ("port", [], {"KUBE_INTENT_PORT": "7443"}, 7443),
]


@pytest.mark.parametrize(
    ("name", "args", "env", "expected"),
    PRECEDENCE,
    ids=[
        f"{n} {' '.join(a) or '(no flag)'} {'env' if e else 'no env'}" for n, a, e, _ in PRECEDENCE
    ],
)
def test_flag_wins_over_variable_which_wins_over_default(
    name: str,
    args: list[str],
    env: dict[str, str],
    expected: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert getattr(settings_for(args, env, monkeypatch), name) == expected


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve", "--policy-reload-seconds", "0"], {}, "--policy-reload-seconds"),
        (["serve"], {"KUBE_INTENT_REPORTS_MAX_RESULTS": "0"}, "KUBE_INTENT_REPORTS_MAX_RESULTS"),
        (["serve"], {"KUBE_INTENT_TOKEN_AUDIENCES": "not json"}, "KUBE_INTENT_TOKEN_AUDIENCES"),
        (["serve", "--log-level", "loud"], {}, "--log-level"),
        # Refused before serve starts OPA or writes a policy row to the audit chain.
        (["serve", "--reports", "policyreports"], {}, "--reports"),
    ],
    ids=[
        "flag out of range",
        "variable out of range",
        "variable not a list",
        "not a choice",
        "unknown report kind",
    ],
)
def test_a_setting_that_does_not_read_is_a_usage_error(
    args: list[str], env: dict[str, str], named: str
) -> None:
    result = invoke(args, env)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "Traceback" not in result.output


def test_review_colors_are_reviews() -> None:
    # webhook.cli keeps its own copy so that --help need not import the decision path.
    from webhook import cli

    assert cli.COLOR_CHOICES == review_module.COLOR_CHOICES


EXAMPLES = [("serve",), ("review",), ("policy", "test"), ("policy", "replay"), ("token", "verify")]


@pytest.mark.parametrize("path", EXAMPLES, ids=[" ".join(p) for p in EXAMPLES])
def test_examples_in_help_keep_their_lines(path: tuple[str, ...]) -> None:
    output = invoke([*path, "--help"]).output
    examples = output.split("Examples:", 1)
    assert len(examples) == 2, f"`{' '.join(path)} --help` has no Examples"
    # \b blocks are printed as written: each example is a line of its own starting the command.
    lines = [line.strip() for line in examples[1].splitlines()]
    assert any(line.startswith(f"kube-intent {path[0]}") for line in lines), examples[1]


def test_version_names_the_package_and_the_policies_revision() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    revision = PolicySource.of(None, None).load().revision
    assert result.output == f"kube-intent {package_version()} (policies {revision})\n"
    assert package_version() != "unknown"


def run_program(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("KUBE_INTENT_")}
    clean.pop(COMPLETE_VAR, None)
    return subprocess.run(
        [str(PROGRAM), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")],
    ids=["bash", "zsh", "fish"],
)
def test_completion_prints_the_shells_script(shell: str, marker: str) -> None:
    result = run_program(["completion", shell])
    assert result.returncode == 0, result.stderr
    assert COMPLETE_VAR in result.stdout
    assert f"{shell}_complete" in result.stdout
    assert marker in result.stdout


@pytest.mark.parametrize(
    ("words", "incomplete", "expected"),
    [
        ("kube-intent po", "po", {"policy"}),
        ("kube-intent policy re", "re", {"revision", "replay"}),
        ("kube-intent serve --audit-db", "--audit-db", {"--audit-db", "--audit-db-file"}),
        ("kube-intent completion ", "", {"bash", "zsh", "fish"}),
    ],
    ids=["command", "subcommand", "serve flag", "shell choice"],
)
def test_completion_answers_as_the_bash_script_asks(
    words: str, incomplete: str, expected: set[str]
) -> None:
    # What the printed bash script does on Tab: run the program with these variables set.
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = run_program(
        [],
        {COMPLETE_VAR: "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)},
    )
    assert result.returncode == 0, result.stderr
    offered = {line.split(",", 1)[1] for line in result.stdout.splitlines()}
    assert offered == expected, result.stdout
    assert all(word.startswith(incomplete) for word in offered)


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    result = run_program(["completion", "tcsh"])
    assert result.returncode == 2
    assert "bash" in result.stderr


def test_help_starts_fast_without_the_heavy_imports() -> None:
    # The modules that made `--help` take a second: none may load just to print help.
    probe = (
        "import sys, webhook.cli; "
        "print(' '.join(m for m in ('kubernetes', 'fastapi', 'uvicorn', 'aiohttp', "
        "'webhook.audit_cli') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == [], f"imported by webhook.cli: {loaded}"
    started = time.monotonic()
    result = run_program(["--help"])
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    # Measured 0.34 s here (1.1 s before the imports moved into the commands); the bound is
    # loose for a loaded CI machine.
    assert elapsed < 2.0, f"kube-intent --help took {elapsed:.2f}s"
