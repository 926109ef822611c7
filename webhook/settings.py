"""Typed settings: every `kube-intent serve` flag is also a `KUBE_INTENT_*` environment variable."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from webhook.detect import (
    DEFAULT_DEVICE_ANNOTATIONS,
    DEFAULT_DEVICE_CLASSES,
    DEFAULT_DEVICE_ENV,
    DEFAULT_DEVICE_HOST_PATHS,
    DEFAULT_RESOURCE_PATTERNS,
    DEFAULT_RUNTIME_CLASSES,
    DEFAULT_SHARING_ANNOTATIONS,
    AcceleratorDetector,
)
from webhook.policy_source import bundled_policies
from webhook.violations import Enforcement

# The Rego bundle shipped inside the package (webhook/policies), found with importlib.resources.
BUNDLED_POLICIES = bundled_policies()


class Settings(BaseSettings):
    """The webhook's settings: `Field(description=...)` is the user-facing text of the
    `serve --help` flag built from each field (webhook/cli.py), so every field here is a flag
    and a `KUBE_INTENT_<FIELD>` variable."""

    model_config = SettingsConfigDict(env_prefix="KUBE_INTENT_", extra="ignore")

    dev: bool = Field(
        default=False,
        description="self-signed CA, serving certificate and signing keys in the state dir "
        "(local use only; kept across restarts, paths printed)",
    )
    host: str = Field(default="127.0.0.1", description="listen address")
    port: int = Field(default=8443, description="listen port")
    state_dir: Path = Field(
        default=Path(".kube-intent"),
        description="certificates, keys and audit.db of --dev and the default audit store",
    )
    tls_cert: Path | None = Field(default=None, description="serving certificate (PEM)")
    tls_key: Path | None = Field(default=None, description="serving certificate's key (PEM)")
    tls_reload_seconds: float = Field(
        default=5.0, description="how often the certificate files are checked for a renewal"
    )
    client_ca: Path | None = Field(
        default=None,
        description="mutual TLS: /mutate and /validate accept only callers with a client "
        "certificate from this PEM CA bundle (the API server's AdmissionConfiguration)",
    )
    client_cert_names: tuple[str, ...] = Field(
        default=(),
        description="mutual TLS: the client certificate must name one of these (subject CN or "
        "DNS/URI SAN)",
    )
    # Without a client CA anyone who reaches the port could have a pod "admitted" and get it a
    # token: the operator has to say so.
    trust_unauthenticated_admissions: bool = Field(
        default=False,
        description="issue tokens for pods admitted by callers without a client certificate "
        "(only where the API server cannot present one; rely on a NetworkPolicy)",
    )

    policies: Path = Field(
        default=BUNDLED_POLICIES,
        description="Rego policy directory pushed into OPA",
    )
    extra_policies: Path | None = Field(
        default=None,
        description="an operator's Rego and data, loaded with the policies (data merged over "
        "theirs; docs/policies.md)",
    )
    policy_reload_seconds: float = Field(
        default=3.0, gt=0, description="how often the policy directories are checked for changes"
    )
    agents: Path | None = Field(
        default=None, description="YAML file of Agent registrations (used without a cluster)"
    )
    kubeconfig: Path | None = Field(
        default=None, description="watch Agents and resolve DRA claims in this cluster"
    )
    opa_url: str | None = Field(
        default=None,
        description="push the policies into this OPA (the chart's sidecar) instead of starting "
        "a supervised local one",
    )
    opa_bin: str | None = Field(
        default=None, description="OPA binary for the local subprocess (unset: opa on PATH)"
    )
    opa_timeout_seconds: float = Field(default=1.0, description="timeout of one OPA query")

    trust_domain: str = Field(default="cluster.local", description="SPIFFE trust domain")
    issuer: str = Field(
        default="https://kube-intent.kube-intent.svc", description="grant and token issuer URL"
    )
    token_endpoint_url: str | None = Field(
        default=None, description="the /token URL written into grants (unset: ISSUER/token)"
    )
    # A mounted Secret: private keys never sit in an environment variable.
    keys_dir: Path | None = Field(
        default=None,
        description="signing keys (active.pem, next.pem, previous.pem): enables grants and "
        "/token (unset with --dev: keys/ in the state dir, generated once)",
    )
    token_audiences: tuple[str, ...] = Field(
        default=(),
        description="audiences access tokens may be minted for; none: any but kube-intent's own",
    )

    audit_db: str | None = Field(
        default=None,
        description="audit store: a SQLite path or a postgresql:// DSN (unset: audit.db in "
        "the state dir)",
    )
    # A mounted Secret: a password never sits in an env variable or on a command line.
    audit_db_file: Path | None = Field(
        default=None, description="a file holding the audit store's DSN (wins over --audit-db)"
    )
    audit_required: bool = Field(
        default=True,
        description="refuse admissions that cannot be recorded (--no-audit-required: admit and "
        "log the failure)",
    )
    audit_checkpoint_seconds: float = Field(
        default=300.0,
        description="how often a signed checkpoint of the audit chain's head is logged (needs "
        "--keys-dir)",
    )

    # Staged rollouts: one switch moves every rule to warn or dryrun without editing Rego.
    enforcement: Enforcement | None = Field(
        default=None,
        description="every policy refusal (Rego rules and the intent schema) gets this "
        "enforcement; dryrun and warn refuse no pod and record each would-be denial, minting it "
        "no grant. Not the API server's request dryRun (unset: each rule's own)",
    )
    fail_open: bool = Field(
        default=False,
        description="admit GPU pods when the policy engine cannot answer (default: deny them)",
    )

    max_body_bytes: int = Field(
        default=3 * 1024 * 1024, description="largest request body accepted"
    )
    # Past capacity, queueing only turns every review into an API server timeout; refusing the
    # excess at once keeps the rest inside it (routes/admission.py).
    max_inflight_reviews: int = Field(
        default=128,
        ge=1,
        description="admission reviews answered at once; /mutate beyond this (and /validate "
        "beyond twice this, to finish pods already mutated) get 429 at once",
    )
    # The loop's lag understates the wait (a review read in one pass is decided in the next).
    # Measured with `serve` and vegeta at 150 and 200 pods/s on 2 cores: at 0.5, 61-75% of
    # reviews reached the API server's timeout; at 0.05 every answer came inside it.
    max_queue_seconds: float = Field(
        default=0.05,
        gt=0,
        description="when the CPU is the limit: /mutate gets 429 at once while the event loop "
        "runs this late, twice in a row (/validate: twice this)",
    )
    # What makes a pod governed (webhook/detect.py). The chart renders the same lists into the
    # webhooks' matchConditions, so the API server sends every pod these would flag.
    accelerator_resources: tuple[str, ...] = Field(
        default=DEFAULT_RESOURCE_PATTERNS,
        description="extended resource names (globs) that are accelerators",
    )
    accelerator_device_classes: tuple[str, ...] = Field(
        default=DEFAULT_DEVICE_CLASSES,
        description="DRA DeviceClass names (globs) that are accelerators",
    )
    accelerator_runtime_classes: tuple[str, ...] = Field(
        default=DEFAULT_RUNTIME_CLASSES,
        description="RuntimeClass names (globs) that expose accelerators",
    )
    accelerator_device_env: tuple[str, ...] = Field(
        default=DEFAULT_DEVICE_ENV,
        description="container environment variables that select devices",
    )
    accelerator_device_host_paths: tuple[str, ...] = Field(
        default=DEFAULT_DEVICE_HOST_PATHS,
        description="hostPath volume paths that are device nodes",
    )
    # Privileged containers see every device. Off only where Pod Security Admission already
    # refuses them (privileged CPU pods would otherwise be refused as side doors).
    accelerator_privileged: bool = Field(
        default=True, description="treat privileged containers as using accelerators"
    )
    accelerator_sharing_annotations: tuple[str, ...] = Field(
        default=DEFAULT_SHARING_ANNOTATIONS,
        description="pod annotations that request a share of an accelerator (e.g. gpu-fraction)",
    )
    accelerator_device_annotations: tuple[str, ...] = Field(
        default=DEFAULT_DEVICE_ANNOTATIONS,
        description="pod annotations that ask a device plugin or operator for devices",
    )
    log_level: str = Field(default="INFO", description="log level")
    reports: str = Field(
        default="",
        description="PolicyReports / openreports Reports written from the audit store "
        '(docs/reports.md): "" off, "auto" every kind the API server serves, or '
        '"policyreport,openreports"',
    )

    @field_validator("reports")
    @classmethod
    def _report_kinds(cls, value: str) -> str:
        # Refused here, before serve starts OPA or writes to the audit chain. Imported only
        # when set: the reports module pulls in the Kubernetes client.
        if value.strip():
            from webhook.reports import report_kinds

            report_kinds(value)
        return value

    reports_max_results: int = Field(
        default=500,
        ge=1,
        description="results per namespace in a report (the newest decisions are kept)",
    )
    reports_interval_seconds: float = Field(
        default=5.0, gt=0, description="how often reports are brought up to date"
    )
    # Bounds the denial series (docs/monitoring.md).
    metrics_max_namespaces: int = Field(
        default=200,
        ge=0,
        description="distinct namespace label values in metrics before further namespaces "
        'count as "other"',
    )

    graceful_shutdown_seconds: int = Field(
        default=15, ge=0, description="how long in-flight reviews may finish after SIGTERM"
    )

    @cached_property
    def accelerator_detector(self) -> AcceleratorDetector:
        """Built once (its patterns are compiled) and shared: it holds no state."""
        return AcceleratorDetector(
            self.accelerator_resources,
            self.accelerator_device_classes,
            runtime_classes=self.accelerator_runtime_classes,
            device_env=self.accelerator_device_env,
            device_host_paths=self.accelerator_device_host_paths,
            privileged=self.accelerator_privileged,
            sharing_annotations=self.accelerator_sharing_annotations,
            device_annotations=self.accelerator_device_annotations,
        )

    @property
    def token_endpoint(self) -> str:
        # Imported here: the CLI builds its flags from this module and must start fast.
        from identity.grants import token_endpoint_for

        return self.token_endpoint_url or token_endpoint_for(self.issuer)

    @property
    def audit_dsn(self) -> str:
        if self.audit_db_file is not None:
            return self.audit_db_file.read_text(encoding="utf-8").strip()
        return self.audit_db or str(self.state_dir / "audit.db")
