"""The chart's Grafana dashboard and PrometheusRule (docs/monitoring.md), off by default.

Rendered with the real helm; every alert and every dashboard query is parsed by the real
promtool (`check rules`), the alerts' firing conditions are unit-tested with `promtool test
rules`, and every metric they name is checked against what the real app's /metrics exports.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.support import control_plane
from tests.support.admission import AppClient, review
from tests.support.chart import NAMESPACE, kinds, one, render, stand_in_crd
from tests.support.cluster import Cluster, find_binary
from tests.support.helm import CHART
from tests.support.kube import api_error, ensure_namespace, server_side_apply, wait_crd_established
from tests.support.manifests import example_pod
from tests.support.release import RELEASE

ENABLED = ("monitoring.dashboard.enabled=true", "monitoring.prometheusRule.enabled=true")
DASHBOARD = CHART / "dashboards" / "kube-intent.json"
JOB = RELEASE  # the Service's name, which the ServiceMonitor makes the job label
# Grafana's variables, replaced by what Grafana would put there, so promtool can parse the query.
VARIABLES = {
    "$__rate_interval": "2m",
    "$__range": "6h",
    "${datasource}": "prometheus",
    "$job": JOB,
    "$namespace": ".*",
}
# Not the webhook's: Prometheus' own per-target series.
PROMETHEUS_METRICS = {"up"}
METRIC = re.compile(r"\b(kube_intent_[a-z0-9_]+|up)\b(?!\s*\()")


@pytest.fixture(autouse=True)
def _helm() -> None:
    control_plane.require_tools(["helm"])


@pytest.fixture
def promtool() -> str:
    control_plane.require_tools(["promtool"])
    binary = find_binary("promtool")
    assert binary is not None
    return binary


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)


def rule_groups(*sets: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(render(None, *sets), "PrometheusRule")["spec"]["groups"]
    return groups


def alerts(*sets: str) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(*ENABLED, *sets) for rule in group["rules"]]


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    queries = [t["expr"] for p in panels for t in p["targets"]]
    queries += [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    return queries


def as_promql(query: str) -> str:
    """A Grafana query as Prometheus would receive it (label_values is Grafana's own)."""
    for variable, value in VARIABLES.items():
        query = query.replace(variable, value)
    found = re.fullmatch(r"label_values\((.+), *(\w+)\)", query)
    return f"count by ({found[2]}) ({found[1]})" if found else query


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC.findall(expr)}


