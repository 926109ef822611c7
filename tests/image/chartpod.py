"""Run the pod of a rendered Deployment with podman, the way the kubelet would run it.

Only what the chart uses is translated, and anything else fails loudly instead of being skipped
over: the pod's and containers' securityContext (user, group, fsGroup, read-only root
filesystem, dropped capabilities, no privilege escalation, non-root), secret, configMap,
emptyDir and persistentVolumeClaim volumes (host directories with the kubelet's modes and
fsGroup ownership), env values and the pod-name/namespace fieldRefs, args, memory limits,
native sidecars (init containers with restartPolicy Always, started and probed first), and
httpGet probes (startup, then readiness). The containers share one network namespace (a podman
pod, like a Kubernetes pod); their named ports are published on 127.0.0.1.

What a pod has beyond that (the ServiceAccount token and KUBERNETES_SERVICE_HOST, hence an API
server) is not there: the webhook runs without a cluster.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.cluster import free_port


class PodError(Exception):
    pass


@dataclass(frozen=True)
class Podman:
    binary: str
    env: Mapping[str, str]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            check=False,
        )
        if check and result.returncode != 0:
            raise PodError(f"podman {' '.join(args[:3])} ...: {result.stderr.strip()[-2000:]}")
        return result


@dataclass
class Container:
    name: str  # the chart's container name
    podman_name: str
    spec: dict[str, Any]
    sidecar: bool


@dataclass
class ChartPod:
    podman: Podman
    name: str
    namespace: str
    workdir: Path
    ca: Path | None
    ports: dict[str, int] = field(default_factory=dict)  # port name -> host port
    containers: list[Container] = field(default_factory=list)
    grace_seconds: int = 30

    def container(self, name: str) -> Container:
        (found,) = [c for c in self.containers if c.name == name]
        return found

    def url(self, port_name: str, scheme: str = "HTTPS") -> str:
        return f"{scheme.lower()}://127.0.0.1:{self.ports[port_name]}"

    def client(self, port_name: str, scheme: str = "HTTPS") -> httpx.Client:
        verify: ssl.SSLContext | bool = False
        if scheme == "HTTPS":
            assert self.ca is not None, "an HTTPS port needs the CA that signed its certificate"
            verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url(port_name, scheme), verify=verify, timeout=5)

    def logs(self, name: str, tail: int = 60) -> str:
        result = self.podman(
            "logs", "--tail", str(tail), self.container(name).podman_name, check=False
        )
        return (result.stdout + result.stderr).strip()

    def all_logs(self, tail: int = 60) -> str:
        return "\n".join(f"--- {c.name} ---\n{self.logs(c.name, tail)}" for c in self.containers)

    def inspect(self, name: str, template: str) -> str:
        return self.podman(
            "inspect", "--format", template, self.container(name).podman_name
        ).stdout.strip()

    def host_pid(self, name: str) -> int:
        return int(self.inspect(name, "{{.State.Pid}}"))

    def exec(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", self.container(name).podman_name, *argv, check=False)

    def stop(self) -> None:
        self.podman(
            "pod",
            "stop",
            "-t",
            str(self.grace_seconds),
            self.name,
            check=False,
            timeout=self.grace_seconds + 30,
        )
        self.podman("pod", "rm", "-f", self.name, check=False)


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    if not match:
        raise PodError(f"unsupported quantity {quantity!r}")
    return int(match[1]) * units.get(match[2] or "", 1)


def _write_files(
    directory: Path,
    files: Mapping[str, bytes],
    volume: dict[str, Any],
    mode: int,
    group: int | None,
) -> None:
    """A secret/configMap volume: one file a key (or `items`), the volume's defaultMode, owned
    by fsGroup as the kubelet does (as root; otherwise world-readable instead)."""
    directory.mkdir(parents=True)
    items = volume.get("items") or [{"key": k, "path": k} for k in files]
    for item in items:
        if item["key"] not in files:
            raise PodError(f"the volume wants key {item['key']!r}, which is not provided")
        path = directory / item["path"]
        path.write_bytes(files[item["key"]])
        file_mode = item.get("mode", mode)
        if os.geteuid() == 0 and group is not None:
            os.chown(path, 0, group)
        else:
            file_mode |= 0o444
        path.chmod(file_mode)
    directory.chmod(0o755)


def _writable_dir(directory: Path, group: int | None, mode: int) -> None:
    """emptyDir (0777) and persistent volumes (fsGroup, setgid): writable by the pod's user."""
    directory.mkdir(parents=True)
    if os.geteuid() == 0 and group is not None:
        os.chown(directory, 0, group)
        directory.chmod(mode | 0o2070)
    else:
        directory.chmod(0o777)


