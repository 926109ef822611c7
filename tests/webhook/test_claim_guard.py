"""/validate-claims: the DRA claim-swap guard, over a real SQLite audit trail.

No OPA: the route never asks the policy (an address nothing listens on proves it). The pods of
the namespace and the pod's other claim objects come from in-memory sources standing in for
the API server; tests/e2e/test_claim_swap.py runs the same attack against a real one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from identity.registry import AgentRegistry
from tests.support.audit import Backend
from webhook.app import create_app
from webhook.audit import AcceleratorSummary, AuditFilter, AuditLog, AuditRecord, open_store
from webhook.audit.store import AuditStore
from webhook.claim_guard import (
    CLAIMS_PATH,
    ERR_ALL_DEVICES,
    ERR_HISTORY,
    ERR_LIST,
    ERR_NO_CLUSTER,
    ERR_NOT_ADMITTED,
    ERR_OVER_BUDGET,
    ERR_UNTRUSTED,
    POD_CLAIM_ANNOTATION,
    RULE,
    ClaimGuard,
)
from webhook.detect import StaticClaimResolver
from webhook.metrics import Metrics
from webhook.opa_process import free_port
from webhook.policy import OpaPolicyEngine
from webhook.settings import Settings

NAMESPACE = "team-a"
GPU = "gpu.nvidia.com"
MIG = "mig.nvidia.com"
NIC = "nic.example.com"
REVIEW_UID = "0d4f7c2e-claim-review"


def _prefix(template: str) -> str:
    """The fixed text of an error constant up to its first placeholder (what a test can match)."""
    return template.split("{", 1)[0]


# -- objects as the API server sends them -------------------------------------------------------


def request(device_class: str, count: int = 1, version: str = "v1", **extra: Any) -> dict[str, Any]:
    """One device request in the shape of `version` (v1beta1 flat, v1beta2/v1 under `exactly`)."""
    wanted: dict[str, Any] = {
        "deviceClassName": device_class,
        "allocationMode": "ExactCount",
        "count": count,
        **extra,
    }
    if version == "v1beta1":
        return {"name": "dev", **wanted}
    return {"name": "dev", "exactly": wanted}


def first_available(*classes: str) -> dict[str, Any]:
    subrequests = [
        {"name": f"alt{i}", "deviceClassName": c, "count": 1} for i, c in enumerate(classes)
    ]
    return {"name": "dev", "firstAvailable": subrequests}


def claim(
    name: str,
    *requests: dict[str, Any],
    version: str = "v1",
    owner: str | None = None,
    pod_claim: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if owner is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner, "controller": True}
        ]
    if pod_claim is not None:
        metadata["annotations"] = {POD_CLAIM_ANNOTATION: pod_claim}
    return {
        "apiVersion": f"resource.k8s.io/{version}",
        "kind": "ResourceClaim",
        "metadata": metadata,
        "spec": {"devices": {"requests": list(requests)}},
    }


def template(name: str, *requests: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"resource.k8s.io/{version}",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"spec": {"devices": {"requests": list(requests)}}},
    }


def pod(
    name: str,
    *entries: tuple[str, str, str],
    phase: str = "Pending",
    statuses: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A stored pod: metadata.uid "uid-<name>"; entries are (entry, source field, object)."""
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
            "resourceClaims": [{"name": e, source: obj} for e, source, obj in entries],
        },
        "status": {
            "phase": phase,
            "resourceClaimStatuses": [
                {"name": e, "resourceClaimName": c} for e, c in (statuses or {}).items()
            ],
        },
    }


def by_name(entry: str, claim_name: str) -> tuple[str, str, str]:
    return (entry, "resourceClaimName", claim_name)


def by_template(entry: str, template_name: str) -> tuple[str, str, str]:
    return (entry, "resourceClaimTemplateName", template_name)


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    dry_run: bool = False,
    kind: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    source = obj or old or {}
    group, _, version = str(source.get("apiVersion", "resource.k8s.io/v1")).partition("/")
    gvk = dict(kind or {"group": group, "version": version, "kind": source.get("kind", "")})
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": REVIEW_UID,
            "kind": gvk,
            "resource": {"group": group, "version": version, "resource": "resourceclaims"},
            "name": source.get("metadata", {}).get("name", ""),
            "namespace": NAMESPACE,
            "operation": operation,
            "userInfo": {"username": "mallory", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
        },
    }


# -- what the guard reads -----------------------------------------------------------------------


