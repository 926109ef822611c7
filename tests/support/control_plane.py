"""Fixtures shared by tests/e2e and tests/charts: one control plane per test session.

Both conftests expose `cluster` through `shared_cluster`, so a run of both directories starts
a single cluster (a session fixture defined in two conftests would otherwise start two).
Missing binaries skip the tests with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable
from typing import Any

import pytest
from pluggy import Result

from tests.support.cluster import BINARIES, Cluster, ClusterError, find_binary
from tests.support.helm import find_helm

_cluster: Cluster | None = None
_failure: str | None = None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tools(names: Iterable[str]) -> None:
    """Skip (or, under CI=true, fail) when a tool is missing."""
    missing = [n for n in names if (find_helm() if n == "helm" else find_binary(n)) is None]
    if not missing:
        return
    reason = (
        f"missing {', '.join(missing)}: build them with scripts/tools.sh "
        "(they are looked up in .tools/bin, then PATH)"
    )
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def shared_cluster(config: pytest.Config) -> Cluster:
    global _cluster, _failure
    require_tools(BINARIES)
    if _failure is not None:
        pytest.fail(f"the test cluster did not start (see the first error): {_failure[:500]}")
    if _cluster is None:
        keep = os.environ.get("KUBE_INTENT_E2E_KEEP", "") not in ("", "0")
        cluster = Cluster(keep=keep)
        try:
            cluster.start()
        except ClusterError as exc:
            _failure = str(exc)
            pytest.fail(f"the test cluster did not start: {exc}", pytrace=False)
        config.add_cleanup(_stop_cluster)
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.startup_seconds.items())
        print(f"\n[e2e] control plane at {cluster.api_url} in {cluster.workdir} ({timings})")
        _cluster = cluster
    return _cluster


def _stop_cluster() -> None:
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None


def current_cluster() -> Cluster | None:
    return _cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Result[pytest.TestReport]]:
    """On a failing e2e test, attach the control plane's log tails to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _cluster is not None and "cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(("control plane logs (tails)", _cluster.log_tails(25)))
