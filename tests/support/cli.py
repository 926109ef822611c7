"""`kube-intent` run as a subprocess, as users run it: its own process, its own exit status."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.paths import REPO


def run_cli(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m webhook ARGS` from the repository root (env None: the caller's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "webhook", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        input=stdin,
        timeout=timeout,
        check=False,
    )
