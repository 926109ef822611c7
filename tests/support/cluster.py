"""A throwaway Kubernetes control plane for end-to-end tests (envtest style).

etcd, kube-apiserver and kube-controller-manager run as local processes on 127.0.0.1, with a
PKI generated here by `cryptography`. There is no kubelet and no container runtime: pods are
admitted and stored, never run, which is all that admission webhooks need. The controller
manager is there so that Deployments create ReplicaSets, ReplicaSets create pods (through the
admission chain, so a denial becomes a FailedCreate event), and namespaces get their
``default`` ServiceAccount.

By hand::

    python -m tests.support.cluster up          # prints the KUBECONFIG, runs until Ctrl-C
    python -m tests.support.cluster up --dir /tmp/c --keep

Binaries come from ``.tools/bin`` (``scripts/tools.sh``) or PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.paths import REPO

if TYPE_CHECKING:
    # Only for annotations: the kubernetes client is imported when a test first asks for it.
    from kubernetes.client import ApiClient

TOOLS_BIN = REPO / ".tools" / "bin"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The subject of the client certificate the API server presents to webhooks.
WEBHOOK_CLIENT_NAME = "kube-apiserver-webhook-client"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"  # an allocation range only: nothing routes to it
CERT_DAYS = 7

# What the tests need from the controller manager; everything else (node lifecycle, volumes,
# cloud, CSR signing...) would only add start-up time and log noise without a kubelet.
CONTROLLERS = (
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "resourceclaim-controller",
    "clusterrole-aggregation-controller",
)

START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """The control plane did not come up; the message carries the components' log tails."""


def find_binary(name: str) -> str | None:
    """``.tools/bin/<name>`` (built by scripts/tools.sh), else PATH."""
    candidate = TOOLS_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if find_binary(name) is None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- PKI ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public: Path
    sa_private: Path
    # Mutual TLS from the API server to webhooks: a CA of its own (the cluster CA also signs
    # users' certificates, which must not pass for the API server) and the client certificate.
    webhook_client_ca: Path
    webhook_client_cert: Path
    webhook_client_key: Path


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def generate_pki(directory: Path) -> Pki:
    """A CA, the API server's serving certificate, an admin client certificate
    (O=system:masters) and the service-account token signing key pair."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(minutes=5)
    not_after = now + dt.timedelta(days=CERT_DAYS)

    def authority(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = authority("kube-intent-e2e-ca")

    def leaf(
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None,
        issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] = (ca_key, ca_cert),
    ) -> tuple[bytes, bytes]:
        issuer_key, issuer_cert = issuer
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(issuer_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _private_pem(key)

    service_ip = next(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE).hosts())
    serving_sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(service_ip),
        *(
            x509.DNSName(name)
            for name in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ),
    ]
    serving = leaf(_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, serving_sans)
    admin = leaf(
        _name("kube-intent-e2e-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, None
    )

    webhook_ca = authority("kube-intent-e2e-webhook-client-ca")
    webhook_client = leaf(
        _name(WEBHOOK_CLIENT_NAME), ExtendedKeyUsageOID.CLIENT_AUTH, None, issuer=webhook_ca
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Pki(
        ca_cert=_write(directory / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM)),
        ca_key=_write(directory / "ca.key", _private_pem(ca_key), 0o600),
        serving_cert=_write(directory / "apiserver.crt", serving[0]),
        serving_key=_write(directory / "apiserver.key", serving[1], 0o600),
        admin_cert=_write(directory / "admin.crt", admin[0]),
        admin_key=_write(directory / "admin.key", admin[1], 0o600),
        sa_public=_write(directory / "sa.pub", sa_public),
        sa_private=_write(directory / "sa.key", _private_pem(sa_key), 0o600),
        webhook_client_ca=_write(
            directory / "webhook-client-ca.crt",
            webhook_ca[1].public_bytes(serialization.Encoding.PEM),
        ),
        webhook_client_cert=_write(directory / "webhook-client.crt", webhook_client[0]),
        webhook_client_key=_write(directory / "webhook-client.key", webhook_client[1], 0o600),
    )


def admission_configuration(pki: Pki, directory: Path) -> Path:
    """The API server's AdmissionConfiguration: present the webhook client certificate to
    every webhook ("*" is the kubeconfig's default match)."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "users": [
            {
                "name": "*",
                "user": {
                    "client-certificate": str(pki.webhook_client_cert),
                    "client-key": str(pki.webhook_client_key),
                },
            }
        ],
    }
    kubeconfig_path = _write(directory / "webhook-kubeconfig.json", json.dumps(kubeconfig).encode())
    plugin = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig_path),
    }
    config = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [
            {"name": name, "configuration": plugin}
            for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
        ],
    }
    return _write(directory / "admission-configuration.json", json.dumps(config).encode())


