"""The README's quick start, run as written in a fresh copy of the repository.

The commands are read from the README's `sh` blocks between `<!-- quickstart -->` and
`<!-- /quickstart -->`, so a README that drifts from the code fails here: the server comes up
(`scripts/dev.sh`), the allowed pod gets a grant that `kube-intent token verify` accepts
against the served JWKS, and the denied pod shows in `kube-intent audit list`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.paths import REPO
from webhook.opa_process import free_port

QUICKSTART = re.compile(r"<!-- quickstart\b[^>]*-->(.*?)<!-- /quickstart -->", re.DOTALL)
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)
SERVER_BLOCK = "scripts/dev.sh"
# The address the README uses. The test serves on a free port instead (8443 may be taken by a
# developer's own dev server or a parallel run): this string, and only it, is replaced.
README_ADDRESS = "127.0.0.1:8443"
STATE_DIR = ".kube-intent"
START_TIMEOUT_SECONDS = 180.0
COMMAND_TIMEOUT_SECONDS = 120.0


def quickstart_blocks(readme: str) -> list[str]:
    [section] = QUICKSTART.findall(readme)
    return [block.strip() for block in SH_BLOCK.findall(section)]


def copy_working_tree(destination: Path) -> None:
    """What a clone holds, plus the uncommitted work being tested.

    `git clone` of the checkout would give the last commit only, so the test would pass or fail
    on code other than the one under test. `git ls-files -co --exclude-standard` lists the
    tracked files and the new ones not ignored: copied as they are on disk, they are the clone
    this change will be once committed. Ignored files (.venv, .tools, .kube-intent, caches)
    stay behind, as they would in a clone.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree, not yet committed
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        target.chmod(source.stat().st_mode & 0o777)


