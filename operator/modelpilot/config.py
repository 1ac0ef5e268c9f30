"""Operator configuration: node pools, default images (serving runtimes, exporters, storage initializer).

Loaded once at start from the YAML file named by $MODELPILOT_CONFIG (in a cluster, the ConfigMap
the Helm chart renders from values.yaml). Anything missing falls back to the defaults here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import __version__

# Images that modelpilot builds (images/Containerfile, hack/build-images.sh): <registry>/<kind>:<tag>.
# The export Job's image follows the source format, so that an ONNX-only user never pulls torch.
OWN_IMAGES: tuple[str, ...] = ("storage-init", "exporter-onnx", "exporter-pytorch", "exporter-tensorflow",
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
                          image_tag=str(data.get("imageTag") or __version__))


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


def load_config(path: str | None = None) -> OperatorConfig:
    path = path or os.environ.get("MODELPILOT_CONFIG")
    if not path:
        return parse_config({})
    try:
        with open(path, encoding="utf-8") as f:
            return parse_config(yaml.safe_load(f))
    except OSError as e:
        raise ConfigError(f"cannot read operator config {path}: {e.strerror}") from e
