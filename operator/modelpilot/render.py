"""Pure builders of the objects a ModelDeployment revision needs.

`build_*` functions take the typed spec and return plain dicts (or None: "this object should not
exist"). No API calls, no clock, no randomness: the same input always renders the same bytes, which
is what makes golden-file tests and `kubectl modelpilot render` possible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import constants as c
from . import objectmeta
from .api.modeldeployment import ModelDeployment
from .api.rollout import ScalingMetric
from .config import OperatorConfig
from .placement import scheduling_for, sum_quantities, with_ephemeral_storage
from .runtimes import MODEL_REPOSITORY, Signature, get_runtime
from .uris import pvc_claim

CONFIG_MOUNT = "/etc/modelpilot/model-config"
PVC_ROOT = "/mnt/pvc"  # where the storage initializer finds pvc://<claim>/... (modelpilot_exporters.sources)
HOSTNAME_TOPOLOGY_KEY = "kubernetes.io/hostname"


@dataclass(frozen=True)
class ExportArtifact:
    """What the operator read from the referenced ModelExport's status, for an exportRef model.

    `format` is the target's format (it decides the runtime's repository layout), `manifest_uri` is
    `status.manifestUri` (the storage initializer resolves `export://<name>/<target>` from it), and
    `signature` the target's IO signature from the manifest, when the operator has it.
    """

    format: str
    manifest_uri: str
    signature: Signature | None = None
    target: str = ""  # the export target's name (its artifact's `name`)


def effective(md: ModelDeployment, export: ExportArtifact | None) -> ModelDeployment:
    """The spec as the runtimes see it: an exportRef model takes the format of the export's target."""
    if export is None or md.model.format:
        return md
    return dataclasses.replace(md, model=dataclasses.replace(md.model, format=export.format))


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    return objectmeta.owner_reference("ModelDeployment", md.name, md.uid)


def labels(md: ModelDeployment, revision: int | None = None, component: str = "predictor") -> dict[str, str]:
    extra = {c.LABEL_DEPLOYMENT: md.name} | ({c.LABEL_REVISION: str(revision)} if revision is not None else {})
    return objectmeta.standard_labels(md.model.name, md.name, component, **extra)


def _meta(md: ModelDeployment, name: str, revision: int | None, component: str = "predictor") -> dict[str, Any]:
    return objectmeta.object_meta(name, md.namespace, labels(md, revision, component), owner_reference(md))


def _config_key(path: str) -> str:
    return path.replace("/", ".")


def build_model_config_map(md: ModelDeployment, revision: int, signature: Signature | None = None) -> dict[str, Any]:
    files = get_runtime(md.runtime.kind).config_files(md, signature)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(md, c.config_map_name(md.name, revision), revision),
        "data": {_config_key(p): body for p, body in sorted(files.items())},
    }


# spec.model.limits -> the storage initializer's flags
STORAGE_LIMIT_FLAGS = {"maxDownloadSize": "--max-download-size", "maxUnpackedSize": "--max-unpacked-size",
                       "maxFiles": "--max-files"}


def model_source(md: ModelDeployment) -> str:
    """The URI the storage initializer fetches: spec.model.uri, or `export://<name>[/<target>]`."""
    if md.model.uri:
        return md.model.uri
    return f"export://{md.model.export_name}" + (f"/{md.model.export_target}" if md.model.export_target else "")


def source_claims(md: ModelDeployment, export: ExportArtifact | None, mount: bool) -> list[str]:
    """PersistentVolumeClaims the storage initializer reads: of spec.model.uri and of the export's manifest.

    The operator mounts them unless its config says `mountPvcSources: false` (the local test bed,
    which has no provisioner: a pod naming a missing claim is never scheduled).
    """
    if not mount:
        return []
    uris = [md.model.uri or "", export.manifest_uri if export else ""]
    return sorted({claim for u in uris if (claim := pvc_claim(u))})


