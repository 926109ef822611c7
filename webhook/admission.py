"""AdmissionReview v1 wire models and the response builders every handler uses."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from identity import jsonio

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"

# The API server sends a UUID (36 characters); the uid is echoed in every answer.
MAX_UID_CHARS = 128
# Kubernetes object names and namespaces: DNS subdomains (RFC 1123) at most.
MAX_NAME_CHARS = 253
# What a denial's message (and a parse error) may grow to; longer ones end in a digest.
MAX_MESSAGE = 4096
# Warnings per answer: each is an HTTP header line at the API server.
MAX_WARNINGS = 32

ERR_NOT_JSON = "request body is not valid JSON"
ERR_NOT_DATA = "request body is not plain JSON data"
ERR_NOT_POD_SHAPE = "request.{field} is not a well-formed Pod"
ERR_NOT_OBJECT_SHAPE = "request.{field} is not a well-formed Kubernetes object"
ERR_NOT_REVIEW = "request body is not an admission.k8s.io/v1 AdmissionReview"
ERR_NO_REQUEST = "AdmissionReview has no request"
ERR_TOO_LARGE = "request body exceeds {limit} bytes"
ERR_NOT_POD = (
    "kube-intent reviews only core/v1 Pods, got {kind}: "
    "the webhook configuration's rules should select pods only"
)


ERR_UID = "must be printable text"


def _printable(uid: str) -> str:
    # Echoed in the answer and recorded in the audit trail as it is: no control characters.
    if not uid.isprintable():
        raise ValueError(ERR_UID)
    return uid


Uid = Annotated[str, Field(max_length=MAX_UID_CHARS), AfterValidator(_printable)]

# Strict models: the request is JSON, so a value of the wrong JSON type is an error, never
# coerced ("yes" is not a boolean, 5 is not a name).
STRICT = ConfigDict(strict=True)


class GroupVersionKind(BaseModel):
    model_config = STRICT

    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(BaseModel):
    model_config = STRICT

    group: str = ""
    version: str = ""
    resource: str = ""


class UserInfo(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    username: str = ""
    uid: str = ""
    groups: list[str] = Field(default_factory=list)
    extra: dict[str, list[str]] = Field(default_factory=dict)


class AdmissionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)

    uid: Uid
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    resource: GroupVersionResource = Field(default_factory=GroupVersionResource)
    sub_resource: str = Field(default="", alias="subResource")
    name: str = Field(default="", max_length=MAX_NAME_CHARS)
    namespace: str = Field(default="", max_length=MAX_NAME_CHARS)
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    user_info: UserInfo = Field(default_factory=UserInfo, alias="userInfo")
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool = Field(default=False, alias="dryRun")

    @property
    def is_pod(self) -> bool:
        """A Pod, or an update of its ephemeral containers or status (the object is the whole
        Pod either way; a status write can change labels and annotations)."""
        return (
            self.kind.group == ""
            and self.kind.kind == "Pod"
            and self.sub_resource in ("", "ephemeralcontainers", "status")
        )


class AdmissionReview(BaseModel):
    model_config = ConfigDict(populate_by_name=True, strict=True)

    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest | None = None


# --- the pod's shape ---------------------------------------------------------------------------
# Only what our code reads (request_info, the identity binding, the patches, the checks in
# validate.py, Events): each must have its JSON type, or the request is answered 400 before
# any of that code runs. Container resources and DRA claims are left to detect.py, which
# explains a malformed one as a `pod-resources` denial. `None` is accepted wherever Kubernetes
# treats null as absent.

Objects = list[dict[str, Any] | None] | None


class ObjectMetaShape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    name: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    generate_name: str | None = Field(default=None, alias="generateName", max_length=MAX_NAME_CHARS)
    namespace: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    uid: str | None = Field(default=None, max_length=MAX_UID_CHARS)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: Objects = Field(default=None, alias="ownerReferences")


class ContainerShape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    name: str | None = None
    image: str | None = None
    env: Objects = None
    env_from: Objects = Field(default=None, alias="envFrom")
    volume_mounts: Objects = Field(default=None, alias="volumeMounts")


class PodSpecShape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    containers: list[ContainerShape | None] | None = None
    init_containers: list[ContainerShape | None] | None = Field(
        default=None, alias="initContainers"
    )
    ephemeral_containers: list[ContainerShape | None] | None = Field(
        default=None, alias="ephemeralContainers"
    )
    volumes: Objects = None
    resource_claims: list[Any] | None = Field(default=None, alias="resourceClaims")
    service_account_name: str | None = Field(default=None, alias="serviceAccountName")


class ObjectShape(BaseModel):
    """Any Kubernetes object: request_info reads its metadata before the kind is checked."""

    model_config = ConfigDict(extra="allow", strict=True)

    metadata: ObjectMetaShape | None = None


class PodShape(ObjectShape):
    spec: PodSpecShape | None = None


def metadata_map(obj: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """`metadata.<key>` (labels, annotations) of a pod, `{}` when absent or malformed."""
    metadata = (obj or {}).get("metadata")
    value = metadata.get(key) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, Mapping) else {}


class ReviewParseError(Exception):
    """The body is not an AdmissionReview we can answer; carries the HTTP status to use."""

    def __init__(self, message: str, status_code: int = 400, uid: str | None = None) -> None:
        message = jsonio.bounded(message, MAX_MESSAGE)
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.uid = uid


# Our words for pydantic's error types: its own messages may name our model classes.
_TYPE_WORDS = {
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
    "missing": "is required",
}


def _problems(exc: ValidationError, root: str = "") -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        path = root
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else jsonio.child(path, str(part))
        words = _TYPE_WORDS.get(error["type"], error["msg"].removeprefix("Value error, "))
        problems.append(f"{path or 'body'}: {words}")
    return "; ".join(problems)


def _usable_uid(value: object) -> str | None:
    """A uid we may echo in an in-band answer (a string orjson read, of bounded length)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_UID_CHARS and value.isprintable():
        return value
    return None


