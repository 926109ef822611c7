"""The Helm chart: lint, render over a matrix of values files, and server-side dry-run apply of
every rendered object against the real API server (which validates with the real schemas,
compiles the webhooks' CEL matchConditions, and checks RBAC and CRD structure)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from identity.keys import KeySet
from identity.registry import AcceleratorBudget, AgentSpec
from tests.support import control_plane
from tests.support.chart import (
    CLAIMS_WEBHOOK,
    NAMESPACE,
    STATUS_WEBHOOK,
    VALUES,
    Objects,
    all_containers,
    container,
    env,
    kinds,
    one,
    pod_spec,
    render,
    render_error,
    run_helm,
    stand_in_crd,
    webhooks,
)
from tests.support.cluster import Cluster
from tests.support.helm import CHART, helm
from tests.support.kube import (
    api_error,
    documents,
    ensure_namespace,
    present,
    server_side_apply,
    wait_crd_established,
)
from tests.support.paths import REPO
from tests.support.versions import pinned
from webhook.opa_process import policy_engine
from webhook.policy import OpaPolicyEngine
from webhook.settings import Settings

VALUES_FILES = sorted(p.stem for p in VALUES.glob("*.yaml"))
RELEASE = "kube-intent"
OPA_IMAGE = "openpolicyagent/opa:" + pinned()["OPA_VERSION"].removeprefix("v") + "-static"


@pytest.fixture(autouse=True)
def _helm() -> None:
    control_plane.require_tools(["helm"])


def validating_webhook(objects: Objects, name: str) -> dict[str, Any]:
    hook: dict[str, Any]
    [hook] = [
        w for w in one(objects, "ValidatingWebhookConfiguration")["webhooks"] if w["name"] == name
    ]
    return hook


def claims_webhook(objects: Objects) -> dict[str, Any]:
    return validating_webhook(objects, CLAIMS_WEBHOOK)


# -- lint and render ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict(values: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), f"--values={VALUES / values}.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chart_carries_no_copy_of_the_bundled_policies() -> None:
    # One source of Rego: the webhook pushes the policies from its own package into the sidecar.
    assert not list(CHART.rglob("*.rego"))
    assert not (REPO / "scripts" / "sync-chart-policies.sh").exists()


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_values_file_renders_the_core_objects(values: str) -> None:
    objects = render(values)
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "NetworkPolicy",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    } <= kinds(objects)
    for obj in objects:
        if (
            obj["kind"] not in ("ClusterRole", "ClusterRoleBinding")
            and "Webhook" not in obj["kind"]
        ):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_webhook_configurations_follow_the_issue(values: str) -> None:
    objects = render(values)
    pairs = webhooks(objects)
    assert sorted(kind for kind, _ in pairs) == [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    for kind, hook in pairs:
        mutating = kind == "MutatingWebhookConfiguration"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "NoneOnDryRun"
        assert hook["failurePolicy"] == "Fail"
        assert hook["timeoutSeconds"] == 3
        assert "objectSelector" not in hook  # a pod's author could label their way out
        if mutating:
            assert hook["reinvocationPolicy"] == "IfNeeded"
        else:
            assert "reinvocationPolicy" not in hook
        [rule] = hook["rules"]
        assert rule["apiGroups"] == [""]
        # Never pods/status; the validating webhook also reviews `kubectl debug` containers.
        assert rule["resources"] == (["pods"] if mutating else ["pods", "pods/ephemeralcontainers"])
        assert rule["operations"] == (["CREATE"] if mutating else ["CREATE", "UPDATE"])
        [expression] = hook["namespaceSelector"]["matchExpressions"]
        assert expression["key"] == "kubernetes.io/metadata.name"
        assert expression["operator"] == "NotIn"
        assert {"kube-system", NAMESPACE} <= set(expression["values"])
        [condition] = hook["matchConditions"]
        assert condition["name"] == "requests-accelerators"
        assert "object.spec.resourceClaims" in condition["expression"]
        assert "k.startsWith('nvidia.com/')" in condition["expression"]  # the whole domain


@pytest.mark.parametrize("values", VALUES_FILES)
def test_status_writes_reach_the_webhook_only_when_they_change_governed_fields(
    values: str,
) -> None:
    objects = render(values)
    hook = validating_webhook(objects, STATUS_WEBHOOK)
    [pods] = [w for _, w in webhooks(objects) if w["name"] == "pods.validate.kube-intent.io"]
    for key in ("failurePolicy", "timeoutSeconds", "namespaceSelector", "clientConfig"):
        assert hook[key] == pods[key], key
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["UPDATE"],
            "resources": ["pods/status"],
            "scope": "Namespaced",
        }
    ]
    [condition] = hook["matchConditions"]
    # The kubelet's status writes change none of these, so they never wait for the webhook.
    for field in ("kube-intent.io/intent", "kube-intent.io/grant", "kube-intent.io/agent"):
        assert f"'{field}'" in condition["expression"]
    assert "oldObject.metadata" in condition["expression"]


def test_namespace_exclusions_come_from_values() -> None:
    for _, hook in webhooks(render("postgres-ha")):
        values = hook["namespaceSelector"]["matchExpressions"][0]["values"]
        assert values == ["kube-system", NAMESPACE, "gpu-operator", "monitoring"]


def test_failure_policy_and_timeout_come_from_values() -> None:
    for _, hook in webhooks(
        render(None, "webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=2")
    ):
        assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 2)


def test_match_condition_is_built_from_the_accelerator_values() -> None:
    objects = render(
        None,
        "accelerators.resources={example.com/npu,vendor.io/accel-*,!vendor.io/accel-meta}",
    )
    for _, hook in webhooks(objects):
        expression = hook["matchConditions"][0]["expression"]
        assert "k == 'example.com/npu'" in expression
        assert "k.startsWith('vendor.io/accel-')" in expression
        assert "accel-meta" not in expression  # exclusions are the webhook's job
        assert "nvidia.com" not in expression
        assert "k.startsWith('deviceclass.resource.kubernetes.io/')" in expression
    # ...and the webhook gets the very same list.
    assert json.loads(env(objects)["KUBE_INTENT_ACCELERATOR_RESOURCES"]["value"]) == [
        "example.com/npu",
        "vendor.io/accel-*",
        "!vendor.io/accel-meta",
    ]


def test_a_pattern_that_cel_cannot_express_is_refused() -> None:
    # values.schema.json catches it first; the template re-checks (it builds CEL from it).
    message = render_error(None, "accelerators.resources={nvidia.com/*gpu}")
    assert "/accelerators/resources/0" in message
    assert "nvidia.com/*gpu" in message


@pytest.mark.parametrize("values", VALUES_FILES)
def test_claims_webhook_reviews_accelerator_claims_in_every_served_version(values: str) -> None:
    objects = render(values)
    hook = claims_webhook(objects)
    [pods] = [w for _, w in webhooks(objects) if w["name"] == "pods.validate.kube-intent.io"]
    # Same delivery as the pod webhooks: configured failure policy, timeout, namespaces, CA.
    for key in ("admissionReviewVersions", "sideEffects", "failurePolicy", "timeoutSeconds"):
        assert hook[key] == pods[key], key
    assert hook["namespaceSelector"] == pods["namespaceSelector"]
    assert "objectSelector" not in hook  # a claim's author could label their way out
    assert hook["clientConfig"].get("caBundle") == pods["clientConfig"].get("caBundle")
    if "service" in hook["clientConfig"]:
        assert hook["clientConfig"]["service"]["path"] == "/validate-claims"
    else:
        assert hook["clientConfig"]["url"].endswith("/validate-claims")
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["rules"] == [
        {
            "apiGroups": ["resource.k8s.io"],
            "apiVersions": ["v1", "v1beta2", "v1beta1"],
            # Never DELETE (removing a claim adds no device) nor the status subresource.
            "operations": ["CREATE", "UPDATE"],
            "resources": ["resourceclaims", "resourceclaimtemplates"],
            "scope": "Namespaced",
        }
    ]
    conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
    assert set(conditions) == {"requests-accelerator-classes", "changes-devices"}
    expression = conditions["requests-accelerator-classes"]
    for shape in ("r.deviceClassName", "r.exactly.deviceClassName", "r.firstAvailable"):
        assert f"has({shape})" in expression  # v1beta1, v1beta2/v1, all three
    assert "object.spec.spec" in expression  # templates
    assert "n == 'gpu.nvidia.com'" in expression
    assert "object.spec != oldObject.spec" in conditions["changes-devices"]


def test_claims_match_condition_is_built_from_the_device_class_values() -> None:
    objects = render(
        None, "accelerators.deviceClasses={npu.example.com,accel.vendor.io*,gpu.*.com}"
    )
    [condition] = [
        c
        for c in claims_webhook(objects)["matchConditions"]
        if c["name"] == "requests-accelerator-classes"
    ]
    expression = condition["expression"]
    assert "n == 'npu.example.com'" in expression
    assert "n.startsWith('accel.vendor.io')" in expression
    assert "n.matches('^gpu[.].*[.]com$')" in expression
    assert "nvidia" not in expression
    # ...and the webhook gets the very same list.
    assert json.loads(env(objects)["KUBE_INTENT_ACCELERATOR_DEVICE_CLASSES"]["value"]) == [
        "npu.example.com",
        "accel.vendor.io*",
        "gpu.*.com",
    ]


# -- TLS ----------------------------------------------------------------------------------------


def _cert(pem_b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(pem_b64))


def test_helm_mode_generates_a_ca_and_a_serving_certificate_for_the_service() -> None:
    objects = render("defaults")
    secret = one(objects, "Secret", f"{RELEASE}-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = _cert(secret["data"]["ca.crt"])
    serving = _cert(secret["data"]["tls.crt"])
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{RELEASE}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    for _, hook in webhooks(objects):
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        assert hook["clientConfig"]["service"] == {
            "name": RELEASE,
            "namespace": NAMESPACE,
            "path": "/mutate" if "mutate" in hook["name"] else "/validate",
            "port": 443,
        }
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{RELEASE}-tls"


def test_cert_manager_mode_issues_and_injects_the_ca() -> None:
    objects = render("cert-manager")
    assert f"{RELEASE}-tls" not in {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    serving = one(objects, "Certificate", f"{RELEASE}-serving")
    assert serving["spec"]["secretName"] == f"{RELEASE}-tls"
    assert f"{RELEASE}.{NAMESPACE}.svc" in serving["spec"]["dnsNames"]
    assert serving["spec"]["issuerRef"]["name"] == f"{RELEASE}-ca"
    assert one(objects, "Certificate", f"{RELEASE}-ca")["spec"]["isCA"] is True
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = one(objects, kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{NAMESPACE}/{RELEASE}-serving"
        )
        assert "caBundle" not in config["webhooks"][0]["clientConfig"]


def test_cert_manager_mode_can_use_an_existing_issuer() -> None:
    objects = render(
        "cert-manager",
        "tls.certManager.issuerRef.name=corp-ca",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert "Issuer" not in kinds(objects)
    assert one(objects, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
    }


def test_provided_secret_mode_mounts_the_users_secret_and_uses_their_ca() -> None:
    objects = render("provided-secret")
    assert "Certificate" not in kinds(objects)
    assert f"{RELEASE}-tls" not in {o["metadata"]["name"] for o in objects}
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "my-webhook-tls"
    ca = (VALUES / "provided-secret.yaml").read_text().split("caBundle: |\n")[1]
    pem = "".join(line.strip() + "\n" for line in ca.splitlines() if line.startswith("    "))
    for _, hook in webhooks(objects):
        assert base64.b64decode(hook["clientConfig"]["caBundle"]).decode() == pem


def test_url_mode_calls_the_external_server() -> None:
    for _, hook in webhooks(render("url-mode")):
        path = "/mutate" if "mutate" in hook["name"] else "/validate"
        assert hook["clientConfig"]["url"] == f"https://127.0.0.1:8443{path}"
        assert "service" not in hook["clientConfig"]
        assert b"BEGIN CERTIFICATE" in base64.b64decode(hook["clientConfig"]["caBundle"])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("webhook.url=https://hook.example.com",), "webhook.url needs tls.caBundle"),
        (("tls.mode=secret",), "tls.mode=secret needs tls.existingSecret"),
        (
            ("tls.mode=secret", "tls.existingSecret=mine"),
            "tls.mode=secret needs the CA that verifies Secret kube-intent/mine",
        ),
        (("audit.backend=postgres",), "audit.backend=postgres needs audit.postgres.existingSecret"),
        (("webhook.gracefulShutdownSeconds=1",), "must be at least webhook.timeoutSeconds"),
        (("terminationGracePeriodSeconds=10",), "terminationGracePeriodSeconds (10) must exceed"),
    ],
    ids=[
        "url-without-ca",
        "secret-without-name",
        "secret-without-ca",
        "postgres-without-dsn",
        "drain-shorter-than-timeout",
        "grace-too-short",
    ],
)
def test_broken_configurations_fail_with_a_clear_message(
    sets: tuple[str, ...], message: str
) -> None:
    assert message in render_error(None, *sets)


def test_values_schema_rejects_an_http_webhook_url() -> None:
    assert "/webhook/url" in render_error(None, "webhook.url=http://127.0.0.1:8443")


# -- the Deployment -----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_pods_run_restricted(values: str) -> None:
    objects = render(values)
    spec = pod_spec(objects)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not spec.get("hostNetwork")
    assert not spec.get("hostPID")
    for c in all_containers(objects):
        context = c["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, c["name"]
        assert context["readOnlyRootFilesystem"] is True, c["name"]
        assert context["runAsNonRoot"] is True, c["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
        assert c["resources"]["requests"], c["name"]
        assert c["resources"]["limits"]["memory"], c["name"]
    # Writable places are explicit volumes.
    mounts = {m["mountPath"] for m in container(objects, "webhook")["volumeMounts"]}
    assert {"/tmp", "/var/lib/kube-intent"} <= mounts


@pytest.mark.parametrize("values", VALUES_FILES)
def test_no_secret_reaches_an_environment_variable(values: str) -> None:
    objects = render(values)
    for c in all_containers(objects):
        for variable in c.get("env", []):
            assert "secretKeyRef" not in variable.get("valueFrom", {}), variable["name"]
            value = str(variable.get("value", ""))
            assert "-----BEGIN" not in value, variable["name"]
            assert "@" not in value, variable["name"]
            assert "password" not in value.lower(), variable["name"]
        assert not c.get("envFrom"), c["name"]
    # Keys and the DSN arrive as read-only files.
    mounts = {m["name"]: m for m in container(objects, "webhook")["volumeMounts"]}
    assert mounts["signing-keys"]["readOnly"] is True
    assert mounts["tls"]["readOnly"] is True


def test_webhook_container_arguments_and_probes() -> None:
    objects = render("defaults")
    webhook = container(objects, "webhook")
    assert webhook["args"][0] == "serve"
    assert "--tls-cert=/etc/kube-intent/tls/tls.crt" in webhook["args"]
    assert "--tls-key=/etc/kube-intent/tls/tls.key" in webhook["args"]
    assert "--opa-url=http://127.0.0.1:8181" in webhook["args"]
    assert webhook["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "https",
        "scheme": "HTTPS",
    }
    assert webhook["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": "https",
        "scheme": "HTTPS",
    }
    spec = pod_spec(objects)
    hook_timeout = webhooks(objects)[0][1]["timeoutSeconds"]
    assert spec["terminationGracePeriodSeconds"] > hook_timeout
    assert (
        spec["terminationGracePeriodSeconds"]
        > int(env(objects)["KUBE_INTENT_GRACEFUL_SHUTDOWN_SECONDS"]["value"])
        + webhook["lifecycle"]["preStop"]["sleep"]["seconds"]
    )


def test_opa_sidecar_is_pinned_and_starts_empty_on_loopback() -> None:
    objects = render("defaults")
    opa = container(objects, "opa")
    assert opa["image"] == OPA_IMAGE
    # A native sidecar: up before the webhook starts, down only after it has drained.
    assert opa["restartPolicy"] == "Always"
    assert opa in pod_spec(objects)["initContainers"]
    assert opa["startupProbe"]["httpGet"]["path"] == "/health"
    assert opa["livenessProbe"]["httpGet"]["port"] == "opa-diag"
    # No policy file and no volume: the webhook pushes the policy set through the REST API.
    assert opa["args"][:3] == ["run", "--server", "--addr=127.0.0.1:8181"]
    assert all(a.startswith("--") for a in opa["args"][1:]), opa["args"]
    assert not opa.get("volumeMounts")


def test_extra_policies_are_mounted_into_the_webhook_not_opa() -> None:
    objects = render("extra-policies")
    webhook = container(objects, "webhook")
    assert "--extra-policies=/etc/kube-intent/policies" in webhook["args"]
    assert "--opa-url=http://127.0.0.1:8181" in webhook["args"]
    mounts = {m["name"]: m for m in webhook["volumeMounts"]}
    assert mounts["policies"] == {
        "name": "policies",
        "mountPath": "/etc/kube-intent/policies",
        "readOnly": True,
    }
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == f"{RELEASE}-policies"
    assert env(objects)["KUBE_INTENT_POLICY_RELOAD_SECONDS"]["value"] == "5"
    data = one(objects, "ConfigMap", f"{RELEASE}-policies")["data"]
    assert set(data) == {"no-latest-tag.rego", "data.json"}
    assert json.loads(data["data.json"]) == {
        "kube_intent": {"config": {"enforcement": {"model-allowed": "warn"}}}
    }
    # Without extras the ConfigMap is empty but mounted: adding some later rolls nothing.
    assert one(render("defaults"), "ConfigMap", f"{RELEASE}-policies").get("data") in ({}, None)


def test_extra_policy_file_names_are_checked_by_the_schema() -> None:
    message = render_error(None, "policies.extra.notes\\.txt=x")
    assert "notes.txt" in message


def kubelet_configmap_volume(directory: Path, data: dict[str, str]) -> Path:
    """The layout the kubelet gives a ConfigMap volume: keys are links into ..data."""
    payload = directory / "..2026_01_01_00_00_00.000000001"
    payload.mkdir(parents=True)
    for name, text in data.items():
        (payload / name).write_text(text)
    (directory / "..data").symlink_to(payload.name)
    for name in data:
        (directory / name).symlink_to(f"..data/{name}")
    return directory


def test_extra_policies_from_the_configmap_load_with_the_bundle_into_a_real_opa(
    tmp_path: Path,
) -> None:
    data = one(render("extra-policies"), "ConfigMap", f"{RELEASE}-policies")["data"]
    volume = kubelet_configmap_volume(tmp_path / "policies", data)

    async def load() -> tuple[OpaPolicyEngine, Any, Any]:
        async with policy_engine(None, None, extra=volume) as engine:
            decision = await engine.evaluate(
                {"pod": {"spec": {"containers": [{"name": "m", "image": "nvcr.io/m:latest"}]}}}
            )
            client = await engine._session()
            async with client._session.get(f"{client.root_url}/data/kube_intent/config") as r:
                config = (await r.json())["result"]
            return engine, decision, config

    engine, decision, config = asyncio.run(load())
    assert engine.loaded is not None
    assert {f.path for f in engine.loaded.files if f.source == "extra"} == set(data)
    [latest] = [v for v in decision.violations if v.rule == "no-latest-tag"]
    assert latest.enforcement == "deny"
    assert "nvcr.io/m:latest" in latest.message
    # The chart's data is merged over the bundled data.json, not instead of it.
    assert config["enforcement"] == {"model-allowed": "warn"}
    assert config["allowed_registries"]
    assert not [v for v in decision.violations if v.rule == "policy-config"]


def test_extra_policy_changes_do_not_roll_the_pods() -> None:
    # The webhook reloads the mounted ConfigMap itself; a checksum would restart every pod.
    def template(values: str) -> dict[str, Any]:
        spec: dict[str, Any] = one(render(values), "Deployment")["spec"]["template"]
        return spec

    assert "checksum/policies" not in template("defaults")["metadata"].get("annotations", {})
    with_extras = render(
        "defaults",
        "policies.extra.a\\.rego=package a",
        "policies.data.kube_intent.config.max_grant_ttl_seconds=60",
    )
    assert one(with_extras, "ConfigMap", f"{RELEASE}-policies")["data"]
    assert one(with_extras, "Deployment")["spec"]["template"] == template("defaults")


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_chart_environment_variable_is_a_webhook_setting(values: str) -> None:
    # pydantic-settings ignores unknown KUBE_INTENT_* variables: a typo would silently drop
    # the chart's configuration.
    names = {n.removeprefix("KUBE_INTENT_").lower() for n in env(render(values))}
    names = {n for n in names if n not in ("pod_name", "pod_namespace")}
    unknown = names - set(Settings.model_fields) - {"audit_db_file"}
    assert not unknown


def test_the_audit_dsn_file_is_a_webhook_setting() -> None:
    assert "KUBE_INTENT_AUDIT_DB_FILE" in env(render("postgres-ha"))
    assert "audit_db_file" in Settings.model_fields


def test_chart_environment_variables_are_webhook_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render("defaults")
    variables = {
        name: e["value"] for name, e in env(objects).items() if name.startswith("KUBE_INTENT_")
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert list(settings.accelerator_resources) == json.loads(
        variables["KUBE_INTENT_ACCELERATOR_RESOURCES"]
    )
    assert list(settings.accelerator_device_classes) == json.loads(
        variables["KUBE_INTENT_ACCELERATOR_DEVICE_CLASSES"]
    )
    assert settings.issuer == f"https://{RELEASE}.{NAMESPACE}.svc"
    assert settings.graceful_shutdown_seconds == 10
    assert settings.audit_dsn == "/var/lib/kube-intent/audit/audit.db"
    assert settings.keys_dir == Path("/etc/kube-intent/keys")


def test_sqlite_audit_is_one_replica_on_a_volume_claim() -> None:
    objects = render("defaults")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["audit"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "PodDisruptionBudget" not in kinds(objects)


def test_sqlite_with_several_replicas_fails_rendering() -> None:
    message = render_error(None, "replicaCount=2")
    assert "audit.backend=sqlite supports one replica" in message
    assert "audit.backend=postgres" in message


def test_postgres_audit_runs_two_spread_replicas_with_a_disruption_budget() -> None:
    objects = render("postgres-ha")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spread = pod_spec(objects)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "PersistentVolumeClaim" not in kinds(objects)
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["audit-dsn"]["secret"]["secretName"] == "kube-intent-audit-dsn"
    assert env(objects)["KUBE_INTENT_AUDIT_DB_FILE"]["value"] == "/etc/kube-intent/audit/dsn"
    assert pod_spec(objects)["priorityClassName"] == "system-cluster-critical"


# -- signing keys, RBAC, network ---------------------------------------------------------------


def test_signing_keys_are_p256_generated_once_and_kept() -> None:
    objects = render("defaults")
    secret = one(objects, "Secret", f"{RELEASE}-signing-keys")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert set(secret["data"]) == {"active.pem", "next.pem"}
    keys: list[ec.EllipticCurvePrivateKey] = []
    for pem in secret["data"].values():
        key = load_pem_private_key(base64.b64decode(pem), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        keys.append(key)
    assert keys[0].private_numbers() != keys[1].private_numbers()
    # Helm writes SEC1 ("EC PRIVATE KEY") PEM, not PKCS8: the webhook's key loader takes both.
    key_set = KeySet.from_pems({k: base64.b64decode(v) for k, v in secret["data"].items()})
    assert len(key_set.verification) == 2
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["signing-keys"]["secret"]["secretName"] == f"{RELEASE}-signing-keys"


def test_an_existing_signing_key_secret_is_used_as_is() -> None:
    objects = render("provided-secret")
    assert f"{RELEASE}-signing-keys" not in {o["metadata"]["name"] for o in objects}
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    assert volumes["signing-keys"]["secret"]["secretName"] == "my-signing-keys"


EXPECTED_RULES = [
    {"apiGroups": ["kube-intent.io"], "resources": ["agents"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["subjectaccessreviews"],
        "verbs": ["create"],
    },
    {
        "apiGroups": ["resource.k8s.io"],
        "resources": ["resourceclaims", "resourceclaimtemplates"],
        "verbs": ["get"],
    },
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]


def test_rbac_is_least_privilege() -> None:
    objects = render("defaults")
    role = one(objects, "ClusterRole", RELEASE)
    assert role["rules"] == EXPECTED_RULES
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert "secrets" not in rule["resources"]
    assert "Role" not in kinds(objects)
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]
    account = one(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(objects)["automountServiceAccountToken"] is True


def test_network_policy_admits_only_the_webhook_port() -> None:
    policy = one(render("defaults"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "https", "protocol": "TCP"}]


def test_service_monitor_scrapes_metrics_over_verified_https() -> None:
    monitor = one(render("cert-manager"), "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["scheme"], endpoint["path"], endpoint["port"]) == (
        "https",
        "/metrics",
        "https",
    )
    assert endpoint["tlsConfig"]["ca"]["secret"] == {"name": f"{RELEASE}-tls", "key": "ca.crt"}
    assert "ServiceMonitor" not in kinds(render("defaults"))


# -- server-side dry run against the real API server -------------------------------------------

# cert-manager's and prometheus-operator's CRDs are not available offline. These stand-ins
# only make their kinds exist, so that a dry run reaches the API server at all: they validate
# nothing about the objects (x-kubernetes-preserve-unknown-fields).
STAND_IN_CRDS = [
    ("cert-manager.io", "Issuer", "issuers"),
    ("cert-manager.io", "Certificate", "certificates"),
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
]


@pytest.fixture(scope="module")
def api_for_dry_run(cluster: Cluster) -> Any:
    api = cluster.api_client()
    for group, kind, plural in STAND_IN_CRDS:
        crd = stand_in_crd(group, kind, plural)
        server_side_apply(api, crd)
        wait_crd_established(api, crd["metadata"]["name"])
    return api


@pytest.mark.e2e
@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_rendered_object_passes_a_server_side_dry_run(
    api_for_dry_run: Any, values: str
) -> None:
    namespace = f"chart-{values}"
    ensure_namespace(api_for_dry_run, namespace)
    objects = render(values, namespace=namespace, crds=True)
    failures = []
    for obj in objects:
        try:
            server_side_apply(api_for_dry_run, obj, dry_run=True)
        except ApiException as exc:
            failures.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {api_error(exc).get('message')}"
            )
    assert not failures, "\n".join(failures)
    assert "CustomResourceDefinition" in kinds(objects)


@pytest.mark.e2e
def test_the_api_server_refuses_a_broken_match_condition(api_for_dry_run: Any) -> None:
    # Proves the dry run really compiles the CEL (so the chart's expression is checked, too).
    config = one(render("defaults"), "ValidatingWebhookConfiguration")
    config["webhooks"][0]["matchConditions"][0]["expression"] = "object.spec.containers.exists(c,"
    with pytest.raises(ApiException) as caught:
        server_side_apply(api_for_dry_run, config, dry_run=True)
    assert "compilation failed" in str(api_error(caught.value).get("message"))


@pytest.mark.e2e
def test_helm_upgrade_keeps_the_webhook_ca_and_reinstall_keeps_the_signing_keys(
    cluster: Cluster, tmp_path: Path
) -> None:
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    admission = client.AdmissionregistrationV1Api(api)
    release, namespace = "upgrade-check", "chart-upgrade"
    # Nothing serves this release: never let it decide for the other tests' GPU pods.
    common = [
        f"--namespace={namespace}",
        "--set=webhook.failurePolicy=Ignore",
        "--set=audit.sqlite.persistence.enabled=false",
    ]

    def run(*args: str) -> None:
        helm(*args, kubeconfig=cluster.kubeconfig, home=tmp_path)

    def state() -> tuple[dict[str, bytes | str], dict[str, bytes | str], bytes | str]:
        tls = core.read_namespaced_secret(f"{release}-kube-intent-tls", namespace).data
        keys = core.read_namespaced_secret(f"{release}-kube-intent-signing-keys", namespace).data
        config = admission.read_validating_webhook_configuration(f"{release}-kube-intent")
        [webhook, *_] = present(config.webhooks, "webhooks")
        ca_bundle = webhook.client_config.ca_bundle
        assert ca_bundle is not None, "the webhook configuration has no caBundle"
        return present(tls, "TLS Secret data"), present(keys, "signing keys data"), ca_bundle

    run("install", release, str(CHART), "--create-namespace", *common)
    try:
        tls, keys, ca_bundle = state()
        assert base64.b64decode(ca_bundle) == base64.b64decode(tls["ca.crt"])

        run("upgrade", release, str(CHART), *common, "--set=webhook.timeoutSeconds=2")
        assert state() == (tls, keys, ca_bundle)
        config = admission.read_validating_webhook_configuration(f"{release}-kube-intent")
        assert present(config.webhooks, "webhooks")[0].timeout_seconds == 2  # the upgrade did apply

        run("uninstall", release, f"--namespace={namespace}", "--wait")
        # helm.sh/resource-policy: keep
        kept = core.read_namespaced_secret(f"{release}-kube-intent-signing-keys", namespace).data
        assert kept == keys

        run("install", release, str(CHART), *common)
        assert state()[1] == keys
    finally:
        helm(
            "uninstall",
            release,
            f"--namespace={namespace}",
            "--wait",
            kubeconfig=cluster.kubeconfig,
            home=tmp_path,
            check=False,
        )
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)


def test_agent_crd_schema_matches_the_registry_model() -> None:
    [crd] = documents((CHART / "crds" / "agents.kube-intent.io.yaml").read_text())
    [version] = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = {(f.alias or name): f for name, f in AgentSpec.model_fields.items()}
    assert set(spec["properties"]) == set(fields)
    assert spec["required"] == [name for name, f in fields.items() if f.is_required()]
    budget = spec["properties"]["accelerators"]["properties"]
    assert set(budget) == set(AcceleratorBudget.model_fields)
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["scope"] == "Namespaced"
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Suspended", "Age"}
