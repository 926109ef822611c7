"""The grant: claims and signature, the pod patch on real pod JSON, reinvocation, refusals."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from identity.grants import (
    GRANT_ANNOTATION,
    GRANT_FILE,
    GRANT_TYP,
    TOKEN_FILE,
    GrantError,
    GrantIssuer,
    covers,
    verify_grant,
)
from identity.intent import INTENT_ANNOTATION, intent_digest, parse_intent
from identity.keys import KeySet
from identity.registry import AgentRegistry
from tests.support.admission import apply_patch
from tests.support.grants import (
    ISSUER,
    SCOPES,
    TOKEN_ENDPOINT,
    admission_pod,
    hs256_with,
    looks_like_jwt,
    segments,
    unsigned,
    verdict_for,
    with_payload,
)
from tests.support.manifests import example_pod
from webhook.decision import RequestInfo, Verdict
from webhook.grants import RULE_GRANT, VerdictGrants, grant_checks

REQUEST = RequestInfo(uid="u-1", operation="CREATE", namespace="ml-serving", name="support-bot-")
NOW = 1_760_000_000


def fixed(now: float) -> Callable[[], float]:
    return lambda: now


def admitted(issuer: GrantIssuer, registry: AgentRegistry, **verdict: Any) -> dict[str, Any]:
    pod = admission_pod()
    patched: dict[str, Any] = apply_patch(
        pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict_for(pod, registry, **verdict))
    )
    return patched


def grant_of(pod: dict[str, Any]) -> str:
    token: str = pod["metadata"]["annotations"][GRANT_ANNOTATION]
    return token


def verify(token: str, keyset: KeySet, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": TOKEN_ENDPOINT,
        "namespace": "ml-serving",
        "service_account": "support-bot",
        "intent_digest": parse_intent(
            admission_pod()["metadata"]["annotations"][INTENT_ANNOTATION]
        ).digest,
        **overrides,
    }
    return verify_grant(token, keyset, **arguments)


# -- claims and signature


def test_grant_header_claims_and_signature(issuer: GrantIssuer, registry: AgentRegistry) -> None:
    pod = admitted(issuer, registry)
    token = grant_of(pod)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": issuer.keys().signing_kid, "typ": GRANT_TYP}
    # Verified independently of identity.*: PyJWT with the key from the published JWKS.
    jwk = next(k for k in issuer.keys().jwks()["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=TOKEN_ENDPOINT, issuer=ISSUER
    )
    document = json.loads(admission_pod()["metadata"]["annotations"][INTENT_ANNOTATION])
    assert claims == {
        "iss": ISSUER,
        "sub": "spiffe://prod.example.com/ns/ml-serving/sa/support-bot",
        "aud": TOKEN_ENDPOINT,
        "iat": claims["iat"],
        "nbf": claims["iat"],
        "exp": claims["iat"] + 900,
        "jti": claims["jti"],
        "scope": " ".join(SCOPES),
        "intent_digest": intent_digest(document),
        "agent": "support-bot",
        "policy_rev": "0123456789ab",
        "ns": "ml-serving",
        "sa": "support-bot",
    }
    assert uuid.UUID(claims["jti"]).version == 4


def test_on_mint_sees_the_claims_of_each_new_grant_only(
    keyset: KeySet, registry: AgentRegistry
) -> None:
    minted: list[Any] = []
    issuer = GrantIssuer(lambda: keyset, ISSUER, on_mint=minted.append)
    pod = admission_pod()
    verdict = verdict_for(pod, registry)
    once = apply_patch(pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict))
    assert VerdictGrants(issuer).patch(once, REQUEST, verdict) == []  # kept: not minted again
    [claims] = minted
    assert claims.jti == segments(grant_of(once))[1]["jti"]
    assert claims.aud == TOKEN_ENDPOINT  # derived from the issuer
    dry_run = RequestInfo(
        uid="u-2", operation="CREATE", namespace="ml-serving", name="x", dry_run=True
    )
    assert (
        VerdictGrants(issuer).patch(pod, dry_run, verdict) != []
    )  # the same answer on dry-run ...
    assert len(minted) == 1  # ... but nothing is counted or audited


@pytest.mark.parametrize(
    ("intent_ttl", "policy_ttl", "lifetime"),
    [
        pytest.param("30m", 900, 900, id="policy-cap-wins"),
        pytest.param("5m", 900, 300, id="intent-ttl-wins"),
        pytest.param(120, 3600, 120, id="integer-intent-ttl"),
    ],
)
def test_grant_lifetime_is_the_shorter_of_intent_and_policy(
    issuer: GrantIssuer,
    registry: AgentRegistry,
    intent_ttl: str | int,
    policy_ttl: int,
    lifetime: int,
) -> None:
    pod = admission_pod()
    annotations = pod["metadata"]["annotations"]
    intent = json.loads(annotations[INTENT_ANNOTATION])
    annotations[INTENT_ANNOTATION] = json.dumps({**intent, "ttl": intent_ttl})
    verdict = verdict_for(pod, registry, grant_ttl=policy_ttl)
    _, claims = segments(
        grant_of(apply_patch(pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict)))
    )
    assert claims["exp"] - claims["iat"] == lifetime


def _no_agent(v: Verdict) -> Verdict:
    assert v.identity is not None
    identity = type(v.identity)(None, "ml-serving", "support-bot", "spiffe://x", None, ())
    return dataclasses.replace(v, identity=identity)


def _bad_intent(v: Verdict) -> Verdict:
    return dataclasses.replace(v, intent=parse_intent("ttl: ["))


def _overridden(v: Verdict) -> Verdict:
    # A would-be denial admitted by a dryrun/warn rollout: nothing approved a scope.
    return dataclasses.replace(v, overridden=True)


@pytest.mark.parametrize(
    ("verdict_options", "change"),
    [
        pytest.param({"allowed": False}, None, id="denied"),
        pytest.param({"fail_open": True}, None, id="fail-open-no-decision"),
        pytest.param({"grant_ttl": 0}, None, id="policy-grants-no-time"),
        pytest.param({}, _no_agent, id="no-agent"),
        pytest.param({}, _bad_intent, id="invalid-intent"),
        pytest.param({}, _overridden, id="would-be-denial-of-a-dryrun-rollout"),
    ],
)
def test_no_grant_and_no_patch_when_nothing_was_approved(
    issuer: GrantIssuer,
    registry: AgentRegistry,
    verdict_options: dict[str, Any],
    change: Callable[[Verdict], Verdict] | None,
) -> None:
    pod = admission_pod()
    verdict = verdict_for(pod, registry, **verdict_options)
    if change is not None:
        verdict = change(verdict)
    assert VerdictGrants(issuer).patch(pod, REQUEST, verdict) == []


# -- the patch on real pod JSON


def test_patch_gives_a_pod_with_token_grant_volumes_mounts_and_env(
    issuer: GrantIssuer, registry: AgentRegistry
) -> None:
    original = admission_pod()
    pod = admitted(issuer, registry)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert list(volumes) == [
        "model-cache",
        "kube-api-access-x7k2p",
        "kube-intent-token",
        "kube-intent-grant",
    ]
    assert volumes["kube-intent-token"]["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": ISSUER, "expirationSeconds": 600, "path": "token"}}
    ]
    assert volumes["kube-intent-grant"]["downwardAPI"]["items"] == [
        {"path": "grant", "fieldRef": {"fieldPath": "metadata.annotations['kube-intent.io/grant']"}}
    ]
    for name in ("vllm", "gateway"):
        container = next(c for c in pod["spec"]["containers"] if c["name"] == name)
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/var/run/kube-intent/token"] == {
            "name": "kube-intent-token",
            "mountPath": "/var/run/kube-intent/token",
            "readOnly": True,
        }
        assert mounts["/var/run/kube-intent/grant"]["name"] == "kube-intent-grant"
        assert mounts["/var/run/kube-intent/grant"]["readOnly"] is True
        env = {e["name"]: e["value"] for e in container["env"]}
        assert {k: v for k, v in env.items() if k.startswith("KUBE_INTENT_")} == {
            "KUBE_INTENT_TOKEN_ENDPOINT": TOKEN_ENDPOINT,
            "KUBE_INTENT_TOKEN_FILE": TOKEN_FILE,
            "KUBE_INTENT_GRANT_FILE": GRANT_FILE,
        }
    vllm = pod["spec"]["containers"][0]
    assert vllm["env"][0] == {"name": "HF_HOME", "value": "/models"}  # kept, appended after
    assert vllm["volumeMounts"][:2] == original["spec"]["containers"][0]["volumeMounts"]
    # Init containers (also the native sidecar) are untouched.
    assert pod["spec"]["initContainers"] == original["spec"]["initContainers"]
    # Besides annotations, volumes and the two containers, nothing changed.
    for key in set(original["spec"]) - {"volumes", "containers"}:
        assert pod["spec"][key] == original["spec"][key]


def test_no_credential_in_the_pod_spec_or_env(issuer: GrantIssuer, registry: AgentRegistry) -> None:
    pod = admitted(issuer, registry)
    spec = json.dumps(pod["spec"])
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.", spec)
    for container in pod["spec"]["containers"]:
        for variable in container.get("env", []):
            assert not looks_like_jwt(str(variable.get("value", "")))
    # The annotation holds the grant (a signed statement, not a bearer credential) only.
    annotations = pod["metadata"]["annotations"]
    assert [k for k, v in annotations.items() if looks_like_jwt(v)] == [GRANT_ANNOTATION]


@pytest.mark.parametrize(
    "name",
    ["allowed-vllm-llama", "allowed-dra-triton", "allowed-warn-ttl"],
)
def test_patch_applies_to_each_example_pod(
    issuer: GrantIssuer, registry: AgentRegistry, name: str
) -> None:
    pod = example_pod(name)
    namespace = pod["metadata"]["namespace"]
    verdict = verdict_for(pod, registry, namespace=namespace)
    patched = apply_patch(pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict))
    assert {"kube-intent-token", "kube-intent-grant"} <= {
        v["name"] for v in patched["spec"]["volumes"]
    }
    for container in patched["spec"]["containers"]:
        assert {m["name"] for m in container["volumeMounts"]} >= {
            "kube-intent-token",
            "kube-intent-grant",
        }
    assert VerdictGrants(issuer).patch(patched, REQUEST, verdict) == []


def _apiserver_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    """What the API server adds to our volumes before a reinvoked webhook sees them again."""
    for volume in pod["spec"]["volumes"]:
        if "projected" in volume:
            volume["projected"].setdefault("defaultMode", 420)
        if "downwardAPI" in volume:
            volume["downwardAPI"].setdefault("defaultMode", 420)
            for item in volume["downwardAPI"]["items"]:
                item["fieldRef"].setdefault("apiVersion", "v1")
    return pod


@pytest.mark.parametrize(
    "defaulted", [pytest.param(False, id="as-patched"), pytest.param(True, id="as-defaulted")]
)
def test_reinvocation_is_idempotent(
    issuer: GrantIssuer, registry: AgentRegistry, defaulted: bool
) -> None:
    pod = admission_pod()
    verdict = verdict_for(pod, registry)
    once = apply_patch(pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict))
    if defaulted:
        once = _apiserver_defaults(once)
    again = VerdictGrants(issuer).patch(once, REQUEST, verdict_for(once, registry))
    assert again == []
    assert apply_patch(once, again) == once


def test_reinvocation_patch_applied_twice_equals_once(
    issuer: GrantIssuer, registry: AgentRegistry
) -> None:
    pod = admission_pod()
    verdict = verdict_for(pod, registry)
    patch = VerdictGrants(issuer).patch(pod, REQUEST, verdict)
    once = apply_patch(pod, patch)
    twice = apply_patch(once, VerdictGrants(issuer).patch(once, REQUEST, verdict))
    assert twice == once


def _claims_edit(**changes: Any) -> Callable[[str, KeySet, KeySet], str]:
    def make(token: str, keyset: KeySet, other: KeySet) -> str:
        _, claims = segments(token)
        return keyset.sign({**claims, **changes}, GRANT_TYP)

    return make


@pytest.mark.parametrize(
    "stale",
    [
        pytest.param(lambda t, k, o: o.sign(segments(t)[1], GRANT_TYP), id="signed-by-other-keys"),
        pytest.param(_claims_edit(intent_digest="sha256:" + "0" * 64), id="other-intent"),
        pytest.param(_claims_edit(sa="batch-eval"), id="other-service-account"),
        pytest.param(
            _claims_edit(scope=" ".join([*SCOPES, "tool:shell:invoke"])), id="wider-scope"
        ),
        pytest.param(_claims_edit(exp=NOW - 1), id="expired"),
        pytest.param(_claims_edit(exp=NOW + 7200), id="longer-than-policy-allows"),
        pytest.param(lambda t, k, o: "not-a-jwt", id="garbage"),
    ],
)
def test_reinvocation_replaces_a_grant_it_would_not_mint(
    keyset: KeySet,
    other_keyset: KeySet,
    registry: AgentRegistry,
    stale: Callable[[str, KeySet, KeySet], str],
) -> None:
    issuer = GrantIssuer(lambda: keyset, ISSUER, TOKEN_ENDPOINT, clock=fixed(NOW))
    pod = admission_pod()
    verdict = verdict_for(pod, registry)
    once = apply_patch(pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict))
    planted = stale(grant_of(once), keyset, other_keyset)
    once["metadata"]["annotations"][GRANT_ANNOTATION] = planted
    patch = VerdictGrants(issuer).patch(once, REQUEST, verdict)
    assert [op["path"] for op in patch] == ["/metadata/annotations/kube-intent.io~1grant"]
    fresh = grant_of(apply_patch(once, patch))
    assert fresh != planted
    verify(fresh, keyset, now=NOW)


def test_authors_cannot_preempt_our_volumes_mounts_or_env(
    issuer: GrantIssuer, registry: AgentRegistry
) -> None:
    pod = admission_pod()
    spec = pod["spec"]
    spec["volumes"].append({"name": "kube-intent-grant", "configMap": {"name": "my-fake-grant"}})
    vllm = spec["containers"][0]
    vllm["env"].append({"name": "KUBE_INTENT_TOKEN_FILE", "value": "/tmp/mine"})
    vllm["volumeMounts"].append({"name": "model-cache", "mountPath": "/var/run/kube-intent/token"})
    patched = apply_patch(
        pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict_for(pod, registry))
    )
    volumes = [v for v in patched["spec"]["volumes"] if v["name"] == "kube-intent-grant"]
    assert len(volumes) == 1
    assert "downwardAPI" in volumes[0]
    assert "configMap" not in volumes[0]
    vllm = patched["spec"]["containers"][0]
    assert [e["value"] for e in vllm["env"] if e["name"] == "KUBE_INTENT_TOKEN_FILE"] == [
        TOKEN_FILE
    ]
    at_token = [m for m in vllm["volumeMounts"] if m["mountPath"] == "/var/run/kube-intent/token"]
    assert at_token == [
        {"name": "kube-intent-token", "mountPath": "/var/run/kube-intent/token", "readOnly": True}
    ]


@pytest.mark.parametrize(
    ("actual", "wanted", "expected"),
    [
        pytest.param({"a": 1, "b": 2}, {"a": 1}, True, id="extra-defaulted-key"),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, False, id="missing-key"),
        pytest.param([{"a": 1, "x": 0}], [{"a": 1}], True, id="list-items-covered"),
        pytest.param([{"a": 1}, {"a": 2}], [{"a": 1}], False, id="extra-list-item"),
        pytest.param({"a": "1"}, {"a": 1}, False, id="type-differs"),
    ],
)
def test_covers(actual: Any, wanted: Any, expected: bool) -> None:
    assert covers(actual, wanted) is expected


# -- verify_grant refusals


@pytest.fixture
def good_grant(keyset: KeySet, registry: AgentRegistry) -> str:
    issuer = GrantIssuer(lambda: keyset, ISSUER, TOKEN_ENDPOINT, clock=fixed(NOW))
    return grant_of(admitted(issuer, registry))


def _public_pem(keyset: KeySet) -> bytes:
    return keyset.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


Forgery = Callable[[str, KeySet, KeySet], str]

REFUSALS: list[Any] = [
    pytest.param(
        lambda t, k, o: with_payload(t, {**segments(t)[1], "intent_digest": "sha256:" + "1" * 64}),
        {},
        "signature",
        id="tampered-intent-digest",
    ),
    pytest.param(
        lambda t, k, o: with_payload(t, {**segments(t)[1], "scope": "admin"}),
        {},
        "signature",
        id="tampered-scope",
    ),
    pytest.param(
        lambda t, k, o: t,
        {"intent_digest": "sha256:" + "2" * 64},
        "intent-digest",
        id="intent-changed-after-admission",
    ),
    pytest.param(
        lambda t, k, o: t, {"namespace": "ml-research"}, "namespace", id="other-namespace"
    ),
    pytest.param(
        lambda t, k, o: t, {"service_account": "batch-eval"}, "service-account", id="other-sa"
    ),
    pytest.param(lambda t, k, o: t, {"now": NOW + 900}, "expired", id="expired"),
    pytest.param(lambda t, k, o: t, {"now": NOW - 60}, "not-yet-valid", id="not-yet-valid"),
    pytest.param(lambda t, k, o: t, {"now": NOW - 20}, None, id="small-clock-skew-tolerated"),
    pytest.param(lambda t, k, o: t, {"issuer": "https://evil"}, "issuer", id="other-issuer"),
    pytest.param(
        lambda t, k, o: t, {"audience": "https://x/token"}, "audience", id="other-endpoint"
    ),
    pytest.param(
        lambda t, k, o: jwt.encode(
            segments(t)[1],
            o.signing_key,
            algorithm="ES256",
            headers={"kid": k.signing_kid, "typ": GRANT_TYP},
        ),
        {},
        "signature",
        id="forged-signature-with-our-kid",
    ),
    pytest.param(
        lambda t, k, o: o.sign(segments(t)[1], GRANT_TYP), {}, "unknown-kid", id="unknown-kid"
    ),
    pytest.param(
        lambda t, k, o: unsigned(segments(t)[0], segments(t)[1]), {}, "algorithm", id="alg-none"
    ),
    pytest.param(
        lambda t, k, o: hs256_with(_public_pem(k), segments(t)[0], segments(t)[1]),
        {},
        "algorithm",
        id="hs256-keyed-with-public-key",
    ),
    pytest.param(
        lambda t, k, o: k.sign(segments(t)[1], "at+jwt"), {}, "type", id="access-token-typ"
    ),
    pytest.param(
        lambda t, k, o: k.sign({**segments(t)[1], "exp": "soon"}, GRANT_TYP),
        {},
        "claims",
        id="claim-of-wrong-type",
    ),
    # 86 base64url characters less 5 is no base64 at all; less 4 would still decode, and with
    # some signatures to bytes that merely fail the signature check.
    pytest.param(lambda t, k, o: t[:-5], {}, "malformed", id="truncated-signature"),
    pytest.param(
        lambda t, k, o: t[:-30] + ("A" if t[-30] != "A" else "B") + t[-29:],
        {},
        "signature",
        id="altered-signature",
    ),
    pytest.param(lambda t, k, o: "a.b", {}, "malformed", id="garbage"),
]


@pytest.mark.parametrize(("forge", "context", "reason"), REFUSALS)
def test_verify_grant_refusals(
    good_grant: str,
    keyset: KeySet,
    other_keyset: KeySet,
    forge: Forgery,
    context: dict[str, Any],
    reason: str | None,
) -> None:
    token = forge(good_grant, keyset, other_keyset)
    arguments = {"now": NOW + 10, **context}
    if reason is None:
        assert verify(token, keyset, **arguments).agent == "support-bot"
        return
    with pytest.raises(GrantError) as refused:
        verify(token, keyset, **arguments)
    assert refused.value.reason == reason


def test_swapped_grant_from_another_pod_is_refused(keyset: KeySet, registry: AgentRegistry) -> None:
    issuer = GrantIssuer(lambda: keyset, ISSUER, TOKEN_ENDPOINT, clock=fixed(NOW))
    research = example_pod("allowed-dra-triton")
    research_ns = research["metadata"]["namespace"]
    verdict = verdict_for(research, registry, namespace=research_ns)
    theirs = grant_of(
        apply_patch(research, VerdictGrants(issuer).patch(research, REQUEST, verdict))
    )
    with pytest.raises(GrantError) as refused:
        verify(theirs, keyset, now=NOW)
    assert refused.value.reason in ("namespace", "service-account", "intent-digest")


# -- grant_checks (validate)


def _checks(
    pod: dict[str, Any], verdict: Verdict, keyset: KeySet, now: float = NOW + 5
) -> list[Any]:

    return grant_checks(
        pod["metadata"].get("annotations") or {}, verdict, keyset, ISSUER, TOKEN_ENDPOINT, now=now
    )


def _edit_intent(pod: dict[str, Any]) -> None:
    annotations = pod["metadata"]["annotations"]
    intent = json.loads(annotations[INTENT_ANNOTATION])
    annotations[INTENT_ANNOTATION] = json.dumps({**intent, "dataClasses": ["internal", "public"]})


def _move_sa(pod: dict[str, Any]) -> None:
    pod["spec"]["serviceAccountName"] = "batch-eval"


def _drop_grant(pod: dict[str, Any]) -> None:
    del pod["metadata"]["annotations"][GRANT_ANNOTATION]


@pytest.mark.parametrize(
    ("mutate_final", "verdict_options", "namespace", "now", "message"),
    [
        pytest.param(None, {}, "ml-serving", NOW + 5, None, id="intact"),
        pytest.param(_drop_grant, {}, "ml-serving", NOW + 5, "is missing", id="grant-removed"),
        pytest.param(_edit_intent, {}, "ml-serving", NOW + 5, "another intent", id="tampered"),
        pytest.param(_move_sa, {}, "ml-serving", NOW + 5, "another ServiceAccount", id="other-sa"),
        pytest.param(None, {}, "ml-research", NOW + 5, "another namespace", id="other-namespace"),
        pytest.param(None, {}, "ml-serving", NOW + 901, "has expired", id="expired"),
        pytest.param(
            None, {"scopes": SCOPES[:2]}, "ml-serving", NOW + 5, "no longer", id="scope-narrowed"
        ),
        pytest.param(None, {"allowed": False}, "ml-serving", NOW + 5, None, id="denied-anyway"),
        pytest.param(None, {"fail_open": True}, "ml-serving", NOW + 5, None, id="fail-open"),
        pytest.param(_drop_grant, {"fail_open": True}, "ml-serving", NOW + 5, None, id="no-due"),
    ],
)
def test_grant_checks_on_the_final_pod(
    keyset: KeySet,
    registry: AgentRegistry,
    mutate_final: Callable[[dict[str, Any]], None] | None,
    verdict_options: dict[str, Any],
    namespace: str,
    now: float,
    message: str | None,
) -> None:
    issuer = GrantIssuer(lambda: keyset, ISSUER, TOKEN_ENDPOINT, clock=fixed(NOW))
    final = admitted(issuer, registry)
    if mutate_final is not None:
        mutate_final(final)
    verdict = verdict_for(final, registry, namespace=namespace, **verdict_options)
    violations = _checks(final, verdict, keyset, now)
    if message is None:
        assert violations == []
        return
    assert len(violations) == 1
    assert violations[0].rule == RULE_GRANT
    assert violations[0].enforcement == "deny"
    assert violations[0].field == "metadata.annotations[kube-intent.io/grant]"
    assert message in violations[0].message
    assert grant_of(admitted(issuer, registry))[:20] not in violations[0].message


def test_grant_checks_with_a_forged_grant(
    keyset: KeySet, other_keyset: KeySet, registry: AgentRegistry
) -> None:
    issuer = GrantIssuer(lambda: keyset, ISSUER, TOKEN_ENDPOINT, clock=fixed(NOW))
    final = admitted(issuer, registry)
    annotations = final["metadata"]["annotations"]
    annotations[GRANT_ANNOTATION] = other_keyset.sign(segments(grant_of(final))[1], GRANT_TYP)
    [violation] = _checks(final, verdict_for(final, registry), keyset)
    assert "not in kube-intent's key set" in violation.message


@pytest.mark.asyncio
async def test_with_a_real_policy_decision(
    opa: Any, keyset: KeySet, registry: AgentRegistry, agents: AgentRegistry
) -> None:
    """The bundled policies decide the example pod; the grant carries their scopes and TTL."""
    from webhook.decision import Decider
    from webhook.detect import (
        DEFAULT_DEVICE_CLASSES,
        DEFAULT_RESOURCE_PATTERNS,
        AcceleratorDetector,
    )

    decider = Decider(
        detector=AcceleratorDetector(DEFAULT_RESOURCE_PATTERNS, DEFAULT_DEVICE_CLASSES),
        registry=lambda: agents,
        policy=opa,
        trust_domain="prod.example.com",
    )
    issuer = GrantIssuer(lambda: keyset, ISSUER, policy_revision=lambda: opa.revision)
    pod = example_pod("allowed-vllm-llama")
    verdict = await decider.decide(REQUEST, pod, decider.detect(pod, REQUEST.namespace))
    assert verdict.allowed
    assert verdict.decision is not None
    assert verdict.decision.scopes
    final = apply_patch(pod, VerdictGrants(issuer).patch(pod, REQUEST, verdict))
    _, claims = segments(grant_of(final))
    assert claims["scope"].split() == verdict.decision.scopes
    assert claims["exp"] - claims["iat"] == min(1800, verdict.decision.grant_ttl_seconds)
    assert claims["policy_rev"] == opa.revision
    again = await decider.decide(REQUEST, final, decider.detect(final, REQUEST.namespace))
    assert _checks(final, again, keyset, now=claims["iat"] + 1) == []
