"""Distinct, realistic GPU pods as the API server sends them to the admission webhooks.

A pod of a Deployment, shaped like `kubectl get pod -o json` shows one, built from
examples/pods/allowed-vllm-llama.yaml (registered agent support-bot of examples/agents.yaml, so
the policies allow it): generateName and ownerReferences to a ReplicaSet, managedFields of the
ReplicaSet controller, the defaults the API server fills in at decode time, the
ServiceAccount plugin's projected token volume, DefaultTolerationSeconds' tolerations, the
Priority plugin's priority. `pod(i)` differs per i in ReplicaSet, names, env, memory and intent.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "pods" / "allowed-vllm-llama.yaml"
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: faster
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the API server uses for generated names
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
CONTROLLER_GROUPS = [
    "system:serviceaccounts",
    "system:serviceaccounts:kube-system",
    "system:authenticated",
]
TTLS = ("15m", "30m", "45m")
MEMORY = ("16Gi", "20Gi", "24Gi")


def suffix(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:length])


def _example() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return document


EXAMPLE_POD = _example()
INTENT: dict[str, Any] = yaml.safe_load(
    EXAMPLE_POD["metadata"]["annotations"]["kube-intent.io/intent"]
)


def _probe(path: str, delay: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": delay,
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def pod(i: int) -> dict[str, Any]:
    """Pod number i as the mutating webhook receives it (no name, uid or status yet)."""
    example = copy.deepcopy(EXAMPLE_POD)
    meta, container = example["metadata"], example["spec"]["containers"][0]
    base = meta["name"]
    template_hash = suffix(f"rs-{i // 10}", 10)  # ten pods per ReplicaSet
    replicaset = f"{base}-{template_hash}"
    api_access = f"kube-api-access-{suffix(f'sa-{i}', 5)}"
    intent = copy.deepcopy(INTENT)
    intent["ttl"] = TTLS[i % len(TTLS)]
    intent["justification"] += f" Replica {i} of the {replicaset} rollout."
    memory = MEMORY[i % len(MEMORY)]
    owner_uid = str(uuid.UUID(hashlib.md5(replicaset.encode()).hexdigest()))  # noqa: S324

    container.update(
        {
            "env": [
                {"name": "HF_HOME", "value": "/models/hf"},
                {"name": "VLLM_WORKER_MULTIPROC_METHOD", "value": "spawn"},
                {"name": "VLLM_SHARD", "value": str(i % 8)},
                {
                    "name": "HF_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
                },
                _field_env("POD_NAME", "metadata.name"),
                _field_env("POD_IP", "status.podIP"),
            ],
            "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
            "resources": {
                "limits": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
                # Defaulting copies a limit without a request (the GPU) into requests.
                "requests": {"cpu": "2", "memory": memory, "nvidia.com/gpu": "1"},
            },
            "livenessProbe": _probe("/health", 120),
            "readinessProbe": _probe("/health", 30),
            "startupProbe": {**_probe("/health", 0), "failureThreshold": 60},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumeMounts": [
                {"name": "model-cache", "mountPath": "/models"},
                {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 - a pod spec
                {
                    "name": api_access,
                    "readOnly": True,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                },
            ],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{replicaset}-",
            "namespace": meta["namespace"],
            "labels": {**meta["labels"], "pod-template-hash": template_hash},
            "annotations": {
                "kube-intent.io/intent": yaml.dump(intent, Dumper=Dumper, sort_keys=False)
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": replicaset,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-03-01T12:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": _fields_v1(owner_uid),
                }
            ],
        },
        "spec": {
            "volumes": [
                {"name": "model-cache", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
                {
                    "name": api_access,
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [container],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "serviceAccountName": example["spec"]["serviceAccountName"],
            "serviceAccount": example["spec"]["serviceAccountName"],
            "securityContext": {"fsGroup": 1000},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }


def _fields_v1(owner_uid: str) -> dict[str, Any]:
    """What the ReplicaSet controller owns: the template's fields (abridged, same shape)."""
    container: dict[str, Any] = {
        f"f:{k}": {}
        for k in (
            "args",
            "env",
            "image",
            "imagePullPolicy",
            "livenessProbe",
            "name",
            "ports",
            "readinessProbe",
            "resources",
            "securityContext",
            "startupProbe",
            "terminationMessagePath",
            "terminationMessagePolicy",
            "volumeMounts",
        )
    }
    return {
        "f:metadata": {
            "f:annotations": {".": {}, "f:kube-intent.io/intent": {}},
            "f:generateName": {},
            "f:labels": {
                ".": {},
                "f:app.kubernetes.io/name": {},
                "f:kube-intent.io/agent": {},
                "f:pod-template-hash": {},
            },
            "f:ownerReferences": {".": {}, f'k:{{"uid":"{owner_uid}"}}': {}},
        },
        "f:spec": {
            "f:containers": {'k:{"name":"vllm"}': {".": {}, **container}},
            **{
                f"f:{k}": {}
                for k in (
                    "dnsPolicy",
                    "enableServiceLinks",
                    "nodeSelector",
                    "restartPolicy",
                    "schedulerName",
                    "securityContext",
                    "serviceAccount",
                    "serviceAccountName",
                    "terminationGracePeriodSeconds",
                    "tolerations",
                    "volumes",
                )
            },
        },
    }


def created(patched: dict[str, Any], seed: str) -> dict[str, Any]:
    """What the validating webhook receives: the mutated pod after the API server named it and
    gave it a uid, a creation time and the Pending status (registry BeforeCreate)."""
    final = copy.deepcopy(patched)
    meta = final["metadata"]
    meta["name"] = meta["generateName"] + suffix(seed, 5)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    final["status"] = {"phase": "Pending", "qosClass": "Burstable"}
    return final


def review(obj: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview of a pod CREATE by the ReplicaSet controller."""
    meta = obj["metadata"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": meta.get("name", ""),
            "namespace": meta["namespace"],
            "operation": "CREATE",
            "userInfo": {
                "username": REPLICASET_CONTROLLER,
                "uid": "6f4e2d1c-0b7a-4c39-9e58-2a1d3f4b5c6d",
                "groups": CONTROLLER_GROUPS,
            },
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
