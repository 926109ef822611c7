"""Prometheus metrics, one registry per app (no process globals, so tests get fresh counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kube_intent_admission_requests",
            "Admission requests by webhook, operation and outcome "
            "(allowed, denied, passthrough, rejected, error)",
            ["webhook", "operation", "decision"],
            registry=r,
        )
        self.violations = Counter(
            "kube_intent_admission_violations",
            "Policy violations by rule and enforcement",
            ["webhook", "rule", "enforcement"],
            registry=r,
        )
        self.latency = Histogram(
            "kube_intent_admission_duration_seconds",
            "Admission handling latency",
            ["webhook"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.opa_latency = Histogram(
            "kube_intent_opa_evaluation_duration_seconds",
            "OPA decision latency as seen by the webhook",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.opa_errors = Counter(
            "kube_intent_opa_errors", "Policy evaluations that got no decision", registry=r
        )
        self.internal_errors = Counter(
            "kube_intent_admission_internal_errors",
            "Admissions denied because of an unexpected error (the log line has the detail)",
            ["webhook"],
            registry=r,
        )
        self.audit_queue_depth = Gauge(
            "kube_intent_audit_queue_depth", "Decisions waiting to be written", registry=r
        )
        self.audit_write_failures = Counter(
            "kube_intent_audit_write_failures", "Audit writes that failed", registry=r
        )
        self.grants_issued = Counter(
            "kube_intent_grants_issued", "Grants minted at admission", registry=r
        )
        self.token_exchanges = Counter(
            "kube_intent_token_exchanges", "Token exchanges by result", ["result"], registry=r
        )
        self.cert_expiry = Gauge(
            "kube_intent_tls_cert_expiry_timestamp_seconds",
            "notAfter of the serving certificate currently in use (Unix time)",
            registry=r,
        )
