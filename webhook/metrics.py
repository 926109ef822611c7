"""Prometheus metrics, one registry per app (no process globals, so tests get fresh counters).

Every label value comes from a bounded set, so a busy or hostile cluster cannot grow the
series count (docs/monitoring.md lists the metrics and the bounds):

* `webhook`, `operation`, `decision`, `enforcement`, `result`: fixed by the code;
* `rule`: the rule ids of the loaded policies plus the webhook's own (cleaned, at most
  `MAX_LABEL_CHARS`);
* `namespace`: the first `max_namespaces` distinct namespaces seen, then `other`;
* `agent`: a name registered in the Agent registry for that namespace, `unregistered` for a
  name that is not, `none` for a pod that names no agent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from identity.binding import IdentityBinding
from webhook.violations import Violation

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

DEFAULT_MAX_NAMESPACES = 200
OTHER_NAMESPACE = "other"
AGENT_NONE = "none"
AGENT_UNREGISTERED = "unregistered"
MAX_LABEL_CHARS = 63
# Past this many cached label values or children (only reached if a bound above is
# misconfigured to be huge), values are still computed but no longer remembered.
MAX_CACHED = 10_000

# Kubernetes namespaces are DNS-1123 labels; Agent names are object names (DNS-1123 subdomains).
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_AGENT_UNSAFE = re.compile(r"[^a-z0-9.-]+")
_RULE_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]+")


class _Children:
    """A labelled metric's children by label values, looked up without `labels()`' work.

    prometheus_client's `labels()` converts and validates every value and takes a lock on each
    call; the hot path only builds the tuple and finds the child here.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._metric.labels(*values)
            if len(self._children) < MAX_CACHED:
                self._children[values] = child
        return child


class AuditSnapshot(Protocol):
    """What the audit log counts (webhook/audit/buffer.py AuditCounters)."""

    @property
    def queue_depth(self) -> int: ...

    @property
    def write_failures(self) -> int: ...

    @property
    def dropped(self) -> int: ...


class AuditGauges:
    """A collector over the audit log's own counters, read at scrape time."""

    def __init__(self) -> None:
        self.counters: Callable[[], AuditSnapshot] | None = None

    def collect(self) -> Iterator[Metric]:
        counters = self.counters() if self.counters is not None else None
        yield GaugeMetricFamily(
            "kube_intent_audit_queue_depth",
            "Decisions waiting to be written",
            value=counters.queue_depth if counters else 0,
        )
        yield CounterMetricFamily(
            "kube_intent_audit_write_failures",
            "Audit writes that failed",
            value=counters.write_failures if counters else 0,
        )
        yield CounterMetricFamily(
            "kube_intent_audit_records_dropped",
            "Decisions never recorded: the outage buffer was full, or held them at shutdown",
            value=counters.dropped if counters else 0,
        )


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_namespaces: int = DEFAULT_MAX_NAMESPACES,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.max_namespaces = max_namespaces
        r = self.registry
        self.requests = Counter(
            "kube_intent_admission_requests",
            "Admission requests by webhook, operation and outcome "
            "(allowed, denied, passthrough, rejected, error, shed)",
            ["webhook", "operation", "decision"],
            registry=r,
        )
        self.violations = Counter(
            "kube_intent_admission_violations",
            "Policy violations by rule and enforcement (deny, warn, dryrun: would-be denials)",
            ["webhook", "rule", "enforcement"],
            registry=r,
        )
        self.denials = Counter(
            "kube_intent_denials",
            "Denying violations by rule, namespace and agent (a request denied by two rules "
            "counts under each); namespace is 'other' past the configured number of distinct "
            "namespaces, agent is 'unregistered' or 'none' unless registered",
            ["webhook", "rule", "namespace", "agent"],
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
        # Read from the audit log when scraped (watch_audit): every loss shows, whichever
        # path (admission, token, policy load) it happened on and however quiet the webhook is.
        self._audit = AuditGauges()
        r.register(self._audit)
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
        self._requests = _Children(self.requests)
        self._latency = _Children(self.latency)
        self._violations = _Children(self.violations)
        self._denials = _Children(self.denials)
        self._namespaces: dict[str, str] = {}
        self._agents: dict[str, str] = {}
        self._rules: dict[str, str] = {}

    def observe_admission(
        self,
        webhook: str,
        operation: str,
        outcome: str,
        seconds: float,
        violations: Sequence[Violation] = (),
        *,
        namespace: str = "",
        identity: IdentityBinding | None = None,
    ) -> None:
        """One answered admission request: its outcome, latency and violations."""
        self._requests(webhook, operation, outcome).inc()
        self._latency(webhook).observe(seconds)
        if not violations:
            return
        namespace_label = agent_label = ""
        for violation in violations:
            rule = self.rule_label(violation.rule)
            self._violations(webhook, rule, violation.enforcement).inc()
            if violation.enforcement != "deny":
                continue
            if not namespace_label:  # looked up once, and only for a denial
                namespace_label = self.namespace_label(namespace)
                agent_label = self.agent_label(identity)
            self._denials(webhook, rule, namespace_label, agent_label).inc()

    def watch_audit(self, counters: Callable[[], AuditSnapshot]) -> None:
        """Report the audit log's queue depth, write failures and losses from `counters`."""
        self._audit.counters = counters

    def shed(self, webhook: str) -> None:
        """A review refused unread because the webhook was at capacity."""
        self._requests(webhook, "", "shed").inc()

    def namespace_label(self, namespace: str) -> str:
        """The namespace itself for the first `max_namespaces` seen; `other` after that."""
        label = self._namespaces.get(namespace)
        if label is not None:
            return label
        if len(self._namespaces) >= self.max_namespaces or not _NAMESPACE.fullmatch(namespace):
            return OTHER_NAMESPACE  # not remembered: the set of own labels stays as it is
        self._namespaces[namespace] = namespace
        return namespace

    def agent_label(self, identity: IdentityBinding | None) -> str:
        """The registered agent's name; never a name only the pod's label vouches for."""
        if identity is None or identity.agent is None:
            return AGENT_NONE
        if identity.registration is None:
            return AGENT_UNREGISTERED
        name = identity.registration.name
        label = self._agents.get(name)
        if label is None:
            label = _AGENT_UNSAFE.sub("-", name.lower())[:MAX_LABEL_CHARS] or AGENT_UNREGISTERED
            if len(self._agents) < MAX_CACHED:
                self._agents[name] = label
        return label

    def rule_label(self, rule: str) -> str:
        label = self._rules.get(rule)
        if label is None:
            label = _RULE_UNSAFE.sub("_", rule)[:MAX_LABEL_CHARS] or "unnamed"
            if len(self._rules) < MAX_CACHED:
                self._rules[rule] = label
        return label
