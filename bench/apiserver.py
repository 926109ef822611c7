"""`bench.py --apiserver`: what the webhook adds to a pod CREATE through a real kube-apiserver.

The e2e tests' control plane (tests/support/cluster.py: etcd, kube-apiserver with mutual TLS to
webhooks, kube-controller-manager), the chart installed in webhook.url mode, the Agents of
examples/agents.yaml, and `kube-intent serve` with signing keys and the cluster's Agents, as the
e2e `keyed_webhook` fixture runs it. Then, one after the other, N CREATEs of distinct pods:
GPU pods through both webhooks; CPU pods, which the webhooks' matchConditions skip; the same
pods with the webhook configurations pointed at no-op webhooks (bench/floor.py, which allows
every pod at once: the API server's own cost of calling two webhooks); and, after deleting the
configurations, with no webhook at all. The webhook's own time per call (its decision log's
latencyMs) is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bench import pods
from bench.bench import build_tools, log, process, quantile, wait_ready
from tests.support.cluster import WEBHOOK_CLIENT_NAME, Cluster, free_port, running_cluster
from tests.support.kube import (
    ensure_namespace,
    ensure_service_account,
    server_side_apply,
    wait_crd_established,
    wait_until,
)
from tests.support.manifests import SERVICE_ACCOUNTS, load_yaml
from tests.support.paths import EXAMPLES
from tests.support.release import (
    RELEASE,
    RELEASE_NAMESPACE,
    install_url_mode,
    service_account_kubeconfig,
)
from tests.support.webhook_process import (
    Endpoint,
    WebhookServer,
    start_webhook,
    wait_until_called,
)
from webhook.tls import ensure_dev_certificates

NAMESPACE = "ml-serving"
CPU_SKIPPED = "CPU pod, skipped by matchConditions"
NOOP_GPU = "GPU pod, no-op webhooks"
WARM_UP = 20  # CREATEs of each kind before measuring (connections, caches)


@dataclass
class Case:
    case: str
    creates: int
    p50: float
    p90: float
    p99: float
    max: float
    errors: int


def submitted(i: int, *, gpu: bool) -> dict[str, Any]:
    """Pod i as the ReplicaSet controller submits it: the (defaulted) template, before the
    admission plugins add the token volume, the default tolerations and the priority. No
    ownerReferences: there is no such ReplicaSet, and the garbage collector would delete them."""
    pod = pods.pod(i)
    meta, spec = pod["metadata"], pod["spec"]
    for key in ("ownerReferences", "managedFields"):
        del meta[key]
    del pod["status"], spec["priority"], spec["serviceAccount"]
    spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("kube-api-access")]
    spec["tolerations"] = spec["tolerations"][:1]  # the GPU one, from the template
    container = spec["containers"][0]
    container["volumeMounts"] = [
        m for m in container["volumeMounts"] if not m["name"].startswith("kube-api-access")
    ]
    if not gpu:
        for section in container["resources"].values():
            del section["nvidia.com/gpu"]
        del spec["nodeSelector"], spec["tolerations"]
        meta["generateName"] = meta["generateName"].replace("llama", "cpu")
    return pod


def measure(cluster: Cluster, n: int, names: dict[bool, str], *, granted: bool) -> list[Case]:
    """N CREATEs of distinct GPU pods and N of CPU pods, one after the other, alternating (so
    that a drift in the machine's load hits both alike), timed at the client. `names`: the
    case name for GPU (True) and CPU pods; `granted`: whether a GPU pod must come out with a
    grant."""
    latencies: dict[bool, list[float]] = {True: [], False: []}
    errors = dict.fromkeys(latencies, 0)
    with cluster.http(timeout=30) as http:
        for i in range(-WARM_UP, n):
            for gpu in (True, False):
                body = json.dumps(submitted(i + WARM_UP, gpu=gpu)).encode()
                started = time.perf_counter()
                response = http.post(
                    f"/api/v1/namespaces/{NAMESPACE}/pods",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                elapsed = (time.perf_counter() - started) * 1000
                if i < 0:
                    continue
                latencies[gpu].append(elapsed)
                if not created(response, granted=gpu and granted):
                    errors[gpu] += 1
                    if errors[gpu] == 1:
                        log(f"{names[gpu]}: {response.status_code} {response.text[:500]}")
    return [summary(names[gpu], latencies[gpu], errors[gpu]) for gpu in (True, False)]


def summary(case: str, latencies: list[float], errors: int) -> Case:
    ordered = sorted(latencies) or [math.nan]
    p50, p90, p99 = (quantile(ordered, q) for q in (0.5, 0.9, 0.99))
    return Case(case, len(latencies), p50, p90, p99, ordered[-1], errors)


def created(response: httpx.Response, *, granted: bool) -> bool:
    """Stored, and mutated by the webhook exactly when it should have been (it adds a grant)."""
    if response.status_code != 201:
        return False
    annotations = response.json()["metadata"].get("annotations") or {}
    return ("kube-intent.io/grant" in annotations) == granted


def install(cluster: Cluster, work: Path) -> WebhookServer:
    """What the e2e fixtures do: namespaces, the chart (webhook.url), Agents, the webhook."""
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    for namespace, accounts in SERVICE_ACCOUNTS.items():
        ensure_namespace(api, namespace)
        for account in accounts:
            ensure_service_account(api, namespace, account)

    def default_account() -> bool:
        try:
            core.read_namespaced_service_account("default", NAMESPACE)
        except ApiException:
            return False
        return True

    wait_until("the default ServiceAccount", default_account)
    endpoint = Endpoint(work, free_port(), ensure_dev_certificates(work / "certs", ["127.0.0.1"]))
    log("helm install (webhook.url mode) ...")
    install_url_mode(cluster, endpoint, work / "helm")
    wait_crd_established(api, "agents.kube-intent.io")
    for agent in load_yaml(EXAMPLES / "agents.yaml"):
        server_side_apply(api, agent)
    keys = work / "keys"
    subprocess.run(
        [sys.executable, "-m", "webhook", "keys", "generate", str(keys)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    kubeconfig = service_account_kubeconfig(
        cluster, core, RELEASE_NAMESPACE, RELEASE, work / "kubeconfig"
    )
    assert cluster.pki is not None
    server = start_webhook(
        endpoint,
        f"--kubeconfig={kubeconfig}",
        f"--keys-dir={keys}",
        f"--client-ca={cluster.pki.webhook_client_ca}",
        f"--client-cert-name={WEBHOOK_CLIENT_NAME}",
    )
    wait_until_called(core)
    return server


def point_webhooks_at(cluster: Cluster, base_url: str) -> None:
    """Send the chart's webhook calls to `base_url` (same paths, CA and matchConditions)."""
    registration = client.AdmissionregistrationV1Api(cluster.api_client())
    for read, patch in (
        (
            registration.read_mutating_webhook_configuration,
            registration.patch_mutating_webhook_configuration,
        ),
        (
            registration.read_validating_webhook_configuration,
            registration.patch_validating_webhook_configuration,
        ),
    ):
        hooks = read(RELEASE).webhooks
        operations = [
            {
                "op": "replace",
                "path": f"/webhooks/{i}/clientConfig/url",
                "value": base_url + urlsplit(hook.client_config.url).path,
            }
            for i, hook in enumerate(hooks)
        ]
        patch(RELEASE, operations)


def remove_webhooks(cluster: Cluster) -> None:
    """Delete the chart's webhook configurations."""
    registration = client.AdmissionregistrationV1Api(cluster.api_client())
    registration.delete_mutating_webhook_configuration(RELEASE)
    registration.delete_validating_webhook_configuration(RELEASE)


def wait_until_not_called(cluster: Cluster, server: WebhookServer) -> None:
    """Until a GPU pod's CREATE no longer reaches kube-intent (configurations are cached)."""
    probe = submitted(0, gpu=True)

    def not_called() -> bool:
        before = server.calls()
        with cluster.http() as http:
            http.post(
                f"/api/v1/namespaces/{NAMESPACE}/pods?dryRun=All",
                json=probe,
            )
        return server.calls() == before

    wait_until("the API server to stop calling the webhooks", not_called, timeout=30)


def apiserver_bench(args: argparse.Namespace) -> None:
    build_tools("opa", "etcd", "helm", "kubernetes")
    n = args.creates
    with tempfile.TemporaryDirectory(prefix="kube-intent-bench-") as tmp:
        work = Path(tmp)
        log("starting etcd, kube-apiserver, kube-controller-manager ...")
        with running_cluster(work / "cluster") as cluster:
            server = install(cluster, work / "webhook")
            try:
                log(f"{n} CREATEs per case, one after the other ...")
                names = {True: "GPU pod, kube-intent webhooks", False: CPU_SKIPPED}
                cases = measure(cluster, n, names, granted=True)
                inside = webhook_latency(server.log)
                with noop_webhooks(cluster, server, work / "floor") as noop:
                    point_webhooks_at(cluster, noop)
                    wait_until_not_called(cluster, server)
                    names = {True: NOOP_GPU, False: "CPU pod, no-op webhooks (skipped)"}
                    cases += measure(cluster, n, names, granted=False)
                remove_webhooks(cluster)
                names = {True: "GPU pod, no webhook", False: "CPU pod, no webhook"}
                cases += measure(cluster, n, names, granted=False)
            finally:
                server.stop()
    report(cases, inside, args)


@contextmanager
def noop_webhooks(cluster: Cluster, server: WebhookServer, work: Path) -> Iterator[str]:
    """bench/floor.py on kube-intent's serving certificate and client CA: webhooks that allow
    every pod at once. Through them, the API server's own cost of calling two webhooks."""
    assert cluster.pki is not None
    port = free_port()
    certs = server.endpoint.certs
    argv = [
        *(sys.executable, str(Path(__file__).with_name("floor.py")), f"--port={port}"),
        *(f"--cert={certs.cert}", f"--key={certs.key}"),
        f"--client-ca={cluster.pki.webhook_client_ca}",
    ]
    work.mkdir(parents=True, exist_ok=True)
    with process(argv, work / "floor.log") as floor:
        base_url = f"https://127.0.0.1:{port}"
        verify = ssl.create_default_context(cafile=str(certs.ca_cert))
        wait_ready(base_url + "/mutate", verify, floor, any_status=True)
        yield base_url


def webhook_latency(log_file: Path) -> dict[str, Case]:
    """What the webhook itself took per call, warm-up included (its decision log's latencyMs:
    from the parsed review to the answer); the rest of what it adds to a CREATE is the API
    server calling it."""
    took: dict[str, list[float]] = {"mutate": [], "validate": []}
    for line in log_file.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("webhook") in took and "latencyMs" in entry:
            took[entry["webhook"]].append(float(entry["latencyMs"]))
    return {name: summary(f"inside kube-intent, /{name}", took[name], 0) for name in took}


def report(cases: list[Case], inside: dict[str, Case], args: argparse.Namespace) -> None:
    gpu, cpu, gpu_noop, _, gpu_bare, cpu_bare = cases
    differences = {
        "GPU pod: webhooks minus no webhook": (gpu.p50 - gpu_bare.p50, gpu.p99 - gpu_bare.p99),
        "GPU pod: no-op webhooks minus no webhook": (
            gpu_noop.p50 - gpu_bare.p50,
            gpu_noop.p99 - gpu_bare.p99,
        ),
        "GPU pod: webhooks minus no-op webhooks": (
            gpu.p50 - gpu_noop.p50,
            gpu.p99 - gpu_noop.p99,
        ),
        "CPU pod: matchConditions minus no webhook": (
            cpu.p50 - cpu_bare.p50,
            cpu.p99 - cpu_bare.p99,
        ),
    }
    if args.json:
        document = {
            "mode": "apiserver",
            "cases": [asdict(c) for c in cases],
            "inside_webhook_ms": {name: asdict(c) for name, c in inside.items()},
            "differences_ms": {
                k: {"p50": p50, "p99": p99} for k, (p50, p99) in differences.items()
            },
        }
        print(json.dumps(document, indent=2))
        return
    print(
        f"# pod CREATE through kube-apiserver, {args.creates} sequential CREATEs per case"
        " (distinct pods), latency at the client in ms"
    )
    print(f"{'case':<38} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'errors':>6}")
    for c in cases:
        print(f"{c.case:<38} {c.p50:7.1f} {c.p90:7.1f} {c.p99:7.1f} {c.max:7.1f} {c.errors:>6}")
    for c in inside.values():
        print(f"{c.case:<38} {c.p50:7.1f} {c.p90:7.1f} {c.p99:7.1f} {c.max:7.1f} {'':>6}")
    print()
    for name, (p50, p99) in differences.items():
        print(f"{name:<44} p50 {p50:+7.1f}   p99 {p99:+7.1f}")