def _storage_initializer(md: ModelDeployment, config: OperatorConfig, export: ExportArtifact | None,
                         claims: list[str]) -> dict[str, Any]:
    runtime = get_runtime(md.runtime.kind)
    args = [
        f"--uri={model_source(md)}",
        f"--format={md.model.format or 'auto'}",
        f"--model-name={md.model.name}",
        f"--dest={MODEL_REPOSITORY}/{runtime.artifact_path(md)}",
        f"--config-dir={CONFIG_MOUNT}",
        f"--repository={MODEL_REPOSITORY}",
    ]
    if export is not None:
        args.append(f"--manifest={export.manifest_uri}")
    if md.model.endpoint:
        args.append(f"--endpoint={md.model.endpoint}")
    if md.model.allow_pickle:
        args.append("--allow-pickle")
    args += [f"{STORAGE_LIMIT_FLAGS[k]}={v}" for k, v in md.model.limits if k in STORAGE_LIMIT_FLAGS]
    container: dict[str, Any] = {
        "name": "storage-initializer",
        "image": config.image_for("storage-init"),
        "command": ["modelpilot-storage-init"],
        "args": args,
        "resources": _disk_bounded({"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}, config),
        "securityContext": objectmeta.container_security_context(),
        "volumeMounts": [
            {"name": "model-repository", "mountPath": MODEL_REPOSITORY},
            {"name": "model-config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *({"name": f"model-pvc-{i}", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True}
              for i, claim in enumerate(claims)),
        ],
    }
    if md.model.secret_ref:
        # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS_JSON or HTTP_AUTHORIZATION.
        container["envFrom"] = [{"secretRef": {"name": md.model.secret_ref}}]
    return container


def _disk_bounded(resources: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """Every container of a serving pod may fill the pod's emptyDirs, which the kubelet counts
    against the pod's ephemeral-storage limit: so each limit covers them, plus headroom."""
    es = config.ephemeral_storage
    return with_ephemeral_storage(resources, es.request, sum_quantities(es.headroom, es.model_repository, es.scratch))


def _selector(md: ModelDeployment, revision: int) -> dict[str, str]:
    return {c.LABEL_DEPLOYMENT: md.name, c.LABEL_REVISION: str(revision)}


def build_revision_deployment(md: ModelDeployment, revision: int, config: OperatorConfig, replicas: int | None,
                              *, signature: Signature | None = None, export: ExportArtifact | None = None,
                              mount_pvc_sources: bool = False) -> dict[str, Any]:
    """The revision's Deployment. `replicas=None` leaves the field to an HPA (server-side apply ownership)."""
    md = effective(md, export)
    claims = source_claims(md, export, mount_pvc_sources)
    signature = signature or (export.signature if export else None)
    runtime = get_runtime(md.runtime.kind)
    sched = scheduling_for(md.placement, config)
    server = runtime.container(md, md.runtime.image or config.image_for(md.runtime.kind))
    resources: dict[str, Any] = {}
    if sched.requests:
        resources["requests"] = sched.requests
    if sched.limits:
        resources["limits"] = sched.limits
    server["resources"] = _disk_bounded(resources, config)
    # All three runtimes run with a read-only root filesystem: everything they write goes to the /tmp
    # and /dev/shm emptyDirs (TorchServe after LOG_LOCATION, METRICS_LOCATION and --ncs, see
    # runtimes/torchserve.py), and the model repository is written only by the init container.
    server["securityContext"] = objectmeta.container_security_context()
    server["volumeMounts"] = [
        {"name": "model-repository", "mountPath": MODEL_REPOSITORY, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    files = runtime.config_files(md, signature)
    pod_labels = labels(md, revision)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": objectmeta.pod_security_context(),
        "initContainers": [_storage_initializer(md, config, export, claims)],
        "containers": [server],
        "volumes": [
            {"name": "model-repository", "emptyDir": {"sizeLimit": config.ephemeral_storage.model_repository}},
            {"name": "tmp", "emptyDir": {"sizeLimit": config.ephemeral_storage.scratch}},
            # Model servers share tensors between processes through /dev/shm; the default 64 MiB is too small.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "model-config", "configMap": {
                "name": c.config_map_name(md.name, revision),
                "items": [{"key": _config_key(p), "path": p} for p in sorted(files)],
            }},
            *({"name": f"model-pvc-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
              for i, claim in enumerate(claims)),
        ],
        "terminationGracePeriodSeconds": 30,
        # Replicas of a revision spread over nodes where they can (a node loss takes one, not all);
        # ScheduleAnyway, because a GPU pool may well have fewer nodes than replicas.
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": HOSTNAME_TOPOLOGY_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": _selector(md, revision)},
        }],
    }
    if sched.node_selector:
        pod_spec["nodeSelector"] = sched.node_selector
    if sched.tolerations:
        pod_spec["tolerations"] = sched.tolerations
    spec: dict[str, Any] = {
        "selector": {"matchLabels": _selector(md, revision)},
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


def build_network_policy(md: ModelDeployment, config: OperatorConfig) -> dict[str, Any] | None:
    """Who may reach the ModelDeployment's pods (every revision), or None when the config leaves it off.

    Serving ports admit only `networkPolicy.ingressFrom`, the metrics port only `metricsFrom`; a
    list left empty gives no rule at all, since a rule with an empty `from` admits everyone.
    Egress stays open, explicitly: the storage initializer downloads the model from wherever
    spec.model.uri points.
    """
    opts = config.network_policy
    if not opts.enabled:
        return None
    ports = get_runtime(md.runtime.kind).ports
    ingress: list[dict[str, Any]] = []
    if opts.ingress_from:
        ingress.append({"from": [dict(p) for p in opts.ingress_from],
                        "ports": [{"protocol": "TCP", "port": p} for p in (ports.http, ports.grpc) if p]})
    if opts.metrics_from:
        ingress.append({"from": [dict(p) for p in opts.metrics_from],
                        "ports": [{"protocol": "TCP", "port": ports.metrics or ports.http}]})
    callers = [c.COMPONENT_COMPARATOR] if md.strategy == "shadow" and md.rollout.shadow.compare else []  # calls both revisions
    if md.model.export_name and md.rollout.parity_check.enabled:
        callers.append(c.COMPONENT_PARITY)  # the parity check Job calls a new revision (rollout/parity.py)
    for component in callers:
        ingress.append({"from": [{"podSelector": {"matchLabels": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_COMPONENT: component}}}],
                        "ports": [{"protocol": "TCP", "port": ports.http}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(md, md.name, None, component="network-policy"),
        "spec": {
            "podSelector": {"matchLabels": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_COMPONENT: "predictor"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": [{}],
        },
    }


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


def build_revision_objects(md: ModelDeployment, revision: int, config: OperatorConfig, replicas: int | None,
                           *, signature: Signature | None = None, export: ExportArtifact | None = None,
                           mount_pvc_sources: bool = False) -> list[dict[str, Any]]:
    """Everything one revision needs. `signature` (or `export.signature`) is the artifact's IO signature,
    None to let the runtime find it out; `export` is required to serve an exportRef model;
    `mount_pvc_sources` mounts the claims of pvc:// sources into the storage initializer."""
    signature = signature or (export.signature if export else None)
    objs = [
        build_model_config_map(effective(md, export), revision, signature),
        build_revision_deployment(md, revision, config, replicas, signature=signature, export=export,
                                  mount_pvc_sources=mount_pvc_sources),
        build_autoscaler(md, revision),
        build_pod_disruption_budget(md, revision, replicas),
    ]
    return [o for o in objs if o is not None]


def runtime_warnings(md: ModelDeployment, *, signature: Signature | None = None,
                     export: ExportArtifact | None = None) -> list[str]:
    """One line each: what the runtime will do worse than the spec asks (for a condition message or an Event)."""
    return get_runtime(md.runtime.kind).warnings(effective(md, export), signature or (export.signature if export else None))


def build_pod_disruption_budget(md: ModelDeployment, revision: int, replicas: int | None) -> dict[str, Any] | None:
    """At most one pod of the revision evicted at a time (drains, upgrades), or None for a single replica.

    A budget over one replica would block every node drain, so it exists only with more than one
    (spec.replicas, or autoscaling.minReplicas when an HPA owns the count). Pods that are not ready
    may always be evicted: a broken revision must not hold a node hostage.
    """
    floor = replicas if replicas is not None else (md.autoscaling.min_replicas if md.autoscaling else 1)
    if floor <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(md, c.revision_name(md.name, revision), revision),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": _selector(md, revision)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def endpoint(md: ModelDeployment) -> str:
    return f"http://{md.name}.{md.namespace}.svc.cluster.local:{md.port}"


def build_autoscaler(md: ModelDeployment, revision: int) -> dict[str, Any] | None:
    """autoscaling/v2 HPA for a revision's Deployment, or None without spec.autoscaling."""
    a = md.autoscaling
    if not a:
        return None
    metric_specs = [_hpa_metric(m) for m in a.metrics or (ScalingMetric("cpu", target_average_utilization=80),)]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(md, c.revision_name(md.name, revision), revision),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": c.revision_name(md.name, revision)},
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "metrics": [m for m in metric_specs if m is not None],
        },
    }


def _hpa_metric(m: ScalingMetric) -> dict[str, Any] | None:
    if m.type in ("cpu", "memory"):
        target = ({"type": "AverageValue", "averageValue": m.target_average_value} if m.target_average_value is not None
                  else {"type": "Utilization", "averageUtilization": int(m.target_average_utilization or 80)})
        return {"type": "Resource", "resource": {"name": m.type, "target": target}}
    if m.type == "pods":
        return {"type": "Pods", "pods": {"metric": {"name": m.name}, "target": {
            "type": "AverageValue", "averageValue": str(m.target_average_value)}}}
    if m.type == "external":
        target = ({"type": "Value", "value": m.target_value} if m.target_value is not None
                  else {"type": "AverageValue", "averageValue": str(m.target_average_value)})
        return {"type": "External", "external": {"metric": {"name": m.name}, "target": target}}
    return None
