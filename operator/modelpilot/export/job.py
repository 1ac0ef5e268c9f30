"""Pure builders of a ModelExport's Job and the ConfigMap holding its manifest.

The Job runs exactly `modelpilot-export -f /etc/modelpilot/export/modelexport.yaml`, the command a
user runs on a laptop with the same file, so a failing export can be reproduced outside the
cluster. One Job per spec generation, with a deterministic name: a retry never duplicates work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .. import constants as c
from .. import objectmeta
from ..api.errors import SpecError
from ..api.modelexport import ModelExport, parse_model_export
from ..config import OperatorConfig
from ..placement import sum_quantities, with_ephemeral_storage
from ..uris import pvc_claim

SPEC_MOUNT = "/etc/modelpilot/export"
SPEC_FILE = "modelexport.yaml"
PVC_ROOT = "/mnt/pvc"
CONTAINER = "export"
DEFAULT_RESOURCES = {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
# Exit code 2 is the exporter's "bad input": retrying cannot help, so it fails the Job at once.
BAD_INPUT_EXIT_CODE = 2


def _meta(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    meta = body["metadata"]
    labels = objectmeta.standard_labels("modelpilot-exporter", meta["name"], "export", **{c.LABEL_EXPORT: meta["name"]})
    return objectmeta.object_meta(name, meta["namespace"], labels, objectmeta.owner_reference("ModelExport", meta["name"], meta.get("uid", "")))


def export_manifest(body: Mapping[str, Any]) -> str:
    """The ModelExport as the exporter reads it: what the user applied, without status or server fields."""
    meta = body["metadata"]
    doc = {
        "apiVersion": c.API_VERSION,
        "kind": "ModelExport",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "generation": meta.get("generation", 0)},
        "spec": body.get("spec") or {},
    }
    return yaml.safe_dump(doc, sort_keys=True)


def claim_fields(me: ModelExport) -> dict[str, list[str]]:
    """Claim -> the spec fields whose pvc:// URI names it (so that a message can say which to fix)."""
    out: dict[str, list[str]] = {}
    for field_path, uri in me.uris:
        claim = pvc_claim(uri)
        if claim:
            out.setdefault(claim, []).append(field_path)
    return out


def _pvc_claims(me: ModelExport) -> tuple[list[str], str | None]:
    """Claims named by pvc:// URIs in the spec: (all claims, the output's claim)."""
    return sorted(claim_fields(me)), pvc_claim(me.output_uri)


def _env_from(me: ModelExport) -> list[dict[str, Any]]:
    """The source secret as plain env (AWS_ACCESS_KEY_ID, ...); the output secret with the prefix
    MODELPILOT_OUTPUT_, so that two secrets with the same keys do not collide."""
    out: list[dict[str, Any]] = []
    src, dst = me.source_secret, me.output_secret
    if src:
        out.append({"secretRef": {"name": src}})
    if dst:
        out.append({"prefix": "MODELPILOT_OUTPUT_", "secretRef": {"name": dst}})
    return out


def _image(me: ModelExport, config: OperatorConfig) -> str:
    """spec.image if the operator config allows it (it runs with the namespace's Secrets), else the default."""
    image = me.image
    if not image:
        return config.exporter_image(me.source_format)
    if not config.export_image_allowed(image):
        raise SpecError("spec.image", f"image {image!r} is not allowed by the operator config",
                        f"leave spec.image unset for the default exporter, use an image matching one of "
                        f"{', '.join(config.allowed_export_images) or '(none)'}, or ask the cluster admin to add it "
                        "to the operator config's allowedExportImages")
    return str(image)


def build_export_network_policy(body: Mapping[str, Any], config: OperatorConfig) -> dict[str, Any] | None:
    """With the config's networkPolicy.enabled, nothing may connect to an export pod (it serves
    nothing); egress stays open for the downloads and uploads. None when the option is off."""
    if not config.network_policy.enabled:
        return None
    meta = _meta(body, body["metadata"]["name"])
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": {
        "podSelector": {"matchLabels": {c.LABEL_EXPORT: body["metadata"]["name"]}},
        "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": [{}]}}


def build_spec_config_map(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(body, name), "data": {SPEC_FILE: export_manifest(body)}}


def build_export_job(body: Mapping[str, Any], name: str, config: OperatorConfig) -> dict[str, Any]:
    me = parse_model_export(body)
    claims, out_claim = _pvc_claims(me)
    pool_name = me.node_pool
    pod: dict[str, Any] = {}
    if pool_name:
        pool = config.node_pools.get(pool_name)
        if pool is None:
            known = ", ".join(sorted(config.node_pools)) or "none are configured"
            raise SpecError("spec.nodePool", f"unknown node pool {pool_name!r}", f"use one of: {known}")
        if pool.node_selector:
            pod["nodeSelector"] = dict(pool.node_selector)
        if pool.tolerations:
            pod["tolerations"] = [dict(t) for t in pool.tolerations]
    resources = me.resources or DEFAULT_RESOURCES
    mounts = [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": config.ephemeral_storage.export_scratch}},
    ]
    for i, claim in enumerate(claims):
        mounts.append({"name": f"pvc-{i}", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": claim != out_claim})
        volumes.append({"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": claim != out_claim}})
    container = {
        "name": CONTAINER,
        "image": _image(me, config),
        "command": ["modelpilot-export"],
        "args": ["-f", f"{SPEC_MOUNT}/{SPEC_FILE}"],
        "env": [
            {"name": "MODELPILOT_PVC_ROOT", "value": PVC_ROOT},
            {"name": "MODELPILOT_TERMINATION_LOG", "value": "/dev/termination-log"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "envFrom": _env_from(me),
        "resources": with_ephemeral_storage(resources, config.ephemeral_storage.request, sum_quantities(
            config.ephemeral_storage.headroom, config.ephemeral_storage.export_scratch)),
        "volumeMounts": mounts,
        # If the exporter dies before writing its result, the end of its log becomes the message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": objectmeta.container_security_context(),
    }
    if not container["envFrom"]:
        del container["envFrom"]
    meta = _meta(body, name)
    pod.update({
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": objectmeta.pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    })
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": me.backoff_limit,
            "activeDeadlineSeconds": me.active_deadline_seconds,
            "ttlSecondsAfterFinished": me.ttl_seconds_after_finished,
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [BAD_INPUT_EXIT_CODE]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod},
        },
    }