def parse_review(body: bytes) -> AdmissionRequest:
    """Parse an AdmissionReview body, raising ReviewParseError with an actionable message."""
    try:
        document = jsonio.loads(body)
    except jsonio.JsonError as exc:
        message = ERR_NOT_JSON if exc.syntax else ERR_NOT_DATA
        raise ReviewParseError(f"{message}: {exc}") from None
    if not isinstance(document, dict):
        raise ReviewParseError(ERR_NOT_REVIEW)
    try:
        review = AdmissionReview.model_validate(document)
    except ValidationError as exc:
        raw_request = document.get("request")
        uid = raw_request.get("uid") if isinstance(raw_request, dict) else None
        # With a uid we can still answer in-band, so the API server shows the reason.
        raise ReviewParseError(
            f"{ERR_NOT_REVIEW}: {_problems(exc)}", uid=_usable_uid(uid)
        ) from None
    request = review.request
    if request is None:
        raise ReviewParseError(ERR_NO_REQUEST)
    shape = PodShape if request.is_pod else ObjectShape
    for field, obj in (("object", request.object), ("oldObject", request.old_object)):
        try:
            shape.model_validate(obj or {})
        except ValidationError as exc:
            problems = _problems(exc, f"request.{field}")
            message = ERR_NOT_POD_SHAPE if request.is_pod else ERR_NOT_OBJECT_SHAPE
            raise ReviewParseError(
                f"{message.format(field=field)}: {problems}", uid=_usable_uid(request.uid)
            ) from None
    return request


# The API server truncates longer warnings; cutting them ourselves keeps the rule id readable.
MAX_WARNING = 256


def _warnings(warnings: list[str]) -> list[str]:
    shown = [w if len(w) <= MAX_WARNING else w[: MAX_WARNING - 1] + "…" for w in warnings]
    if len(shown) > MAX_WARNINGS:
        more = len(shown) - MAX_WARNINGS + 1
        shown = [*shown[: MAX_WARNINGS - 1], f"kube-intent: {more} more warning(s) not shown"]
    return shown


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
        response["patch"] = base64.b64encode(jsonio.dumps(patch)).decode()
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
        "status": {"code": code, "reason": reason, "message": jsonio.bounded(message, MAX_MESSAGE)},
    }
    if warnings:
        response["warnings"] = _warnings(warnings)
    return _review(response)
