"""docs/api.md cannot drift: every sample it shows is posted to the real app (real OPA).

The doc marks each JSON block it embeds with a comment naming the sample file under
examples/admission/ and what the block is:

    <!-- request: allowed-pod.review.json -->      the file itself
    <!-- response: allowed-pod.review.json /mutate -->   the AdmissionReview the app answers
    <!-- patch: allowed-pod.review.json /mutate -->      the response's JSONPatch, decoded

Signed values (grants) differ on every run and are compared as "<jwt>". A response's base64
`patch` is shown as PATCH_PLACEHOLDER and checked through its decoded `patch:` block.

`*.mutated.review.json` is the pod as the API server sends it to /validate after /mutate: the
test applies the patch /mutate returns to the source sample's pod, checks the file holds the
same pod, and posts that (freshly signed) pod.

After a deliberate change of the app's answers, refresh the doc and the mutated samples with
KUBE_INTENT_UPDATE_DOCS=1 and review the diff.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from identity.grants import GrantIssuer
from identity.keys import KeySet, generate_keys
from tests.support.admission import AppClient, apply_patch
from tests.support.paths import EXAMPLES, REPO
from webhook.grants import VerdictGrants

DOC = REPO / "docs" / "api.md"
SAMPLES = EXAMPLES / "admission"
UPDATE = os.environ.get("KUBE_INTENT_UPDATE_DOCS") == "1"

PATCH_PLACEHOLDER = "<base64 of the JSONPatch below>"
JWT = "<jwt>"
_JWT = re.compile(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$")
_BLOCK = re.compile(
    r"<!-- (?P<kind>request|response|patch): (?P<sample>\S+)(?: (?P<path>/\S+))? -->\n"
    r"```json\n(?P<body>.*?)\n```",
    re.DOTALL,
)
MUTATED = ".mutated.review.json"
ERR_UPDATE = "docs/api.md and the app disagree; if the app's answer changed on purpose, rerun "
ERR_UPDATE += "with KUBE_INTENT_UPDATE_DOCS=1 and review the diff"


@dataclass(frozen=True)
class Block:
    kind: str
    sample: str
    path: str | None
    body: str
    span: tuple[int, int]

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.sample}{self.path or ''}"


def blocks(text: str) -> list[Block]:
    return [
        Block(m["kind"], m["sample"], m["path"], m["body"], m.span("body"))
        for m in _BLOCK.finditer(text)
    ]


def normalize(value: Any) -> Any:
    """Signed values as JWT: they change on every run and are checked elsewhere."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str) and _JWT.match(value):
        return JWT
    return value


def load(sample: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SAMPLES / sample).read_text())
    return document


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@pytest.fixture
def client(make_client: AppClient, tmp_path: Path) -> httpx.AsyncClient:
    """The webhook as the chart runs it: with signing keys, so allowed pods get a grant."""
    generate_keys(tmp_path)
    keyset = KeySet.load(tmp_path)
    grants = VerdictGrants(GrantIssuer(lambda: keyset, "https://kube-intent.kube-intent.svc"))
    return make_client(grants=grants, keys=lambda: keyset)


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    http = await client.post(path, content=json.dumps(body).encode())
    assert http.status_code == 200, http.text
    answer: dict[str, Any] = http.json()
    return answer


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(answer["response"]["patch"]))
    return patch


async def request_for(client: httpx.AsyncClient, sample: str) -> dict[str, Any]:
    """The review to post: a mutated sample carries the pod /mutate returns now (fresh grant)."""
    review = load(sample)
    if not sample.endswith(MUTATED):
        return review
    source = load(sample.replace(MUTATED, ".review.json"))
    mutated = apply_patch(
        source["request"]["object"], patch_of(await post(client, "/mutate", source))
    )
    if UPDATE:
        review["request"]["object"] = mutated
        (SAMPLES / sample).write_text(dumps(review) + "\n")
    assert normalize(review["request"]["object"]) == normalize(mutated), (
        f"{sample} is not the pod /mutate makes of its source sample; {ERR_UPDATE}"
    )
    review["request"]["object"] = mutated
    return review


async def actual(client: httpx.AsyncClient, block: Block) -> Any:
    """What the block should hold, from the files and the running app."""
    if block.kind == "request":
        return load(block.sample)
    assert block.path in {"/mutate", "/validate"}, f"{block.id}: name /mutate or /validate"
    answer = await post(client, block.path, await request_for(client, block.sample))
    if block.kind == "patch":
        return normalize(patch_of(answer))
    if "patch" in answer["response"]:
        answer["response"]["patch"] = PATCH_PLACEHOLDER
    return normalize(answer)


DOC_BLOCKS = blocks(DOC.read_text()) if DOC.exists() else []


def test_the_doc_embeds_samples_of_both_pod_webhooks() -> None:
    shown = {(b.kind, b.path) for b in DOC_BLOCKS}
    assert {("request", None), ("response", "/mutate"), ("response", "/validate")} <= shown
    assert ("patch", "/mutate") in shown, "show the JSONPatch an allowed pod gets"


def test_every_sample_file_is_shown_and_every_shown_sample_exists() -> None:
    files = {p.name for p in SAMPLES.glob("*.json")}
    shown = {b.sample for b in DOC_BLOCKS}
    assert files - shown == set(), "a sample under examples/admission/ that docs/api.md omits"
    assert shown - files == set(), "docs/api.md names a sample that does not exist"


def test_a_response_with_a_patch_is_followed_by_its_decoded_patch() -> None:
    for block in DOC_BLOCKS:
        if block.kind == "response" and PATCH_PLACEHOLDER in block.body:
            assert any(
                b.kind == "patch" and (b.sample, b.path) == (block.sample, block.path)
                for b in DOC_BLOCKS
            ), f"{block.id} elides its patch but the doc does not decode it"


@pytest.mark.parametrize("block", DOC_BLOCKS, ids=[b.id for b in DOC_BLOCKS])
async def test_doc_block_is_what_the_app_answers(client: httpx.AsyncClient, block: Block) -> None:
    async with client:
        expected = await actual(client, block)
    if UPDATE:
        _rewrite(block, dumps(expected))
        return
    assert normalize(json.loads(block.body)) == expected, f"{block.id}: {ERR_UPDATE}"


def _rewrite(block: Block, body: str) -> None:
    """Replace one block's body in the doc (found again: earlier rewrites move offsets)."""
    text = DOC.read_text()
    for current in blocks(text):
        if current.id == block.id:
            start, end = current.span
            DOC.write_text(text[:start] + body + text[end:])
            return


def test_block_ids_are_unique() -> None:
    ids = [b.id for b in DOC_BLOCKS]
    assert len(ids) == len(set(ids)), "two blocks show the same sample the same way"
