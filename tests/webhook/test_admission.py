from __future__ import annotations

import base64
import json

import pytest

from webhook.admission import ReviewParseError, allow, deny, parse_review


def test_allow_with_patch_is_base64_jsonpatch_and_keeps_uid() -> None:
    patch = [{"op": "add", "path": "/metadata/annotations/a", "value": "b"}]
    review = allow("uid-1", patch=patch, warnings=["careful"])
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    response = review["response"]
    assert response["uid"] == "uid-1"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == patch
    assert response["warnings"] == ["careful"]


def test_allow_without_patch_has_no_patch_fields() -> None:
    assert "patch" not in allow("u")["response"]
    assert "patchType" not in allow("u")["response"]


def test_deny_carries_status_code_and_message() -> None:
    response = deny("uid-2", "no")["response"]
    assert response == {
        "uid": "uid-2",
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "no"},
    }


@pytest.mark.parametrize(
    ("body", "message", "uid"),
    [
        pytest.param(b"{not json", "not valid JSON", None, id="not-json"),
        pytest.param(b"\xff\xfe", "not valid JSON", None, id="not-utf8"),
        pytest.param(b"[1, 2]", "not an admission.k8s.io/v1 AdmissionReview", None, id="array"),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}',
            "apiVersion",
            None,
            id="v1beta1",
        ),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
            "has no request",
            None,
            id="no-request",
        ),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
            b' "request": {"uid": "u-3", "operation": "EXPLODE"}}',
            "request.operation",
            "u-3",
            id="bad-operation-keeps-uid",
        ),
    ],
)
def test_parse_errors_are_actionable(body: bytes, message: str, uid: str | None) -> None:
    with pytest.raises(ReviewParseError) as caught:
        parse_review(body)
    assert message in caught.value.message
    assert caught.value.uid == uid


def test_long_warnings_are_cut_to_what_the_api_server_keeps() -> None:
    warnings = allow("u", warnings=["[rule] " + "x" * 400, "short"])["response"]["warnings"]
    assert len(warnings[0]) == 256
    assert warnings[0].startswith("[rule] ")
    assert warnings[0].endswith("…")
    assert warnings[1] == "short"
