"""The images scripts/image.sh builds, run as the chart runs them (marker `image`).

scripts/image.sh builds the webhook and OPA images (or finds them up to date), helm renders the
chart with them, and tests/image/chartpod.py runs the Deployment's pod with podman as the kubelet
would: OPA as a native sidecar in the pod's network namespace (started empty; the webhook
pushes the policies), the webhook serving TLS from a mounted Secret signed by a test CA, both
as uid 65532 with a read-only root filesystem, no capability and no privilege escalation,
writing only to their volumes. Pods are then admitted and denied through it. The one addition
to the chart is the example agents file (--agents): there is no API server to hold Agents.

Without podman or mmdebstrap the tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from identity.grants import GRANT_ANNOTATION
from identity.keys import generate_keys
from tests.image import chartpod
from tests.image.chartpod import ChartPod, Podman
from tests.support.admission import apply_patch, review
from tests.support.helm import find_helm, helm
from tests.support.manifests import example_pod
from tests.support.paths import EXAMPLES, REPO
from webhook.tls import ensure_dev_certificates

pytestmark = pytest.mark.image

CHART = REPO / "charts" / "kube-intent"
RELEASE = "kube-intent"
NAMESPACE = "kube-intent"
TLS_SECRET = "kube-intent-test-tls"
KEYS_SECRET = "kube-intent-test-signing-keys"
AGENTS_PATH = "/etc/kube-intent/agents/agents.yaml"
# A cold build (Debian packages, wheels, OPA from its Go module) takes minutes, a warm one seconds.
BUILD_TIMEOUT = 1800
# Uncompressed, as `podman image inspect` counts. The webhook is about 145 MB (Python and its
# libraries 50, the venv 95); the OPA image is its 43 MB binary.
WEBHOOK_BUDGET_MB = 200
OPA_BUDGET_MB = 64


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(**missing_reasons: bool) -> None:
    """Skip (or, under CI=true, fail) naming what is missing."""
    missing = [name for name, absent in missing_reasons.items() if absent]
    if not missing:
        return
    reason = (
        f"missing {', '.join(missing)}: apt-get install -y podman runc mmdebstrap skopeo "
        "(Debian packages); helm comes from scripts/tools.sh"
    )
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Images:
    podman: Podman
    webhook: str
    opa: str
    env: dict[str, str]
    build_log: str

    def size(self, ref: str) -> int:
        return int(self.podman("image", "inspect", "--format", "{{.Size}}", ref).stdout)

    def inspect(self, ref: str) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.podman("image", "inspect", ref).stdout)[0]
        return info


@pytest.fixture(scope="module")
def images() -> Images:
    podman = shutil.which("podman")
    require(
        podman=podman is None,
        mmdebstrap=shutil.which("mmdebstrap") is None,
        helm=find_helm() is None,
    )
    assert podman is not None
    result = subprocess.run(
        [str(REPO / "scripts" / "image.sh"), "build"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/image.sh failed:\n{result.stderr[-6000:]}", pytrace=False)
    summary = [line for line in result.stderr.splitlines() if line.startswith("[image]")]
    print("\n" + "\n".join(summary), file=sys.stderr)
    env = dict(
        line.split("=", 1)
        for line in (REPO / "dist" / "images.env").read_text().splitlines()
        if "=" in line
    )
    return Images(
        Podman(podman, {"CONTAINERS_CONF": env["CONTAINERS_CONF"]}),
        env["WEBHOOK_IMAGE"],
        env["OPA_IMAGE"],
        env,
        result.stderr,
    )


def render(images: Images, ca_pem: str, workdir: Path) -> list[dict[str, Any]]:
    """The chart as an operator would install it with these images and their own TLS Secret."""
    webhook_repo, webhook_tag = images.webhook.rsplit(":", 1)
    opa_repo, opa_tag = images.opa.rsplit(":", 1)
    values = {
        "image": {"repository": webhook_repo, "tag": webhook_tag, "pullPolicy": "Never"},
        "opa": {"image": {"repository": opa_repo, "tag": opa_tag, "pullPolicy": "Never"}},
        "tls": {"mode": "secret", "existingSecret": TLS_SECRET, "caBundle": ca_pem},
        "signingKeys": {"existingSecret": KEYS_SECRET},
        "webhook": {"extraArgs": [f"--agents={AGENTS_PATH}"]},
    }
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = helm(
        "template",
        RELEASE,
        str(CHART),
        f"--namespace={NAMESPACE}",
        f"--values={values_file}",
        home=workdir / "helm",
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


@pytest.fixture(scope="module")
def pod(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartPod]:
    workdir = tmp_path_factory.mktemp("image-pod")
    certs = ensure_dev_certificates(workdir / "certs", ["127.0.0.1"])
    generate_keys(workdir / "keys")
    objects = render(images, certs.ca_cert.read_text(), workdir)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    configmaps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    tls = {"tls.crt": certs.cert, "tls.key": certs.key, "ca.crt": certs.ca_cert}
    keys = {p.name: p for p in (workdir / "keys").glob("*.pem")}
    name = f"kube-intent-image-test-{secrets.token_hex(4)}"
    started = chartpod.start(
        images.podman,
        deployment,
        configmaps=configmaps,
        secrets={
            TLS_SECRET: {k: p.read_bytes() for k, p in tls.items()},
            KEYS_SECRET: {k: p.read_bytes() for k, p in keys.items()},
        },
        workdir=workdir,
        ca=certs.ca_cert,
        extra_mounts={"webhook": [(EXAMPLES / "agents.yaml", AGENTS_PATH)]},
        name=name,
    )
    try:
        yield started
    finally:
        started.stop()


def post(pod: ChartPod, path: str, body: dict[str, Any]) -> dict[str, Any]:
    with pod.client("https") as http:
        response = http.post(path, json=body)
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{pod.all_logs()}"
    answer: dict[str, Any] = response.json()["response"]
    return answer


# -- the images --------------------------------------------------------------------------------


def test_images_are_stamped_with_source_date_epoch(images: Images) -> None:
    epoch = int(images.env["SOURCE_DATE_EPOCH"])
    for ref in (images.webhook, images.opa):
        created = images.podman(
            "image", "inspect", "--format", "{{.Created.Unix}}", ref
        ).stdout.strip()
        assert int(created) == epoch, ref


def test_images_run_as_nonroot_by_default(images: Images) -> None:
    for ref in (images.webhook, images.opa):
        assert images.inspect(ref)["Config"]["User"] == "65532:65532", ref


def test_images_are_lean(images: Images) -> None:
    webhook, opa = images.size(images.webhook), images.size(images.opa)
    print(f"\nwebhook image {webhook / 1e6:.1f} MB, OPA image {opa / 1e6:.1f} MB", file=sys.stderr)
    assert webhook < WEBHOOK_BUDGET_MB * 1e6, f"{images.webhook}: {webhook / 1e6:.1f} MB"
    assert opa < OPA_BUDGET_MB * 1e6, f"{images.opa}: {opa / 1e6:.1f} MB"


# Imports every module of the project, then resolves every class the kept kubernetes API groups
# and the project's sources name, and the models those name in turn (what ApiClient deserializes
# responses into), and deserializes a real pod: the trimmed client must lack nothing it uses.
TRIM_CHECK = r"""
import importlib, inspect, json, pkgutil, re, sys
import identity, webhook
for package in (webhook, identity):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
from kubernetes import client
from kubernetes.client import api
names = set(dir(client))
word = re.compile(r"\b([A-Z][A-Za-z0-9]*)\b")
todo = []
kept = [m.name for m in pkgutil.iter_modules(api.__path__)]
for module in kept:
    source = inspect.getsource(importlib.import_module("kubernetes.client.api." + module))
    todo += word.findall(source)