def write_rules(path: Path, groups: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


# -- what renders -----------------------------------------------------------------------------


def test_the_default_render_has_neither_dashboard_nor_rules() -> None:
    objects = render()
    assert "PrometheusRule" not in kinds(objects)
    assert not [o for o in objects if o["metadata"]["name"].endswith("-dashboard")]
    # The bound on the namespace label reaches the webhook either way.
    [container] = [
        c
        for c in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "webhook"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBE_INTENT_METRICS_MAX_NAMESPACES"] == "200"


@pytest.mark.parametrize(
    ("sets", "namespace", "extra_label", "annotations"),
    [
        ((), NAMESPACE, None, None),
        (
            (
                "monitoring.dashboard.namespace=grafana",
                "monitoring.dashboard.labels.team=ml",
                "monitoring.dashboard.annotations.grafana_folder=kube-intent",
            ),
            "grafana",
            ("team", "ml"),
            {"grafana_folder": "kube-intent"},
        ),
    ],
    ids=["defaults", "sidecar-namespace-folder-and-labels"],
)
def test_the_dashboard_is_a_configmap_the_grafana_sidecar_loads(
    sets: tuple[str, ...],
    namespace: str,
    extra_label: tuple[str, str] | None,
    annotations: dict[str, str] | None,
) -> None:
    configmap = one(
        render(None, "monitoring.dashboard.enabled=true", *sets),
        "ConfigMap",
        f"{RELEASE}-dashboard",
    )
    metadata = configmap["metadata"]
    assert metadata["namespace"] == namespace
    assert metadata["labels"]["grafana_dashboard"] == "1"
    if extra_label:
        assert metadata["labels"][extra_label[0]] == extra_label[1]
    assert metadata.get("annotations") == annotations
    [(name, text)] = configmap["data"].items()
    assert name.endswith(".json")
    assert json.loads(text) == json.loads(DASHBOARD.read_text())


def test_every_alert_says_what_happened_why_it_matters_and_what_to_do() -> None:
    rules = alerts("monitoring.prometheusRule.runbookBaseURL=https://docs.example/monitoring/")
    assert {r["alert"] for r in rules} == {
        "KubeIntentWebhookDown",
        "KubeIntentAdmissionErrors",
        "KubeIntentAdmissionLatencyHigh",
        "KubeIntentOPAErrors",
        "KubeIntentAuditWriteFailures",
        "KubeIntentAuditRecordsDropped",
        "KubeIntentAuditBacklogGrowing",
        "KubeIntentCertificateExpiringSoon",
        "KubeIntentDenialSpike",
    }
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook_url"] == f"https://docs.example/monitoring#{anchor}"
        # The job selector scopes every webhook metric to this release.
        for name in metric_names([rule["expr"]]):
            assert re.search(rf'{name}\{{job="{JOB}"', rule["expr"]), (rule["alert"], name)
    # Without a base URL no link points nowhere.
    assert not [r for r in alerts() if "runbook_url" in r["annotations"]]


def test_docs_have_a_section_for_every_alert() -> None:
    docs = (CHART.parent.parent / "docs" / "monitoring.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", docs, re.MULTILINE)}
    for rule in alerts():
        assert rule["alert"].lower() in headings, rule["alert"]


@pytest.mark.parametrize(
    ("sets", "alert", "fragment"),
    [
        (
            ("monitoring.prometheusRule.latencyP99Seconds=1",),
            "KubeIntentAdmissionLatencyHigh",
            ") > 1",
        ),
        (
            ("monitoring.prometheusRule.certExpiryDays=7",),
            "KubeIntentCertificateExpiringSoon",
            "< 7 * 86400",
        ),
        (("monitoring.prometheusRule.errorRatio=1",), "KubeIntentAdmissionErrors", "\n> 1"),
        (
            ("monitoring.job=webhooks",),
            "KubeIntentOPAErrors",
            'kube_intent_opa_errors_total{job="webhooks"}',
        ),
        (("monitoring.prometheusRule.alertLabels.team=ml",), "KubeIntentOPAErrors", None),
    ],
    ids=["latency", "cert-days", "error-ratio", "job", "alert-labels"],
)
def test_thresholds_and_routing_follow_the_values(
    sets: tuple[str, ...], alert: str, fragment: str | None
) -> None:
    [rule] = [r for r in alerts(*sets) if r["alert"] == alert]
    if fragment is None:
        assert rule["labels"] == {"severity": "critical", "team": "ml"}
    else:
        assert fragment in rule["expr"]


def test_the_schema_refuses_a_misspelled_monitoring_value() -> None:
    with pytest.raises(Exception, match="dashbord"):
        render(None, "monitoring.dashbord.enabled=true")


# -- promtool: syntax and firing conditions ------------------------------------------------------


def test_promtool_accepts_the_rendered_rules(promtool: str, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules.yaml", rule_groups(*ENABLED))
    result = run(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    recording = [
        {"record": f"kube_intent:dashboard_query_{i}", "expr": as_promql(q)}
        for i, q in enumerate(queries)
    ]
    rules = write_rules(tmp_path / "dashboard.yaml", [{"name": "dashboard", "rules": recording}])
    result = run(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_promtool_refuses_a_broken_query(promtool: str, tmp_path: Path) -> None:
    """The two checks above would catch a bad expression: promtool does fail on one."""
    broken = [
        {"record": "kube_intent:broken", "expr": "sum(rate(kube_intent_opa_errors_total[5m])"}
    ]
    rules = write_rules(tmp_path / "broken.yaml", [{"name": "broken", "rules": broken}])
    result = run(promtool, "check", "rules", str(rules))
    assert result.returncode != 0
    assert "unclosed left parenthesis" in result.stdout + result.stderr


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{k}="{v}"' for k, v in {"job": JOB, **labels}.items())
    return {"series": f"{metric}{{{selector}}}", "values": values}


BUCKET = "kube_intent_admission_duration_seconds_bucket"
DENIALS = "kube_intent_denials_total"
DAY = 86400
# (input series, minutes after start, alert, the alerts' labels expected then: [] = not firing)
FIRING: list[tuple[list[dict[str, str]], int, str, list[dict[str, str]]]] = [
    ([series("up", "0x10", instance="a")], 6, "KubeIntentWebhookDown", [{"severity": "critical"}]),
    ([series("up", "1x10", instance="a")], 6, "KubeIntentWebhookDown", []),
    (
        [series("kube_intent_opa_errors_total", "0x10")],
        6,
        "KubeIntentWebhookDown",
        [{"severity": "critical"}],
    ),  # no `up` at all: the target is not even scraped
    (
        [series("kube_intent_audit_write_failures_total", "0 0 0 1 1 1 1 1")],
        5,
        "KubeIntentAuditWriteFailures",
        [{"severity": "critical"}],
    ),
    (
        [series("kube_intent_audit_write_failures_total", "0x10")],
        8,
        "KubeIntentAuditWriteFailures",
        [],
    ),
    (
        [series("kube_intent_audit_records_dropped_total", "0 0 2 2 2 2")],
        4,
        "KubeIntentAuditRecordsDropped",
        [{"severity": "critical"}],
    ),
    (
        [series("kube_intent_audit_records_dropped_total", "3x10")],
        8,
        "KubeIntentAuditRecordsDropped",
        [],
    ),
    (
        [series("kube_intent_audit_queue_depth", "0+5x30")],
        25,
        "KubeIntentAuditBacklogGrowing",
        [{"severity": "warning"}],
    ),
    ([series("kube_intent_audit_queue_depth", "50x30")], 25, "KubeIntentAuditBacklogGrowing", []),
    (
        [series("kube_intent_tls_cert_expiry_timestamp_seconds", f"{7 * DAY}x70", pod="p")],
        61,
        "KubeIntentCertificateExpiringSoon",
        [{"severity": "warning", "job": JOB, "pod": "p"}],
    ),
    (
        [series("kube_intent_tls_cert_expiry_timestamp_seconds", f"{30 * DAY}x70", pod="p")],
        61,
        "KubeIntentCertificateExpiringSoon",
        [],
    ),
    (
        [series("kube_intent_opa_errors_total", "0+1x20")],
        10,
        "KubeIntentOPAErrors",
        [{"severity": "critical"}],
    ),
    (
        [
            series(
                "kube_intent_admission_requests_total",
                "0+100x30",
                webhook="validate",
                operation="CREATE",
                decision="allowed",
            ),
            series(
                "kube_intent_admission_requests_total",
                "0+20x30",
                webhook="validate",
                operation="CREATE",
                decision="denied",
            ),
            series("kube_intent_admission_internal_errors_total", "0+20x30", webhook="validate"),
        ],
        20,
        "KubeIntentAdmissionErrors",
        [{"severity": "warning"}],
    ),
    (
        [
            series(
                "kube_intent_admission_requests_total",
                "0+100x30",
                webhook="validate",
                operation="CREATE",
                decision="allowed",
            )
        ],
        20,
        "KubeIntentAdmissionErrors",
        [],
    ),
    (
        [
            series(BUCKET, "0x30", webhook="validate", le="0.01"),
            series(BUCKET, "0+60x30", webhook="validate", le="0.025"),
            series(BUCKET, "0+60x30", webhook="validate", le="+Inf"),
        ],
        25,
        "KubeIntentAdmissionLatencyHigh",
        [{"severity": "warning", "webhook": "validate"}],
    ),
    (
        [
            series(BUCKET, "0+60x30", webhook="validate", le="0.005"),
            series(BUCKET, "0+60x30", webhook="validate", le="0.01"),
            series(BUCKET, "0+60x30", webhook="validate", le="+Inf"),
        ],
        25,
        "KubeIntentAdmissionLatencyHigh",
        [],
    ),
    (
        [
            series(
                DENIALS,
                "0+1x360 370+10x20",
                webhook="validate",
                rule="model-allowed",
                namespace="ml-serving",
                agent="support-bot",
            )
        ],
        375,
        "KubeIntentDenialSpike",
        [{"severity": "warning", "namespace": "ml-serving"}],
    ),
    (
        [
            series(
                DENIALS,
                "0+1x400",
                webhook="validate",
                rule="model-allowed",
                namespace="ml-serving",
                agent="support-bot",
            )
        ],
        390,
        "KubeIntentDenialSpike",
        [],
    ),
]


@pytest.mark.parametrize(
    ("inputs", "minutes", "alert", "expected"),
    FIRING,
    ids=[
        "down-fires",
        "up-quiet",
        "not-scraped-fires",
        "audit-failure-fires",
        "audit-ok-quiet",
        "records-dropped-fires",
        "no-new-drops-quiet",
        "backlog-growing-fires",
        "backlog-flat-quiet",
        "cert-7d-fires",
        "cert-30d-quiet",
        "opa-errors-fire",
        "internal-errors-fire",
        "no-errors-quiet",
        "p99-25ms-fires",
        "p99-5ms-quiet",
        "denial-spike-fires",
        "steady-denials-quiet",
    ],
)
def test_alerts_fire_when_they_should_and_only_then(
    promtool: str,
    tmp_path: Path,
    inputs: list[dict[str, str]],
    minutes: int,
    alert: str,
    expected: list[dict[str, str]],
) -> None:
    # Annotations are checked by `check rules` (their templates) and above (their presence);
    # here only when an alert fires, so the expected alerts name only their labels.
    groups = rule_groups(*ENABLED)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    write_rules(tmp_path / "rules.yaml", groups)
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {
                        "eval_time": f"{minutes}m",
                        "alertname": alert,
                        "exp_alerts": [{"exp_labels": labels} for labels in expected],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = run(promtool, "test", "rules", str(tmp_path / "test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


# -- every metric named exists -----------------------------------------------------------------


def exported_names(exposition: str) -> set[str]:
    """Every sample name the families could expose (a labelled family shows none until used)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in suffixes.get(family.type, ("",))
    }


async def test_every_metric_the_dashboard_and_alerts_use_is_one_the_webhook_exports(
    make_client: AppClient,
) -> None:
    async with make_client() as client:
        for name in ("denied-model-allowed", "allowed-vllm-llama"):
            http = await client.post("/mutate", json=review(example_pod(name)))
            assert http.status_code == 200, http.text
        exposition = (await client.get("/metrics")).text

    exported = exported_names(exposition)
    # A denial was made: its series carries the labels the denial panels group by.
    denials = [
        sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "kube_intent_denials_total"
    ]
    assert [(s.labels, s.value) for s in denials] == [
        (
            {
                "webhook": "mutate",
                "rule": "model-allowed",
                "namespace": "ml-serving",
                "agent": "support-bot",
            },
            1.0,
        )
    ]

    dashboard_names = metric_names(dashboard_queries(json.loads(DASHBOARD.read_text())))
    alert_names = metric_names([rule["expr"] for rule in alerts()])
    assert (dashboard_names | alert_names) - PROMETHEUS_METRICS <= exported, sorted(
        (dashboard_names | alert_names) - PROMETHEUS_METRICS - exported
    )
    # And the other way round: every family the webhook exports has a panel.
    # (The text parser reads a counter's `_created` samples as a gauge family of their own.)
    families = {
        f.name
        for f in text_string_to_metric_families(exposition)
        if not f.name.endswith("_created")
    }
    shown = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in dashboard_names}
    assert families <= shown, sorted(families - shown)


@pytest.mark.e2e
def test_the_api_server_accepts_the_dashboard_and_the_rules(cluster: Cluster) -> None:
    """Server-side dry run of the whole render with both enabled (PrometheusRule: a stand-in CRD,
    so only its metadata is checked by the API server; promtool checks the rest above)."""
    api = cluster.api_client()
    crd = stand_in_crd("monitoring.coreos.com", "PrometheusRule", "prometheusrules")
    server_side_apply(api, crd)
    wait_crd_established(api, crd["metadata"]["name"])
    namespace = "chart-monitoring"
    ensure_namespace(api, namespace)
    objects = render(None, *ENABLED, namespace=namespace)
    assert {"ConfigMap", "PrometheusRule"} <= kinds(objects)
    failures = []
    for obj in objects:
        try:
            server_side_apply(api, obj, dry_run=True)
        except ApiException as exc:
            failures.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {api_error(exc).get('message')}"
            )
    assert not failures, "\n".join(failures)
