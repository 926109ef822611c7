"""The webhooks as a real kube-apiserver calls them: chart installed with Helm (webhook.url mode),
`kube-intent serve` with a real OPA on loopback, requests made with the kubernetes client."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import free_port
from tests.support.helm import CHART
from tests.support.kube import (
    annotations_of,
    api_error,
    as_body,
    ensure_service_account,
    json_object,
    metadata_of,
    present,
    server_side_apply,
    wait_until,
)
from tests.support.manifests import load_yaml
from tests.support.paths import EXAMPLES
from tests.support.pods import deployment_of, example
from tests.support.release import Release, can
from tests.support.webhook_process import GPU_PROBE_POD, WebhookServer, wait_until_called

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("webhook")]

SPIFFE_ANNOTATION = "kube-intent.io/spiffe-id"
DIGEST_ANNOTATION = "kube-intent.io/intent-digest"
INTENT_ANNOTATION = "kube-intent.io/intent"
AGENT_CRD = CHART / "crds" / "agents.kube-intent.io.yaml"


def example_pod(name: str, pod_name: str | None = None) -> dict[str, Any]:
    pod = example(name)
    # Unique names: one cluster serves the whole session, and reruns by hand reuse it.
    pod["metadata"]["name"] = pod_name or f"{pod['metadata']['name']}-{uuid.uuid4().hex[:6]}"
    return pod


def denial(core: client.CoreV1Api, pod: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
    namespace = pod["metadata"]["namespace"]
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(namespace, as_body(pod), **kwargs)
    status = api_error(caught.value)
    return caught.value.status, str(status.get("message", ""))


def pod_exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# -- admitted and mutated -----------------------------------------------------------------------


def test_gpu_pod_with_a_valid_intent_is_admitted_and_carries_the_mutation(
    core: client.CoreV1Api,
) -> None:
    pod = example_pod("allowed-vllm-llama")
    created = core.create_namespaced_pod("ml-serving", as_body(pod))

    annotations = annotations_of(created)
    assert annotations[SPIFFE_ANNOTATION] == "spiffe://cluster.local/ns/ml-serving/sa/support-bot"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", annotations[DIGEST_ANNOTATION])
    assert annotations[INTENT_ANNOTATION] == pod["metadata"]["annotations"][INTENT_ANNOTATION]
    stored = core.read_namespaced_pod(pod["metadata"]["name"], "ml-serving")
    assert annotations_of(stored)[DIGEST_ANNOTATION] == annotations[DIGEST_ANNOTATION]


# -- refused with the policy's message ----------------------------------------------------------


@pytest.mark.parametrize(
    ("example_name", "rule", "message"),
    [
        (
            "denied-intent-required",
            "intent-required",
            "pod uses 1 accelerator(s) (vllm: nvidia.com/gpu=1) but has no kube-intent.io/intent "
            "annotation",
        ),
        (
            "denied-model-allowed",
            "model-allowed",
            'model "deepseek-ai/DeepSeek-R1" is not allowed for agent "support-bot"',
        ),
        (
            "denied-accelerator-budget",
            "accelerator-budget",
            'pod uses 4 accelerator(s) (vllm: nvidia.com/gpu=4) but agent "support-bot" may use at '
            "most 2",
        ),
        (
            "denied-serviceaccount-bound",
            "serviceaccount-bound",
            'ServiceAccount "default" is not bound to agent "support-bot" in namespace '
            '"ml-serving"',
        ),
    ],
)
def test_policy_denial_reaches_the_api_client_with_the_policy_message(
    core: client.CoreV1Api, example_name: str, rule: str, message: str
) -> None:
    pod = example_pod(example_name)
    status, text = denial(core, pod)

    assert status == 403
    assert 'admission webhook "pods.mutate.kube-intent.io" denied the request' in text
    assert f"kube-intent denied pod ml-serving/{pod['metadata']['name']}" in text
    assert f"[{rule}] " in text  # then the field, then the policy's message
    assert message in text
    assert not pod_exists(core, "ml-serving", pod["metadata"]["name"])


# -- matchConditions: only accelerator pods reach the webhook ----------------------------------


def test_pod_without_accelerators_is_created_without_calling_the_webhook(
    core: client.CoreV1Api, webhook: WebhookServer
) -> None:
    before = webhook.calls()
    pod = example_pod("passthrough-cpu")
    created = core.create_namespaced_pod("ml-serving", as_body(pod))

    assert webhook.calls() == before
    assert SPIFFE_ANNOTATION not in (metadata_of(created).annotations or {})


def _container(resources: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.k8s.io/pause:3.10", **extra}
    if resources is not None:
        container["resources"] = resources
    return container


def _limits(name: str, count: str = "1") -> dict[str, Any]:
    return {"limits": {name: count}}


def _pod(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "cel-", **metadata},
        "spec": {"serviceAccountName": "support-bot", **spec},
    }


# (id, pod, whether the API server must call the webhook). The webhook denies each of the GPU
# pods (no agent label), so "called" is also visible as a denial.
CEL_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("nvidia-gpu-limit", _pod({"containers": [_container(_limits("nvidia.com/gpu"))]}), True),
    (
        "nvidia-gpu-requests-and-limits",
        _pod(
            {
                "containers": [
                    _container(
                        {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}
                    )
                ]
            }
        ),
        True,
    ),
    ("nvidia-mig", _pod({"containers": [_container(_limits("nvidia.com/mig-1g.10gb"))]}), True),
    ("nvidia-shared", _pod({"containers": [_container(_limits("nvidia.com/gpu.shared"))]}), True),
    ("amd-gpu", _pod({"containers": [_container(_limits("amd.com/gpu"))]}), True),
    ("intel-i915", _pod({"containers": [_container(_limits("gpu.intel.com/i915"))]}), True),
    ("gaudi", _pod({"containers": [_container(_limits("habana.ai/gaudi"))]}), True),
    ("tpu", _pod({"containers": [_container(_limits("google.com/tpu", "4"))]}), True),
    ("neuroncore", _pod({"containers": [_container(_limits("aws.amazon.com/neuroncore"))]}), True),
    (
        "dra-extended-resource",
        _pod(
            {
                "containers": [
                    _container(_limits("deviceclass.resource.kubernetes.io/gpu.nvidia.com"))
                ]
            }
        ),
        True,
    ),
    (
        "init-container-gpu",
        _pod(
            {
                "initContainers": [
                    {**_container(_limits("nvidia.com/gpu")), "name": "warmup"},
                ],
                "containers": [_container()],
            }
        ),
        True,
    ),
    (
        "sidecar-gpu",
        _pod(
            {
                "initContainers": [
                    {
                        **_container(_limits("nvidia.com/gpu")),
                        "name": "side",
                        "restartPolicy": "Always",
                    },
                ],
                "containers": [_container()],
            }
        ),
        True,
    ),
    (
        "second-container-gpu",
        _pod(
            {
                "containers": [
                    _container({"limits": {"cpu": "1"}}),
                    {**_container(_limits("nvidia.com/gpu")), "name": "gpu"},
                ]
            }
        ),
        True,
    ),
    (
        "dra-claim",
        _pod(
            {
                "containers": [_container({"claims": [{"name": "gpu"}]})],
                "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "any-template"}],
            }
        ),
        True,
    ),
    ("no-resources", _pod({"containers": [_container()]}), False),
    (
        "cpu-and-memory",
        _pod({"containers": [_container({"limits": {"cpu": "2", "memory": "1Gi"}})]}),
        False,
    ),
    (
        "other-extended-resource",
        _pod({"containers": [_container(_limits("example.com/fpga"))]}),
        False,
    ),
    (
        # HAMi's memory share: a GPU by another name (the whole nvidia.com domain is governed).
        "gpu-memory-share",
        _pod({"containers": [_container(_limits("nvidia.com/gpumem", "1000"))]}),
        True,
    ),
    (
        # The container runtime hook hands out GPUs for this env var alone: a side door.
        "gpu-env-side-door",
        _pod(
            {
                "containers": [
                    _container(
                        {"limits": {"cpu": "1"}},
                        env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}],
                    )
                ]
            }
        ),
        True,
    ),
    (
        "gpu-words-everywhere-but-resources",
        _pod(
            {
                "containers": [
                    _container(
                        {"limits": {"cpu": "1"}},
                        # Application-level: narrows what is mounted, allocates nothing.
                        env=[{"name": "CUDA_VISIBLE_DEVICES", "value": "0"}],
                        args=["--device", "nvidia.com/gpu"],
                    )
                ],
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
            labels={"nvidia.com/gpu": "1", "kube-intent.io/agent": "support-bot"},
            annotations={"nvidia.com/gpu": "1"},
        ),
        False,
    ),
]


@pytest.mark.parametrize(
    ("pod", "called"), [(p, c) for _, p, c in CEL_CASES], ids=[i for i, _, _ in CEL_CASES]
)
def test_match_conditions_send_exactly_the_accelerator_pods(
    core: client.CoreV1Api, webhook: WebhookServer, pod: dict[str, Any], called: bool
) -> None:
    before = webhook.calls()
    try:
        core.create_namespaced_pod("ml-serving", as_body(copy.deepcopy(pod)), dry_run="All")
        outcome = "admitted"
    except ApiException as exc:
        outcome = str(api_error(exc).get("message"))
    calls = webhook.calls() - before

    if called:
        assert calls >= 1, f"the webhook was not called; API server said: {outcome}"
        assert "kube-intent denied pod" in outcome
    else:
        assert calls == 0
        assert outcome == "admitted"


# -- dry run -----------------------------------------------------------------------------------


def _decisions(webhook: WebhookServer) -> list[dict[str, Any]]:
    lines = []
    for line in webhook.log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:  # a line still being written
            continue
        if record.get("msg") == "admission decision":
            lines.append(record)
    return lines


def test_server_side_dry_run_is_decided_and_stores_nothing(
    core: client.CoreV1Api, webhook: WebhookServer
) -> None:
    pod = example_pod("allowed-vllm-llama")
    name = pod["metadata"]["name"]
    answer = core.create_namespaced_pod("ml-serving", as_body(pod), dry_run="All")

    # The API server ran the whole chain (mutation included) and returned the would-be pod...
    assert annotations_of(answer)[SPIFFE_ANNOTATION].endswith("/sa/support-bot")
    # ...without storing it.
    assert not pod_exists(core, "ml-serving", name)
    decisions = wait_until(
        "the webhook's decision lines for the dry run",
        lambda: [d for d in _decisions(webhook) if d.get("name") == name] or None,
        timeout=5,
    )
    assert {d["webhook"] for d in decisions} == {"mutate", "validate"}
    assert all(d["dryRun"] is True and d["allowed"] is True for d in decisions)

    denied = example_pod("denied-model-allowed")
    status, text = denial(core, denied, dry_run="All")
    assert status == 403
    assert "[model-allowed]" in text


def _audit_uids(db: Path) -> set[str]:
    from webhook.audit import AuditFilter, open_store

    async def read() -> set[str]:
        store = await open_store(str(db), create=False)
        try:
            uids: set[str] = set()
            cursor = None
            while True:
                page = await store.query(AuditFilter(), cursor, 1000, order="asc")
                uids.update(record.uid for record in page.records)
                cursor = page.next_cursor
                if cursor is None:
                    return uids
        finally:
            await store.close()

    return asyncio.run(read())


def test_server_side_dry_run_leaves_no_audit_row(
    core: client.CoreV1Api, webhook: WebhookServer
) -> None:
    real = example_pod("allowed-vllm-llama")
    core.create_namespaced_pod("ml-serving", as_body(real))
    db = webhook.state_dir / "audit.db"
    if not db.exists():
        pytest.skip(f"kube-intent serve keeps no audit log yet ({db} was not created)")
    dry = example_pod("allowed-vllm-llama")
    core.create_namespaced_pod("ml-serving", as_body(dry), dry_run="All")

    by_name = {d["name"]: d["uid"] for d in _decisions(webhook)}
    uids = _audit_uids(db)
    assert by_name[real["metadata"]["name"]] in uids
    assert by_name[dry["metadata"]["name"]] not in uids


# -- controllers -------------------------------------------------------------------------------


def test_deployment_pods_are_refused_and_the_replicaset_reports_failed_create(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    template = example("denied-intent-required")
    name = f"no-intent-{uuid.uuid4().hex[:6]}"
    deployment = deployment_of(template, name, "ml-serving")
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("ml-serving", as_body(deployment))
    try:

        def failed_create() -> list[Any]:
            events = core.list_namespaced_event(
                "ml-serving", field_selector="involvedObject.kind=ReplicaSet,reason=FailedCreate"
            ).items
            return [e for e in events if (e.involved_object.name or "").startswith(f"{name}-")]

        [event, *_] = wait_until("a FailedCreate event on the ReplicaSet", failed_create, 60)
        assert event.type == "Warning"
        assert 'admission webhook "pods.mutate.kube-intent.io" denied the request' in event.message
        assert "[intent-required]" in event.message
        replica_set = apps.read_namespaced_replica_set(event.involved_object.name, "ml-serving")
        assert not present(replica_set.status, "ReplicaSet status").ready_replicas
        pods = core.list_namespaced_pod("ml-serving", label_selector=f"app={name}").items
        assert pods == []
    finally:
        apps.delete_namespaced_deployment(name, "ml-serving", propagation_policy="Background")


# -- UPDATE ------------------------------------------------------------------------------------


def test_update_that_edits_the_intent_is_refused(core: client.CoreV1Api) -> None:
    pod = example_pod("allowed-vllm-llama")
    name = pod["metadata"]["name"]
    core.create_namespaced_pod("ml-serving", as_body(pod))

    intent = yaml.safe_load(pod["metadata"]["annotations"][INTENT_ANNOTATION])
    intent["models"] = ["mistralai/Mistral-7B-Instruct-v0.3"]  # still allowed, but not approved
    patch = {"metadata": {"annotations": {INTENT_ANNOTATION: yaml.safe_dump(intent)}}}
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_pod(name, "ml-serving", patch)

    text = str(api_error(caught.value).get("message"))
    assert 'admission webhook "pods.validate.kube-intent.io" denied the request' in text
    assert (
        "[immutable-governed-fields] metadata.annotations[kube-intent.io/intent] cannot change"
        in text
    )
    stored = core.read_namespaced_pod(name, "ml-serving")
    assert (
        annotations_of(stored)[INTENT_ANNOTATION]
        == pod["metadata"]["annotations"][INTENT_ANNOTATION]
    )


def test_unrelated_update_of_a_governed_pod_is_allowed(core: client.CoreV1Api) -> None:
    pod = example_pod("allowed-vllm-llama")
    name = pod["metadata"]["name"]
    core.create_namespaced_pod("ml-serving", as_body(pod))

    patched = core.patch_namespaced_pod(
        name, "ml-serving", {"metadata": {"labels": {"tier": "gold"}}}
    )
    assert present(metadata_of(patched).labels, "labels")["tier"] == "gold"


# -- the Agent CRD -----------------------------------------------------------------------------


def _agents(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def test_agent_crd_accepts_the_example_registrations(api: client.ApiClient) -> None:
    # Installed by `helm install` from the chart's crds/.
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition("agents.kube-intent.io")
    assert crd.spec.versions[0].name == "v1alpha1"

    for agent in load_yaml(EXAMPLES / "agents.yaml"):
        created = server_side_apply(api, agent)
        assert created["spec"] == agent["spec"]
    listed = _agents(api).list_namespaced_custom_object(
        "kube-intent.io", "v1alpha1", "ml-serving", "agents"
    )
    assert {a["metadata"]["name"] for a in json_object(listed)["items"]} >= {
        "support-bot",
        "batch-eval",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.serviceAccounts: Required value"),
        ({"serviceAccounts": []}, "should have at least 1 items"),
        ({"serviceAccounts": ["Not_A_Name"]}, "spec.serviceAccounts[0]"),
        ({"serviceAccounts": ["a"], "maxGrantTTL": "15x"}, "must be a positive number of seconds"),
        ({"serviceAccounts": ["a"], "maxGrantTTL": 0}, "must be a positive number of seconds"),
        ({"serviceAccounts": ["a"], "accelerators": {"max": -1}}, "spec.accelerators.max"),
        ({"serviceAccounts": ["a"], "modelz": ["x"]}, 'unknown field "spec.modelz"'),
    ],
    ids=[
        "no-spec-fields",
        "no-service-accounts",
        "bad-sa-name",
        "bad-ttl",
        "zero-ttl",
        "negative-max",
        "unknown-field",
    ],
)
def test_agent_crd_refuses_invalid_registrations(
    api: client.ApiClient, spec: dict[str, Any], message: str
) -> None:
    agent = {
        "apiVersion": "kube-intent.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "invalid", "namespace": "ml-serving"},
        "spec": spec,
    }
    with pytest.raises(ApiException) as caught:
        _agents(api).create_namespaced_custom_object(
            "kube-intent.io", "v1alpha1", "ml-serving", "agents", agent, field_validation="Strict"
        )
    assert message in str(api_error(caught.value).get("message"))


# -- Dynamic Resource Allocation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_device_class(api: client.ApiClient) -> dict[str, Any]:
    device_class = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "gpu.nvidia.com"},
        "spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.nvidia.com'"}}]},
    }
    server_side_apply(api, device_class)
    server_side_apply(api, example("allowed-dra-triton", kind="ResourceClaimTemplate"))
    return device_class


def test_dra_pod_with_a_resource_claim_template_is_governed(
    core: client.CoreV1Api, gpu_device_class: dict[str, Any], webhook: WebhookServer
) -> None:
    pod = example_pod("allowed-dra-triton")
    del pod["metadata"]["annotations"][INTENT_ANNOTATION]
    before = webhook.calls()
    status, text = denial(core, pod)

    assert webhook.calls() > before
    assert status == 403
    assert "[intent-required]" in text
    assert not pod_exists(core, "ml-research", pod["metadata"]["name"])


def test_dra_pod_with_a_valid_intent_is_admitted(
    core: client.CoreV1Api, gpu_device_class: dict[str, Any]
) -> None:
    pod = example_pod("allowed-dra-triton")
    created = core.create_namespaced_pod("ml-research", as_body(pod))
    annotations = annotations_of(created)
    assert (
        annotations[SPIFFE_ANNOTATION] == "spiffe://cluster.local/ns/ml-research/sa/research-agent"
    )


# -- the release itself ------------------------------------------------------------------------


def test_installed_webhook_configurations_point_at_the_external_server(
    api: client.ApiClient, release: Release
) -> None:
    admission = client.AdmissionregistrationV1Api(api)
    mutating = admission.read_mutating_webhook_configuration(release.name)
    validating = admission.read_validating_webhook_configuration(release.name)
    [mutate] = present(mutating.webhooks, "mutating webhooks")
    validate = {w.name: w for w in present(validating.webhooks, "validating webhooks")}
    assert mutate.client_config.url == f"{release.endpoint.url}/mutate"
    for name in ("pods.validate.kube-intent.io", "pods-status.validate.kube-intent.io"):
        assert validate[name].client_config.url == f"{release.endpoint.url}/validate"
    status_rules = present(validate["pods-status.validate.kube-intent.io"].rules, "rules")
    assert status_rules[0].resources == ["pods/status"]
    assert mutate.client_config.service is None
    assert (mutate.failure_policy, mutate.timeout_seconds, mutate.side_effects) == (
        "Fail",
        3,
        "NoneOnDryRun",
    )
    assert mutate.reinvocation_policy == "IfNeeded"
    selector = present(mutate.namespace_selector, "namespaceSelector")
    excluded = present(selector.match_expressions, "matchExpressions")[0]
    assert (excluded.key, excluded.operator) == ("kubernetes.io/metadata.name", "NotIn")
    assert {"kube-system", release.namespace} <= set(present(excluded.values, "values"))


def test_install_notes_tell_the_user_how_to_check_that_it_works(release: Release) -> None:
    assert "kubectl run kube-intent-check --dry-run=server" in release.notes
    assert '"limits":{"nvidia.com/gpu":"1"}' in release.notes
    assert "kube-intent review" in release.notes
    assert f"the API server calls the external webhook at {release.endpoint.url}" in release.notes


# -- Agent objects are the registrations (the webhook watches them) -----------------------------


def _fresh_agent_pod(name: str) -> dict[str, Any]:
    pod = example_pod("allowed-vllm-llama", name)
    pod["metadata"]["labels"]["kube-intent.io/agent"] = "fresh-agent"
    pod["spec"]["serviceAccountName"] = "fresh-agent"
    return pod


def _dry_run_verdict(core: client.CoreV1Api, pod: dict[str, Any]) -> str:
    try:
        core.create_namespaced_pod("ml-serving", as_body(copy.deepcopy(pod)), dry_run="All")
    except ApiException as exc:
        return str(api_error(exc).get("message"))
    return "admitted"


def test_agent_watch_creating_an_agent_lets_its_next_pod_in_and_suspending_it_shuts_it_out(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    ensure_service_account(api, "ml-serving", "fresh-agent")
    pod = _fresh_agent_pod(f"fresh-{uuid.uuid4().hex[:6]}")
    assert "[agent-registered]" in _dry_run_verdict(core, pod)

    agent = {
        "apiVersion": "kube-intent.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "fresh-agent", "namespace": "ml-serving"},
        "spec": {
            "serviceAccounts": ["fresh-agent"],
            "owners": ["e2e@example.com"],
            "models": ["meta-llama/*"],
            "dataClasses": ["public", "internal"],
            "tools": ["kb-search"],
            "egress": ["api.support.example.com:443"],
            "accelerators": {"max": 1},
            "maxGrantTTL": "1h",
        },
    }
    agents = _agents(api)
    agents.create_namespaced_custom_object(
        "kube-intent.io", "v1alpha1", "ml-serving", "agents", agent
    )
    try:
        wait_until(
            "the new Agent to admit its pod",
            lambda: _dry_run_verdict(core, pod) == "admitted",
            timeout=20,
        )
        created = core.create_namespaced_pod("ml-serving", as_body(pod))
        assert annotations_of(created)[SPIFFE_ANNOTATION].endswith("/ns/ml-serving/sa/fresh-agent")

        agents.patch_namespaced_custom_object(
            "kube-intent.io",
            "v1alpha1",
            "ml-serving",
            "agents",
            "fresh-agent",
            {"spec": {"suspended": True}},
        )
        next_pod = _fresh_agent_pod(f"fresh-{uuid.uuid4().hex[:6]}")
        wait_until(
            "the suspension to refuse the next pod",
            lambda: "[agent-suspended]" in _dry_run_verdict(core, next_pod),
            timeout=20,
        )
    finally:
        agents.delete_namespaced_custom_object(
            "kube-intent.io", "v1alpha1", "ml-serving", "agents", "fresh-agent"
        )
    wait_until(
        "the deleted Agent to stop admitting pods",
        lambda: "[agent-registered]" in _dry_run_verdict(core, pod),
        timeout=20,
    )


# -- the chart's RBAC, as the real authorizer sees it -------------------------------------------

RBAC_ALLOWED = [
    ("list", "kube-intent.io", "agents", None),
    ("watch", "kube-intent.io", "agents", None),
    ("get", "", "pods", "ml-serving"),
    # Which pods use a ResourceClaim (the claim guard).
    ("list", "", "pods", "ml-serving"),
    ("create", "authentication.k8s.io", "tokenreviews", None),
    ("create", "authorization.k8s.io", "subjectaccessreviews", None),
    ("get", "resource.k8s.io", "resourceclaimtemplates", "ml-research"),
    ("get", "resource.k8s.io", "resourceclaims", "ml-research"),
    ("create", "", "events", "ml-serving"),
    ("patch", "events.k8s.io", "events", "ml-serving"),
]
RBAC_DENIED = [
    ("get", "", "secrets", "kube-intent"),
    ("list", "", "secrets", None),
    ("watch", "", "pods", None),
    ("create", "", "pods", "ml-serving"),
    ("patch", "", "pods", "ml-serving"),
    ("delete", "", "pods", "ml-serving"),
    ("update", "kube-intent.io", "agents", "ml-serving"),
    ("patch", "kube-intent.io", "agents/status", "ml-serving"),
    ("create", "", "serviceaccounts/token", "ml-serving"),
    ("update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", None),
    ("list", "resource.k8s.io", "resourceclaims", None),
]


@pytest.mark.parametrize(("verb", "group", "resource", "namespace"), RBAC_ALLOWED)
def test_chart_rbac_grants_what_the_webhook_needs(
    api: client.ApiClient,
    release: Release,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
) -> None:
    assert can(api, release, verb, group, resource, namespace)


@pytest.mark.parametrize(("verb", "group", "resource", "namespace"), RBAC_DENIED)
def test_chart_rbac_grants_nothing_more(
    api: client.ApiClient,
    release: Release,
    verb: str,
    group: str,
    resource: str,
    namespace: str | None,
) -> None:
    assert not can(api, release, verb, group, resource, namespace)


def test_with_the_webhook_down_only_gpu_pods_are_refused(
    api: client.ApiClient, core: client.CoreV1Api, release: Release
) -> None:
    """failurePolicy: Fail is safe for the rest of the cluster because of matchConditions."""
    admission = client.AdmissionregistrationV1Api(api)
    dead = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    patch = [{"op": "replace", "path": "/webhooks/0/clientConfig/url", "value": f"{dead}/mutate"}]
    admission.patch_mutating_webhook_configuration(release.name, patch)
    try:
        gpu = GPU_PROBE_POD
        wait_until(
            "the API server to call the dead endpoint",
            lambda: "failed calling webhook" in _dry_run_verdict(core, gpu),
            timeout=30,
        )
        cpu = example_pod("passthrough-cpu")
        created = core.create_namespaced_pod("ml-serving", as_body(cpu))
        assert metadata_of(created).name == cpu["metadata"]["name"]
    finally:
        restore = [{**patch[0], "value": f"{release.endpoint.url}/mutate"}]
        admission.patch_mutating_webhook_configuration(release.name, restore)
        wait_until_called(core)
