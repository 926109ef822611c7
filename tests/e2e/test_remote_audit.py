"""`kube-intent audit --server`: an auditor reads the trail of a running webhook with their own
kubeconfig, against the real API server's TokenReview and SubjectAccessReview.

The auditor is a ServiceAccount bound to the chart's `kube-intent-auditor` ClusterRole (as
installed by Helm); the outsider is a ServiceAccount bound to nothing. What the API returns is
compared with what `--db` reads from the webhook's own SQLite file: the same records, page after
page.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster
from tests.support.kube import as_body, ensure_service_account, wait_until
from tests.support.pods import create
from tests.support.release import Release, service_account_kubeconfig
from tests.support.webhook_process import WebhookServer
from webhook.audit_cli import audit

pytestmark = pytest.mark.e2e

NAMESPACE = "ml-serving"
AUDITOR_ROLE = "kube-intent-auditor"  # the chart's ClusterRole for release "kube-intent"
DENIED = ["denied-model-allowed", "denied-intent-required", "denied-tools-allowed"]


@dataclass(frozen=True)
class Reader:
    name: str  # the ServiceAccount, and the kubeconfig context
    kubeconfig: Path
    token: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{NAMESPACE}:{self.name}"


def reader(cluster: Cluster, core: client.CoreV1Api, directory: Path, name: str) -> Reader:
    ensure_service_account(core.api_client, NAMESPACE, name)
    path = service_account_kubeconfig(cluster, core, NAMESPACE, name, directory / f"{name}.yaml")
    [user] = yaml.safe_load(path.read_text())["users"]
    return Reader(name, path, user["user"]["token"])


@pytest.fixture(scope="module")
def trail(webhook: WebhookServer, core: client.CoreV1Api) -> Path:
    """Denials and an admission recorded by the module's webhook; its SQLite file."""
    for example in DENIED:
        with pytest.raises(ApiException):
            create(core, example)
    create(core, "allowed-vllm-llama")
    return webhook.state_dir / "audit.db"


@pytest.fixture(scope="module")
def auditor(
    cluster: Cluster,
    core: client.CoreV1Api,
    api: client.ApiClient,
    release: Release,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Reader]:
    """A ServiceAccount bound to the chart's auditor ClusterRole, and nothing else."""
    me = reader(
        cluster, core, tmp_path_factory.mktemp("auditor"), f"auditor-{secrets.token_hex(2)}"
    )
    rbac = client.RbacAuthorizationV1Api(api)
    binding = f"{me.name}-{AUDITOR_ROLE}"
    rbac.create_cluster_role_binding(
        as_body(
            {
                "metadata": {"name": binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": AUDITOR_ROLE,
                },
                "subjects": [{"kind": "ServiceAccount", "name": me.name, "namespace": NAMESPACE}],
            }
        )
    )
    yield me
    rbac.delete_cluster_role_binding(binding)


@pytest.fixture(scope="module")
def outsider(
    cluster: Cluster, core: client.CoreV1Api, tmp_path_factory: pytest.TempPathFactory
) -> Reader:
    return reader(
        cluster, core, tmp_path_factory.mktemp("outsider"), f"outsider-{secrets.token_hex(2)}"
    )


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(audit, [str(a) for a in args])


def remote(webhook: WebhookServer, who: Reader, *args: str) -> Result:
    """`kube-intent audit ARGS --server ... --kubeconfig ...` as `who`."""
    result = invoke(
        *args,
        "--server",
        webhook.url,
        "--ca-file",
        webhook.ca,
        "--kubeconfig",
        who.kubeconfig,
        "--context",
        who.name,
    )
    assert who.token not in result.output  # never printed, whatever happened
    return result


def local(db: Path, *args: str) -> Result:
    result = invoke(*args, "--db", db)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def authorised(webhook: WebhookServer, trail: Path, auditor: Reader) -> Reader:
    wait_until(
        "RBAC to let the auditor read the trail",
        lambda: remote(webhook, auditor, "list", "--limit", "1").exit_code == 0,
        timeout=20,
    )
    return auditor


