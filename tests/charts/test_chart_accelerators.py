"""The chart's accelerator settings: one list per path in .Values.accelerators feeds both the
webhooks' CEL matchConditions and the webhook's detector, so that the API server never skips a
pod the detector would govern (docs/accelerator-detection.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.chart import env, render, render_error, webhooks
from tests.support.cluster import Cluster
from tests.support.helm import CHART
from tests.support.kube import (
    api_error,
    ensure_namespace,
    ensure_service_account,
    server_side_apply,
    wait_until,
)
from tests.support.paths import DATA
from webhook.detect import (
    DEFAULT_DEVICE_ANNOTATIONS,
    DEFAULT_DEVICE_CLASSES,
    DEFAULT_DEVICE_ENV,
    DEFAULT_DEVICE_HOST_PATHS,
    DEFAULT_RESOURCE_PATTERNS,
    DEFAULT_RUNTIME_CLASSES,
    DEFAULT_SHARING_ANNOTATIONS,
    NO_DEVICE_ENV_VALUES,
    AcceleratorDetector,
    StaticClaimResolver,
)
from webhook.settings import Settings

MANIFESTS = DATA / "manifests"
CONDITION = "requests-accelerators"

# .Values.accelerators key -> (webhook setting, its default).
ACCELERATOR_VALUES: dict[str, tuple[str, object]] = {
    "resources": ("accelerator_resources", DEFAULT_RESOURCE_PATTERNS),
    "deviceClasses": ("accelerator_device_classes", DEFAULT_DEVICE_CLASSES),
    "sharingAnnotations": ("accelerator_sharing_annotations", DEFAULT_SHARING_ANNOTATIONS),
    "runtimeClasses": ("accelerator_runtime_classes", DEFAULT_RUNTIME_CLASSES),
    "deviceEnv": ("accelerator_device_env", DEFAULT_DEVICE_ENV),
    "deviceHostPaths": ("accelerator_device_host_paths", DEFAULT_DEVICE_HOST_PATHS),
    "privileged": ("accelerator_privileged", True),
    "deviceAnnotations": ("accelerator_device_annotations", DEFAULT_DEVICE_ANNOTATIONS),
}


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def match_conditions(objects: list[dict[str, Any]]) -> list[str]:
    """The requests-accelerators expression of the mutating and the validating pod webhook."""
    found = [
        condition["expression"]
        for _, hook in webhooks(objects)
        for condition in hook.get("matchConditions", [])
        if condition["name"] == CONDITION
    ]
    assert len(found) == 2, "expected the condition on both pod webhooks"
    return found


# -- one list each --------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(ACCELERATOR_VALUES))
def test_chart_defaults_are_the_webhook_defaults(key: str) -> None:
    # An install with default values governs exactly what `kube-intent serve` does.
    setting, default = ACCELERATOR_VALUES[key]
    value = chart_values()["accelerators"][key]
    assert value == (list(default) if isinstance(default, tuple) else default)
    assert Settings.model_fields[setting].default == default


@pytest.mark.parametrize("key", sorted(ACCELERATOR_VALUES))
def test_every_accelerator_value_reaches_the_webhook(key: str) -> None:
    # Changed values must change the webhook too, not only the CEL pre-filter.
    setting, _ = ACCELERATOR_VALUES[key]
    variables = env(render("defaults"))
    name = f"KUBE_INTENT_{setting.upper()}"
    assert name in variables, f"{name} is not passed to the webhook"
    assert json.loads(variables[name]["value"]) == chart_values()["accelerators"][key]


# -- the match condition ----------------------------------------------------------------------


def test_match_condition_covers_every_path() -> None:
    for expression in match_conditions(render("defaults")):
        # Counted: extended resources (whole vendor domains), DRA claims, sharing annotations.
        assert "k.startsWith('nvidia.com/')" in expression
        assert "k.startsWith('huawei.com/')" in expression
        assert "object.spec.resourceClaims" in expression
        assert "k == 'gpu-fraction'" in expression
        # Side doors.
        assert "e.name in ['NVIDIA_VISIBLE_DEVICES', " in expression
        assert "c.securityContext.privileged" in expression
        assert "object.spec.runtimeClassName == 'nvidia'" in expression
        assert "object.spec.runtimeClassName.startsWith('kata-')" in expression
        assert "object.spec.volumes.exists(v, has(v.hostPath))" in expression
        assert "k.startsWith('cdi.k8s.io/')" in expression
        # Every kind of container, ephemeral ones (kubectl debug) included.
        for containers in ("containers", "initContainers", "ephemeralContainers"):
            assert f"object.spec.{containers}.exists(c, " in expression


def test_match_condition_skips_the_env_values_that_expose_nothing() -> None:
    # The CEL must not send more than needed here: KAI writes "void" into every container
    # that requests no GPU, and a fail-closed webhook should not sit in front of all of them.
    # "" is covered by has(e.value): the API server drops empty strings from the object.
    assert set(NO_DEVICE_ENV_VALUES) == {"", "void", "none"}
    for expression in match_conditions(render("defaults")):
        assert (
            "(has(e.valueFrom) || (has(e.value) && !(e.value in ['void', 'none'])))" in expression
        )


def test_exclusions_are_left_out_and_capacity_globs_are_prefixes() -> None:
    objects = render(
        None,
        "accelerators.resources={vendor.io/*,!vendor.io/nic,~vendor.io/mem*,~other.io/x-*-mem,"
        "~third.io/cores}",
    )
    for expression in match_conditions(objects):
        resources = expression.split("c.resources.limits.exists(k, ")[1].split("))")[0]
        assert resources == (
            "k.startsWith('deviceclass.resource.kubernetes.io/') || k.startsWith('vendor.io/') "
            "|| k.startsWith('other.io/x-') || k == 'third.io/cores'"
        )


@pytest.mark.parametrize(
    ("sets", "absent"),
    [
        pytest.param(("accelerators.privileged=false",), "privileged", id="privileged-off"),
        pytest.param(("accelerators.deviceEnv=null",), "c.env", id="no-env"),
        pytest.param(("accelerators.runtimeClasses=null",), "runtimeClassName", id="no-runtime"),
        pytest.param(("accelerators.deviceHostPaths=null",), "hostPath", id="no-host-paths"),
        pytest.param(
            ("accelerators.sharingAnnotations=null", "accelerators.deviceAnnotations=null"),
            "annotations",
            id="no-annotations",
        ),
    ],
)
def test_paths_turned_off_leave_the_match_condition(sets: tuple[str, ...], absent: str) -> None:
    for expression in match_conditions(render(None, *sets)):
        assert absent not in expression
        assert "k.startsWith('nvidia.com/')" in expression  # the rest stays


@pytest.mark.parametrize(
    ("sets", "where"),
    [
        pytest.param("accelerators.runtimeClasses={nv'idia}", "runtimeClasses/0", id="runtime"),
        pytest.param("accelerators.deviceEnv={A'B}", "deviceEnv/0", id="env-quote"),
        pytest.param("accelerators.deviceEnv={1ABC}", "deviceEnv/0", id="env-digit"),
        pytest.param("accelerators.deviceHostPaths={dev/nvidia}", "deviceHostPaths/0", id="rel"),
        pytest.param("accelerators.deviceAnnotations={a'b}", "deviceAnnotations/0", id="annot"),
        pytest.param("accelerators.sharingAnnotations={gpu*}", "sharingAnnotations/0", id="glob"),
        pytest.param("accelerators.resources={~*}", "resources/0", id="capacity-everything"),
        pytest.param("accelerators.privileged=yes", "privileged", id="privileged-not-bool"),
    ],
)
def test_values_that_cel_cannot_carry_are_refused(sets: str, where: str) -> None:
    # A quote in a name would break out of its CEL string literal.
    assert f"/accelerators/{where}" in render_error(None, sets)


# -- against the real API server: CEL selects every pod the detector governs -------------------

PROBE_NAMESPACE = "cel-probe"
PROBE_POLICY = "kube-intent-cel-probe"
PROBE_MESSAGE = "kube-intent-cel-probe: selected by the match condition"
# Fixtures the API server refuses before validating admission runs, so the probe cannot see
# the CEL's answer for them (detection accepts them: webhooks also see unvalidated pods).
NOT_CREATABLE = {
    # ephemeralContainers are added through a subresource, never on create.
    "ephemeral-gpu.yaml": "ephemeral containers on create",
    "dra-v1alpha2-source.yaml": "v1alpha2 `source:` claims",
    "triton-requests-only-int.yaml": "an extended resource without a limit",
}


def fixture_pods() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(fixture, the pod as the probe creates it, does the detector govern it)."""
    detector = AcceleratorDetector()
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name in NOT_CREATABLE:
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        [pod] = [d for d in docs if d.get("kind") == "Pod"]
        governed = detector.detect(pod, StaticClaimResolver(docs)).gpu
        probe = copy.deepcopy(pod)
        metadata = probe["metadata"]
        metadata["name"] = path.stem[:63]
        metadata.pop("namespace", None)
        # Not there in the probe namespace (the ServiceAccount admission plugin would refuse).
        probe["spec"].pop("serviceAccountName", None)
        yield path.name, probe, governed


