"""Audit filters in their text form (`kube-intent audit` flags, `GET /audit/decisions` query
parameters) turned into an AuditFilter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import get_args

from .record import Kind, format_time
from .store import AuditFilter

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
ERR_TIME = "{value!r} is neither a duration (30m, 12h, 7d) nor an ISO 8601 time"
# The record kinds this version knows, from the record's own type: a new kind needs no edit here.
KINDS: tuple[str, ...] = get_args(Kind)
ERR_KIND = "kind must be one of: {kinds}"


def parse_when(value: str | None, now: datetime | None = None) -> datetime | None:
    """`7d` means seven days ago; anything else must be an ISO 8601 time (UTC if naive)."""
    if value is None:
        return None
    match = _RELATIVE.fullmatch(value)
    if match:
        amount, unit = match.groups()
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
        except OverflowError:  # further back than datetime goes: a bad value, not a crash
            raise ValueError(ERR_TIME.format(value=value)) from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(ERR_TIME.format(value=value)) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def filter_from(params: Mapping[str, str | None]) -> AuditFilter:
    """The filters of `kube-intent audit` and `GET /audit/decisions`, from their text form.

    Keys: decision (allowed|denied), since, until, namespace, agent, user, rule, kind.
    Raises ValueError, with a message for a person, on a value it cannot read.
    """
    decision = params.get("decision")
    if decision not in (None, "allowed", "denied"):
        raise ValueError("decision must be allowed or denied")
    kind = params.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(ERR_KIND.format(kinds=", ".join(KINDS)))
    return AuditFilter.model_validate(
        {
            "allowed": None if decision is None else decision == "allowed",
            "since": parse_when(params.get("since")),
            "until": parse_when(params.get("until")),
            "namespace": params.get("namespace"),
            "agent": params.get("agent"),
            "user": params.get("user"),
            "rule": params.get("rule"),
            "kind": kind,
        }
    )


def to_params(filters: AuditFilter) -> dict[str, str]:
    """The inverse of ``filter_from``: the query parameters of ``GET /audit/decisions``.

    Times are sent resolved (``7d`` becomes the instant it meant here, at the first request), so
    that every page of one listing filters on the same window.
    """
    params: dict[str, str] = {}
    if filters.allowed is not None:
        params["decision"] = "allowed" if filters.allowed else "denied"
    if filters.since is not None:
        params["since"] = format_time(filters.since)
    if filters.until is not None:
        params["until"] = format_time(filters.until)
    for key in ("namespace", "agent", "user", "rule", "kind"):
        value = getattr(filters, key)
        if value is not None:
            params[key] = value
    return params
