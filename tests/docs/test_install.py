"""docs/install.md's offline render for tls.mode=secret works as written, and fails as it says
without tls.caBundle (helm's `lookup` sees no cluster under `helm template`)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import control_plane
from tests.support.paths import REPO
from webhook.tls import ensure_dev_certificates

DOC = REPO / "docs" / "install.md"
_TESTED = re.compile(r"<!-- tested: offline-render -->\n```sh\n(?P<command>.*?)\n```", re.DOTALL)
ERR_NO_CA = "tls.mode=secret needs the CA that verifies Secret kube-intent/kube-intent-tls"
WEBHOOK_KINDS = {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


@pytest.fixture(autouse=True)
def _helm() -> None:
    control_plane.require_tools(["helm"])


def documented_command() -> str:
    found = _TESTED.search(DOC.read_text())
    assert found, "docs/install.md lost its tested offline-render command"
    return found["command"]


def run(command: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The command in a directory laid out as the doc assumes: the chart and ca.crt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(workdir / ".helm" / var.lower())
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "charts").symlink_to(REPO / "charts")
    certificates = ensure_dev_certificates(tmp_path / "pki", ["kube-intent.kube-intent.svc"])
    (tmp_path / "ca.crt").write_bytes(certificates.ca_cert.read_bytes())
    return tmp_path


def test_the_documented_offline_render_puts_the_ca_in_every_webhook(workdir: Path) -> None:
    result = run(documented_command(), workdir)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all((workdir / "kube-intent.yaml").read_text()) if d]
    hooks = [h for o in objects if o["kind"] in WEBHOOK_KINDS for h in o["webhooks"]]
    ca = base64.b64encode((workdir / "ca.crt").read_bytes()).decode()
    assert len(hooks) >= 3
    assert {h["clientConfig"]["caBundle"] for h in hooks} == {ca}


def test_without_the_ca_the_render_fails_with_the_documented_message(workdir: Path) -> None:
    command = documented_command().replace(" \\\n  --set-file tls.caBundle=ca.crt", "")
    assert "caBundle" not in command
    result = run(command, workdir)
    assert result.returncode != 0
    assert ERR_NO_CA in result.stderr
    assert ERR_NO_CA in DOC.read_text()