def selected_by(api: Any, expression: str) -> Callable[[dict[str, Any]], bool]:
    """Install a ValidatingAdmissionPolicy that refuses what `expression` selects; return a
    probe telling, for a pod, whether the API server's CEL selected it (dry run only)."""
    rules = [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
        }
    ]
    server_side_apply(
        api,
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": PROBE_POLICY},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": rules},
                "validations": [{"expression": f"!({expression})", "message": PROBE_MESSAGE}],
            },
        },
    )
    server_side_apply(
        api,
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": PROBE_POLICY},
            "spec": {
                "policyName": PROBE_POLICY,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": PROBE_NAMESPACE}
                    }
                },
            },
        },
    )

    def selected(pod: dict[str, Any]) -> bool:
        try:
            # A server-side apply of a new object is a CREATE for admission.
            server_side_apply(api, pod, dry_run=True, namespace=PROBE_NAMESPACE)
        except ApiException as exc:
            message = str(api_error(exc).get("message"))
            assert PROBE_MESSAGE in message, f"{pod['metadata']['name']}: {message}"
            return True
        return False

    return selected


def remove_probe_policy(api: Any) -> None:
    admission = client.AdmissionregistrationV1Api(api)
    for delete in (
        admission.delete_validating_admission_policy_binding,
        admission.delete_validating_admission_policy,
    ):
        try:
            delete(PROBE_POLICY)
        except ApiException as exc:
            if exc.status != 404:
                raise


