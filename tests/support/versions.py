"""The pinned tool versions (tools/versions.env), as the shell reads them."""

from __future__ import annotations

import shlex
from functools import cache

from tests.support.paths import REPO

VERSIONS = REPO / "tools" / "versions.env"


@cache
def pinned() -> dict[str, str]:
    """The KEY="value" lines (a comment after the value is dropped, as by `source`)."""
    found = {}
    for line in VERSIONS.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            key, _, value = words[0].partition("=")
            found[key] = value
    return found
