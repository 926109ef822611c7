"""The HTTP surface, one router per area: admission reviews, tokens, health and metrics.

The audit API's router lives with its access review in webhook/audit_api.py.
"""