for package in (webhook, identity):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith("__main__"):
            todo += re.findall(r"client\.(\w+)", inspect.getsource(sys.modules[module.name]))
resolved = set()
while todo:
    name = todo.pop()
    if name in resolved or name not in names:
        continue
    resolved.add(name)
    value = getattr(client, name)
    for type_name in getattr(value, "openapi_types", {}).values():
        todo += word.findall(type_name)
pod = client.ApiClient()._ApiClient__deserialize(json.loads(sys.argv[1]), "V1Pod")
assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1", pod
print(json.dumps({"api_modules": sorted(kept), "resolved": len(resolved)}))
"""


def test_trimmed_kubernetes_client_has_all_the_webhook_uses(images: Images) -> None:
    example = example_pod("allowed-vllm-llama")
    example["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1"
    result = images.podman(
        "run",
        "--rm",
        "--pull=never",
        "--read-only",
        "--network=none",
        "--entrypoint=/opt/kube-intent/bin/python",
        images.webhook,
        "-c",
        TRIM_CHECK,
        json.dumps(example),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert "core_v1_api" in report["api_modules"]
    assert report["resolved"] > 100, report


# -- the pod, as the chart runs it ---------------------------------------------------------------


def test_webhook_is_healthy_and_ready_over_tls(pod: ChartPod) -> None:
    with pod.client("https") as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text


def test_opa_sidecar_serves_health_on_its_diagnostic_port(pod: ChartPod) -> None:
    with pod.client("opa-diag", "HTTP") as http:
        assert http.get("/health").status_code == 200


def admit(pod: ChartPod, example: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the API server does: /mutate, apply its patch, then /validate the result."""
    mutation = post(pod, "/mutate", review(example))
    mutated = example
    if mutation.get("patch"):
        mutated = apply_patch(example, json.loads(base64.b64decode(mutation["patch"])))
    return mutation, post(pod, "/validate", review(mutated))


