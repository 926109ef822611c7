"""Key sets (real P-256 keys), the example agents and a grant issuer for the identity tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.grants import GrantIssuer
from identity.keys import KeySet, generate_keys
from identity.registry import AgentRegistry, load_registry_file
from tests.support.grants import ISSUER, TOKEN_ENDPOINT
from tests.support.paths import EXAMPLES


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    generate_keys(directory)
    return directory


@pytest.fixture(scope="session")
def keyset(key_dir: Path) -> KeySet:
    return KeySet.load(key_dir)


@pytest.fixture(scope="session")
def other_keyset(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    """Someone else's keys: what a forger signs with."""
    return generate_keys(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture(scope="session")
def registry() -> AgentRegistry:
    return load_registry_file(EXAMPLES / "agents.yaml")


@pytest.fixture
def issuer(keyset: KeySet) -> GrantIssuer:
    return GrantIssuer(
        lambda: keyset, ISSUER, TOKEN_ENDPOINT, policy_revision=lambda: "0123456789ab"
    )
