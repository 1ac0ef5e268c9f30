"""GPU node pools: turn spec.placement into pod scheduling fields, and check that a node exists.

`scheduling_for` is what goes into the pod. `find_unschedulable_reason` answers, before anything
is applied, whether any node could ever host the pod (labels, taints, allocatable), and if not,
names what is missing, so that pods never sit Pending in silence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .api.errors import SpecError
from .api.modeldeployment import Placement
from .config import NodePool, OperatorConfig

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class Scheduling:
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    requests: dict[str, str]
    limits: dict[str, str]


def _pool(placement: Placement, config: OperatorConfig) -> NodePool | None:
    if not placement.node_pool:
        return None
    pool = config.node_pools.get(placement.node_pool)
    if pool is None:
        if not config.node_pools:
            raise SpecError("spec.placement.nodePool", f"unknown node pool {placement.node_pool!r}",
                            "the operator config defines no node pools (nodePools in $MODELPILOT_CONFIG / Helm values)")
        known = ", ".join(sorted(config.node_pools))
        raise SpecError("spec.placement.nodePool", f"unknown node pool {placement.node_pool!r}", f"use one of: {known}")
    return pool


def gpu_resource_name(placement: Placement, config: OperatorConfig) -> str | None:
    if placement.gpu.count < 1:
        return None
    if placement.gpu.mig_profile:
        return f"nvidia.com/mig-{placement.gpu.mig_profile}"
    pool = _pool(placement, config)
    return pool.gpu_resource if pool else "nvidia.com/gpu"


def scheduling_for(placement: Placement, config: OperatorConfig) -> Scheduling:
    pool = _pool(placement, config)
    selector = dict(pool.node_selector) if pool else {}
    tolerations = [dict(t) for t in pool.tolerations] if pool else []
    requests = dict(placement.requests)
    limits = dict(placement.limits)
    gpu = gpu_resource_name(placement, config)
    if gpu:
        if placement.gpu.product:
            selector[GPU_PRODUCT_LABEL] = placement.gpu.product
        # Extended resources must have request == limit.
        requests[gpu] = limits[gpu] = str(placement.gpu.count)
        if not any(t.get("key") == "nvidia.com/gpu" for t in tolerations):
            tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    return Scheduling(selector, tolerations, requests, limits)


def _tolerates(taint: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]]) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value") == taint.get("value"):
            return True
    return False


def parse_quantity(q: str | int | float) -> float:
    """Kubernetes quantity to a float (enough precision for fit checks)."""
    s = str(q).strip()
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
                "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    for suf in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * suffixes[suf]
    return float(s)


def sum_quantities(*quantities: str) -> str:
    """The sum of byte quantities, rounded up to whole mebibytes (`20Gi` + `1Gi` -> `22528Mi`)."""
    return f"{math.ceil(sum(parse_quantity(q) for q in quantities) / 2**20)}Mi"


def with_ephemeral_storage(resources: Mapping[str, Any], request: str, limit: str) -> dict[str, Any]:
    """`resources` with an ephemeral-storage request and limit, unless they name their own."""
    out = {k: dict(v) for k, v in resources.items()}
    out.setdefault("requests", {}).setdefault("ephemeral-storage", request)
    out.setdefault("limits", {}).setdefault("ephemeral-storage", limit)
    return out


def find_unschedulable_reason(sched: Scheduling, nodes: Iterable[Mapping[str, Any]]) -> str | None:
    """None when some node could host the pod; otherwise why none can, naming what is missing."""
    nodes = list(nodes)
    if not nodes:
        return "the cluster has no nodes"
    by_labels = [n for n in nodes if all(((n.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in sched.node_selector.items())]
    if not by_labels:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(sched.node_selector.items()))
        return f"no node has the labels {wanted}"
    by_taints = [n for n in by_labels if all(_tolerates(t, sched.tolerations) for t in ((n.get("spec") or {}).get("taints") or ()))]
    if not by_taints:
        return f"all {len(by_labels)} nodes with the requested labels have taints the pod does not tolerate"
    for resource, amount in sched.requests.items():
        need = parse_quantity(amount)
        fits = [n for n in by_taints if parse_quantity(((n.get("status") or {}).get("allocatable") or {}).get(resource, "0")) >= need]
        if not fits:
            best = max(parse_quantity(((n.get("status") or {}).get("allocatable") or {}).get(resource, "0")) for n in by_taints)
            return f"no matching node has {amount} allocatable {resource} (the most any has is {best:g})"
        by_taints = fits
    return None