def reuse_dependencies(copy: Path) -> None:
    """The `.venv` scripts/bootstrap.sh would create in the copy, without installing anything.

    A venv of its own (so `.venv/bin/kube-intent` runs the copy's code, never this checkout's)
    that finds the dependencies already installed in this checkout's venv through a .pth file,
    and the stamp by which bootstrap.sh knows the dependencies of this pyproject.toml are in.
    """
    venv = copy / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = venv / "lib" / version / "site-packages"
    # Plain paths: the checkout's own .pth files (its editable install) are not processed.
    (site_packages / "kube_intent_dependencies.pth").write_text(
        f"{sysconfig.get_paths()['purelib']}\n"
    )
    (site_packages / "kube_intent_source.pth").write_text(f"{copy}\n")
    script = venv / "bin" / "kube-intent"
    script.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom webhook.cli import main\n\n"
        "sys.exit(main())\n"
    )
    script.chmod(0o755)
    digest = hashlib.sha256((copy / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (venv / f".kube-intent-{digest}").touch()


def clean_environment(port: int) -> dict[str, str]:
    """The caller's environment minus what would leak this checkout or its settings in."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KUBE_INTENT_") or name == "KUBE_INTENT_TOOLS_CACHE"
    }
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join(
        entry for entry in env.get("PATH", "").split(os.pathsep) if not entry.startswith(str(REPO))
    )
    env["KUBE_INTENT_PORT"] = str(port)
    return env


@dataclass
class Quickstart:
    copy: Path
    env: dict[str, str]
    port: int

    def run(self, block: str) -> str:
        command = block.replace(README_ADDRESS, f"127.0.0.1:{self.port}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.copy,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        assert result.returncode == 0, (
            f"README quick start block failed (exit {result.returncode}):\n{block}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        return result.stdout


def wait_ready(process: subprocess.Popen[bytes], ca: Path, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"scripts/dev.sh exited with {process.returncode}:\n{log.read_text()}"
            )
        if ca.exists():
            try:
                context = ssl.create_default_context(cafile=str(ca))
                response = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=context)
                if response.status_code == 200:
                    return
            except (httpx.HTTPError, OSError, ssl.SSLError):
                pass
        time.sleep(0.2)
    raise AssertionError(f"the dev server was not ready in time:\n{log.read_text()}")


@pytest.fixture(scope="module")
def blocks() -> list[str]:
    return quickstart_blocks((REPO / "README.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory, blocks: list[str]) -> Iterator[Quickstart]:
    copy = tmp_path_factory.mktemp("clone")
    copy_working_tree(copy)
    reuse_dependencies(copy)
    port = free_port()
    env = clean_environment(port)
    log = copy.parent / f"{copy.name}-dev-server.log"
    assert blocks[0] == SERVER_BLOCK, "the quick start starts the server first"
    with log.open("wb") as output:
        # Its own session, so that it and the OPA it supervises stop together.
        server = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", blocks[0]],
            cwd=copy,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(server, copy / STATE_DIR / "tls" / "ca.crt", port, log)
        yield Quickstart(copy, env, port)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text


def test_the_readme_quick_start_works_as_written_in_a_fresh_copy(
    quickstart: Quickstart, blocks: list[str]
) -> None:
    assert all(README_ADDRESS in block for block in blocks[1:] if "curl" in block)
    outputs = [quickstart.run(block) for block in blocks[1:]]
    copy = quickstart.copy

    # The allowed pod: allowed, with a grant in its patch.
    answer = json.loads((copy / "allowed.json").read_text())["response"]
    assert answer["allowed"] is True
    patch = json.loads((copy / "patch.json").read_text())
    assert "/metadata/annotations/kube-intent.io~1grant" in [op["path"] for op in patch]
    grant = (copy / "grant.jwt").read_text().strip()
    assert grant.count(".") == 2

    # token verify accepted it against the served JWKS (exit 0, checked by run) and said what
    # it grants.
    [verified] = [
        json.loads(output)
        for block, output in zip(blocks[1:], outputs, strict=True)
        if "token verify" in block
    ]
    assert (verified["agent"], verified["ns"], verified["sa"]) == (
        "support-bot",
        "ml-serving",
        "support-bot",
    )
    assert "model:meta-llama/Llama-3.1-8B-Instruct:infer" in verified["scope"].split()
    # Signed with the dev key set the server keeps in its state dir.
    keys = sorted(path.name for path in (copy / STATE_DIR / "keys").iterdir())
    assert keys == ["active.pem", "next.pem"]

    # The denied pod is in the audit trail.
    [listing] = [
        output for block, output in zip(blocks[1:], outputs, strict=True) if "audit list" in block
    ]
    # The curl above printed the AdmissionReview answer (one JSON line); then the table.
    table = [line for line in listing.splitlines() if not line.startswith("{")]
    [row] = [line for line in table if "unapproved-model" in line]
    assert "denied" in row.split()
    assert "model-allowed" in row


def test_the_dev_server_reloads_the_bundled_policies_when_they_are_edited(
    quickstart: Quickstart,
) -> None:
    """Issue 13: a rule changed in webhook/policies showed in `review` but not in the running
    dev server. The copy's server serves the copy's bundled policies: edit them there."""
    data_file = quickstart.copy / "webhook" / "policies" / "data.json"
    original = data_file.read_text()
    denied = json.loads((quickstart.copy / "examples/admission/denied-pod.review.json").read_text())
    ca = ssl.create_default_context(cafile=str(quickstart.copy / STATE_DIR / "tls" / "ca.crt"))

    def allowed() -> bool:
        response = httpx.post(
            f"https://127.0.0.1:{quickstart.port}/mutate", json=denied, verify=ca, timeout=10
        )
        verdict: bool = response.json()["response"]["allowed"]
        return verdict

    assert not allowed()
    data = json.loads(original)
    data["kube_intent"]["config"]["enforcement"]["model-allowed"] = "warn"
    try:
        data_file.write_text(json.dumps(data))
        deadline = time.monotonic() + 30
        while not allowed():
            assert time.monotonic() < deadline, "the edited policy data was not reloaded"
            time.sleep(0.5)
    finally:
        data_file.write_text(original)
