"""Correlation ids: an answer says "see the webhook log, id 3f2a…"; only the log has the detail.

Answers go to whoever created the pod. Exception types, file paths, addresses and ports of
internal services stay in the log, under an id the answer names, so an operator can find
the line a user quotes.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

SEE_LOG = "see the webhook log, id {ref}"


def new_ref() -> str:
    return secrets.token_hex(6)


def report(
    logger: logging.Logger, message: str, *, exc: BaseException | None = None, **fields: Any
) -> str:
    """Log `message` (with the exception, if any) under a new id, and return the id."""
    ref = new_ref()
    logger.error(message, exc_info=exc, extra={"fields": {"ref": ref, **fields}})
    return ref
