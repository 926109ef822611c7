"""Tests share helpers through tests/support only: no test file imports a test module or a
conftest, and tests/charts imports nothing from tests/e2e.

import-linter (pyproject.toml) checks the tests.support and tests.charts contracts; its
wildcards replace whole module names, so the "test_*" and "conftest" rule is checked here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO

TESTS = REPO / "tests"
TEST_FILES = sorted(TESTS.rglob("*.py"))

ERR_TEST_MODULE = (
    "imports the test module {module}: move the helper into tests/support/ and import it from there"
)
ERR_CONFTEST = (
    "imports {module}: a conftest holds fixtures only (pytest finds them by name); "
    "move the helper into tests/support/"
)
ERR_CHARTS_E2E = (
    "tests/charts imports {module}: what the chart tests share with tests/e2e belongs in "
    "tests/support/"
)


def imported_modules(source: str) -> list[str]:
    """Every module an `import` or `from ... import` names (`from a import b` gives a and a.b:
    b may be a submodule)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def violations(source: str, *, in_charts: bool) -> list[str]:
    problems: list[str] = []
    reported: list[str] = []
    for module in imported_modules(source):
        parts = module.split(".")
        # `from a.test_x import b` is one problem (a.test_x), not two (a.test_x and a.test_x.b).
        if parts[0] != "tests" or any(module.startswith(f"{r}.") for r in reported):
            continue
        before = len(problems)
        if parts[-1] == "conftest":
            problems.append(ERR_CONFTEST.format(module=module))
        elif any(part.startswith("test_") for part in parts[1:]):
            problems.append(ERR_TEST_MODULE.format(module=module))
        if in_charts and parts[:2] == ["tests", "e2e"]:
            problems.append(ERR_CHARTS_E2E.format(module=module))
        if len(problems) > before:
            reported.append(module)
    return problems


@pytest.mark.parametrize("path", TEST_FILES, ids=[str(p.relative_to(TESTS)) for p in TEST_FILES])
def test_no_test_file_imports_a_test_module_or_a_conftest(path: Path) -> None:
    in_charts = path.is_relative_to(TESTS / "charts")
    assert violations(path.read_text(encoding="utf-8"), in_charts=in_charts) == []


@pytest.mark.parametrize(
    ("source", "in_charts", "expected"),
    [
        (
            "from tests.webhook.test_webhook import post",
            False,
            [ERR_TEST_MODULE.format(module="tests.webhook.test_webhook")],
        ),
        (
            "from tests.webhook import test_webhook",
            False,
            [ERR_TEST_MODULE.format(module="tests.webhook.test_webhook")],
        ),
        (
            "import tests.e2e.test_admission",
            False,
            [ERR_TEST_MODULE.format(module="tests.e2e.test_admission")],
        ),
        (
            "from tests.conftest import review",
            False,
            [ERR_CONFTEST.format(module="tests.conftest")],
        ),
        (
            "def f():\n    from tests.e2e.conftest import WebhookServer\n",
            False,
            [ERR_CONFTEST.format(module="tests.e2e.conftest")],
        ),
        (
            "from tests.e2e import fixtures",
            True,
            [ERR_CHARTS_E2E.format(module="tests.e2e")],
        ),
        ("from tests.e2e import fixtures", False, []),
        ("from tests.support.admission import post, review", True, []),
        ("from webhook.test_helpers import x\nimport conftest_like", False, []),
    ],
    ids=[
        "from-test-module",
        "test-module-as-name",
        "import-test-module",
        "root-conftest",
        "nested-conftest-in-function",
        "charts-from-e2e",
        "e2e-outside-charts",
        "support",
        "not-tests",
    ],
)
def test_the_check_names_each_forbidden_import(
    source: str, in_charts: bool, expected: list[str]
) -> None:
    assert violations(source, in_charts=in_charts) == expected
