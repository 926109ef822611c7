"""Binding a pod to its agent's workload identity (SPIFFE ID) and registration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from identity.registry import AgentRegistration, AgentRegistry

AGENT_LABEL = "kube-intent.io/agent"
# Written by the mutating webhook on a GPU pod it admitted: the identity it bound.
SPIFFE_ID_ANNOTATION = "kube-intent.io/spiffe-id"
DEFAULT_SERVICE_ACCOUNT = "default"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True, slots=True)
class IdentityBinding:
    agent: str | None
    namespace: str
    service_account: str
    spiffe_id: str
    registration: AgentRegistration | None
    registered_in: tuple[str, ...]

    @property
    def bound(self) -> bool:
        """Registered in this namespace and running under one of the registered ServiceAccounts."""
        return (
            self.registration is not None
            and self.service_account in self.registration.spec.service_accounts
        )

    def to_input(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "spiffeId": self.spiffe_id,
            "bound": self.bound,
            "registration": self.registration.to_input() if self.registration else None,
            "registeredIn": list(self.registered_in),
        }


def bind(
    pod: Mapping[str, Any], namespace: str, registry: AgentRegistry, trust_domain: str
) -> IdentityBinding:
    # The namespace comes from the admission request, never from the object: a pod's
    # metadata.namespace may be empty on CREATE and must not be trusted to differ.
    labels = (pod.get("metadata") or {}).get("labels") or {}
    agent = labels.get(AGENT_LABEL) if isinstance(labels, Mapping) else None
    agent = agent if isinstance(agent, str) and agent else None
    service_account = (pod.get("spec") or {}).get("serviceAccountName") or DEFAULT_SERVICE_ACCOUNT
    return IdentityBinding(
        agent=agent,
        namespace=namespace,
        service_account=str(service_account),
        spiffe_id=spiffe_id(trust_domain, namespace, str(service_account)),
        registration=registry.get(namespace, agent) if agent else None,
        registered_in=tuple(registry.registered_in(agent)) if agent else (),
    )
