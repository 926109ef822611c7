"""Hostile input to /mutate and /validate: the findings of the first fuzz campaign, one by one.

Real OPA, real SQLite audit store. Every answer is a 4xx JSON error or an in-band answer
(never a 5xx), names no exception and no internal address, and every decided denial is
audited (tests/webhook/fuzz generalises these).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from identity import jsonio
from identity.intent import INTENT_ANNOTATION
from identity.registry import AgentRegistry
from tests.support.admission import post, response_of, review
from tests.support.manifests import example_pod
from webhook import admission, limits
from webhook.admission import AdmissionRequest, GroupVersionKind, UserInfo
from webhook.app import create_app
from webhook.audit import AuditLog, StoredRecord, open_store
from webhook.decision import RequestInfo, Verdict
from webhook.detect import StaticClaimResolver
from webhook.metrics import Metrics
from webhook.mutate import handle_mutate
from webhook.opa_process import free_port
from webhook.policy import OpaPolicyEngine, PolicyEngine, PolicyInputRejected
from webhook.recorder import AuditRecorder
from webhook.routes.admission import AdmissionJSON
from webhook.settings import Settings

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")
SEE_LOG = re.compile(r"see the webhook log, id ([0-9a-f]{12})")


class Webhook:
    """The app as `kube-intent serve` wires it (minus TLS and cluster), auditing to SQLite."""

    def __init__(self, client: httpx.AsyncClient, audit: AuditLog, metrics: Metrics) -> None:
        self.client = client
        self.audit = audit
        self.metrics = metrics

    async def rows(self) -> list[StoredRecord]:
        return [r async for r in self.audit.store.iter_all()]

    async def answer(self, path: str, body: Any) -> dict[str, Any]:
        return response_of(await post(self.client, path, body))


@pytest_asyncio.fixture
async def webhook(
    opa: OpaPolicyEngine, agents: AgentRegistry, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[httpx.AsyncClient, AuditLog]] = []

    async def build(
        *,
        policy: PolicyEngine | None = None,
        claims: Any = None,
        grants: Any = None,
        **settings: Any,
    ) -> Webhook:
        audit = AuditLog(await open_store(str(tmp_path / f"audit{len(opened)}.db")), required=True)
        metrics = Metrics()
        app = create_app(
            Settings(**settings),
            policy=policy or opa,
            registry=lambda: agents,
            metrics=metrics,
            recorder=AuditRecorder(audit, metrics, lambda: opa.revision),
            claims=claims,
            grants=grants,
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")
        opened.append((client, audit))
        return Webhook(client, audit, metrics)

    yield build
    for client, audit in opened:
        await client.aclose()
        await audit.close()


def assert_no_internals(text: str, *secrets: str) -> None:
    assert not EXCEPTION_NAME.search(text), text
    assert "Traceback" not in text
    for secret in secrets:
        assert secret not in text, text


def with_intent(ttl: object) -> dict[str, Any]:
    pod = example_pod("allowed-vllm-llama")
    annotations = pod["metadata"]["annotations"]
    intent = {
        "purpose": "inference",
        "models": ["meta-llama/Llama-3.1-8B-Instruct"],
        "dataClasses": ["internal"],
        "tools": ["kb-search"],
        "egress": ["api.support.example.com:443"],
        "accelerators": {"count": 1, "resource": "nvidia.com/gpu"},
        "ttl": ttl,
    }
    annotations[INTENT_ANNOTATION] = json.dumps(intent)
    return pod


def body_with(text: bytes) -> bytes:
    """A valid review with `text` spliced in as the value of an extra request field."""
    raw = json.dumps(review(example_pod("allowed-vllm-llama"))).encode()
    return raw.replace(b'"operation": "CREATE"', b'"operation": "CREATE", "x": ' + text)


# --- bodies without a uid we can answer: a JSON 400 ----------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"a":' * 1000 + b"1" + b"}" * 1000, "nested deeper than 64", id="deep-1000"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "depth", id="deep-5000"),
        pytest.param(body_with(b"1" * 4301), "not valid JSON", id="4301-digit-integer"),
        pytest.param(body_with(b"NaN"), "not valid JSON", id="nan"),
        pytest.param(body_with(b"-Infinity"), "not valid JSON", id="infinity"),
        pytest.param(body_with(b"1e309"), "not valid JSON", id="1e309"),
        pytest.param(
            json.dumps(review(example_pod("allowed-vllm-llama"), uid="\ud800")).encode(),
            "not valid JSON",
            id="lone-surrogate-uid",
        ),
        pytest.param(
            json.dumps(review(example_pod("allowed-vllm-llama"), uid="u" * 200)).encode(),
            "at most 128 characters",
            id="uid-too-long",
        ),
        pytest.param(
            json.dumps(review(example_pod("allowed-vllm-llama"), uid="a\x00b")).encode(),
            "must be printable text",
            id="uid-with-nul",
        ),
        pytest.param(b"[]", "not an admission.k8s.io/v1 AdmissionReview", id="a-list"),
        pytest.param(b"\xef\xbb\xbf{}", "not valid JSON", id="byte-order-mark"),
    ],
)
async def test_unanswerable_bodies_get_a_json_400(
    webhook: Callable[..., Any], body: bytes, expected: str
) -> None:
    target = await webhook()
    http = await post(target.client, "/mutate", body)
    assert http.status_code == 400
    error = http.json()["error"]
    assert expected in error
    assert len(error) <= admission.MAX_MESSAGE
    assert_no_internals(error)
    assert await target.rows() == []


# --- malformed pods with a uid: an in-band 400 naming the field --------------------------------


def edited(path: str, value: Any, *, operation: str = "CREATE") -> dict[str, Any]:
    pod = example_pod("allowed-vllm-llama")
    body = review(
        pod, operation=operation, old=copy.deepcopy(pod) if operation != "CREATE" else None
    )
    where: Any = body
    keys = path.split(".")
    for key in keys[:-1]:
        where = where[int(key)] if isinstance(where, list) else where[key]
    where[keys[-1]] = value
    return body


def as_deployment(body: dict[str, Any]) -> dict[str, Any]:
    body["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            edited("request.object.metadata", []), "request.object.metadata", id="metadata-list"
        ),
        pytest.param(edited("request.object.spec", "x"), "request.object.spec", id="spec-string"),
        pytest.param(
            edited("request.object.metadata.annotations.x", 5),
            "request.object.metadata.annotations.x",
            id="annotation-not-a-string",
        ),
        pytest.param(
            edited("request.object.metadata.labels", ["a"]),
            "request.object.metadata.labels",
            id="labels-list",
        ),
        pytest.param(
            edited("request.object.metadata.name", 5), "request.object.metadata.name", id="name-int"
        ),
        pytest.param(
            edited("request.object.metadata.ownerReferences", "x"),
            "request.object.metadata.ownerReferences",
            id="owner-references-string",
        ),
        pytest.param(
            edited("request.object.spec.containers", "x"),
            "request.object.spec.containers",
            id="containers-string",
        ),
        pytest.param(
            edited("request.object.spec.containers.0.env", {"A": "b"}),
            "request.object.spec.containers[0].env",
            id="env-object",
        ),
        pytest.param(
            edited("request.object.spec.ephemeralContainers", [{"volumeMounts": ["x"]}]),
            "request.object.spec.ephemeralContainers[0].volumeMounts[0]",
            id="mount-string",
        ),
        pytest.param(
            edited("request.object.spec.serviceAccountName", 5),
            "request.object.spec.serviceAccountName",
            id="service-account-int",
        ),
        pytest.param(
            edited("request.oldObject.metadata", [], operation="UPDATE"),
            "request.oldObject.metadata",
            id="old-metadata-list",
        ),
        pytest.param(edited("request.dryRun", "yes"), "request.dryRun", id="dry-run-string"),
        pytest.param(edited("request.operation", "create"), "request.operation", id="operation"),
        pytest.param(edited("request.kind.group", 7), "request.kind.group", id="kind-group-int"),
        pytest.param(
            as_deployment(edited("request.object.metadata", 1)),
            "request.object.metadata",
            id="other-kind-metadata-int",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/mutate", "/validate"])
async def test_malformed_requests_with_a_uid_get_an_in_band_400(
    webhook: Callable[..., Any], body: dict[str, Any], field: str, path: str
) -> None:
    target = await webhook()
    answer = await target.answer(path, body)
    assert answer["uid"] == UID
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 400
    assert answer["status"]["reason"] == "BadRequest"
    assert field in answer["status"]["message"]
    assert_no_internals(answer["status"]["message"])
    assert await target.rows() == []


# --- the intent: JSON semantics, denied as a schema problem, audited ---------------------------


@pytest.mark.parametrize(
    "ttl",
    [30.0, 60.0, 1e2, True, "1h\n", "1" * 4301 + "h"],
    ids=["30.0", "60.0", "1e2", "true", "trailing-newline", "4301-digits"],
)
async def test_malformed_ttls_are_audited_intent_schema_denials(
    webhook: Callable[..., Any], ttl: object
) -> None:
    target = await webhook()
    answer = await target.answer("/validate", review(with_intent(ttl)))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert "[intent-schema] intent.ttl" in answer["status"]["message"]
    assert_no_internals(answer["status"]["message"])
    [row] = await target.rows()
    assert not row.allowed
    assert [v.rule for v in row.violations] == ["intent-schema"]


async def test_a_4301_digit_quantity_is_an_audited_denial(webhook: Callable[..., Any]) -> None:
    pod = example_pod("allowed-vllm-llama")
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "1" * 4301
    target = await webhook()
    answer = await target.answer("/mutate", review(pod))
    assert answer["status"]["code"] == 403
    assert_no_internals(answer["status"]["message"])
    assert "1" * 100 not in answer["status"]["message"]
    [row] = await target.rows()
    assert not row.allowed


# --- pathological sizes: refused by limits, before the claim lookups and OPA -------------------


class CountingClaims:
    """A ClaimLookup that resolves nothing and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    async def resolver_for(self, namespace: str, pod: dict[str, Any]) -> StaticClaimResolver:
        self.calls += 1
        return StaticClaimResolver([], default_namespace=namespace)