@pytest.mark.parametrize(
    ("args", "chunk"),
    [
        pytest.param(("export",), "2", id="export-in-pages-of-2"),
        pytest.param(("export", "-o", "csv"), "500", id="export-csv"),
        pytest.param(("list", "--denied", "-o", "json"), "1", id="denied-in-pages-of-1"),
        pytest.param(("list", "--limit", "3"), "2", id="limit-across-pages"),
        pytest.param(("list", "--rule", "model-allowed", "-o", "wide"), "500", id="rule-wide"),
        pytest.param(("list", "--allowed", "-o", "yaml"), "500", id="allowed-yaml"),
        pytest.param(("stats", "-o", "json"), "2", id="stats-json"),
        pytest.param(("verify",), "2", id="verify-in-pages-of-2"),
    ],
)
def test_the_api_returns_exactly_what_the_store_holds(
    webhook: WebhookServer, trail: Path, authorised: Reader, args: tuple[str, ...], chunk: str
) -> None:
    through_api = remote(webhook, authorised, *args, "--chunk-size", chunk)
    assert through_api.exit_code == 0, through_api.output
    assert through_api.stdout == local(trail, *args).stdout


def test_denials_are_listed_with_their_rules(
    webhook: WebhookServer, trail: Path, authorised: Reader
) -> None:
    result = remote(webhook, authorised, "list", "--denied", "-o", "json", "--chunk-size", "2")
    records = json.loads(result.stdout)
    assert len(records) >= len(DENIED)
    assert all(not r["allowed"] for r in records)
    assert {"model-allowed", "intent-required", "tools-allowed"} <= {
        v["rule"] for r in records for v in r["violations"]
    }
    assert [r["id"] for r in records] == sorted((r["id"] for r in records), reverse=True)


def test_show_one_decision(webhook: WebhookServer, trail: Path, authorised: Reader) -> None:
    [denial] = json.loads(local(trail, "list", "--rule", "model-allowed", "-o", "json").stdout)
    for output in ("text", "json"):
        shown = remote(webhook, authorised, "show", str(denial["id"]), "-o", output)
        assert shown.exit_code == 0, shown.output
        assert shown.stdout == local(trail, "show", str(denial["id"]), "-o", output).stdout
    assert "model-allowed" in shown.stdout
    missing = remote(webhook, authorised, "show", "999999")
    assert missing.exit_code == 1
    assert "no decision with id 999999" in missing.stderr


def test_an_outsider_is_told_which_role_to_ask_for(
    webhook: WebhookServer, trail: Path, outsider: Reader
) -> None:
    for command in ("list", "verify", "export"):
        result = remote(webhook, outsider, command)
        assert result.exit_code == 2, result.output
        assert f'user "{outsider.user}" may not get decisions.audit.kube-intent.io' in result.stderr
        assert f"--clusterrole={AUDITOR_ROLE}" in result.stderr
        assert "Traceback" not in result.output


def test_a_rejected_token_and_a_wrong_ca_are_named(
    webhook: WebhookServer, cluster: Cluster, trail: Path, tmp_path: Path
) -> None:
    bogus = tmp_path / "token"
    bogus.write_text("not-a-token-of-this-cluster")
    rejected = invoke(
        "list", "--server", webhook.url, "--ca-file", webhook.ca, "--token-file", bogus
    )
    assert rejected.exit_code == 2
    assert "the webhook rejected the bearer token of token file" in rejected.stderr
    assert "not-a-token-of-this-cluster" not in rejected.output
    # The cluster's CA is not the webhook's: the auditor is told which one to pass.
    wrong_ca = invoke(
        "list", "--server", webhook.url, "--ca-file", cluster.ca_cert, "--token-file", bogus
    )
    assert wrong_ca.exit_code == 2
    assert "the webhook's certificate at" in wrong_ca.stderr
    assert "--ca-file with the webhook's CA (not the cluster's" in wrong_ca.stderr


@pytest.mark.parametrize(
    ("name", "exit_code"),
    [
        pytest.param("localhost", 0, id="a-name-the-certificate-carries"),
        pytest.param("kube-intent.kube-intent.svc", 2, id="a-name-it-does-not"),
    ],
)
def test_tls_server_name_verifies_a_port_forward_against_the_service_name(
    webhook: WebhookServer, authorised: Reader, name: str, exit_code: int
) -> None:
    """Through a port-forward the URL is 127.0.0.1, the certificate names the Service."""
    result = remote(webhook, authorised, "list", "--limit", "1", "--tls-server-name", name)
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert "does not verify" in result.stderr


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        pytest.param({"order": "sideways"}, 400, "order must be desc", id="bad-order"),
        pytest.param({"limit": "lots"}, 400, "bad query", id="bad-limit"),
        pytest.param({"kind": "pod"}, 400, "kind must be one of", id="bad-kind"),
        pytest.param({"cursor": "not-a-cursor"}, 400, "bad query", id="bad-cursor"),
    ],
)
def test_the_api_refuses_a_bad_query_with_a_reason(
    webhook: WebhookServer, authorised: Reader, params: dict[str, str], status: int, error: str
) -> None:
    with webhook.client() as http:
        response = http.get(
            "/audit/decisions",
            params=params,
            headers={"Authorization": f"Bearer {authorised.token}"},
        )
    assert response.status_code == status
    assert error in response.json()["error"]


