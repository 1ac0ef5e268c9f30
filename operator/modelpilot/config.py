"""Operator configuration: node pools, default images (serving runtimes, exporters, storage initializer).

Loaded once at start from the YAML file named by $MODELPILOT_CONFIG (in a cluster, the ConfigMap
the Helm chart renders from values.yaml). Anything missing falls back to the defaults here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import __version__

# Images that modelpilot builds (images/Containerfile, hack/build-images.sh): <registry>/<kind>:<tag>.
# The export Job's image follows the source format, so that an ONNX-only user never pulls torch.
# The operator image also runs the shadow comparator (python -m modelpilot.comparator).
OWN_IMAGES: tuple[str, ...] = ("operator", "storage-init", "exporter-onnx", "exporter-pytorch", "exporter-tensorflow",
                               "torchserve")
# Serving runtimes that modelpilot does not build (their vendors' images).
VENDOR_IMAGES: dict[str, str] = {
    "triton": "nvcr.io/nvidia/tritonserver:25.10-py3",
    "tfserving": "tensorflow/serving:2.18.0-gpu",
}
IMAGE_KINDS: tuple[str, ...] = (*VENDOR_IMAGES, *OWN_IMAGES)
DEFAULT_REGISTRY = "ghcr.io/modelpilot"


@dataclass(frozen=True)
class NodePool:
    name: str
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    gpu_resource: str = "nvidia.com/gpu"


#: Where a ModelExport's spec.image may come from unless the config says otherwise: the project's
#: own exporter images. The export Job holds the namespace's Secrets and a writable claim, so the
#: image is code that runs with them (issue 11).
DEFAULT_EXPORT_IMAGE_PREFIXES: tuple[str, ...] = ("ghcr.io/modelpilot/",)


@dataclass(frozen=True)
class RoutePolicy:
    """Which Istio hosts and gateways outside its own namespace a ModelDeployment may name.

    Glob patterns (`*.models.example.com`, `istio-system/*`); `{namespace}` stands for the
    ModelDeployment's namespace. Empty (the default): only the object's own namespace and `mesh`.
    """

    allowed_hosts: tuple[str, ...] = ()
    allowed_gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrometheusOptions:
    """Bounds on what an analysis query may bring back, and the tenant it is sent as.

    The defaults bound the memory and CPU a query result costs the operator. `tenant_header`
    (empty by default: no tenancy, every query sees all of Prometheus) names an HTTP header sent
    with the ModelDeployment's namespace as its value: Mimir, Cortex and Thanos tenancy
    (`X-Scope-OrgID`), or prom-label-proxy's `-header-name`, which forces a namespace matcher into
    every selector (docs/security.md).
    """

    max_response_bytes: int = 8 * 1024 * 1024
    max_series: int = 1000
    tenant_header: str = ""


@dataclass(frozen=True)
class EphemeralStorage:
    """Bounds on the node disk that the pods the operator renders may fill (issue 11).

    Every disk emptyDir gets a sizeLimit; every container requests `request` and is limited to
    `headroom` (logs, writable layer) plus the sizeLimits of its pod's disk emptyDirs, which the
    kubelet counts against the pod's limit. A model larger than `model_repository` is evicted with
    a message that names the limit: raise it here (chart values `config.ephemeralStorage`).
    """

    model_repository: str = "20Gi"  # serving pods: the model the storage initializer downloads
    scratch: str = "1Gi"  # serving pods' /tmp
    export_scratch: str = "20Gi"  # the export Job's /tmp: downloads and intermediate files
    request: str = "256Mi"
    headroom: str = "1Gi"


@dataclass(frozen=True)
class NetworkPolicyOptions:
    """An optional NetworkPolicy per ModelDeployment: its pods accept traffic on the serving ports
    only from `ingress_from` and on the metrics port only from `metrics_from` (NetworkPolicy peers,
    e.g. a namespaceSelector for the gateway's namespace). Off by default."""

    enabled: bool = False
    ingress_from: tuple[dict[str, Any], ...] = ()
    metrics_from: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class OperatorConfig:
    node_pools: dict[str, NodePool] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # overrides, by kind (IMAGE_KINDS)
    image_registry: str = DEFAULT_REGISTRY
    image_tag: str = __version__
    prometheus_url: str = ""
    # Mount the PVC of a pvc:// model into the storage initializer. The local test bed turns it off:
    # it has no storage provisioner, and a pod naming a missing claim would never be scheduled.
    mount_pvc_sources: bool = True
    route_policy: RoutePolicy = RoutePolicy()
    prometheus: PrometheusOptions = PrometheusOptions()
    # allowedExportImages: an entry ending in "/" is a repository prefix, "*" allows any image,
    # anything else is one image (with or without a tag or digest).
    allowed_export_images: tuple[str, ...] = DEFAULT_EXPORT_IMAGE_PREFIXES
    ephemeral_storage: EphemeralStorage = EphemeralStorage()
    network_policy: NetworkPolicyOptions = NetworkPolicyOptions()

    def export_image_allowed(self, image: str) -> bool:
        def match(entry: str) -> bool:
            if entry == "*" or (entry.endswith("/") and image.startswith(entry)):
                return True
            return image == entry or image.startswith((entry + "@", entry + ":"))
        return any(match(e) for e in self.allowed_export_images)

    def image_for(self, kind: str) -> str:
        """The image of a runtime (`triton`, `torchserve`, `tfserving`) or of one of modelpilot's own."""
        if self.images.get(kind):
            return self.images[kind]
        if kind in VENDOR_IMAGES:
            return VENDOR_IMAGES[kind]
        if kind not in OWN_IMAGES:
            raise KeyError(f"no image kind {kind!r}")
        return f"{self.image_registry}/{kind}:{self.image_tag}"

    def exporter_image(self, source_format: str) -> str:
        """The export Job's image for a source format (onnx, pytorch, tensorflow)."""
        return self.image_for(f"exporter-{source_format}")


class ConfigError(ValueError):
    """The operator configuration file is wrong; the message names the key."""


def parse_config(data: dict[str, Any] | None) -> OperatorConfig:
    data = data or {}
    pools: dict[str, NodePool] = {}
    for name, raw in (data.get("nodePools") or {}).items():
        if not isinstance(raw, dict):
            raise ConfigError(f"nodePools.{name}: expected a mapping with nodeSelector/tolerations/gpuResource")
        selector = raw.get("nodeSelector") or {}
        if not isinstance(selector, dict):
            raise ConfigError(f"nodePools.{name}.nodeSelector: expected a mapping of label to value")
        pools[name] = NodePool(
            name=name,
            node_selector={str(k): str(v) for k, v in selector.items()},
            tolerations=tuple(raw.get("tolerations") or ()),
            gpu_resource=str(raw.get("gpuResource") or "nvidia.com/gpu"),
        )
    images = _parse_images(data.get("images"))
    mount = data.get("mountPvcSources", True)
    if not isinstance(mount, bool):
        raise ConfigError(f"mountPvcSources: expected true or false, got {mount!r}")
    return OperatorConfig(node_pools=pools, images=images, prometheus_url=str(data.get("prometheusUrl") or ""),
                          mount_pvc_sources=mount, image_registry=str(data.get("imageRegistry") or DEFAULT_REGISTRY),
                          image_tag=str(data.get("imageTag") or __version__),
                          route_policy=_route_policy(data.get("istio") or {}),
                          prometheus=_prometheus_options(data.get("prometheus") or {}),
                          allowed_export_images=(_string_list(data, "allowedExportImages", "config")
                                                 if "allowedExportImages" in data else DEFAULT_EXPORT_IMAGE_PREFIXES),
                          ephemeral_storage=_ephemeral_storage(data.get("ephemeralStorage") or {}),
                          network_policy=_network_policy(data.get("networkPolicy") or {}))


def _parse_images(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        if raw in (None, ""):
            return {}
        raise ConfigError("images: expected a mapping of image kind to image reference")
    if "exporter" in raw:
        raise ConfigError("images.exporter: the exporter image is chosen by source format now; set "
                          "images.exporter-onnx, images.exporter-pytorch and images.exporter-tensorflow instead")
    unknown = sorted(set(raw) - set(IMAGE_KINDS))
    if unknown:
        raise ConfigError(f"images.{unknown[0]}: unknown image kind; use one of {', '.join(IMAGE_KINDS)}")
    return {str(k): str(v) for k, v in raw.items() if v}


_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?")
_STORAGE_KEYS = {"modelRepository": "model_repository", "scratch": "scratch", "exportScratch": "export_scratch",
                 "request": "request", "headroom": "headroom"}


def _ephemeral_storage(data: Any) -> EphemeralStorage:
    if not isinstance(data, dict) or set(data) - set(_STORAGE_KEYS):
        raise ConfigError(f"ephemeralStorage: expected a mapping with {', '.join(_STORAGE_KEYS)}, got {data!r}")
    for key, value in data.items():
        if not _QUANTITY.fullmatch(str(value)):
            raise ConfigError(f"ephemeralStorage.{key}: expected a quantity such as 20Gi, got {value!r}")
    return EphemeralStorage(**{_STORAGE_KEYS[k]: str(v) for k, v in data.items()})


def _peers(data: dict[str, Any], key: str) -> tuple[dict[str, Any], ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(p, dict) and p for p in value):
        raise ConfigError(f"networkPolicy.{key}: expected a list of NetworkPolicy peers "
                          f"(namespaceSelector/podSelector/ipBlock), got {value!r}")
    return tuple(value)


def _network_policy(data: Any) -> NetworkPolicyOptions:
    if not isinstance(data, dict):
        raise ConfigError(f"networkPolicy: expected a mapping with enabled/ingressFrom/metricsFrom, got {data!r}")
    enabled = data.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"networkPolicy.enabled: expected true or false, got {enabled!r}")
    return NetworkPolicyOptions(enabled=enabled, ingress_from=_peers(data, "ingressFrom"),
                                metrics_from=_peers(data, "metricsFrom"))


def _positive_int(data: dict[str, Any], key: str, where: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}.{key}: expected a positive integer, got {value!r}")
    return value


def _prometheus_options(data: Any) -> PrometheusOptions:
    if not isinstance(data, dict):
        raise ConfigError(f"prometheus: expected a mapping with maxResponseBytes/maxSeries/tenantHeader, got {data!r}")
    d = PrometheusOptions()
    header = data.get("tenantHeader") or ""
    if not isinstance(header, str) or not all(c.isalnum() or c == "-" for c in header):
        raise ConfigError(f"prometheus.tenantHeader: expected an HTTP header name such as X-Scope-OrgID, got {header!r}")
    return PrometheusOptions(max_response_bytes=_positive_int(data, "maxResponseBytes", "prometheus", d.max_response_bytes),
                             max_series=_positive_int(data, "maxSeries", "prometheus", d.max_series),
                             tenant_header=header)


def _string_list(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _route_policy(data: Any) -> RoutePolicy:
    if not isinstance(data, dict):
        raise ConfigError(f"istio: expected a mapping with allowedHosts/allowedGateways, got {data!r}")
    return RoutePolicy(allowed_hosts=_string_list(data, "allowedHosts", "istio"),
                       allowed_gateways=_string_list(data, "allowedGateways", "istio"))


def load_config(path: str | None = None) -> OperatorConfig:
    path = path or os.environ.get("MODELPILOT_CONFIG")
    if not path:
        return parse_config({})
    try:
        with open(path, encoding="utf-8") as f:
            return parse_config(yaml.safe_load(f))
    except OSError as e:
        raise ConfigError(f"cannot read operator config {path}: {e.strerror}") from e