@dataclass
class Pods:
    """The namespace's pods as the API server would list them (or an error, if `broken`)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    broken: Exception | None = None
    listed: int = 0

    async def pods(self, namespace: str) -> list[dict[str, Any]]:
        self.listed += 1
        if self.broken is not None:
            raise self.broken
        return [p for p in self.items if p["metadata"]["namespace"] == namespace]


@dataclass
class Claims:
    """The ClaimLookup seam over stored manifests (what KubeClaimLookup reads from the cluster)."""

    objects: list[dict[str, Any]] = field(default_factory=list)

    async def resolver_for(self, namespace: str, pod: dict[str, Any]) -> StaticClaimResolver:
        return StaticClaimResolver(self.objects, default_namespace=namespace)


async def admit(
    store: AuditStore,
    stored_pod: dict[str, Any],
    objects: Sequence[dict[str, Any]],
    *,
    authenticated: bool = True,
    allowed: bool = True,
) -> None:
    """The row /validate writes for a pod it admitted: its workload as admission resolved it."""
    detector = Settings().accelerator_detector
    workload = detector.detect(
        stored_pod, StaticClaimResolver(objects, default_namespace=NAMESPACE), namespace=NAMESPACE
    ).to_input()
    await store.append(
        AuditRecord(
            uid=f"review-{stored_pod['metadata']['name']}",
            operation="CREATE",
            namespace=NAMESPACE,
            name=stored_pod["metadata"]["name"],
            accelerators=AcceleratorSummary.from_workload(workload),
            allowed=allowed,
            input={"workload": workload},
            pod_uid=stored_pod["metadata"]["uid"],
            authenticated=authenticated,
        )
    )


@pytest_asyncio.fixture
async def audit(tmp_path: Path) -> AsyncIterator[AuditLog]:
    log = AuditLog(await open_store(str(tmp_path / "audit.db")))
    yield log
    await log.close()


@pytest_asyncio.fixture
async def no_opa() -> AsyncIterator[OpaPolicyEngine]:
    engine = OpaPolicyEngine(f"http://127.0.0.1:{free_port()}", timeout_seconds=0.2)
    yield engine
    await engine.close()


Client = Callable[..., httpx.AsyncClient]


@pytest.fixture
def make_client(no_opa: OpaPolicyEngine) -> Client:
    def build(
        guard: ClaimGuard | None,
        *,
        claims: Claims | None = None,
        metrics: Metrics | None = None,
        **settings: Any,
    ) -> httpx.AsyncClient:
        app = create_app(
            Settings(**settings),
            policy=no_opa,
            registry=AgentRegistry,
            metrics=metrics,
            claims=claims or Claims(),
            claim_guard=guard,
        )
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhook")

    return build


async def answer(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    http = await client.post(
        CLAIMS_PATH, content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert http.status_code == 200, http.text
    document = http.json()
    assert (document["apiVersion"], document["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    response: dict[str, Any] = document["response"]
    assert response["uid"] == REVIEW_UID
    return response


# -- the decision table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """The object under review, the stored world, and the expected answer.

    `admitted`: names of pods whose admission the audit trail holds, with the objects
    admission resolved their claims against. `denied`: message fragments, [] when allowed.
    """

    obj: dict[str, Any]
    pods: list[dict[str, Any]]
    admitted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stored: list[dict[str, Any]] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)


NIC_CLAIM = claim("net", request(NIC))
NIC_TEMPLATE = template("net-tpl", request(NIC))
GPU_TEMPLATE = template("gpus", request(GPU, 2))
NIC_POD = pod("nic-pod", by_name("net", "net"))
NIC_TEMPLATE_POD = pod("nic-tpl-pod", by_template("net", "net-tpl"))
GPU_TEMPLATE_POD = pod("gpu-pod", by_template("gpus", "gpus"))
NOT_ADMITTED = _prefix(ERR_NOT_ADMITTED)
OVER_BUDGET = _prefix(ERR_OVER_BUDGET)

CASES: dict[str, Case] = {
    # The attack: the claim of an admitted NIC pod re-created with an accelerator class.
    **{
        f"swap-claim-{version}": Case(
            claim("net", request(GPU, version=version), version=version),
            [NIC_POD],
            denied=[
                "kube-intent denied ResourceClaim team-a/net: 1 violation(s): "
                f"[{RULE}] pod team-a/nic-pod uses this ResourceClaim, which requests "
                f"accelerators ({GPU}), but kube-intent never admitted that pod"
            ],
        )
        for version in ("v1", "v1beta1", "v1beta2")
    },
    "swap-claim-first-available": Case(
        claim("net", first_available(NIC, GPU)), [NIC_POD], denied=[NOT_ADMITTED]
    ),
    **{
        f"swap-template-{version}": Case(
            template("net-tpl", request(GPU, version=version), version=version),
            [NIC_TEMPLATE_POD],
            denied=[
                "kube-intent denied ResourceClaimTemplate team-a/net-tpl",
                "pod team-a/nic-tpl-pod uses this ResourceClaimTemplate",
            ],
        )
        for version in ("v1", "v1beta1", "v1beta2")
    },
    # The generated claim of a NIC pod's template, re-created: found by its ownerReference...
    "swap-generated-claim-owner": Case(
        claim("nic-tpl-pod-net-x1", request(GPU), owner="uid-nic-tpl-pod", pod_claim="net"),
        [NIC_TEMPLATE_POD],
        denied=[NOT_ADMITTED],
    ),
    # ...or by the pod's status, which the kubelet reads to find it.
    "swap-generated-claim-status": Case(
        claim("nic-tpl-pod-net-x1", request(GPU)),
        [pod("nic-tpl-pod", by_template("net", "net-tpl"), statuses={"net": "nic-tpl-pod-net-x1"})],
        denied=[NOT_ADMITTED],
    ),
    # Annotations are the pod author's: the ones /mutate writes prove nothing.
    "forged-governed-annotations": Case(
        claim("net", request(GPU)),
        [
            pod(
                "nic-pod",
                by_name("net", "net"),
                annotations={
                    "kube-intent.io/intent-digest": "sha256:" + "0" * 64,
                    "kube-intent.io/grant": "eyJhbGciOiJFUzI1NiJ9.e30.sig",
                },
            )
        ],
        denied=[NOT_ADMITTED],
    ),
    # Governed pods: what the admission approved, and no more.
    "governed-generated-claim-within-budget": Case(
        claim("gpu-pod-gpus-a1", request(GPU, 2), owner="uid-gpu-pod", pod_claim="gpus"),
        [GPU_TEMPLATE_POD],
        admitted={"gpu-pod": [GPU_TEMPLATE]},
        stored=[GPU_TEMPLATE],
    ),
    "governed-generated-claim-over-budget": Case(
        claim("gpu-pod-gpus-a1", request(GPU, 3), owner="uid-gpu-pod", pod_claim="gpus"),
        [GPU_TEMPLATE_POD],
        admitted={"gpu-pod": [GPU_TEMPLATE]},
        stored=[GPU_TEMPLATE],
        denied=[
            "pod team-a/gpu-pod would hold 3 accelerator(s) with this ResourceClaim, but its "
            "admission approved 2"
        ],
    ),
    "governed-template-recreated-with-more": Case(
        template("gpus", request(GPU, 4)),
        [GPU_TEMPLATE_POD],
        admitted={"gpu-pod": [GPU_TEMPLATE]},
        denied=[OVER_BUDGET],
    ),
    "governed-template-recreated-as-it-was": Case(
        template("gpus", request(GPU, 2, version="v1beta1"), version="v1beta1"),
        [GPU_TEMPLATE_POD],
        admitted={"gpu-pod": [GPU_TEMPLATE]},
    ),
    "governed-other-device-class": Case(
        template("gpus", request(MIG, 1)),
        [GPU_TEMPLATE_POD],
        admitted={"gpu-pod": [GPU_TEMPLATE]},
        denied=[
            f"pod team-a/gpu-pod would get device class(es) {MIG} with this "
            f"ResourceClaimTemplate, but its admission approved {GPU}"
        ],
    ),
    "governed-all-devices": Case(
        template("gpus", request(GPU, 1, allocationMode="All")),
        [GPU_TEMPLATE_POD],
        admitted={"gpu-pod": [GPU_TEMPLATE]},
        denied=[_prefix(ERR_ALL_DEVICES)],
    ),
    # Admitted before its template existed: judged as one accelerator of unknown class.
    "governed-unresolved-at-admission": Case(
        template("gpus", request(MIG, 1)),
        [GPU_TEMPLATE_POD],
        admitted={"gpu-pod": []},
    ),
    # The NIC claim of a governed pod turned into a GPU: on top of the template's two GPUs.
    "governed-pod-nic-claim-swapped": Case(
        claim("net", request(GPU)),
        [pod("gpu-pod", by_template("gpus", "gpus"), by_name("net", "net"))],
        admitted={"gpu-pod": [GPU_TEMPLATE, NIC_CLAIM]},
        stored=[GPU_TEMPLATE],
        denied=["would hold 3 accelerator(s)"],
    ),
    # An owned claim naming an entry the controller already served (status) is not that
    # entry's claim: counted on top, not in its place.
    "owned-claim-for-an-entry-already-served": Case(
        claim("extra", request(GPU, 2), owner="uid-gpu-pod", pod_claim="gpus"),
        [pod("gpu-pod", by_template("gpus", "gpus"), statuses={"gpus": "gpu-pod-gpus-a1"})],
        admitted={"gpu-pod": [GPU_TEMPLATE]},
        stored=[claim("gpu-pod-gpus-a1", request(GPU, 2))],
        denied=["would hold 4 accelerator(s)"],
    ),
    # Several pods: each one is checked, each refusal named.
    "one-governed-one-not": Case(
        claim("shared", request(GPU, 1)),
        [
            pod("gpu-pod", by_name("shared", "shared")),
            pod("nic-pod", by_name("net", "shared")),
        ],
        admitted={"gpu-pod": [claim("shared", request(GPU, 1))]},
        denied=["1 violation(s)", "pod team-a/nic-pod uses this ResourceClaim"],
    ),
    # Allowed without a question: nobody uses it yet (the pod's own admission will resolve it),
    # or only pods that will never run again.
    "no-pod-uses-it": Case(claim("fresh", request(GPU, 8)), [NIC_POD]),
    "only-finished-pods": Case(
        claim("net", request(GPU)), [pod("done", by_name("net", "net"), phase="Succeeded")]
    ),
    "other-namespace-pod": Case(
        claim("net", request(GPU)),
        [{**NIC_POD, "metadata": {**NIC_POD["metadata"], "namespace": "team-b"}}],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_claim_guard_decisions(make_client: Client, audit: AuditLog, case: Case) -> None:
    for name, objects in case.admitted.items():
        [stored] = [p for p in case.pods if p["metadata"]["name"] == name]
        await admit(audit.store, stored, objects)
    for stored in case.pods:  # a denied row for every pod: it must never count
        await admit(audit.store, stored, [], allowed=False)
    pods = Pods(copy.deepcopy(case.pods))
    guard = ClaimGuard(pods, audit.store, audit)

    async with make_client(guard, claims=Claims(case.stored)) as client:
        response = await answer(client, review(copy.deepcopy(case.obj)))

    if not case.denied:
        assert response == {"uid": REVIEW_UID, "allowed": True}
        return
    assert response["allowed"] is False
    status = response["status"]
    assert (status["code"], status["reason"]) == (403, "Forbidden")
    for fragment in case.denied:
        assert fragment in status["message"]


# -- short-circuits: nothing is read ------------------------------------------------------------

BROKEN = RuntimeError("the API server must not be asked")

PASSTHROUGH: dict[str, dict[str, Any]] = {
    "nic-claim": review(NIC_CLAIM),
    "nic-template-v1beta1": review(
        template("t", request(NIC, version="v1beta1"), version="v1beta1")
    ),
    "metadata-only-update": review(
        claim("net", request(GPU)),
        operation="UPDATE",
        old={**claim("net", request(GPU)), "metadata": {"name": "net", "finalizers": ["x"]}},
    ),
    "delete": review(None, operation="DELETE", old=claim("net", request(GPU))),
}


@pytest.mark.parametrize("body", PASSTHROUGH.values(), ids=PASSTHROUGH.keys())
async def test_what_cannot_add_an_accelerator_is_allowed_without_reading_the_cluster(
    make_client: Client, audit: AuditLog, body: dict[str, Any]
) -> None:
    pods = Pods([NIC_POD], broken=BROKEN)
    metrics = Metrics()
    async with make_client(ClaimGuard(pods, audit.store, audit), metrics=metrics) as client:
        response = await answer(client, body)

    assert response == {"uid": REVIEW_UID, "allowed": True}
    assert pods.listed == 0
    operation = body["request"]["operation"]
    labels = {"webhook": "claims", "operation": operation, "decision": "passthrough"}
    assert metrics.registry.get_sample_value("kube_intent_admission_requests_total", labels) == 1


async def test_an_update_that_changes_the_spec_is_checked(
    make_client: Client, audit: AuditLog
) -> None:
    body = review(claim("net", request(GPU)), operation="UPDATE", old=NIC_CLAIM)
    async with make_client(ClaimGuard(Pods([NIC_POD]), audit.store, audit)) as client:
        response = await answer(client, body)
    assert response["allowed"] is False
    assert NOT_ADMITTED in response["status"]["message"]


# -- fail closed --------------------------------------------------------------------------------


async def test_pods_that_cannot_be_listed_deny_with_the_reason(
    make_client: Client, audit: AuditLog
) -> None:
    pods = Pods(broken=TimeoutError())
    async with make_client(ClaimGuard(pods, audit.store, audit)) as client:
        response = await answer(client, review(claim("net", request(GPU))))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert _prefix(ERR_LIST) + "team-a to see which use this ResourceClaim" in message
    assert "(TimeoutError); it was denied to fail safe: retry shortly" in message


async def test_an_unreadable_audit_trail_denies_with_the_reason(
    make_client: Client, audit: AuditLog, tmp_path: Path
) -> None:
    await admit(audit.store, NIC_POD, [claim("net", request(GPU))])
    # An edited row (its stored form no longer what the store writes) reads as CorruptRecord:
    # "cannot tell", which must never count as "admitted".
    Backend("sqlite", str(tmp_path / "audit.db")).tamper(
        "UPDATE audit_record SET accelerators = {p}", ['{"total": 9}']
    )
    async with make_client(ClaimGuard(Pods([NIC_POD]), audit.store, audit)) as client:
        response = await answer(client, review(claim("net", request(GPU))))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert _prefix(ERR_HISTORY) + "team-a/nic-pod's admission from the audit trail (" in message


async def test_without_a_cluster_accelerator_claims_are_denied(make_client: Client) -> None:
    async with make_client(None) as client:
        denied = await answer(client, review(claim("net", request(GPU))))
        allowed = await answer(client, review(NIC_CLAIM))
    assert denied["allowed"] is False
    assert ERR_NO_CLUSTER.format(kind="ResourceClaim") in denied["status"]["message"]
    assert allowed["allowed"] is True


async def test_a_row_from_an_unauthenticated_caller_proves_nothing_unless_trusted(
    make_client: Client, audit: AuditLog
) -> None:
    governed = pod("gpu-pod", by_name("gpus", "gpus"))
    admitted_with = [claim("gpus", request(GPU, 1))]
    await admit(audit.store, governed, admitted_with, authenticated=False)
    body = review(claim("gpus", request(GPU, 1)))
    guard = ClaimGuard(Pods([governed]), audit.store, audit)

    async with make_client(guard) as client:
        refused = await answer(client, body)
    async with make_client(guard, trust_unauthenticated_admissions=True) as client:
        trusted = await answer(client, body)

    assert refused["allowed"] is False
    assert _prefix(ERR_UNTRUSTED) + "team-a/gpu-pod" in refused["status"]["message"]
    assert trusted["allowed"] is True


# -- the answer's shape, the audit trail, metrics -----------------------------------------------


async def test_a_pod_review_sent_here_is_a_configuration_error(make_client: Client) -> None:
    body = review(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},
        kind={"group": "", "version": "v1", "kind": "Pod"},
    )
    async with make_client(None) as client:
        response = await answer(client, body)
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "got core/v1 Pod: the webhook configuration's rules" in response["status"]["message"]


async def test_a_denial_is_recorded_and_counted_a_dry_run_only_counted(
    make_client: Client, audit: AuditLog
) -> None:
    metrics = Metrics()
    guard = ClaimGuard(Pods([NIC_POD]), audit.store, audit)
    async with make_client(guard, metrics=metrics) as client:
        dry = await answer(client, review(claim("net", request(GPU)), dry_run=True))
        real = await answer(client, review(claim("net", request(GPU))))

    assert dry["allowed"] is real["allowed"] is False
    page = await audit.store.query(AuditFilter(rule=RULE))
    [row] = page.records
    assert (row.uid, row.namespace, row.name, row.user) == (REVIEW_UID, NAMESPACE, "net", "mallory")
    assert row.allowed is False
    assert row.message == real["status"]["message"]
    assert row.accelerators.total == 1
    assert row.input is not None
    assert row.input["kind"] == "ResourceClaim"
    labels = {"webhook": "claims", "operation": "CREATE", "decision": "denied"}
    assert metrics.registry.get_sample_value("kube_intent_admission_requests_total", labels) == 2
    violation = {"webhook": "claims", "rule": RULE, "enforcement": "deny"}
    assert (
        metrics.registry.get_sample_value("kube_intent_admission_violations_total", violation) == 2
    )


async def test_the_denial_is_logged_with_the_review_uid(
    make_client: Client, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="kube_intent.decision")
    async with make_client(ClaimGuard(Pods([NIC_POD]), audit.store, audit)) as client:
        await answer(client, review(claim("net", request(GPU))))
    [line] = [r for r in caplog.records if r.name == "kube_intent.decision"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["webhook"], fields["uid"], fields["allowed"]) == ("claims", REVIEW_UID, False)
    assert (fields["kind"], fields["name"], fields["pods"]) == (
        "ResourceClaim",
        "net",
        ["team-a/nic-pod"],
    )
    assert fields["violations"][0]["rule"] == RULE