def _security_args(pod_sc: dict[str, Any], sc: dict[str, Any]) -> list[str]:
    merged = {**pod_sc, **sc}
    known = {
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "fsGroup",
        "seccompProfile",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "privileged",
        "capabilities",
    }
    unknown = set(merged) - known
    if unknown:
        raise PodError(f"securityContext fields not translated: {sorted(unknown)}")
    if merged.get("privileged"):
        raise PodError("privileged containers are not run by this test")
    user = merged.get("runAsUser")
    if merged.get("runAsNonRoot") and not user:
        raise PodError("runAsNonRoot needs a runAsUser here (the image is not consulted)")
    args: list[str] = []
    if user is not None:
        args += ["--user", f"{user}:{merged.get('runAsGroup', user)}"]
    if pod_sc.get("fsGroup") is not None:
        args += ["--group-add", str(pod_sc["fsGroup"])]
    if merged.get("readOnlyRootFilesystem"):
        # Nothing writable but the declared volumes (podman would add tmpfs on /tmp and /run).
        args += ["--read-only", "--read-only-tmpfs=false"]
    if merged.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    caps = merged.get("capabilities") or {}
    args += [f"--cap-drop={c}" for c in caps.get("drop", [])]
    args += [f"--cap-add={c}" for c in caps.get("add", [])]
    seccomp = (merged.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp != "RuntimeDefault":
        raise PodError(f"seccompProfile {seccomp} is not translated")
    return args


def _env_args(container: dict[str, Any], pod_name: str, namespace: str) -> list[str]:
    args: list[str] = []
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    for var in container.get("env") or []:
        if "value" in var:
            value = str(var["value"])
        else:
            path = (var.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
            if path not in fields:
                raise PodError(f"env {var['name']}: only value and {sorted(fields)} are translated")
            value = fields[path]
        args += ["--env", f"{var['name']}={value}"]
    if container.get("envFrom"):
        raise PodError("envFrom is not translated")
    return args


def _probe(pod: ChartPod, container: Container, kind: str) -> None:
    """Poll an httpGet probe until it succeeds, within its period x failureThreshold."""
    probe = container.spec.get(kind)
    if not probe:
        return
    get = probe["httpGet"]
    port = get["port"]
    if isinstance(port, int):
        (port,) = [p["name"] for p in container.spec["ports"] if p["containerPort"] == port]
    scheme = get.get("scheme", "HTTP")
    period = probe.get("periodSeconds", 10)
    budget = max(period * probe.get("failureThreshold", 3), 30)
    deadline = time.monotonic() + budget
    last = "no answer"
    while time.monotonic() < deadline:
        state = pod.inspect(container.name, "{{.State.Status}}")
        if state not in ("running", "created", "configured"):
            raise PodError(f"{container.name} is {state}:\n{pod.logs(container.name)}")
        try:
            with pod.client(port, scheme) as http:
                response = http.get(get["path"])
            if 200 <= response.status_code < 400:
                return
            last = f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(min(period, 1))
    raise PodError(
        f"{container.name} {kind} {get['path']} failed for {budget}s ({last}):\n"
        f"{pod.logs(container.name)}"
    )


def start(
    podman: Podman,
    deployment: dict[str, Any],
    *,
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, bytes]],
    workdir: Path,
    ca: Path | None,
    extra_mounts: Mapping[str, Sequence[tuple[Path, str]]] | None = None,
    name: str,
) -> ChartPod:
    """Start the Deployment's pod and wait until every container is started and ready.

    `configmaps` and `secrets` hold the objects the volumes name (by object name); `extra_mounts`
    adds read-only files per container name (what the test needs beyond the chart)."""
    template = deployment["spec"]["template"]
    spec = template["spec"]
    namespace = deployment["metadata"].get("namespace", "default")
    pod_sc = spec.get("securityContext") or {}
    fs_group = pod_sc.get("fsGroup")
    pod = ChartPod(
        podman,
        name,
        namespace,
        workdir,
        ca,
        grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
    )

    # Volumes -> host directories.
    volume_dirs: dict[str, Path] = {}
    for volume in spec.get("volumes") or []:
        vname, directory = volume["name"], workdir / "volumes" / volume["name"]
        if "secret" in volume:
            secret = volume["secret"]
            if secret["secretName"] not in secrets:
                raise PodError(f"volume {vname}: Secret {secret['secretName']} is not provided")
            _write_files(
                directory,
                secrets[secret["secretName"]],
                secret,
                secret.get("defaultMode", 0o644),
                fs_group,
            )
        elif "configMap" in volume:
            cm = volume["configMap"]
            if cm["name"] not in configmaps:
                raise PodError(f"volume {vname}: ConfigMap {cm['name']} is not provided")
            data = {k: v.encode() for k, v in configmaps[cm["name"]].items()}
            _write_files(directory, data, cm, cm.get("defaultMode", 0o644), fs_group)
        elif "emptyDir" in volume:
            if (volume["emptyDir"] or {}).get("medium"):
                raise PodError(f"volume {vname}: emptyDir medium is not translated")
            _writable_dir(directory, fs_group, 0o777)
        elif "persistentVolumeClaim" in volume:
            _writable_dir(directory, fs_group, 0o775)
        else:
            raise PodError(f"volume {vname}: type not translated: {sorted(volume)}")
        volume_dirs[vname] = directory

    containers = [
        (c, True) for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    if any(c.get("restartPolicy") != "Always" for c in spec.get("initContainers") or []):
        raise PodError("run-to-completion init containers are not translated")
    containers += [(c, False) for c in spec["containers"]]

    publish: list[str] = []
    for c, _ in containers:
        for port in c.get("ports") or []:
            host = free_port()
            pod.ports[port["name"]] = host
            publish += ["--publish", f"127.0.0.1:{host}:{port['containerPort']}"]
    podman("pod", "create", "--name", name, *publish)
    try:
        for c, sidecar in containers:
            container = Container(c["name"], f"{name}-{c['name']}", c, sidecar)
            pod.containers.append(container)
            args = ["run", "--detach", "--pod", name, "--name", container.podman_name]
            # Local images only: nothing is pulled from a registry.
            args.append("--pull=never")
            args += _security_args(pod_sc, c.get("securityContext") or {})
            args += _env_args(c, name, namespace)
            memory = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            if memory:
                args += ["--memory", str(_quantity_bytes(memory))]
            for mount in c.get("volumeMounts") or []:
                if mount.get("subPath"):
                    raise PodError("subPath mounts are not translated")
                volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
                read_only = mount.get("readOnly") or "secret" in volume or "configMap" in volume
                args += [
                    "--mount",
                    f"type=bind,source={volume_dirs[mount['name']]},"
                    f"destination={mount['mountPath']}" + (",ro=true" if read_only else ""),
                ]
            for source, destination in (extra_mounts or {}).get(c["name"], ()):
                args += ["--mount", f"type=bind,source={source},destination={destination},ro=true"]
            if c.get("command"):
                args += ["--entrypoint", c["command"][0]]
                argv = [*c["command"][1:], *(c.get("args") or [])]
            else:
                argv = list(c.get("args") or [])
            podman(*args, c["image"], *argv)
            # A native sidecar must be started before the next container starts.
            _probe(pod, container, "startupProbe")
        for container in pod.containers:
            _probe(pod, container, "readinessProbe")
    except BaseException:
        print(pod.all_logs())
        pod.stop()
        raise
    return pod
