"""What every object the operator creates carries: the recommended labels, the owner reference
that garbage-collects it with its ModelDeployment or ModelExport, and the security contexts of
its pods (non-root, read-only root filesystem, no capabilities, the runtime's seccomp profile)."""

from __future__ import annotations

from typing import Any

from . import constants as c

# The uid and gid of every pod the operator creates; the images' user (65532) is overridden so
# that volumes written by the storage initializer are readable by the server (fsGroup).
POD_USER = 1000


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": c.API_VERSION, "kind": kind, "name": name, "uid": uid, "controller": True, "blockOwnerDeletion": True}


def standard_labels(app: str, instance: str, component: str, **extra: str) -> dict[str, str]:
    """app.kubernetes.io/* labels plus modelpilot's own (`extra`: label -> value)."""
    return {c.LABEL_NAME: app, c.LABEL_INSTANCE: instance, c.LABEL_COMPONENT: component,
            c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_PART_OF: "modelpilot", **extra}


def object_meta(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]}


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": POD_USER, "runAsGroup": POD_USER, "fsGroup": POD_USER,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    """Everything a container writes goes to emptyDirs (/tmp, /dev/shm, the model repository)."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}
