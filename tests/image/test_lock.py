"""requirements/image*.txt still pin what pyproject.toml asks for (no podman needed).

A dependency added to or tightened in pyproject.toml without `scripts/image.sh lock` would
otherwise surface only when the image build's `pip check` fails (which also covers extras and
transitive dependencies).
"""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HINT = "re-pin with scripts/image.sh lock"


def pins(name: str) -> dict[str, str]:
    """package -> version of a lock file, each pin with a sha256."""
    text = (REPO / "requirements" / name).read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", text, re.M
    )
    requirement_lines = [line for line in text.splitlines() if "==" in line]
    assert len(entries) == len(requirement_lines), f"requirements/{name}: a pin without a hash"
    return {canonicalize_name(n): v for n, v in entries}


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("image.txt", PYPROJECT["project"]["dependencies"]),
        ("image-build.txt", PYPROJECT["build-system"]["requires"]),
    ],
)
def test_lock_satisfies_pyproject(lock: str, requirements: list[str]) -> None:
    pinned = pins(lock)
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in requirements/{lock}: {HINT}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={pinned[name]}, pyproject wants {line}: {HINT}"
        )


def test_build_lock_has_pip() -> None:
    assert "pip" in pins("image-build.txt"), "the Dockerfile runs pip from its pinned wheel"
