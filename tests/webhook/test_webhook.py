"""/mutate and /validate against the real OPA with the bundled policies and example agents."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.admission import AppClient, apply_patch, patch_of, post, response_of, review
from tests.support.manifests import example_pod
from tests.support.paths import EXAMPLES
from webhook.metrics import Metrics
from webhook.opa_process import free_port
from webhook.policy import OpaPolicyEngine

DENIED = sorted(p.stem for p in (EXAMPLES / "pods").glob("denied-*.yaml"))


@pytest.mark.parametrize("webhook", ["/mutate", "/validate"])
async def test_allowed_pod(make_client: AppClient, webhook: str) -> None:
    async with make_client() as client:
        response = response_of(
            await post(client, webhook, review(example_pod("allowed-vllm-llama")))
        )
    assert response["allowed"] is True
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"


async def test_mutation_adds_identity_and_digest_and_is_idempotent(make_client: AppClient) -> None:
    pod = example_pod("allowed-vllm-llama")
    async with make_client(trust_domain="prod.example.com") as client:
        first = response_of(await post(client, "/mutate", review(pod)))
        mutated = apply_patch(pod, patch_of(first))
        annotations = mutated["metadata"]["annotations"]
        assert annotations["kube-intent.io/spiffe-id"] == (
            "spiffe://prod.example.com/ns/ml-serving/sa/support-bot"
        )
        assert annotations["kube-intent.io/intent-digest"].startswith("sha256:")
        # Reinvocation (reinvocationPolicy: IfNeeded) sees its own output and changes nothing.
        again = response_of(await post(client, "/mutate", review(mutated)))
        assert again["allowed"] is True
        assert "patch" not in again
        final = response_of(await post(client, "/validate", review(mutated)))
        assert final["allowed"] is True


@pytest.mark.parametrize("example", DENIED)
@pytest.mark.parametrize("webhook", ["/mutate", "/validate"])
async def test_each_baseline_rule_denies_with_an_actionable_message(
    make_client: AppClient, webhook: str, example: str
) -> None:
    rule = example.removeprefix("denied-")
    async with make_client() as client:
        response = response_of(await post(client, webhook, review(example_pod(example))))
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 403
    assert f"[{rule}]" in status["message"]
    assert status["message"].startswith("kube-intent denied pod ml-serving/")


async def test_schema_errors_are_all_listed(make_client: AppClient) -> None:
    async with make_client() as client:
        response = response_of(
            await post(client, "/mutate", review(example_pod("denied-intent-schema")))
        )
    message = response["status"]["message"]
    for path in ("intent.models", "intent.ttl", "intent:", "dataClasses"):
        assert path in message, message


async def test_warn_violations_become_warnings(make_client: AppClient) -> None:
    async with make_client() as client:
        response = response_of(
            await post(client, "/mutate", review(example_pod("allowed-warn-ttl")))
        )
    assert response["allowed"] is True
    assert any("[grant-ttl-cap]" in w for w in response["warnings"])


async def test_dry_run_enforcement_override_admits_and_warns_nothing(
    make_client: AppClient,
) -> None:
    async with make_client(enforcement="dryrun") as client:
        response = response_of(
            await post(client, "/mutate", review(example_pod("denied-model-allowed")))
        )
    assert response["allowed"] is True
    assert "warnings" not in response


async def test_warn_enforcement_override_turns_denials_into_warnings(
    make_client: AppClient,
) -> None:
    async with make_client(enforcement="warn") as client:
        response = response_of(
            await post(client, "/mutate", review(example_pod("denied-model-allowed")))
        )
    assert response["allowed"] is True
    assert any("[model-allowed]" in w for w in response["warnings"])


@pytest.fixture
async def dead_opa() -> AsyncIterator[OpaPolicyEngine]:
    """An OPA address nothing listens on: the real client's real connection error."""
    engine = OpaPolicyEngine(f"http://127.0.0.1:{free_port()}", timeout_seconds=0.5)
    yield engine
    await engine.close()


async def test_opa_down_denies_gpu_pods_with_a_clear_message(
    make_client: AppClient, dead_opa: OpaPolicyEngine
) -> None:
    metrics = Metrics()
    async with make_client(policy=dead_opa, metrics=metrics) as client:
        response = response_of(
            await post(client, "/mutate", review(example_pod("allowed-vllm-llama")))
        )
    assert response["allowed"] is False
    assert "[policy-engine]" in response["status"]["message"]
    assert metrics.registry.get_sample_value("kube_intent_opa_errors_total") == 1
    assert "unreachable" in response["status"]["message"]


async def test_opa_down_still_admits_non_gpu_pods_without_asking_it(
    make_client: AppClient, dead_opa: OpaPolicyEngine
) -> None:
    metrics = Metrics()
    async with make_client(policy=dead_opa, metrics=metrics) as client:
        for webhook in ("/mutate", "/validate"):
            response = response_of(
                await post(client, webhook, review(example_pod("passthrough-cpu")))
            )
            assert response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}
    assert (
        metrics.registry.get_sample_value(
            "kube_intent_admission_requests_total",
            {"webhook": "validate", "operation": "CREATE", "decision": "passthrough"},
        )
        == 1
    )
    assert (
        metrics.registry.get_sample_value("kube_intent_opa_evaluation_duration_seconds_count") == 0
    )


