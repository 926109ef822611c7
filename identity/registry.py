"""Agent registrations: the `Agent` resource (kube-intent.io/v1alpha1), from a file or a cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from identity.intent import ttl_seconds
from identity.manifests import objects

API_VERSION = "kube-intent.io/v1alpha1"
KIND = "Agent"
DEFAULT_MAX_GRANT_TTL_SECONDS = 3600

ERR_FILE = "agents file {path}: {detail}"


class RegistryError(Exception):
    """The registrations cannot be read; the message names the file and the document."""


class AcceleratorBudget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max: int = Field(default=0, ge=0)
    resources: list[str] = Field(default_factory=list)


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    service_accounts: list[str] = Field(alias="serviceAccounts", min_length=1)
    owners: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    data_classes: list[str] = Field(default_factory=list, alias="dataClasses")
    tools: list[str] = Field(default_factory=list)
    egress: list[str] = Field(default_factory=list)
    accelerators: AcceleratorBudget = Field(default_factory=AcceleratorBudget)
    max_grant_ttl: int = Field(default=DEFAULT_MAX_GRANT_TTL_SECONDS, alias="maxGrantTTL")
    suspended: bool = False

    @field_validator("max_grant_ttl", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return ttl_seconds(value) if isinstance(value, str) else value


class AgentRegistration(BaseModel):
    """One registered agent: its name and namespace, and what it may do there."""

    name: str
    namespace: str
    spec: AgentSpec

    def to_input(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": self.name,
            "namespace": self.namespace,
            "serviceAccounts": spec.service_accounts,
            "owners": spec.owners,
            "models": spec.models,
            "dataClasses": spec.data_classes,
            "tools": spec.tools,
            "egress": spec.egress,
            "accelerators": spec.accelerators.model_dump(),
            "maxGrantTTLSeconds": spec.max_grant_ttl,
            "suspended": spec.suspended,
        }

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> AgentRegistration:
        """Build from an Agent object (file document or API object); raises ValueError."""
        if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
            raise ValueError(f"expected apiVersion {API_VERSION} kind {KIND}")
        metadata = obj.get("metadata") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if not name or not namespace:
            raise ValueError("metadata.name and metadata.namespace are required")
        try:
            spec = AgentSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(problems) from None
        return cls(name=name, namespace=namespace, spec=spec)


class AgentRegistry:
    """Registrations indexed by (namespace, name); replaced whole, read without locks."""

    def __init__(self, registrations: Iterable[AgentRegistration] = ()) -> None:
        self._by_key: dict[tuple[str, str], AgentRegistration] = {}
        self._namespaces: dict[str, list[str]] = {}
        for registration in registrations:
            self._by_key[(registration.namespace, registration.name)] = registration
            self._namespaces.setdefault(registration.name, []).append(registration.namespace)

    def get(self, namespace: str, name: str) -> AgentRegistration | None:
        return self._by_key.get((namespace, name))

    def registered_in(self, name: str) -> list[str]:
        return sorted(self._namespaces.get(name, []))

    def __iter__(self) -> Any:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def to_data(self) -> dict[str, dict[str, Any]]:
        """The OPA data document `data.kube_intent.agents[namespace][name]`."""
        data: dict[str, dict[str, Any]] = {}
        for registration in self._by_key.values():
            data.setdefault(registration.namespace, {})[registration.name] = registration.to_input()
        return data


def _documents(loaded: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    for _, document in objects(loaded):
        if not isinstance(document, Mapping):
            raise ValueError(f"expected a mapping, got {type(document).__name__}")
        yield document


def load_registry_file(path: Path) -> AgentRegistry:
    """Read Agent documents (multi-document YAML or a List) from a file."""
    try:
        text = path.read_text(encoding="utf-8")
        registrations = [
            AgentRegistration.from_object(document)
            for document in _documents(yaml.safe_load_all(text))
        ]
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise RegistryError(ERR_FILE.format(path=path, detail=exc)) from None
    return AgentRegistry(registrations)
