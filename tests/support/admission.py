"""AdmissionReviews: build them, post them to the app, read the response and its JSON patch."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import httpx


def review(
    pod: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    dry_run: bool = False,
    kind: dict[str, str] | None = None,
    sub_resource: str = "",
) -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for a pod."""
    metadata = (pod or old or {}).get("metadata", {})
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind or {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": sub_resource,
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "name": metadata.get("name", ""),
            "namespace": metadata.get("namespace", "default"),
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:agents:orchestrator",
                "groups": ["system:serviceaccounts"],
            },
            "object": pod,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


AppClient = Callable[..., httpx.AsyncClient]


async def post(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(path, content=content, headers={"content-type": "application/json"})


def response_of(http: httpx.Response) -> dict[str, Any]:
    assert http.status_code == 200, http.text
    document = http.json()
    assert document["apiVersion"] == "admission.k8s.io/v1"
    assert document["kind"] == "AdmissionReview"
    result: dict[str, Any] = document["response"]
    return result


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


class PatchError(Exception):
    pass


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"bad pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, insert: bool) -> int:
    if token == "-" and insert:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"bad array index {token!r}")
    index = int(token)
    if index > len(container) or (not insert and index == len(container)):
        raise PatchError(f"array index {index} out of range")
    return index


def apply_patch(document: Any, patch: list[dict[str, Any]]) -> Any:
    """Apply add/replace/remove/test strictly (a missing parent is an error, as in RFC 6902)."""
    document = copy.deepcopy(document)
    for op in patch:
        tokens = _tokens(op["path"])
        if not tokens:
            raise PatchError("whole-document operations are not used here")
        parent: Any = document
        for token in tokens[:-1]:
            if isinstance(parent, list):
                parent = parent[_index(parent, token, insert=False)]
            elif isinstance(parent, dict) and token in parent:
                parent = parent[token]
            else:
                raise PatchError(f"{op['path']}: parent {token!r} does not exist")
        last = tokens[-1]
        kind = op["op"]
        if kind == "add":
            if isinstance(parent, list):
                parent.insert(_index(parent, last, insert=True), copy.deepcopy(op["value"]))
            elif isinstance(parent, dict):
                parent[last] = copy.deepcopy(op["value"])
            else:
                raise PatchError(f"{op['path']}: parent is not a container")
        elif kind in ("replace", "remove", "test"):
            if isinstance(parent, list):
                index = _index(parent, last, insert=False)
            elif isinstance(parent, dict) and last in parent:
                index = last  # type: ignore[assignment]
            else:
                raise PatchError(f"{op['path']}: {kind} target does not exist")
            if kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[index]
            elif parent[index] != op["value"]:
                raise PatchError(f"{op['path']}: test failed")
        else:
            raise PatchError(f"unsupported op {kind!r}")
    return document
