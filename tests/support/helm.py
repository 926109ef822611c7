"""helm, with its state under the test's own directory (never the developer's ~/.config/helm)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.cluster import TOOLS_BIN
from tests.support.paths import REPO


def find_helm() -> str | None:
    candidate = TOOLS_BIN / "helm"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("helm")


def helm(
    *args: str, kubeconfig: Path | None = None, home: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run helm with its cache/config/data under `home` (never the developer's ~/.config/helm)."""
    binary = find_helm()
    assert binary is not None, "helm is missing (scripts/tools.sh helm)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    if home is not None:
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config")):
            env[var] = str(home / sub)
        env["HELM_DATA_HOME"] = str(home / "data")
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        )
    return result


CHART = REPO / "charts" / "kube-intent"