# -- processes ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, even by SIGKILL (Linux prctl)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class Component:
    """One control-plane process, its output in ``<workdir>/logs/<name>.log``."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the developer's terminal reaches only the harness,
                # which then stops the components in order.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with status {self.process.returncode}; "
                f"last lines of {self.log}:\n{tail(self.log)}"
            )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def wait_for(
    what: str,
    predicate: Callable[[], bool],
    components: list[Component],
    timeout: float = START_TIMEOUT,
    interval: float = 0.2,
) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for component in components:
            component.check()
        try:
            if predicate():
                return
        except (httpx.HTTPError, OSError) as exc:
            last_error = f" (last error: {exc})"
        time.sleep(interval)
    logs = "\n".join(f"--- {c.name} ({c.log}):\n{tail(c.log)}" for c in components)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{last_error}\n{logs}")


# -- the cluster -------------------------------------------------------------------------------


class Cluster:
    """etcd + kube-apiserver + kube-controller-manager on loopback; ``start()``/``stop()``."""

    def __init__(self, workdir: Path | None = None, *, keep: bool = False) -> None:
        self._owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kube-intent-e2e-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.components: list[Component] = []
        self.pki: Pki | None = None
        self.api_port = 0
        self.startup_seconds: dict[str, float] = {}
        self._clients: list[Any] = []

    # The bits a test wants.
    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_cert(self) -> Path:
        assert self.pki is not None
        return self.pki.ca_cert

    def http(self, timeout: float = 10.0) -> httpx.Client:
        """A raw HTTPS client authenticated as the admin (system:masters)."""
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return httpx.Client(base_url=self.api_url, verify=context, timeout=timeout)

    def api_client(self) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` for the admin; closed when the cluster stops."""
        from tests.support.kube import client_from_kubeconfig

        client = client_from_kubeconfig(self.kubeconfig)
        self._clients.append(client)
        return client

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {c.name} ({c.log}):\n{tail(c.log, lines)}" for c in self.components)

    def env(self) -> dict[str, str]:
        """Environment for child processes (helm) that should talk to this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    # Lifecycle.
    def start(self) -> Cluster:
        missing = missing_binaries()
        if missing:
            raise ClusterError(
                f"missing binaries: {', '.join(missing)} (build them with scripts/tools.sh)"
            )
        self.logs.mkdir(exist_ok=True)
        try:
            started = time.monotonic()
            self.pki = generate_pki(self.workdir / "pki")
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
            self._start_controller_manager()
            self.startup_seconds["total"] = time.monotonic() - started
        except BaseException:
            self.stop(failed=True)
            raise
        return self

    def _start_etcd(self) -> None:
        started = time.monotonic()
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd = Component(
            "etcd",
            [
                str(find_binary("etcd")),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                "--initial-cluster-state=new",
                # A test cluster is thrown away: durability only costs time.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.logs / "etcd.log",
        )
        self.components.append(etcd)
        etcd.start()

        def healthy() -> bool:
            response = httpx.get(f"{self.etcd_url}/health", timeout=2)
            return response.status_code == 200 and response.json().get("health") == "true"

        wait_for("etcd /health", healthy, self.components)
        self.startup_seconds["etcd"] = time.monotonic() - started

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        pki = self.pki
        started = time.monotonic()
        self.api_port = free_port()
        apiserver = Component(
            "kube-apiserver",
            [
                str(find_binary("kube-apiserver")),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--admission-control-config-file={admission_configuration(pki, self.workdir)}",
                "--authorization-mode=Node,RBAC",
                # Webhook plugins are on by default in 1.34; listing them documents the need
                # (the flag adds to the defaults, it does not replace them).
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,"
                "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # The "kubernetes" Service's endpoints would be 127.0.0.1, which validation
                # refuses; nothing in the cluster needs to reach the API server through it.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
            self.logs / "kube-apiserver.log",
        )
        self.components.append(apiserver)
        apiserver.start()

        def ready() -> bool:
            with self.http(timeout=3) as http:
                return http.get("/readyz").status_code == 200

        wait_for("kube-apiserver /readyz", ready, self.components)
        self.startup_seconds["kube-apiserver"] = time.monotonic() - started

    def _write_kubeconfig(self) -> None:
        assert self.pki is not None
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": self.api_url,
                        "certificate-authority": str(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self.pki.admin_cert),
                        "client-key": str(self.pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self) -> None:
        assert self.pki is not None
        started = time.monotonic()
        manager = Component(
            "kube-controller-manager",
            [
                str(find_binary("kube-controller-manager")),
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                # Its serving only needs client certs; do not look for front-proxy settings.
                "--authentication-skip-lookup=true",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={self.pki.sa_private}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--v=1",
            ],
            self.logs / "kube-controller-manager.log",
        )
        self.components.append(manager)
        manager.start()

        # The serviceaccount controller creating "default" proves the manager is up and its
        # informers are synced.
        def synced() -> bool:
            with self.http(timeout=3) as http:
                response = http.get("/api/v1/namespaces/default/serviceaccounts/default")
                return response.status_code == 200

        wait_for("kube-controller-manager (default ServiceAccount)", synced, self.components)
        self.startup_seconds["kube-controller-manager"] = time.monotonic() - started

    def stop(self, *, failed: bool = False) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        for component in reversed(self.components):
            component.stop()
        if failed:
            print(self.log_tails(), file=sys.stderr)
        if self._owns_workdir and not self.keep and not failed:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.stop(failed=exc_type is not None)


@contextlib.contextmanager
def running_cluster(workdir: Path | None = None, *, keep: bool = False) -> Iterator[Cluster]:
    with Cluster(workdir, keep=keep) as cluster:
        yield cluster


# -- by hand -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.cluster", description="A local test control plane."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster and keep it running until Ctrl-C")
    up.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    up.add_argument("--keep", action="store_true", help="keep the work directory on exit")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    cluster = Cluster(args.dir, keep=args.keep or args.dir is not None)
    print(f"starting etcd, kube-apiserver, kube-controller-manager in {cluster.workdir} ...")
    try:
        cluster.start()
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.startup_seconds.items())
    print(
        f"ready ({timings})\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  API server: {cluster.api_url}\n"
        f"  logs:       {cluster.logs}\n"
        "No kubelet: pods are admitted and stored, never run. Ctrl-C stops everything.",
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            for component in cluster.components:
                if not component.running:
                    print(f"{component.name} exited; stopping", file=sys.stderr)
                    print(tail(component.log), file=sys.stderr)
                    stop.set()
    finally:
        print("stopping ...", flush=True)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