def grown(what: str) -> dict[str, Any]:
    pod = example_pod("allowed-vllm-llama")
    if what == "claims":
        pod["spec"]["resourceClaims"] = [
            {"name": f"c{i}", "resourceClaimName": f"c{i}"} for i in range(5000)
        ]
    elif what == "annotations":
        pod["metadata"]["annotations"]["padding"] = "p" * (300 * 1024)
    elif what == "intent":
        pod["metadata"]["annotations"][INTENT_ANNOTATION] = "i" * (1024 * 1024)
    elif what == "env":
        pod["spec"]["containers"][0]["env"] = [{"name": f"E{i}"} for i in range(2000)]
    elif what == "containers":
        pod["spec"]["containers"] = [
            {**pod["spec"]["containers"][0], "name": f"c{i}"} for i in range(300)
        ]
    elif what == "size":
        pod["spec"]["padding"] = ["x"] * 200_000
    return pod


@pytest.mark.parametrize(
    ("what", "field"),
    [
        ("claims", "spec.resourceClaims"),
        ("annotations", "metadata.annotations"),
        ("intent", f"metadata.annotations[{INTENT_ANNOTATION}]"),
        ("env", "spec.containers[0].env"),
        ("containers", "spec.containers"),
        ("size", "pod"),
    ],
)
async def test_pathological_pods_are_refused_by_pod_limits_before_lookups_and_opa(
    webhook: Callable[..., Any], what: str, field: str
) -> None:
    claims = CountingClaims()
    target = await webhook(claims=claims)
    answer = await target.answer("/mutate", review(grown(what)))
    message = answer["status"]["message"]
    assert answer["status"]["code"] == 403
    assert f"[pod-limits] {field}:" in message
    assert len(message) <= admission.MAX_MESSAGE
    assert claims.calls == 0
    # Refused before OPA was asked: no policy latency observed.
    assert (
        target.metrics.registry.get_sample_value(
            "kube_intent_opa_evaluation_duration_seconds_count"
        )
        == 0
    )
    [row] = await target.rows()
    assert {v.rule for v in row.violations if v.enforcement == "deny"} == {"pod-limits"}


