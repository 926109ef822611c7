"""PolicyReports and openreports Reports written by `kube-intent serve` against the real API
server, with the upstream report CRDs (tests/data/crds/) installed and the chart's RBAC
(`reports.enabled=true`) as the webhook's only rights (docs/reports.md)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster
from tests.support.helm import CHART, helm
from tests.support.kube import (
    as_body,
    json_object,
    metadata_of,
    present,
    server_side_apply,
    wait_crd_established,
    wait_until,
)
from tests.support.manifests import load_yaml
from tests.support.paths import DATA, EXAMPLES
from tests.support.pods import deployment_of, quantities_as_strings
from tests.support.release import Release, can, serve_as_the_chart
from tests.support.webhook_process import WebhookServer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("example_agents")]

CRDS = DATA / "crds"
REPORT_APIS = {
    "policyreports.wgpolicyk8s.io": ("wgpolicyk8s.io", "v1alpha2", "policyreports"),
    "reports.openreports.io": ("openreports.io", "v1alpha1", "reports"),
}
CRD_FILES = {
    "policyreports.wgpolicyk8s.io": CRDS / "wgpolicyk8s.io_policyreports.yaml",
    "reports.openreports.io": CRDS / "openreports.io_reports.yaml",
}
NAMESPACE = "ml-serving"
MAX_RESULTS = 4
MANAGED_BY = {"app.kubernetes.io/managed-by": "kube-intent"}


def example(name: str) -> dict[str, Any]:
    [doc] = [d for d in load_yaml(EXAMPLES / "pods" / f"{name}.yaml") if d["kind"] == "Pod"]
    return quantities_as_strings(copy.deepcopy(doc))


def create_pod(core: client.CoreV1Api, name: str) -> tuple[str, bool]:
    """Create the example pod under a unique name: (its name, whether it was admitted)."""
    pod = example(name)
    pod["metadata"]["name"] = f"{pod['metadata']['name']}-{uuid.uuid4().hex[:6]}"
    try:
        core.create_namespaced_pod(NAMESPACE, as_body(pod))
    except ApiException as exc:
        if exc.status != 403:  # a denial; anything else is a broken test setup
            raise
        return pod["metadata"]["name"], False
    return pod["metadata"]["name"], True


def read_report(
    api: client.ApiClient, crd: str, namespace: str = NAMESPACE
) -> dict[str, Any] | None:
    group, version, plural = REPORT_APIS[crd]
    try:
        report = json_object(
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                group, version, namespace, plural, "kube-intent"
            )
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return report


def delete_report(api: client.ApiClient, crd: str, namespace: str = NAMESPACE) -> None:
    group, version, plural = REPORT_APIS[crd]
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            group, version, namespace, plural, "kube-intent"
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def results_on(report: dict[str, Any] | None, kind: str, name: str) -> list[dict[str, Any]]:
    return [
        r
        for r in (report or {}).get("results") or []
        if r["resources"][0]["kind"] == kind and r["resources"][0]["name"] == name
    ]


def install_crds(api: client.ApiClient) -> None:
    for crd in REPORT_APIS:
        [doc] = load_yaml(CRD_FILES[crd])
        server_side_apply(api, doc)
        wait_crd_established(api, crd)


def remove_crds(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    for crd in REPORT_APIS:
        try:
            extensions.delete_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def gone() -> bool:
        names = {metadata_of(c).name for c in extensions.list_custom_resource_definition().items}
        return not names & set(REPORT_APIS)

    wait_until("the report CRDs to be removed", gone, timeout=60)


@pytest.fixture(scope="module")
def reports_release(cluster: Cluster, release: Release) -> Release:
    """The module's release with `reports.enabled=true`: its ClusterRole gains the report rules."""
    helm(
        "upgrade",
        release.name,
        str(CHART),
        f"--namespace={release.namespace}",
        "--reuse-values",
        "--set=reports.enabled=true",
        "--timeout=60s",
        kubeconfig=cluster.kubeconfig,
        home=release.helm_home,
    )
    return release