def test_the_api_pages_in_chain_order_for_exports(
    webhook: WebhookServer, trail: Path, authorised: Reader
) -> None:
    headers = {"Authorization": f"Bearer {authorised.token}"}
    seqs: list[int] = []
    cursor: str | None = None
    with webhook.client() as http:
        while True:
            params = {"order": "asc", "limit": "2", **({"cursor": cursor} if cursor else {})}
            page = http.get("/audit/decisions", params=params, headers=headers).json()
            seqs += [item["seq"] for item in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        one = http.get(f"/audit/decisions/{seqs[0]}", headers=headers)
        unknown = http.get("/audit/decisions/999999", headers=headers)
        anonymous = http.get(f"/audit/decisions/{seqs[0]}")
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= len(DENIED) + 1
    assert one.json()["seq"] == 1
    assert (unknown.status_code, unknown.json()["error"]) == (404, "no decision with id 999999")
    assert anonymous.status_code == 401  # one record is guarded like the list


def test_notes_show_the_remote_client_and_the_auditor_role(release: Release) -> None:
    notes = release.notes
    assert "kubectl -n kube-intent exec" not in notes
    assert f"--clusterrole={AUDITOR_ROLE}" in notes
    assert f"kube-intent audit list --denied --server {release.endpoint.url}" in notes
    assert "--field-selector reason=AdmissionDenied" in notes


def test_an_exec_credential_plugin_supplies_the_token(
    webhook: WebhookServer, cluster: Cluster, authorised: Reader, tmp_path: Path
) -> None:
    """Cloud logins hand kubectl a token through an exec plugin; so they do to the client."""
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": authorised.token},
    }
    plugin = tmp_path / "plugin.json"
    plugin.write_text(json.dumps(credential))
    config = yaml.safe_load(authorised.kubeconfig.read_text())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": ["-c", f"print(open({str(plugin)!r}).read())"],
            "interactiveMode": "Never",
        }
    }
    kubeconfig = tmp_path / "exec.yaml"
    kubeconfig.write_text(yaml.safe_dump(config))
    result = invoke(
        "stats",
        "--server",
        webhook.url,
        "--ca-file",
        webhook.ca,
        "--kubeconfig",
        kubeconfig,
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["denied"] >= len(DENIED)
    assert authorised.token not in result.output


# Last in the module: it edits the webhook's live trail.
def test_a_trail_edited_behind_the_webhooks_back_fails_verification_remotely(
    webhook: WebhookServer, trail: Path, authorised: Reader
) -> None:
    """Someone with the volume edits rows: the auditor's `verify --server` names the first
    broken row and exits 1, whether the edit re-hashes or re-encodes."""
    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_record_no_update")
        [(last,)] = conn.execute("SELECT MAX(seq) FROM audit_record").fetchall()
        [(denial,)] = conn.execute(
            "SELECT MIN(seq) FROM audit_record WHERE violations LIKE '%,%'"
        ).fetchall()
        conn.execute("UPDATE audit_record SET allowed = 1 - allowed WHERE seq = ?", (last,))
    assert denial < last
    edited = remote(webhook, authorised, "verify", "--chunk-size", "1")
    assert edited.exit_code == 1, edited.output
    assert edited.stderr.startswith(f"BROKEN at seq {last} (id {last}): hash does not match")

    # The same values in other JSON text: the hash still matches, the stored form does not.
    with contextlib.closing(sqlite3.connect(trail, isolation_level=None)) as conn:
        conn.execute(
            "UPDATE audit_record SET violations = replace(violations, ',', ', ') WHERE seq = ?",
            (denial,),
        )
    re_encoded = remote(webhook, authorised, "verify")
    assert re_encoded.exit_code == 1, re_encoded.output
    broken = f"BROKEN at seq {denial} (id {denial}): row id {denial}: column violations"
    assert re_encoded.stderr.startswith(broken)
    listing = remote(webhook, authorised, "list")
    assert listing.exit_code == 1
    assert f"audit row seq={denial} id={denial} is corrupt" in listing.stderr
