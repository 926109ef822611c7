"""Where the checkout's files are: the repository, the test data, the examples."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


DATA = REPO / "tests" / "data"


EXAMPLES = REPO / "examples"
