"""Open the audit store a DSN names: the one place that knows every backend."""

from __future__ import annotations

import re

from .store import AuditStore

_LIBPQ_KEYWORDS = re.compile(r"^\s*(host|hostaddr|port|dbname|user|password|service|options)\s*=")


async def open_store(db: str, *, create: bool = True, lazy: bool = False) -> AuditStore:
    """Open (and migrate) the store that ``db`` names.

    - ``postgresql://...`` / ``postgres://...``, or a libpq ``key=value`` string
      (``host=... dbname=...``): PostgreSQL.
    - ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (SQLAlchemy's convention) or a plain
      path: SQLite. With ``create=False`` a missing file is an error instead of a new, empty
      audit trail (what read-only CLI commands want).

    ``lazy`` (PostgreSQL only): do not fail when the server is down at open time; the schema is
    then checked before the first write. A webhook in non-required mode wants this so that it can
    start, and buffer, while the database is unreachable.
    """
    # Imported here: a SQLite user never pays for loading psycopg, and the reverse.
    if db.startswith(("postgresql://", "postgres://")) or _LIBPQ_KEYWORDS.match(db):
        from .postgres import PostgresStore

        return await PostgresStore.open(db, lazy=lazy)

    from .sqlite import SQLiteStore

    if db.startswith("sqlite:") and not db.startswith("sqlite:///"):
        raise ValueError(f"expected sqlite:///relative.db or sqlite:////absolute.db, got {db!r}")
    path = db.removeprefix("sqlite:///")
    return await SQLiteStore.open(path, create=create)
