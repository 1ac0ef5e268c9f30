"""Per-revision Service builder (the backend a router weights) — pure."""

from __future__ import annotations

from typing import Any

from .. import constants as c
from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..render import labels, owner_reference
from ..runtimes import get_runtime


def build_revision_service(md: ModelDeployment, revision: int) -> dict[str, Any]:
    ports = get_runtime(md.runtime.kind).ports
    svc_ports = [{"name": "http", "port": md.port, "targetPort": "http", "protocol": "TCP"}]
    if ports.grpc:
        svc_ports.append({"name": "grpc", "port": ports.grpc, "targetPort": "grpc", "protocol": "TCP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": c.revision_name(md.name, revision), "namespace": md.namespace,
                     "labels": labels(md, revision, component="revision"), "ownerReferences": [owner_reference(md)]},
        "spec": {"type": "ClusterIP", "selector": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_REVISION: str(revision)},
                 "ports": svc_ports},
    }


def check_service_ports(md: ModelDeployment) -> None:
    """Raise SpecError when spec.traffic.port is a port the runtime's Services already use for gRPC
    (the apiserver would refuse the Service with a duplicate port, in words that name no spec field)."""
    grpc = get_runtime(md.runtime.kind).ports.grpc
    if grpc and md.port == grpc:
        raise SpecError("spec.traffic.port", f"{md.port} is the {md.runtime.kind} gRPC port, which the Services expose too",
                        "choose another port, e.g. 80")