async def test_a_pod_at_every_limit_is_decided_by_the_policy(webhook: Callable[..., Any]) -> None:
    pod = example_pod("allowed-vllm-llama")
    first = pod["spec"]["containers"][0]
    first["env"] = [{"name": f"E{i}", "value": "v"} for i in range(limits.MAX_ENV_PER_CONTAINER)]
    pod["spec"]["containers"] = [first] + [
        {"name": f"c{i}", "image": first["image"]} for i in range(limits.MAX_CONTAINERS - 1)
    ]
    target = await webhook()
    answer = await target.answer("/validate", review(pod))
    assert "[pod-limits]" not in answer.get("status", {}).get("message", "")
    assert (
        target.metrics.registry.get_sample_value(
            "kube_intent_opa_evaluation_duration_seconds_count"
        )
        == 1
    )


# --- bounded messages: digests, not echoes ------------------------------------------------------


async def test_an_immutable_change_shows_digests_not_the_values(
    webhook: Callable[..., Any],
) -> None:
    old = example_pod("allowed-vllm-llama")
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][INTENT_ANNOTATION] = "x" * 10_000
    target = await webhook()
    answer = await target.answer("/validate", review(new, operation="UPDATE", old=old))
    message = answer["status"]["message"]
    assert "[immutable-governed-fields]" in message
    assert "<10000 characters, sha256:" in message
    assert "x" * 100 not in message
    assert "purpose: inference" not in message  # the old intent is longer than the bound too


