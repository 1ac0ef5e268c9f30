"""Pure builders of the comparator's Deployment and Service for a shadow rollout with
`spec.rollout.shadow.compare`. With them, the gateway's or mesh's mirror targets the comparator
Service `<name>-comparator` instead of the shadow revision: the comparator calls both revision
Services itself. `None` (no objects) when the rollout does not compare now.
"""

from __future__ import annotations

from typing import Any, Final

from .. import constants as c
from ..api.modeldeployment import ModelDeployment
from ..config import OperatorConfig
from ..objectmeta import container_security_context, pod_security_context
from ..render import labels, owner_reference
from .compare import RUNTIME_PROTOCOLS

COMPONENT: Final = c.COMPONENT_COMPARATOR
HTTP_PORT: Final = 8080
METRICS_PORT: Final = 9090


def comparator_name(md: ModelDeployment) -> str:
    return f"{md.name}-{COMPONENT}"


def compares(md: ModelDeployment) -> bool:
    return md.strategy == "shadow" and md.rollout.shadow.compare


def _args(md: ModelDeployment, stable: int, shadow: int) -> list[str]:
    from ..rollout.steps import parse_duration  # here: the rollout package imports traffic, which imports this module

    sh = md.rollout.shadow
    timeout = parse_duration(sh.comparison_timeout, "spec.rollout.shadow.comparisonTimeout")

    def url(rev: int) -> str:
        return f"http://{c.revision_name(md.name, rev)}.{md.namespace}.svc:{md.port}"

    return ["--stable-url", url(stable), "--shadow-url", url(shadow),
            "--protocol", RUNTIME_PROTOCOLS[md.runtime.kind],
            "--namespace", md.namespace, "--name", md.name,
            "--stable-revision", str(stable), "--shadow-revision", str(shadow),
            "--rate", str(sh.max_comparisons_per_second),
            "--timeout", f"{timeout:g}", "--port", str(HTTP_PORT), "--metrics-port", str(METRICS_PORT)]


def build_comparator_deployment(md: ModelDeployment, stable: int, shadow: int | None, mirror_percent: int,
                                config: OperatorConfig) -> dict[str, Any] | None:
    if not compares(md) or shadow is None or not mirror_percent:
        return None
    probe: dict[str, Any] = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 5, "timeoutSeconds": 2}
    container = {
        "name": COMPONENT,
        "image": config.image_for("operator"),
        "command": ["python", "-m", "modelpilot.comparator"],
        "args": _args(md, stable, shadow),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": dict(probe),
        "livenessProbe": {**probe, "httpGet": dict(probe["httpGet"]), "periodSeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
                      "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "64Mi"}},
        "securityContext": container_security_context(),
    }
    pod_labels = labels(md, None, component=COMPONENT)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": comparator_name(md), "namespace": md.namespace, "labels": pod_labels,
                     "ownerReferences": [owner_reference(md)]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_COMPONENT: COMPONENT}},
            "template": {
                # Prometheus's usual pod annotations; a PodMonitor can select the component label instead.
                "metadata": {"labels": dict(pod_labels), "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": "/metrics"}},
                "spec": {"automountServiceAccountToken": False, "containers": [container],
                         "securityContext": pod_security_context()},
            },
        },
    }


def build_comparator_service(md: ModelDeployment, shadow: int | None, mirror_percent: int) -> dict[str, Any] | None:
    if not compares(md) or shadow is None or not mirror_percent:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": comparator_name(md), "namespace": md.namespace,
                     "labels": labels(md, None, component=COMPONENT), "ownerReferences": [owner_reference(md)]},
        "spec": {
            "type": "ClusterIP",
            "selector": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_COMPONENT: COMPONENT},
            # The mirror keeps the revision Services' port, so a route only swaps the backend's name.
            "ports": [{"name": "http", "port": md.port, "targetPort": "http", "protocol": "TCP"},
                      {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def build_comparator_network_policy(md: ModelDeployment, config: OperatorConfig) -> dict[str, Any] | None:
    """With the operator's NetworkPolicies on: the mirror (networkPolicy.ingressFrom, where the
    gateway is) may reach the comparator's port, Prometheus (metricsFrom) its metrics; nothing else.
    The revisions' own policy admits the comparator (render.build_network_policy)."""
    opts = config.network_policy
    if not opts.enabled:
        return None
    ingress = [{"from": [dict(p) for p in peers], "ports": [{"protocol": "TCP", "port": port}]}
               for peers, port in ((opts.ingress_from, HTTP_PORT), (opts.metrics_from, METRICS_PORT)) if peers]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": comparator_name(md), "namespace": md.namespace,
                     "labels": labels(md, None, component=COMPONENT), "ownerReferences": [owner_reference(md)]},
        "spec": {"podSelector": {"matchLabels": {c.LABEL_DEPLOYMENT: md.name, c.LABEL_COMPONENT: COMPONENT}},
                 "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": [{}]},
    }


def build_comparator_objects(md: ModelDeployment, stable: int, shadow: int | None, mirror_percent: int,
                             config: OperatorConfig) -> list[dict[str, Any]]:
    """The comparator's Deployment, Service (and NetworkPolicy) while a compared mirror is in force, else []."""
    deployment = build_comparator_deployment(md, stable, shadow, mirror_percent, config)
    if deployment is None:
        return []
    objs = [deployment, build_comparator_service(md, shadow, mirror_percent), build_comparator_network_policy(md, config)]
    return [o for o in objs if o is not None]
