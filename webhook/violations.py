"""A violation of a rule: what OPA returns, what a verdict holds and what the audit row keeps.

One definition for all three, immutable: a step that changes a violation builds a new one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

Enforcement = Literal["deny", "warn", "dryrun"]


def clean_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL and UTF-8 cannot encode lone surrogates (json.loads happily
    # produces both from "\u0000" / "\ud800"). A row the database refuses would be lost, or would
    # wedge the retry buffer, so such characters are replaced before the record is hashed.
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


CleanStr = Annotated[str, AfterValidator(clean_text)]


class Violation(BaseModel):
    """One violation (the policy contract's "Decision"); `enforcement` says what it does."""

    # Policies may add keys of their own; the decision reads these four.
    model_config = ConfigDict(frozen=True, extra="ignore")

    rule: CleanStr
    message: CleanStr = ""
    enforcement: Enforcement = "deny"
    field: CleanStr = ""

    def __str__(self) -> str:
        # "[rule] field: message": the rule, the field, and in the policy's words what is allowed.
        where = f"{self.field}: " if self.field and self.field not in self.message else ""
        return f"[{self.rule}] {where}{self.message}"