async def test_fail_open_admits_gpu_pods_with_a_warning(
    make_client: AppClient, dead_opa: OpaPolicyEngine
) -> None:
    async with make_client(policy=dead_opa, fail_open=True) as client:
        response = response_of(
            await post(client, "/mutate", review(example_pod("allowed-vllm-llama")))
        )
    assert response["allowed"] is True
    assert "fail-open" in response["warnings"][0]


@pytest.mark.parametrize(
    ("path", "value", "refused_field"),
    [
        pytest.param(
            ("annotations", "kube-intent.io/intent"),
            "{}",
            "metadata.annotations[kube-intent.io/intent]",
            id="intent",
        ),
        pytest.param(
            ("labels", "kube-intent.io/agent"),
            "batch-eval",
            "metadata.labels[kube-intent.io/agent]",
            id="agent-label",
        ),
        pytest.param(
            ("annotations", "kube-intent.io/grant"),
            "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
            "metadata.annotations[kube-intent.io/grant]",
            id="grant-not-echoed",
        ),
        pytest.param(("labels", "team"), "support", None, id="unrelated-label-allowed"),
    ],
)
async def test_updates_of_governed_fields_are_refused(
    make_client: AppClient, path: tuple[str, str], value: str, refused_field: str | None
) -> None:
    old = example_pod("allowed-vllm-llama")
    new = copy.deepcopy(old)
    new["metadata"][path[0]][path[1]] = value
    async with make_client() as client:
        response = response_of(
            await post(client, "/validate", review(new, operation="UPDATE", old=old))
        )
    if refused_field is None:
        assert response["allowed"] is True
    else:
        assert response["allowed"] is False
        message = response["status"]["message"]
        assert f"[immutable-governed-fields] {refused_field} cannot change" in message
        # A grant is a signed statement: messages, Events and audit rows show only a digest.
        assert "eyJ" not in message


async def test_forged_identity_annotation_is_caught_on_validate(make_client: AppClient) -> None:
    pod = example_pod("allowed-vllm-llama")
    pod["metadata"]["annotations"]["kube-intent.io/spiffe-id"] = (
        "spiffe://cluster.local/ns/kube-system/sa/admin"
    )
    async with make_client() as client:
        response = response_of(await post(client, "/validate", review(pod)))
    assert response["allowed"] is False
    assert "[mutation-integrity]" in response["status"]["message"]


async def test_delete_is_allowed_without_evaluation(
    make_client: AppClient, dead_opa: OpaPolicyEngine
) -> None:
    async with make_client(policy=dead_opa) as client:
        response = response_of(
            await post(
                client,
                "/validate",
                review(None, operation="DELETE", old=example_pod("allowed-vllm-llama")),
            )
        )
    assert response["allowed"] is True


async def test_other_kinds_get_an_in_band_400(make_client: AppClient) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    body = review(deployment, kind={"group": "apps", "version": "v1", "kind": "Deployment"})
    async with make_client() as client:
        response = response_of(await post(client, "/validate", body))
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "apps/v1 Deployment" in response["status"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b"{", 400, "not valid JSON", id="malformed-json"),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
            400,
            "has no request",
            id="no-request",
        ),
        pytest.param(
            b'{"kind": "Pod"}', 400, "not an admission.k8s.io/v1 AdmissionReview", id="not-a-review"
        ),
    ],
)
async def test_malformed_requests_get_a_clear_http_error(
    make_client: AppClient, body: bytes, status: int, message: str
) -> None:
    async with make_client() as client:
        http = await post(client, "/mutate", body)
    assert http.status_code == status
    assert message in http.json()["error"]
    assert "Traceback" not in http.text


async def test_oversized_bodies_are_refused_with_413(make_client: AppClient) -> None:
    pod = example_pod("allowed-vllm-llama")
    pod["metadata"]["annotations"]["padding"] = "x" * 5000
    async with make_client(max_body_bytes=4096) as client:
        http = await post(client, "/mutate", review(pod))
    assert http.status_code == 413
    assert "exceeds 4096 bytes" in http.json()["error"]


async def test_unreadable_gpu_quantity_is_denied_with_the_field(make_client: AppClient) -> None:
    pod = example_pod("allowed-vllm-llama")
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "lots"
    async with make_client() as client:
        response = response_of(await post(client, "/mutate", review(pod)))
    assert response["allowed"] is False
    assert "[pod-resources]" in response["status"]["message"]
    assert "nvidia.com/gpu" in response["status"]["message"]