async def test_denial_messages_and_audited_violations_are_bounded(
    webhook: Callable[..., Any],
) -> None:
    pod = example_pod("allowed-vllm-llama")
    image = "quay.io/attacker/" + "a" * 5000
    pod["spec"]["containers"] = [
        {**pod["spec"]["containers"][0], "name": f"c{i}", "image": image} for i in range(50)
    ]
    target = await webhook()
    answer = await target.answer("/mutate", review(pod))
    message = answer["status"]["message"]
    assert "[image-registry]" in message
    assert len(message) <= admission.MAX_MESSAGE
    [row] = await target.rows()
    assert all(len(v.message) <= limits.MAX_VIOLATION_CHARS for v in row.violations)


# --- the policy engine: no address in answers; a refused input is a bad pod --------------------


async def test_opa_down_answer_names_a_log_id_not_the_address(
    webhook: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    dead = OpaPolicyEngine(url, timeout_seconds=0.5)
    try:
        target = await webhook(policy=dead)
        answer = await target.answer("/mutate", review(example_pod("allowed-vllm-llama")))
    finally:
        await dead.close()
    message = answer["status"]["message"]
    assert "[policy-engine] policy engine is unreachable" in message
    assert_no_internals(message, url, url.rsplit(":", 1)[1])
    ref = SEE_LOG.search(message)
    assert ref is not None
    logged = [r for r in caplog.records if getattr(r, "fields", {}).get("ref") == ref.group(1)]
    assert [r.fields["url"] for r in logged] == [url]  # type: ignore[attr-defined]
    [row] = await target.rows()
    assert not row.allowed


async def test_opa_refusing_the_input_is_a_policy_input_denial_even_with_fail_open(
    webhook: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    opa: OpaPolicyEngine,
) -> None:
    # What no longer gets past our own parsing (a NaN), sent anyway: the real OPA answers 400.
    monkeypatch.setattr(jsonio, "dumps_strict", lambda _value: b'{"input": {"x": NaN}}')
    target = await webhook(fail_open=True)
    answer = await target.answer("/mutate", review(example_pod("allowed-vllm-llama")))
    message = answer["status"]["message"]
    assert answer["allowed"] is False
    assert "[policy-input] policy engine refused this pod as input (HTTP 400)" in message
    assert "fail-open" not in json.dumps(answer)
    assert_no_internals(message, opa.url)
    ref = SEE_LOG.search(message)
    assert ref is not None
    [logged] = [r for r in caplog.records if getattr(r, "fields", {}).get("ref") == ref.group(1)]
    assert logged.fields["status"] == 400  # type: ignore[attr-defined]
    [row] = await target.rows()
    assert [v.rule for v in row.violations] == ["policy-input"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(math.nan, "NaN or Infinity is not a finite number", id="nan"),
        pytest.param(-math.inf, "NaN or Infinity is not a finite number", id="infinity"),
        pytest.param("\ud800", "surrogates not allowed", id="lone-surrogate"),
        pytest.param(2**70, "64-bit range", id="big-int"),
    ],
)
async def test_the_engine_refuses_what_opa_cannot_read_without_asking_it(
    opa: OpaPolicyEngine, value: object, problem: str
) -> None:
    # `kube-intent review` reads YAML, which has .nan and .inf.
    with pytest.raises(PolicyInputRejected, match="cannot be evaluated by the policy engine") as e:
        await opa.evaluate({"pod": {"x": value}})
    assert problem in str(e.value)