def start_reporting(
    cluster: Cluster, core: client.CoreV1Api, release: Release, setting: str
) -> WebhookServer:
    """`kube-intent serve` with the chart's ServiceAccount and reports configured."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KUBE_INTENT_REPORTS", setting)
        env.setenv("KUBE_INTENT_REPORTS_MAX_RESULTS", str(MAX_RESULTS))
        env.setenv("KUBE_INTENT_REPORTS_INTERVAL_SECONDS", "0.5")
        return serve_as_the_chart(cluster, core, release)


def log_text(server: WebhookServer) -> str:
    return server.log.read_text(errors="replace")


def test_without_the_report_crds_nothing_is_written_and_admission_goes_on(
    api: client.ApiClient, cluster: Cluster, core: client.CoreV1Api, reports_release: Release
) -> None:
    remove_crds(api)
    server = start_reporting(cluster, core, reports_release, "auto")
    try:
        _, admitted = create_pod(core, "allowed-vllm-llama")
        assert admitted
        wait_until(
            "the webhook to say the report APIs are not served",
            lambda: log_text(server).count("is not served by the API server") == 2,
            timeout=20,
        )
        _, admitted = create_pod(core, "allowed-vllm-llama")
        assert admitted
    finally:
        server.stop()
    text = log_text(server)
    assert text.count("is not served by the API server") == 2  # once per kind, not per tick
    assert "could not write" not in text
    assert "report publishing" not in text
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def reporting(
    api: client.ApiClient, cluster: Cluster, core: client.CoreV1Api, reports_release: Release
) -> Iterator[WebhookServer]:
    install_crds(api)
    for crd in REPORT_APIS:
        delete_report(api, crd)
    server = start_reporting(cluster, core, reports_release, "policyreport,openreports")
    yield server
    server.stop()


@pytest.mark.parametrize("crd", list(REPORT_APIS), ids=["policyreport", "openreports"])
def test_a_denied_pod_of_a_deployment_is_a_fail_on_the_deployment(
    api: client.ApiClient, reporting: WebhookServer, crd: str
) -> None:
    template = example("denied-model-allowed")
    name = f"unapproved-{uuid.uuid4().hex[:6]}"
    deployment = deployment_of(template, name, NAMESPACE, keep_annotations=True)
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(NAMESPACE, as_body(deployment))
    try:
        results = wait_until(
            f"results on Deployment {name} in the {crd} report",
            lambda: results_on(read_report(api, crd), "Deployment", name),
            timeout=60,
        )
    finally:
        apps.delete_namespaced_deployment(name, NAMESPACE, propagation_policy="Background")
    by_policy = {r["policy"]: r for r in results}
    # The bundled image-digest-pinned rule runs in dryrun: a would-be denial, reported as warn.
    assert by_policy["image-digest-pinned"]["result"] == "warn"
    assert by_policy["image-digest-pinned"]["properties"]["enforcement"] == "dryrun"
    result = by_policy["model-allowed"]
    assert result["result"] == "fail"
    assert result["policy"] == result["rule"] == "model-allowed"
    assert result["source"] == "kube-intent"
    assert result["severity"] == "high"
    assert "deepseek-ai/DeepSeek-R1" in result["message"]
    assert result["resources"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
            "namespace": NAMESPACE,
            "uid": metadata_of(created).uid,
        }
    ]
    properties = result["properties"]
    assert properties["agent"] == "support-bot"
    assert properties["auditRecordId"].isdigit()
    assert properties["intentDigest"]
    assert properties["policyRevision"]
    assert result["timestamp"]["seconds"] > 0
    # No result of the report names the ReplicaSet or a pod of this Deployment.
    report = read_report(api, crd)
    assert report is not None
    assert report["metadata"]["labels"] == MANAGED_BY
    assert not [r for r in report["results"] if r["resources"][0]["name"].startswith(f"{name}-")]


@pytest.mark.parametrize("under_cronjob", [False, True], ids=["job", "job-of-a-cronjob"])
def test_a_denied_pod_of_a_job_is_reported_on_the_job_or_its_cronjob(
    api: client.ApiClient, reporting: WebhookServer, under_cronjob: bool
) -> None:
    template = example("denied-model-allowed")
    name = f"eval-{uuid.uuid4().hex[:6]}"
    batch = client.BatchV1Api(api)
    pod_template = {
        "metadata": {
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
        },
        "spec": {**template["spec"], "restartPolicy": "Never"},
    }
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"backoffLimit": 0, "template": pod_template},
    }
    expected = ("Job", name)
    if under_cronjob:
        # No CronJob controller runs here: the Job it would have made is made by hand, owned
        # by it as the controller would own it.
        cronjob = batch.create_namespaced_cron_job(
            NAMESPACE,
            as_body(
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "metadata": {"name": f"{name}-nightly", "namespace": NAMESPACE},
                    "spec": {
                        "schedule": "0 3 * * *",
                        "suspend": True,
                        "jobTemplate": {"spec": job["spec"]},
                    },
                }
            ),
        )
        job["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": metadata_of(cronjob).name,
                "uid": metadata_of(cronjob).uid,
                "controller": True,
            }
        ]
        expected = ("CronJob", present(metadata_of(cronjob).name, "CronJob name"))
    batch.create_namespaced_job(NAMESPACE, as_body(job))
    try:
        results = wait_until(
            f"results on {expected[0]} {expected[1]} in the PolicyReport",
            lambda: results_on(read_report(api, "policyreports.wgpolicyk8s.io"), *expected),
            timeout=60,
        )
    finally:
        batch.delete_namespaced_job(name, NAMESPACE, propagation_policy="Background")
        if under_cronjob:
            batch.delete_namespaced_cron_job(expected[1], NAMESPACE)
    assert {(r["policy"], r["result"]) for r in results} >= {("model-allowed", "fail")}


def test_an_allowed_pod_is_a_pass(
    api: client.ApiClient, core: client.CoreV1Api, reporting: WebhookServer
) -> None:
    name, admitted = create_pod(core, "allowed-vllm-llama")
    assert admitted
    for crd in REPORT_APIS:

        def on_the_pod(crd: str = crd) -> list[dict[str, Any]]:
            return results_on(read_report(api, crd), "Pod", name)

        results = wait_until(f"results on Pod {name} in the {crd} report", on_the_pod, timeout=30)
        outcomes = {(r["policy"], r["rule"], r["result"]) for r in results}
        # The decision passed; the bundled dryrun rule's would-be denial rides along as a warn.
        assert outcomes == {
            ("kube-intent", "admission", "pass"),
            ("image-digest-pinned", "image-digest-pinned", "warn"),
        }
        [passed] = [r for r in results if r["result"] == "pass"]
        assert passed["properties"]["pod"] == f"{NAMESPACE}/{name}"


def summaries_match(report: dict[str, Any]) -> bool:
    counts = {key: 0 for key in ("pass", "fail", "warn", "error", "skip")}
    for result in report["results"]:
        counts[result["result"]] += 1
    return bool(report["summary"] == counts)


def test_the_report_is_pruned_to_its_bound_newest_kept(
    api: client.ApiClient, core: client.CoreV1Api, reporting: WebhookServer
) -> None:
    names = []
    for _ in range(MAX_RESULTS + 2):
        name, admitted = create_pod(core, "denied-model-allowed")
        assert not admitted
        names.append(name)
    # Each denial gives two results (model-allowed fail, image-digest-pinned dryrun warn), so
    # the bound keeps the newest MAX_RESULTS / 2 pods, newest first.
    kept = MAX_RESULTS // 2
    newest = list(reversed(names[-kept:]))
    for crd in REPORT_APIS:

        def pruned(crd: str = crd) -> dict[str, Any] | None:
            report = read_report(api, crd)
            found = [r["resources"][0]["name"] for r in (report or {}).get("results") or []]
            return report if list(dict.fromkeys(found)) == newest else None

        report = wait_until(f"the {crd} report to hold the newest {kept} pods", pruned, 30)
        assert len(report["results"]) == MAX_RESULTS
        assert summaries_match(report)
        assert report["summary"]["fail"] == report["summary"]["warn"] == kept
    openreport = read_report(api, "reports.openreports.io")
    assert openreport is not None
    assert openreport["configuration"] == {"limits": {"maxResults": MAX_RESULTS}}
    assert openreport["source"] == "kube-intent"


def comparable(report: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    return [
        (r["resources"][0]["name"], r["policy"], r["result"], r["properties"]["auditRecordId"])
        for r in (report or {}).get("results") or []
    ]


def test_a_restart_rebuilds_the_reports_from_the_audit_store(
    api: client.ApiClient,
    cluster: Cluster,
    core: client.CoreV1Api,
    reports_release: Release,
    reporting: WebhookServer,
) -> None:
    before = {crd: comparable(read_report(api, crd)) for crd in REPORT_APIS}
    assert all(before.values())
    reporting.stop()
    for crd in REPORT_APIS:
        delete_report(api, crd)
    restarted = start_reporting(cluster, core, reports_release, "policyreport,openreports")
    # The module fixture stops this one, as it would the first.
    reporting.process = restarted.process
    for crd in REPORT_APIS:

        def rebuilt(crd: str = crd) -> bool:
            return comparable(read_report(api, crd)) == before[crd]

        wait_until(f"the {crd} report rebuilt from the store", rebuilt, timeout=30)


def test_a_report_kube_intent_did_not_create_is_left_alone(
    api: client.ApiClient, core: client.CoreV1Api, reporting: WebhookServer
) -> None:
    crd = "policyreports.wgpolicyk8s.io"
    group, version, plural = REPORT_APIS[crd]
    objects = client.CustomObjectsApi(api)
    delete_report(api, crd)
    foreign = {
        "apiVersion": f"{group}/{version}",
        "kind": "PolicyReport",
        "metadata": {"name": "kube-intent", "namespace": NAMESPACE},
        "results": [],
        "summary": {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0},
    }
    objects.create_namespaced_custom_object(group, version, NAMESPACE, plural, foreign)
    try:
        name, _ = create_pod(core, "denied-model-allowed")
        # The openreports report (ours) shows the denial, so the publisher has seen it...
        wait_until(
            "the denial in the openreports report",
            lambda: results_on(read_report(api, "reports.openreports.io"), "Pod", name),
            timeout=30,
        )
        wait_until(
            "the publisher to say the PolicyReport is not its own",
            lambda: "was not created by kube-intent" in log_text(reporting),
            timeout=30,
        )
        # ...and left the PolicyReport someone else made as it was.
        report = read_report(api, crd)
        assert report is not None
        assert report["results"] == []
        assert "labels" not in report["metadata"]
    finally:
        delete_report(api, crd)


@pytest.mark.parametrize(
    ("verb", "group", "resource", "allowed"),
    [
        ("get", "wgpolicyk8s.io", "policyreports", True),
        ("create", "wgpolicyk8s.io", "policyreports", True),
        ("update", "openreports.io", "reports", True),
        ("get", "apps", "replicasets", True),
        ("get", "batch", "jobs", True),
        ("delete", "wgpolicyk8s.io", "policyreports", False),
        ("list", "openreports.io", "reports", False),
        ("update", "apps", "deployments", False),
        ("get", "apps", "deployments", False),
    ],
    ids=lambda v: str(v),
)
def test_the_chart_grants_the_publisher_what_it_uses_and_no_more(
    api: client.ApiClient,
    reports_release: Release,
    verb: str,
    group: str,
    resource: str,
    allowed: bool,
) -> None:
    assert can(api, reports_release, verb, group, resource, NAMESPACE) is allowed
