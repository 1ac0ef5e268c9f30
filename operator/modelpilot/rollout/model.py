"""The planner's data: what the handler observed (`Observed`), what the planner decided (`Plan`),
and one reconcile's working state (`Reconcile`), shared by the phases in plan.py's walk."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..api.modeldeployment import ModelDeployment
from ..clock import to_epoch
from ..config import OperatorConfig
from ..placement import Scheduling
from ..render import ExportArtifact
from ..traffic import TrafficRouter
from .steps import Step

# run = analyze(spec, previous_run, ctx): the analysis state machine with the clock and the
# Prometheus client bound (analysis.run.step); None when no Prometheus is configured.
AnalyzeFn = Callable[[Mapping[str, Any], dict[str, Any] | None, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Observed:
    """What the handler saw: revision Deployments by number, routing objects, nodes, the time."""

    deployments: Mapping[int, Mapping[str, Any]]
    nodes: list[Mapping[str, Any]] | None  # None: the node cache is not filled yet; skip the check
    now: str
    autoscalers: frozenset[int] = frozenset()
    routes: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)  # (kind, name) -> live
    analyze: AnalyzeFn | None = None
    # spec.model.exportRef: the referenced ModelExport's body (None: not found), when one is referenced.
    export: Mapping[str, Any] | None = None
    disruption_budgets: frozenset[int] = frozenset()  # revisions that have a PodDisruptionBudget
    network_policy: bool = False  # the ModelDeployment's NetworkPolicy exists
    comparator: bool = False  # the shadow comparator's Deployment exists (spec.rollout.shadow.compare)
    carriers: Sequence[Mapping[str, Any]] = ()  # Gateways and GatewayClasses (kinds.CARRIER_KINDS), live
    # revision -> (its parity check Job, that Job's pods) (spec.rollout.parityCheck, rollout/parity.py)
    parity_jobs: Mapping[int, tuple[Mapping[str, Any], list[Mapping[str, Any]]]] = field(default_factory=dict)


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    scale: list[tuple[str, str, int]] = field(default_factory=list)  # (namespace, deployment, replicas)
    delete: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, namespace, name)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None

    def wake(self, seconds: float) -> None:
        seconds = max(0.05, seconds)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


@dataclass(frozen=True)
class ExportResolution:
    """spec.model.exportRef resolved: the artifact, its digest, or why it cannot be used yet."""

    artifact: ExportArtifact | None = None
    digest: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Checked:
    """Everything validation computed, computed once and passed on."""

    md: ModelDeployment
    router: TrafficRouter
    export: ExportResolution
    steps: list[Step]
    scheduling: Scheduling  # the node pool's selector, tolerations and resources


class Reconcile:
    """One reconcile's working state: the inputs, and what the phases accumulate (the rollout's
    status.rollout and status.analysis, Events, the next wake-up)."""

    def __init__(self, body: Mapping[str, Any], checked: Checked, config: OperatorConfig, obs: Observed):
        self.body, self.config, self.obs = body, config, obs
        self.md, self.router, self.export, self.steps = checked.md, checked.router, checked.export, checked.steps
        self.scheduling = checked.scheduling
        self.status: dict[str, Any] = copy.deepcopy(dict(body.get("status") or {}))
        self.old_conditions: list[dict[str, Any]] = list(self.status.get("conditions") or [])
        self.ro: dict[str, Any] = copy.deepcopy(dict(self.status.get("rollout") or {}))
        self.analysis: dict[str, Any] = copy.deepcopy(dict(self.status.get("analysis") or {}))
        self.now_s = obs.now
        self.now = to_epoch(obs.now)
        self.gen = self.md.generation
        self.plan = Plan()
        self.pause_reason: str | None = None
        self.message = ""

    def event(self, etype: str, reason: str, message: str) -> None:
        self.plan.events.append((etype, reason, message))

    def dep(self, rev: int | None) -> Mapping[str, Any] | None:
        return self.obs.deployments.get(rev) if rev else None

    def total(self) -> int:
        """Replicas of a serving revision: spec.replicas, or the autoscaler's minimum."""
        if self.md.autoscaling:
            return max(self.md.autoscaling.min_replicas, 1)
        return self.md.replicas

    def paused(self) -> bool:
        return bool(self.pause_reason or self.ro.get("paused"))


def ready_replicas(dep: Mapping[str, Any] | None) -> int:
    return int(((dep or {}).get("status") or {}).get("readyReplicas") or 0)


def spec_replicas(dep: Mapping[str, Any] | None) -> int:
    return int(((dep or {}).get("spec") or {}).get("replicas") or 0)


def controller_observed(dep: Mapping[str, Any]) -> bool:
    """The Deployment controller has seen this Deployment's current spec."""
    st = dep.get("status") or {}
    return int(st.get("observedGeneration") or 0) >= int((dep.get("metadata") or {}).get("generation") or 0)


def rollout_complete(dep: Mapping[str, Any] | None, desired: int) -> bool:
    """The Deployment controller has seen our latest spec and `desired` pods are ready."""
    if not dep:
        return False
    st = dep.get("status") or {}
    return controller_observed(dep) and int(st.get("updatedReplicas") or 0) >= desired and ready_replicas(dep) >= desired
