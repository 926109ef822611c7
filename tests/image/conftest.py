"""tests/image: the images scripts/image.sh builds, run with podman as the chart runs them."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "image: builds the container images with scripts/image.sh and runs them with podman as "
        "the chart does (tests/image; skipped without podman unless CI=true)",
    )
