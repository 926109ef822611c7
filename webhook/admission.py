"""AdmissionReview v1 wire models and the response builders every handler uses."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"

ERR_NOT_JSON = "request body is not valid JSON"
ERR_NOT_REVIEW = "request body is not an admission.k8s.io/v1 AdmissionReview"
ERR_NO_REQUEST = "AdmissionReview has no request"
ERR_TOO_LARGE = "request body exceeds {limit} bytes"
ERR_NOT_POD = (
    "kube-intent reviews only core/v1 Pods, got {kind}: "
    "the webhook configuration's rules should select pods only"
)


class GroupVersionKind(BaseModel):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(BaseModel):
    group: str = ""
    version: str = ""
    resource: str = ""


class UserInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    username: str = ""
    uid: str = ""
    groups: list[str] = Field(default_factory=list)
    extra: dict[str, list[str]] = Field(default_factory=dict)


class AdmissionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    uid: str
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    resource: GroupVersionResource = Field(default_factory=GroupVersionResource)
    sub_resource: str = Field(default="", alias="subResource")
    name: str = ""
    namespace: str = ""
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    user_info: UserInfo = Field(default_factory=UserInfo, alias="userInfo")
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool = Field(default=False, alias="dryRun")

    @property
    def is_pod(self) -> bool:
        """A Pod, or an update of its ephemeral containers (whose object is the whole Pod)."""
        return (
            self.kind.group == ""
            and self.kind.kind == "Pod"
            and self.sub_resource in ("", "ephemeralcontainers")
        )


class AdmissionReview(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest | None = None


def metadata_map(obj: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """`metadata.<key>` (labels, annotations) of a pod, `{}` when absent or malformed."""
    metadata = (obj or {}).get("metadata")
    value = metadata.get(key) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, Mapping) else {}


class ReviewParseError(Exception):
    """The body is not an AdmissionReview we can answer; carries the HTTP status to use."""

    def __init__(self, message: str, status_code: int = 400, uid: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.uid = uid


def parse_review(body: bytes) -> AdmissionRequest:
    """Parse an AdmissionReview body, raising ReviewParseError with an actionable message."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReviewParseError(f"{ERR_NOT_JSON}: {exc}") from None
    if not isinstance(document, dict):
        raise ReviewParseError(ERR_NOT_REVIEW)
    try:
        review = AdmissionReview.model_validate(document)
    except ValidationError as exc:
        raw_request = document.get("request")
        uid = raw_request.get("uid") if isinstance(raw_request, dict) else None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        # With a uid we can still answer in-band, so the API server shows the reason.
        raise ReviewParseError(
            f"{ERR_NOT_REVIEW}: {problems}", uid=uid if isinstance(uid, str) else None
        ) from None
    if review.request is None:
        raise ReviewParseError(ERR_NO_REQUEST)
    return review.request


# The API server truncates longer warnings; cutting them ourselves keeps the rule id readable.
MAX_WARNING = 256


def _warnings(warnings: list[str]) -> list[str]:
    return [w if len(w) <= MAX_WARNING else w[: MAX_WARNING - 1] + "…" for w in warnings]


def _review(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def allow(
    uid: str,
    *,
    patch: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(
            json.dumps(patch, separators=(",", ":")).encode()
        ).decode()
    if warnings:
        response["warnings"] = _warnings(warnings)
    return _review(response)


def deny(
    uid: str,
    message: str,
    *,
    code: int = 403,
    reason: str = "Forbidden",
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "uid": uid,
        "allowed": False,
        "status": {"code": code, "reason": reason, "message": message},
    }
    if warnings:
        response["warnings"] = _warnings(warnings)
    return _review(response)
