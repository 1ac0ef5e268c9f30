"""Pure builders of the objects a ModelDeployment revision needs.

`build_*` functions take the typed spec and return plain dicts (or None: "this object should not
exist"). No API calls, no clock, no randomness: the same input always renders the same bytes, which
is what makes golden-file tests and `kubectl modelpilot render` possible.
"""

from __future__ import annotations

from typing import Any

from . import constants as c
from .api.modeldeployment import ModelDeployment
from .config import OperatorConfig
from .placement import scheduling_for
from .runtimes import MODEL_REPOSITORY, get_runtime

CONFIG_MOUNT = "/etc/modelpilot/model-config"


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": "ModelDeployment",
        "name": md.name,
        "uid": md.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(md: ModelDeployment, revision: int | None = None, component: str = "predictor") -> dict[str, str]:
    out = {
        c.LABEL_NAME: md.model.name,
        c.LABEL_INSTANCE: md.name,
        c.LABEL_COMPONENT: component,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_PART_OF: "modelpilot",
        c.LABEL_DEPLOYMENT: md.name,
    }
    if revision is not None:
        out[c.LABEL_REVISION] = str(revision)
    return out


def _meta(md: ModelDeployment, name: str, revision: int | None, component: str = "predictor") -> dict[str, Any]:
    return {
        "name": name,
        "namespace": md.namespace,
        "labels": labels(md, revision, component),
        "ownerReferences": [owner_reference(md)],
    }


def _config_key(path: str) -> str:
    return path.replace("/", ".")


def build_model_config_map(md: ModelDeployment, revision: int) -> dict[str, Any]:
    files = get_runtime(md.runtime.kind).config_files(md)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(md, c.config_map_name(md.name, revision), revision),
        "data": {_config_key(p): body for p, body in sorted(files.items())},
    }


def _storage_initializer(md: ModelDeployment, revision: int, config: OperatorConfig) -> dict[str, Any]:
    runtime = get_runtime(md.runtime.kind)
    source = md.model.uri or f"export://{md.model.export_name}" + (f"/{md.model.export_target}" if md.model.export_target else "")
    return {
        "name": "storage-initializer",
        "image": config.image_for("exporter"),
        "command": ["modelpilot-storage-init"],
        "args": [
            f"--uri={source}",
            f"--dest={MODEL_REPOSITORY}/{runtime.artifact_path(md)}",
            f"--config-dir={CONFIG_MOUNT}",
            f"--repository={MODEL_REPOSITORY}",
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "model-repository", "mountPath": MODEL_REPOSITORY},
            {"name": "model-config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def build_revision_deployment(md: ModelDeployment, revision: int, config: OperatorConfig, replicas: int | None) -> dict[str, Any]:
    """The revision's Deployment. `replicas=None` leaves the field to an HPA (server-side apply ownership)."""
    runtime = get_runtime(md.runtime.kind)
    sched = scheduling_for(md.placement, config)
    server = runtime.container(md, md.runtime.image or config.image_for(md.runtime.kind))
    resources: dict[str, Any] = {}
    if sched.requests:
        resources["requests"] = sched.requests
    if sched.limits:
        resources["limits"] = sched.limits
    server["resources"] = resources
    server["securityContext"] = _container_security()
    server["volumeMounts"] = [
        {"name": "model-repository", "mountPath": MODEL_REPOSITORY, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    files = runtime.config_files(md)
    pod_labels = labels(md, revision)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [_storage_initializer(md, revision, config)],
        "containers": [server],
        "volumes": [
            {"name": "model-repository", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            # Model servers share tensors between processes through /dev/shm; the default 64 MiB is too small.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "model-config", "configMap": {
                "name": c.config_map_name(md.name, revision),
                "items": [{"key": _config_key(p), "path": p} for p in sorted(files)],
            }},
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if sched.node_selector:
        pod_spec["nodeSelector"] = sched.node_selector
    if sched.tolerations:
        pod_spec["tolerations"] = sched.tolerations
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_REVISION: str(revision)}},
        "revisionHistoryLimit": 2,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(md, c.revision_name(md.name, revision), revision),
        "spec": spec,
    }


def _service_ports(md: ModelDeployment) -> list[dict[str, Any]]:
    ports = get_runtime(md.runtime.kind).ports
    out = [{"name": "http", "port": md.port, "targetPort": "http", "protocol": "TCP"}]
    if ports.grpc:
        out.append({"name": "grpc", "port": ports.grpc, "targetPort": "grpc", "protocol": "TCP"})
    if ports.metrics:
        out.append({"name": "metrics", "port": ports.metrics, "targetPort": "metrics", "protocol": "TCP"})
    return out


def build_entry_service(md: ModelDeployment) -> dict[str, Any]:
    """The stable entry point users call. With the replica router it selects every serving revision."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(md, md.name, None, component="entrypoint"),
        "spec": {
            "type": "ClusterIP",
            "selector": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_COMPONENT: "predictor"},
            "ports": _service_ports(md),
        },
    }


def build_revision_objects(md: ModelDeployment, revision: int, config: OperatorConfig, replicas: int | None) -> list[dict[str, Any]]:
    objs = [
        build_model_config_map(md, revision),
        build_revision_deployment(md, revision, config, replicas),
        build_autoscaler(md, revision),
    ]
    return [o for o in objs if o is not None]


def endpoint(md: ModelDeployment) -> str:
    return f"http://{md.name}.{md.namespace}.svc.cluster.local:{md.port}"


def build_autoscaler(md: ModelDeployment, revision: int) -> dict[str, Any] | None:
    """autoscaling/v2 HPA for a revision's Deployment, or None without spec.autoscaling."""
    a = md.autoscaling
    if not a:
        return None
    metric_specs = []
    for m in a.get("metrics") or [{"type": "cpu", "targetAverageUtilization": 80}]:
        t = m.get("type")
        if t in ("cpu", "memory"):
            metric_specs.append({"type": "Resource", "resource": {"name": t, "target": {
                "type": "Utilization", "averageUtilization": int(m.get("targetAverageUtilization", 80))}}})
        elif t == "pods":
            metric_specs.append({"type": "Pods", "pods": {"metric": {"name": m["name"]}, "target": {
                "type": "AverageValue", "averageValue": str(m.get("targetAverageValue"))}}})
        elif t == "external":
            target = ({"type": "Value", "value": str(m["targetValue"])} if m.get("targetValue") is not None
                      else {"type": "AverageValue", "averageValue": str(m.get("targetAverageValue"))})
            metric_specs.append({"type": "External", "external": {"metric": {"name": m["name"]}, "target": target}})
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(md, c.revision_name(md.name, revision), revision),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": c.revision_name(md.name, revision)},
            "minReplicas": int(a.get("minReplicas", 1)),
            "maxReplicas": int(a.get("maxReplicas", max(1, int(a.get("minReplicas", 1))))),
            "metrics": metric_specs,
        },
    }
