"""Typed settings: flags, KUBE_INTENT_* variables, and secrets read from mounted files."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.settings import Settings


def test_environment_variables_configure_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBE_INTENT_PORT", "9443")
    monkeypatch.setenv("KUBE_INTENT_ENFORCEMENT", "dryrun")
    monkeypatch.setenv("KUBE_INTENT_AUDIT_REQUIRED", "false")
    settings = Settings()
    assert (settings.port, settings.enforcement, settings.audit_required) == (9443, "dryrun", False)
    assert Settings(port=10443).port == 10443  # a flag wins over the variable


def test_audit_dsn_defaults_to_the_state_dir(tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path).audit_dsn == str(tmp_path / "audit.db")


def test_audit_dsn_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://kube-intent:s3cret@db:5432/audit\n")
    settings = Settings(audit_db_file=secret, audit_db="ignored")
    assert settings.audit_dsn == "postgresql://kube-intent:s3cret@db:5432/audit"


def test_token_endpoint_follows_the_issuer() -> None:
    assert (
        Settings(issuer="https://ki.example.com/").token_endpoint == "https://ki.example.com/token"
    )
    assert Settings(token_endpoint_url="https://t").token_endpoint == "https://t"
