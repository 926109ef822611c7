"""The HTTP surface, one router per area: admission reviews, tokens, the audit API, health and
metrics. Who may read the audit trail is decided in webhook/audit_api.py."""
