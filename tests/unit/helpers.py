"""Builders of ModelDeployment bodies for unit tests."""

from __future__ import annotations

import copy
from typing import Any

from modelpilot.config import parse_config

CONFIG = parse_config({
    "nodePools": {
        "cpu": {"nodeSelector": {"modelpilot.io/pool": "cpu"}},
        "gpu-a100": {"nodeSelector": {"modelpilot.io/pool": "gpu-a100"},
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "gpu-mig": {"nodeSelector": {"modelpilot.io/pool": "gpu-mig"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }
})

BASE: dict[str, Any] = {
    "apiVersion": "modelpilot.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "resnet", "namespace": "ml", "uid": "uid-1", "generation": 1, "resourceVersion": "10"},
    "spec": {
        "model": {"uri": "pvc://models/resnet/model.onnx", "format": "onnx"},
        "runtime": {"kind": "triton"},
        "replicas": 2,
        "placement": {"nodePool": "gpu-a100", "gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}},
    },
}


def md(**spec_overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    for k, v in spec_overrides.items():
        if v is None:
            body["spec"].pop(k, None)
        else:
            body["spec"][k] = v
    return body


def node(name: str, pool: str, allocatable: dict[str, str], labels: dict[str, str] | None = None, gpu_taint: bool = False) -> dict[str, Any]:
    n: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"modelpilot.io/pool": pool, **(labels or {})}},
        "spec": {},
        "status": {"allocatable": allocatable},
    }
    if gpu_taint:
        n["spec"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return n


NODES = [
    node("cpu-0", "cpu", {"cpu": "32", "memory": "128Gi"}),
    node("a100-0", "gpu-a100", {"cpu": "96", "nvidia.com/gpu": "8"}, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, gpu_taint=True),
    node("mig-0", "gpu-mig", {"cpu": "96", "nvidia.com/mig-1g.10gb": "7"}, gpu_taint=True),
]


def ready_deployment(revision: int, replicas: int, ready: int | None = None, generation: int = 1) -> dict[str, Any]:
    ready = replicas if ready is None else ready
    return {
        "metadata": {"name": f"resnet-r{revision}", "generation": generation,
                     "labels": {"modelpilot.io/revision": str(revision)}},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready},
    }
