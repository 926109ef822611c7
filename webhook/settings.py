"""Typed settings: every `kube-intent serve` flag is also a `KUBE_INTENT_*` environment variable."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from identity.grants import token_endpoint_for
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
    model_config = SettingsConfigDict(env_prefix="KUBE_INTENT_", extra="ignore")

    dev: bool = False
    host: str = "127.0.0.1"
    port: int = 8443
    state_dir: Path = Path(".kube-intent")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_reload_seconds: float = 5.0
    # mTLS from the API server (its AdmissionConfiguration kubeconfig): a PEM CA bundle. When
    # set, /mutate and /validate refuse callers without a certificate it verifies.
    client_ca: Path | None = None
    # Optional: the client certificate must name one of these (subject CN or DNS/URI SAN).
    client_cert_names: tuple[str, ...] = ()
    # Tokens only for pods whose admission came from an authenticated caller, unless the
    # operator accepts admissions from anyone who reaches the port (no client CA available).
    trust_unauthenticated_admissions: bool = False

    # The policy set pushed into OPA: `policies` (the bundled set unless replaced) plus an
    # operator's `extra_policies` directory (Rego added, data merged over). Both are polled every
    # `policy_reload_seconds` and pushed again when they change (docs/policies.md).
    policies: Path = BUNDLED_POLICIES
    extra_policies: Path | None = None
    policy_reload_seconds: float = Field(default=3.0, gt=0)
    agents: Path | None = None
    kubeconfig: Path | None = None
    # An OPA to push into and ask (the chart's sidecar); none: a supervised local one.
    opa_url: str | None = None
    # The local OPA's binary (else `opa` on PATH); KUBE_INTENT_OPA_BIN.
    opa_bin: str | None = None
    opa_timeout_seconds: float = 1.0

    trust_domain: str = "cluster.local"
    issuer: str = "https://kube-intent.kube-intent.svc"
    token_endpoint_url: str | None = None
    # A directory (a mounted Secret) holding active.pem / next.pem / previous.pem; never env.
    keys_dir: Path | None = None
    # Audiences access tokens may be minted for; empty allows any but kube-intent's own.
    token_audiences: tuple[str, ...] = ()

    audit_db: str | None = None
    # A file holding the DSN (a mounted Secret): a password never sits in an env variable.
    audit_db_file: Path | None = None
    audit_required: bool = True
    # How often a signed checkpoint of the audit chain's head is logged (needs --keys-dir).
    audit_checkpoint_seconds: float = 300.0

    # None keeps each rule's own enforcement; a value overrides every rule (staged rollouts).
    enforcement: Enforcement | None = None
    # GPU pods are denied when the policy engine cannot answer, unless this is set.
    fail_open: bool = False

    max_body_bytes: int = 3 * 1024 * 1024
    # What makes a pod governed (webhook/detect.py; the chart renders the same lists into the
    # webhooks' matchConditions, so the API server sends every pod these would flag).
    accelerator_resources: tuple[str, ...] = DEFAULT_RESOURCE_PATTERNS
    accelerator_device_classes: tuple[str, ...] = DEFAULT_DEVICE_CLASSES
    accelerator_runtime_classes: tuple[str, ...] = DEFAULT_RUNTIME_CLASSES
    accelerator_device_env: tuple[str, ...] = DEFAULT_DEVICE_ENV
    accelerator_device_host_paths: tuple[str, ...] = DEFAULT_DEVICE_HOST_PATHS
    # Privileged containers see every device. Turn off only where Pod Security Admission
    # already refuses them (privileged CPU pods would otherwise be refused as side doors).
    accelerator_privileged: bool = True
    accelerator_sharing_annotations: tuple[str, ...] = DEFAULT_SHARING_ANNOTATIONS
    accelerator_device_annotations: tuple[str, ...] = DEFAULT_DEVICE_ANNOTATIONS
    log_level: str = "INFO"

    graceful_shutdown_seconds: int = Field(default=15, ge=0)

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
        return self.token_endpoint_url or token_endpoint_for(self.issuer)

    @property
    def audit_dsn(self) -> str:
        if self.audit_db_file is not None:
            return self.audit_db_file.read_text(encoding="utf-8").strip()
        return self.audit_db or str(self.state_dir / "audit.db")
