"""Tamper-evident audit trail of admission and token decisions (DESIGN.md "Audit record").

store = await open_store("audit.db")        # or "postgresql://..."
audit = AuditLog(store, required=True)
await audit.record(AuditRecord(...))          # raises AuditUnavailable: refuse the request
"""

from .buffer import AUDIT_UNAVAILABLE_RULE, AuditCounters, AuditLog
from .errors import AuditBufferFull, AuditError, AuditStoreError, AuditUnavailable, CorruptRecord
from .export import (
    OUTPUT_FORMATS,
    TABLE_COLUMNS,
    AuditStats,
    OutputFormat,
    StatsAccumulator,
    compute_stats,
    format_stats,
    iter_render,
    record_to_json,
    render,
)
from .factory import open_store
from .filters import filter_from, parse_when
from .record import (
    GENESIS_HASH,
    AcceleratorSummary,
    AuditRecord,
    StoredRecord,
    canonical_json,
)
from .store import (
    AuditFilter,
    AuditPage,
    AuditStore,
    Order,
    StoreCounters,
)
from .verify import ChainVerifier, VerifyResult, verify_chain, verify_records, verify_store

__all__ = [
    "AUDIT_UNAVAILABLE_RULE",
    "GENESIS_HASH",
    "OUTPUT_FORMATS",
    "TABLE_COLUMNS",
    "AcceleratorSummary",
    "AuditBufferFull",
    "AuditCounters",
    "AuditError",
    "AuditFilter",
    "AuditLog",
    "AuditPage",
    "AuditRecord",
    "AuditStats",
    "AuditStore",
    "AuditStoreError",
    "AuditUnavailable",
    "ChainVerifier",
    "CorruptRecord",
    "Order",
    "OutputFormat",
    "StatsAccumulator",
    "StoreCounters",
    "StoredRecord",
    "VerifyResult",
    "canonical_json",
    "compute_stats",
    "filter_from",
    "format_stats",
    "iter_render",
    "open_store",
    "parse_when",
    "record_to_json",
    "render",
    "verify_chain",
    "verify_records",
    "verify_store",
]
