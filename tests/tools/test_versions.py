"""tools/versions.env is the one place a tool version is written: everything else agrees with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.paths import REPO
from tests.support.versions import pinned

# The variable, the wrapper module's directory under tools/, and the module it requires.
MODULES = [
    ("OPA_VERSION", "opa", "github.com/open-policy-agent/opa"),
    ("ETCD_VERSION", "etcd", "go.etcd.io/etcd/server/v3"),
    ("HELM_VERSION", "helm", "helm.sh/helm/v3"),
    ("KUBE_VERSION", "kubernetes", "k8s.io/kubernetes"),
    ("VEGETA_VERSION", "vegeta", "github.com/tsenart/vegeta/v12"),
    ("PROMTOOL_VERSION", "promtool", "github.com/prometheus/prometheus"),
]


def required(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    assert match, f"{go_mod} does not require {module}"
    return match.group(1)


@pytest.mark.parametrize(("variable", "tool", "module"), MODULES, ids=[m[1] for m in MODULES])
def test_each_wrapper_module_builds_the_pinned_version(
    variable: str, tool: str, module: str
) -> None:
    assert required(REPO / "tools" / tool / "go.mod", module) == pinned()[variable]


def test_the_chart_runs_the_opa_the_tests_run() -> None:
    values = yaml.safe_load((REPO / "charts" / "kube-intent" / "values.yaml").read_text())
    assert values["opa"]["image"]["tag"] == pinned()["OPA_VERSION"].removeprefix("v") + "-static"


def test_tools_sh_pins_nothing_itself() -> None:
    # A second copy of a pin is how versions drift apart.
    script = (REPO / "scripts" / "tools.sh").read_text()
    for variable in pinned():
        assert not re.search(rf"^\s*{variable}=", script, re.M), variable