async def test_metrics_after_a_known_sequence(make_client: AppClient) -> None:
    metrics = Metrics()
    async with make_client(metrics=metrics) as client:
        for example in ("allowed-vllm-llama", "denied-model-allowed", "passthrough-cpu"):
            await post(client, "/validate", review(example_pod(example)))
        text = (await client.get("/metrics")).text
    sample = metrics.registry.get_sample_value
    labels = {"webhook": "validate", "operation": "CREATE"}
    assert sample("kube_intent_admission_requests_total", {**labels, "decision": "allowed"}) == 1
    assert sample("kube_intent_admission_requests_total", {**labels, "decision": "denied"}) == 1
    assert (
        sample("kube_intent_admission_requests_total", {**labels, "decision": "passthrough"}) == 1
    )
    assert (
        sample(
            "kube_intent_admission_violations_total",
            {"webhook": "validate", "rule": "model-allowed", "enforcement": "deny"},
        )
        == 1
    )
    assert sample("kube_intent_opa_evaluation_duration_seconds_count") == 2
    assert "kube_intent_admission_duration_seconds_bucket" in text


async def test_readyz_reflects_opa(make_client: AppClient, dead_opa: OpaPolicyEngine) -> None:
    async with make_client() as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/healthz")).text == "ok"
    async with make_client(policy=dead_opa) as client:
        assert (await client.get("/readyz")).status_code == 503


def with_debug_container(pod: dict[str, Any], image: str, mounts: list[str]) -> dict[str, Any]:
    debugged = copy.deepcopy(pod)
    debugged["spec"]["ephemeralContainers"] = [
        {
            "name": "debugger",
            "image": image,
            "volumeMounts": [{"name": m, "mountPath": f"/mnt/{m}"} for m in mounts],
        }
    ]
    return debugged


@pytest.mark.parametrize(
    ("image", "mounts", "refused_by"),
    [
        pytest.param("registry.k8s.io/e2e-test-images/agnhost:2.53", [], None, id="clean-debugger"),
        pytest.param(
            "registry.k8s.io/e2e-test-images/agnhost:2.53",
            ["kube-intent-token"],
            "[ephemeral-container-credentials] spec.ephemeralContainers[0].volumeMounts[0]",
            id="mounts-the-token",
        ),
        pytest.param(
            "quay.io/attacker/toolbox:latest", [], "[image-registry]", id="untrusted-image"
        ),
    ],
)
async def test_ephemeral_containers_are_reviewed(
    make_client: AppClient, image: str, mounts: list[str], refused_by: str | None
) -> None:
    pod = example_pod("allowed-vllm-llama")
    debugged = with_debug_container(pod, image, mounts)
    body = review(debugged, operation="UPDATE", old=pod, sub_resource="ephemeralcontainers")
    async with make_client() as client:
        response = response_of(await post(client, "/validate", body))
    if refused_by is None:
        assert response["allowed"] is True
    else:
        assert response["allowed"] is False
        assert refused_by in response["status"]["message"]


async def test_other_pod_subresources_are_not_reviewed_as_pods(make_client: AppClient) -> None:
    body = review(example_pod("allowed-vllm-llama"), operation="UPDATE", sub_resource="binding")
    async with make_client() as client:
        response = response_of(await post(client, "/validate", body))
    assert response["status"]["code"] == 400
    assert "subresource binding" in response["status"]["message"]


@pytest.mark.parametrize(
    ("path", "value", "allowed"),
    [
        pytest.param(("labels", "kube-intent.io/agent"), "batch-eval", False, id="agent-label"),
        pytest.param(("annotations", "kube-intent.io/intent"), "{}", False, id="intent"),
        pytest.param(("labels", "team"), "support", True, id="unrelated-label"),
    ],
)
async def test_status_writes_cannot_change_governed_fields(
    make_client: AppClient, path: tuple[str, str], value: str, allowed: bool
) -> None:
    """PATCH pods/status carries metadata too: it is reviewed like any other UPDATE."""
    old = example_pod("allowed-vllm-llama")
    new = copy.deepcopy(old)
    new["metadata"][path[0]][path[1]] = value
    body = review(new, operation="UPDATE", old=old, sub_resource="status")
    async with make_client() as client:
        response = response_of(await post(client, "/validate", body))
    assert response["allowed"] is allowed
    if not allowed:
        assert "[immutable-governed-fields]" in response["status"]["message"]


async def test_a_governed_pod_that_no_longer_looks_like_one_keeps_its_fields_pinned(
    make_client: AppClient,
) -> None:
    """Its DRA claim re-created without an accelerator class: the intent still cannot change."""
    old = example_pod("allowed-vllm-llama")
    del old["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    old["metadata"]["annotations"]["kube-intent.io/intent-digest"] = "sha256:" + "0" * 64
    edited = copy.deepcopy(old)
    edited["metadata"]["annotations"]["kube-intent.io/intent"] = "{}"
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"]["team"] = "support"
    async with make_client() as client:
        refused = response_of(
            await post(client, "/validate", review(edited, operation="UPDATE", old=old))
        )
        allowed = response_of(
            await post(client, "/validate", review(relabelled, operation="UPDATE", old=old))
        )
    assert refused["allowed"] is False
    assert "[immutable-governed-fields]" in refused["status"]["message"]
    assert allowed["allowed"] is True
