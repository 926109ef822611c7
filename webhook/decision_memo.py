"""Ask OPA once per pod: /validate reuses the decision /mutate got for the same policy input.

A pod CREATE reaches the webhook twice: /mutate decides on the pod as submitted, /validate on
the final pod, after every mutating webhook. When nothing but kube-intent's own patch and the
fields the API server fills in between the two calls differ, the policy input is the same and
so is the decision (the policies are pure functions of the input and the loaded policy set:
no time, no network). The memo is keyed by a digest of the policy input *without* those
fields, plus the policy revision (a digest of every module and data document loaded):

- the request's uid (one per admission call), and its name when the pod has a generateName
  (at /mutate it is the generateName, at /validate the generated name);
- metadata.name (generateName pods only), uid, creationTimestamp, resourceVersion,
  generation, managedFields, and status: set by the API server at creation;
- kube-intent's own patch: the spiffe-id, intent-digest and grant annotations, the token and
  grant volumes, their mounts and the KUBE_INTENT_* env of the regular containers. Every item
  using one of those names (or mount paths) is dropped, whoever wrote it, on both sides, so the
  digest is the same whether the patch added, replaced or kept an item.

Anything else that differs (a later mutating webhook changed an image, a label, resources, a
volume; the Agent's registration changed; another policy revision was loaded) gives another
digest: a miss, and the full evaluation. Only the OPA query is skipped on a hit: detection,
identity binding, intent parsing, the integrity, immutability, grant and env checks of
/validate all run as before, on the final pod, and the audit row records the final pod's full
input with the reused decision (the same violations, warnings and dryrun findings included).

The memo is in-process and bounded (entries expire after `ttl_seconds`, at most `size`), so
with several replicas a /validate served by another replica is a miss, never a wrong answer.
The caller keeps only decisions that admitted the pod: a denied pod never reaches /validate.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from identity.binding import SPIFFE_ID_ANNOTATION
from identity.grants import (
    ENV_GRANT_FILE,
    ENV_TOKEN_ENDPOINT,
    ENV_TOKEN_FILE,
    GRANT_ANNOTATION,
    GRANT_DIR,
    GRANT_VOLUME,
    TOKEN_DIR,
    TOKEN_VOLUME,
)
from identity.intent import INTENT_DIGEST_ANNOTATION
from webhook.policy import PolicyDecision

OWN_ANNOTATIONS = frozenset({SPIFFE_ID_ANNOTATION, INTENT_DIGEST_ANNOTATION, GRANT_ANNOTATION})
OWN_VOLUMES = frozenset({TOKEN_VOLUME, GRANT_VOLUME})
OWN_MOUNT_PATHS = frozenset({TOKEN_DIR, GRANT_DIR})
OWN_ENV = frozenset({ENV_TOKEN_ENDPOINT, ENV_TOKEN_FILE, ENV_GRANT_FILE})
# Set by the API server when it creates the object, after mutating admission.
SERVER_METADATA = (
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "managedFields",
    "selfLink",
)
REQUEST_FIELDS = ("operation", "namespace", "userInfo", "dryRun")

DEFAULT_SIZE = 4096
DEFAULT_TTL_SECONDS = 60.0


def _without(items: Any, keep: Callable[[Any], bool]) -> Any:
    return [item for item in items if keep(item)] if isinstance(items, list) else items


def _mine(item: Any, key: str, names: frozenset[str]) -> bool:
    return isinstance(item, Mapping) and item.get(key) in names


def _container(container: Any) -> Any:
    if not isinstance(container, Mapping):
        return container
    out = dict(container)
    for key, keep in (
        (
            "volumeMounts",
            lambda m: not (_mine(m, "name", OWN_VOLUMES) or _mine(m, "mountPath", OWN_MOUNT_PATHS)),
        ),
        ("env", lambda e: not _mine(e, "name", OWN_ENV)),
    ):
        if key in out:
            out[key] = _without(out[key], keep)
            if out[key] == []:
                del out[key]
    return out


def comparable_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod without kube-intent's patch and without what the API server sets at creation.

    Shallow copies only where something is dropped: the pod itself is never changed.
    """
    out = dict(pod)
    out.pop("status", None)
    metadata = out.get("metadata")
    if isinstance(metadata, Mapping):
        meta = dict(metadata)
        for key in SERVER_METADATA:
            meta.pop(key, None)
        if meta.get("generateName"):
            meta.pop("name", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, Mapping):
            kept = {k: v for k, v in annotations.items() if k not in OWN_ANNOTATIONS}
            if kept:
                meta["annotations"] = kept
            else:
                del meta["annotations"]
        out["metadata"] = meta
    spec = out.get("spec")
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "volumes" in spec:
            spec["volumes"] = _without(spec["volumes"], lambda v: not _mine(v, "name", OWN_VOLUMES))
            if spec["volumes"] == []:
                del spec["volumes"]
        if isinstance(spec.get("containers"), list):
            spec["containers"] = [_container(c) for c in spec["containers"]]
        out["spec"] = spec
    return out


def input_digest(policy_input: Mapping[str, Any], revision: str) -> bytes | None:
    """What identifies the decision for this input under `revision`; None if not computable
    (not plain JSON data: such an input is never memoised)."""
    pod = policy_input.get("pod")
    request = policy_input.get("request")
    if not isinstance(pod, Mapping) or not isinstance(request, Mapping):
        return None
    generated = isinstance(pod.get("metadata"), Mapping) and bool(
        pod["metadata"].get("generateName")
    )
    fields = REQUEST_FIELDS if generated else (*REQUEST_FIELDS, "name")
    document = {
        "revision": revision,
        "request": {key: request.get(key) for key in fields},
        "pod": comparable_pod(pod),
        **{key: value for key, value in policy_input.items() if key not in ("pod", "request")},
    }
    try:
        # Sorted keys: the API server may order the final pod's keys differently.
        encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: a non-string key, an integer beyond 64 bits
        return None
    return hashlib.sha256(encoded).digest()


class DecisionMemo:
    """Allowed decisions by input digest, for `ttl_seconds`, at most `size` of them (LRU)."""

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple[float, PolicyDecision]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes | None) -> PolicyDecision | None:
        if key is None or self.size <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        # A copy with its own list: a caller's edits never reach the memo.
        return entry[1].model_copy(update={"violations": list(entry[1].violations)})

    def put(self, key: bytes | None, decision: PolicyDecision) -> None:
        if key is None or self.size <= 0:
            return
        self._entries[key] = (self.clock() + self.ttl_seconds, decision)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