# --- unexpected errors: denied, audited, counted, reported under an id -------------------------


class BrokenClaims:
    async def resolver_for(self, namespace: str, pod: dict[str, Any]) -> None:
        raise RuntimeError("connection to https://10.0.0.1:6443 failed, see /etc/kubeconfig")


class BrokenGrants:
    def patch(self, pod: dict[str, Any], info: RequestInfo, verdict: Verdict) -> list[Any]:
        raise KeyError("/var/run/secrets/signing-key")


@pytest.mark.parametrize(
    ("seam", "example"),
    [
        pytest.param({"claims": BrokenClaims()}, "allowed-vllm-llama", id="while-deciding"),
        pytest.param({"grants": BrokenGrants()}, "allowed-vllm-llama", id="while-answering"),
    ],
)
async def test_unexpected_errors_are_audited_counted_denials_with_a_log_id(
    webhook: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    seam: dict[str, Any],
    example: str,
) -> None:
    target = await webhook(**seam)
    with caplog.at_level(logging.ERROR):
        answer = await target.answer("/mutate", review(example_pod(example)))
    message = answer["status"]["message"]
    assert answer["allowed"] is False
    assert "[internal-error] kube-intent could not evaluate this pod" in message
    assert_no_internals(message, "10.0.0.1", "/etc", "/var/run")
    ref = SEE_LOG.search(message)
    assert ref is not None
    [logged] = [r for r in caplog.records if getattr(r, "fields", {}).get("ref") == ref.group(1)]
    assert logged.exc_info is not None  # the detail is in the log, with its traceback
    [row] = await target.rows()
    assert not row.allowed
    assert [v.rule for v in row.violations] == ["internal-error"]
    sample = target.metrics.registry.get_sample_value
    assert sample("kube_intent_admission_internal_errors_total", {"webhook": "mutate"}) == 1


# --- transport ----------------------------------------------------------------------------------


async def test_a_client_that_disconnects_mid_body_is_not_an_error(
    webhook: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    target = await webhook()
    app = target.client._transport.app
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"apiVersion": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mutate",
        "raw_path": b"/mutate",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("w", 80),
        "root_path": "",
    }
    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)  # raises if the disconnect escaped
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("disconnected" in r.getMessage() for r in caplog.records)


def test_the_answer_encoder_cannot_fail() -> None:
    # Our answers hold only validated text; should a bug let a lone surrogate through, the
    # answer is still written (scrubbed), not a 500.
    rendered = AdmissionJSON(admission.deny("\ud800", "message \udfff")).body
    assert json.loads(bytes(rendered))["response"]["status"]["message"] == "message ?"


async def test_admit_does_not_rely_on_the_request_model(webhook: Callable[..., Any]) -> None:
    # The model keeps a pod whose metadata is a list out; should one get past it, admit()
    # still answers with an audited denial rather than an exception.
    target = await webhook()
    services = target.client._transport.app.state.kube_intent.admission
    request = AdmissionRequest.model_construct(
        uid=UID,
        kind=GroupVersionKind(group="", version="v1", kind="Pod"),
        sub_resource="",
        name="",
        namespace="ml-serving",
        operation="CREATE",
        user_info=UserInfo(),
        object={"metadata": ["not", "an", "object"], "spec": {}},
        old_object=None,
        dry_run=False,
    )
    answer = (await handle_mutate(request, services))["response"]
    assert answer["status"]["code"] == 403
    assert "[internal-error]" in answer["status"]["message"]
    [row] = await target.rows()
    assert [v.rule for v in row.violations] == ["internal-error"]