def check_match_condition_against_the_detector(api: Any) -> None:
    [expression, _] = match_conditions(render("defaults"))
    ensure_namespace(api, PROBE_NAMESPACE)
    ensure_service_account(api, PROBE_NAMESPACE, "default")
    pods = list(fixture_pods())
    # The RuntimeClass admission plugin refuses pods naming a class that does not exist.
    for handler in sorted({p["spec"].get("runtimeClassName") for _, p, _ in pods} - {None}):
        server_side_apply(
            api,
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": handler},
                "handler": handler,
            },
        )
    selected = selected_by(api, expression)
    try:
        # Policies load asynchronously: wait until a governed pod is refused.
        [(_, gpu_pod, _)] = [p for p in pods if p[0] == "vllm-stack-requests-and-limits.yaml"]
        wait_until("the probe policy is active", lambda: selected(gpu_pod) or None)
        skipped = [name for name, pod, governed in pods if governed and not selected(pod)]
        assert skipped == [], "the API server would not send these governed pods"
        # ...and the condition is not trivially true.
        [(_, cpu_pod, governed)] = [p for p in pods if p[0] == "cpu-only.yaml"]
        assert not governed
        assert not selected(cpu_pod)
    finally:
        remove_probe_policy(api)


@pytest.mark.e2e
def test_match_condition_selects_every_pod_the_detector_governs(cluster: Cluster) -> None:
    check_match_condition_against_the_detector(cluster.api_client())
