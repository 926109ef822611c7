"""Typed settings: every `kube-intent serve` flag is also a `KUBE_INTENT_*` environment variable."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from webhook.detect import DEFAULT_DEVICE_CLASSES, DEFAULT_RESOURCE_PATTERNS, AcceleratorDetector

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_POLICIES = PACKAGE_ROOT / "policies"

Enforcement = Literal["deny", "warn", "dryrun"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBE_INTENT_", extra="ignore")

    dev: bool = False
    host: str = "127.0.0.1"
    port: int = 8443
    state_dir: Path = Path(".kube-intent")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_reload_seconds: float = 5.0

    policies: Path = BUNDLED_POLICIES
    agents: Path | None = None
    kubeconfig: Path | None = None
    opa_url: str | None = None
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
    accelerator_resources: tuple[str, ...] = DEFAULT_RESOURCE_PATTERNS
    accelerator_device_classes: tuple[str, ...] = DEFAULT_DEVICE_CLASSES
    log_level: str = "INFO"

    graceful_shutdown_seconds: int = Field(default=15, ge=0)

    @cached_property
    def accelerator_detector(self) -> AcceleratorDetector:
        """Built once (its patterns are compiled) and shared: it holds no state."""
        return AcceleratorDetector(self.accelerator_resources, self.accelerator_device_classes)

    @property
    def token_endpoint(self) -> str:
        return self.token_endpoint_url or self.issuer.rstrip("/") + "/token"

    @property
    def audit_dsn(self) -> str:
        if self.audit_db_file is not None:
            return self.audit_db_file.read_text(encoding="utf-8").strip()
        return self.audit_db or str(self.state_dir / "audit.db")
