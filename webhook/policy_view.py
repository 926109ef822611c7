"""The pod as the bundled policies read it: what OPA is sent instead of the whole pod.

OPA parses every input it is sent; a Deployment's pod (managedFields, probes, env, volumes,
tolerations) is 5 KB or more of JSON, of which the bundled policies (webhook/policies) read a
few fields through lib.rego's views `pod` and `pod_spec`:

- metadata.labels (the kube-intent.io/agent label) and metadata.namespace;
- spec.serviceAccountName;
- spec.containers, spec.initContainers, spec.ephemeralContainers: each container's name and
  image, at its index (messages name spec.containers[1].image);
- spec.resourceClaims: each claim's name, at its index.

Everything else the policies need comes from the webhook's own input sections (workload,
identity, intent), computed from the whole pod. tests/webhook/test_policy_view.py fails when a
bundled policy starts reading another pod field, and checks that the bundled policies decide the
same on this view as on the whole pod.

Only for the bundled policies: an operator's own Rego (extra policies, another policy
directory) may read any field, so the webhook sends the whole pod unless it runs the bundled
set alone (Decider(lean_input=...)). The audit trail records the whole pod either way, so
`kube-intent policy replay` can evaluate any candidate policy on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
CONTAINER_FIELDS = ("name", "image")
CLAIM_FIELDS = ("name",)
METADATA_FIELDS = ("namespace", "labels")
SPEC_FIELDS = ("serviceAccountName",)


def _items(value: Any, fields: tuple[str, ...]) -> Any:
    """Each object of a list cut to `fields`, at its index; anything else as it is."""
    if not isinstance(value, list):
        return value
    return [
        {key: item[key] for key in fields if key in item} if isinstance(item, Mapping) else item
        for item in value
    ]


def policy_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `pod` the bundled policies read, and nothing else."""
    view: dict[str, Any] = {}
    metadata = pod.get("metadata")
    if isinstance(metadata, Mapping):
        view["metadata"] = {key: metadata[key] for key in METADATA_FIELDS if key in metadata}
    elif "metadata" in pod:
        view["metadata"] = metadata
    spec = pod.get("spec")
    if isinstance(spec, Mapping):
        out = {key: spec[key] for key in SPEC_FIELDS if key in spec}
        for key in CONTAINER_LISTS:
            if key in spec:
                out[key] = _items(spec[key], CONTAINER_FIELDS)
        if "resourceClaims" in spec:
            out["resourceClaims"] = _items(spec["resourceClaims"], CLAIM_FIELDS)
        view["spec"] = out
    elif "spec" in pod:
        view["spec"] = spec
    return view
