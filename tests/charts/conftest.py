"""Chart checks: helm lint/template need only helm; the dry-run apply uses the e2e control plane
(the same one as tests/e2e when both run in one session)."""

from __future__ import annotations

import pytest

from tests.support import control_plane
from tests.support.cluster import Cluster
from tests.support.control_plane import pytest_runtest_makereport  # noqa: F401 - a hook for this dir


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return control_plane.shared_cluster(request.config)