def test_allowed_pod_is_admitted_with_a_grant(pod: ChartPod) -> None:
    mutation, validation = admit(pod, example_pod("allowed-vllm-llama"))
    assert mutation["allowed"] is True, mutation
    patched = apply_patch(
        example_pod("allowed-vllm-llama"), json.loads(base64.b64decode(mutation["patch"]))
    )
    # Signed with the keys from the mounted Secret, verified again by /validate.
    assert GRANT_ANNOTATION in patched["metadata"]["annotations"]
    assert validation["allowed"] is True, validation


def test_denied_pod_is_refused_by_the_policy(pod: ChartPod) -> None:
    _, validation = admit(pod, example_pod("denied-model-allowed"))
    assert validation["allowed"] is False, validation
    message = validation["status"]["message"]
    assert "[model-allowed]" in message, message
    assert "deepseek-ai/DeepSeek-R1" in message, message


def test_pod_without_the_grant_is_refused(pod: ChartPod) -> None:
    """/validate alone: an allowed pod that skipped kube-intent's mutating webhook."""
    validation = post(pod, "/validate", review(example_pod("allowed-vllm-llama")))
    assert validation["allowed"] is False
    assert "[grant-integrity]" in validation["status"]["message"]


def test_decisions_are_audited_on_the_volume(pod: ChartPod) -> None:
    post(pod, "/validate", review(example_pod("denied-model-allowed")))
    audit = pod.workdir / "volumes" / "audit"
    files = {p.name for p in audit.iterdir()}
    assert "audit.db" in files, files
    assert (audit / "audit.db").stat().st_size > 0


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _in_container(pid: int, kind: str, host_ids: str) -> list[int]:
    """Status's Uid/Gid (real, effective, saved, fs) as the container sees them (its id map)."""
    ranges = [
        [int(n) for n in line.split()]
        for line in Path(f"/proc/{pid}/{kind}_map").read_text().splitlines()
    ]
    ids = []
    for host_id in map(int, host_ids.split()):
        inside = [i + host_id - o for i, o, n in ranges if o <= host_id < o + n]
        ids.append(inside[0] if inside else -1)
    return ids


def _root_mount_options(pid: int) -> set[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return set(fields[5].split(","))
    raise AssertionError(f"no root mount for pid {pid}")


@pytest.mark.parametrize("container", ["opa", "webhook"])
def test_containers_run_confined(pod: ChartPod, container: str) -> None:
    """What the kernel enforces on each container's process, read from /proc."""
    pid = pod.host_pid(container)
    status = _status(pid)
    assert _in_container(pid, "uid", status["Uid"]) == [65532] * 4, status["Uid"]
    assert _in_container(pid, "gid", status["Gid"]) == [65532] * 4, status["Gid"]
    assert int(status["CapEff"], 16) == 0, status["CapEff"]
    assert int(status["CapPrm"], 16) == 0, status["CapPrm"]
    assert int(status["CapBnd"], 16) == 0, status["CapBnd"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2", "seccomp filter (RuntimeDefault)"
    groups = _in_container(pid, "gid", status["Groups"])
    assert 65532 in groups, f"fsGroup as a supplementary group: {groups}"
    assert "ro" in _root_mount_options(pid)


WRITE_CHECK = r"""
import json, os, tempfile
result = {}
state = "/var/lib/kube-intent"
for directory in ("/", "/opt/kube-intent", "/etc", state, state + "/audit", "/tmp"):
    try:
        with tempfile.NamedTemporaryFile(dir=directory):
            result[directory] = "writable"
    except OSError as exc:
        result[directory] = os.strerror(exc.errno)
print(json.dumps(result))
"""


def test_webhook_writes_only_to_its_volumes(pod: ChartPod) -> None:
    result = pod.exec("webhook", "/opt/kube-intent/bin/python", "-c", WRITE_CHECK)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "/": "Read-only file system",
        "/opt/kube-intent": "Read-only file system",
        "/etc": "Read-only file system",
        "/var/lib/kube-intent": "writable",
        "/var/lib/kube-intent/audit": "writable",
        "/tmp": "writable",
    }


def test_webhook_image_has_no_shell(pod: ChartPod) -> None:
    result = pod.exec("webhook", "/bin/sh", "-c", "true")
    assert result.returncode != 0
