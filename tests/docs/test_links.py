"""The README and every page under docs/ link only to files that exist in the repository
(a clone has no ../shared and no release pages)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.paths import REPO

DOCS = sorted(p.relative_to(REPO).as_posix() for p in [REPO / "README.md", *REPO.glob("docs/*.md")])
# [text](target) outside code; external URLs and pure anchors are not files.
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    targets = (m["target"].split("#")[0] for m in _LINK.finditer(text))
    return [t for t in targets if t and "://" not in t]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve_inside_the_repository(doc: str) -> None:
    path = REPO / doc
    for target in relative_links(path):
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{doc} links outside the repository: {target}"
        assert resolved.exists(), f"{doc} links to a missing file: {target}"
