"""Chart checks: helm lint/template need only helm; the dry-run apply uses the e2e control plane
(the same one as tests/e2e when both run in one session)."""

from __future__ import annotations

import pytest

from tests.e2e import fixtures
from tests.e2e.cluster import Cluster
from tests.e2e.fixtures import pytest_runtest_makereport  # noqa: F401 - a hook for this dir


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    return fixtures.shared_cluster(request.config)
