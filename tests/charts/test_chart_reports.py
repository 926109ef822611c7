"""The chart's `reports` values: off by default (no env, no RBAC), and when on, the setting the
webhook reads and exactly the RBAC the publisher uses (docs/reports.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.chart import env, one, render, render_error
from tests.support.cluster import Cluster
from tests.support.kube import ensure_namespace, server_side_apply
from webhook.reports import report_kinds
from webhook.settings import Settings

REPORT_RULES = [
    {
        "apiGroups": ["wgpolicyk8s.io"],
        "resources": ["policyreports"],
        "verbs": ["get", "create", "update"],
    },
    {
        "apiGroups": ["openreports.io"],
        "resources": ["reports"],
        "verbs": ["get", "create", "update"],
    },
    {"apiGroups": ["apps"], "resources": ["replicasets", "statefulsets"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
]


def rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = one(objects, "ClusterRole", "kube-intent")["rules"]
    return found


def test_reports_are_off_by_default_with_no_setting_and_no_report_rbac() -> None:
    objects = render("defaults")
    assert "KUBE_INTENT_REPORTS" not in env(objects)
    for rule in REPORT_RULES:
        assert rule not in rules(objects)
    groups = {group for rule in rules(objects) for group in rule["apiGroups"]}
    assert not groups & {"wgpolicyk8s.io", "openreports.io", "apps", "batch"}


@pytest.mark.parametrize(
    ("sets", "setting", "max_results"),
    [
        (("reports.enabled=true",), "auto", "500"),
        (("reports.enabled=true", "reports.kinds={policyreport}"), "policyreport", "500"),
        (
            (
                "reports.enabled=true",
                "reports.kinds={openreports,policyreport}",
                "reports.maxResults=50",
            ),
            "openreports,policyreport",
            "50",
        ),
    ],
    ids=["every-served-kind", "policyreport-only", "both-bounded"],
)
def test_enabled_reports_set_what_the_webhook_reads(
    sets: tuple[str, ...], setting: str, max_results: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = env(render("defaults", *sets))
    assert variables["KUBE_INTENT_REPORTS"]["value"] == setting
    assert variables["KUBE_INTENT_REPORTS_MAX_RESULTS"]["value"] == max_results
    for name in ("KUBE_INTENT_REPORTS", "KUBE_INTENT_REPORTS_MAX_RESULTS"):
        monkeypatch.setenv(name, variables[name]["value"])
    settings = Settings()
    assert settings.reports_max_results == int(max_results)
    assert report_kinds(settings.reports) is not None  # a value the webhook accepts


def test_enabled_reports_grant_exactly_what_the_publisher_uses() -> None:
    granted = rules(render("defaults", "reports.enabled=true"))
    for rule in REPORT_RULES:
        assert rule in granted
    for rule in granted:
        if {"wgpolicyk8s.io", "openreports.io", "apps", "batch"} & set(rule["apiGroups"]):
            assert rule in REPORT_RULES
            assert "delete" not in rule["verbs"]
            assert "*" not in rule["resources"] + rule["verbs"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("reports.kinds={clusterpolicyreport}",), "/reports/kinds/0"),
        (("reports.maxResults=0",), "/reports/maxResults"),
        (("reports.everything=true",), "everything"),
    ],
    ids=["unknown-kind", "zero-bound", "unknown-key"],
)
def test_the_values_schema_refuses_bad_reports_values(sets: tuple[str, ...], message: str) -> None:
    assert message in render_error("defaults", *sets)


@pytest.mark.e2e
def test_the_api_server_accepts_the_role_and_deployment_with_reports_on(cluster: Cluster) -> None:
    api = cluster.api_client()
    ensure_namespace(api, "chart-reports")
    objects = render("defaults", "reports.enabled=true", namespace="chart-reports")
    for obj in objects:
        if obj["kind"] in ("ClusterRole", "Deployment"):
            server_side_apply(api, obj, dry_run=True)
