"""Objects out of Kubernetes manifests: YAML/JSON documents and the `kind: List` that
`kubectl get -o yaml` prints, expanded once here for every reader (agents, claims, review)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any


def objects(documents: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """Each document with any `*List` expanded, with where it came from ("#0", "#1.items[2]").

    Empty documents (None) are skipped; anything else that is not a mapping is yielded as it
    is, for the caller to refuse in its own words.
    """
    for index, document in enumerate(d for d in documents if d is not None):
        position = f"#{index}"
        items = document.get("items") if isinstance(document, Mapping) else None
        if isinstance(items, list) and str(document.get("kind", "")).endswith("List"):
            for item_index, item in enumerate(items):
                yield f"{position}.items[{item_index}]", item
        else:
            yield position, document
