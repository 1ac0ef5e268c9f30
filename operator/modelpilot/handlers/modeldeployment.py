"""Reconcile one ModelDeployment: observe (store), plan (rollout/, pure), apply (kube), report (status, Events)."""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import constants as c
from .. import metrics
from ..analysis import PrometheusClient
from ..analysis import step as analysis_step
from ..cache import Store
from ..clock import now_rfc3339, to_epoch
from ..comparator.objects import COMPONENT as COMPARATOR
from ..config import OperatorConfig
from ..kinds import CARRIER_KINDS
from ..kube import KubeClient
from ..rollout import Observed, Plan, completed_a_step, first_status_wait, plan_model_deployment
from ..rollout.parity import COMPONENT as PARITY
from ..rollout.plan import AnalyzeFn
from ..traffic.base import ROUTE_COMPONENTS
from .apply import STALE, ApplyError, apply_and_report, apply_children

log = logging.getLogger(__name__)
KIND = "ModelDeployment"


def _nodes(kube: KubeClient, store: Store) -> list[dict[str, Any]]:
    if not store.nodes_synced:
        for n in kube.list("Node"):
            store.put("Node", n)
        store.nodes_synced = True
    return store.all("Node")


# Steps whose gate our own writes meet at once (a setWeight after a setWeight) complete in one
# reconcile, at most this many and for at most this long; then status is written once.
CHAIN_LIMIT = 32  # the CRD allows 32 steps
CHAIN_SECONDS = 1.0


def reconcile(kube: KubeClient, store: Store, config: OperatorConfig, namespace: str, name: str) -> float | None:
    """Returns seconds after which to look again (None: wait for the next event)."""
    body = store.get(KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        metrics.forget_model_deployment(namespace, name)
        return None  # gone or going: garbage collection removes the children
    observed = observe(kube, store, config, body)
    plan = chain_steps(kube, store, config, body, plan_model_deployment(body, config, observed))
    wait = first_status_wait(body.get("status") or {}, plan, observed.deployments, to_epoch(observed.now))
    updated = apply_and_report(kube, store, KIND, body, plan, observed.now, write_status=wait is None)
    if updated is STALE:
        return 1.0
    if wait is not None:
        plan.wake(wait)  # the Deployment controller's status update wakes it sooner
    _count(namespace, name, body, plan)
    return plan.requeue_after


def observe(kube: KubeClient, store: Store, config: OperatorConfig, body: dict[str, Any]) -> Observed:
    """Everything the planner reads, from the watch cache (and the clock)."""
    meta = body["metadata"]
    namespace, name = meta.get("namespace") or "", meta["name"]
    deployments: dict[int, dict[str, Any]] = {}
    for dep in store.owned("Deployment", namespace, name):
        rev = ((dep.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION)
        if rev and rev.isdigit():
            deployments[int(rev)] = dep
    routes: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in ("Service", "HTTPRoute", "VirtualService"):
        for obj in store.owned(kind, namespace, name):
            if ((obj.get("metadata") or {}).get("labels") or {}).get(c.LABEL_COMPONENT) in ROUTE_COMPONENTS:
                routes[(kind, obj["metadata"]["name"])] = obj
    export_name = (((body.get("spec") or {}).get("model") or {}).get("exportRef") or {}).get("name")
    now = now_rfc3339()
    return Observed(deployments=deployments, nodes=_nodes(kube, store), now=now, autoscalers=_revisions(store, "HorizontalPodAutoscaler", namespace, name),
                    routes=routes, analyze=_analyzer(config, now, namespace),
                    export=store.get("ModelExport", namespace, export_name) if export_name else None,
                    disruption_budgets=_revisions(store, "PodDisruptionBudget", namespace, name),
                    network_policy=bool(store.owned("NetworkPolicy", namespace, name)),
                    comparator=any(((d.get("metadata") or {}).get("labels") or {}).get(c.LABEL_COMPONENT) == COMPARATOR
                                   for d in store.owned("Deployment", namespace, name)),
                    carriers=_carriers(store, body), parity_jobs=_parity_jobs(store, namespace, name))


def _parity_jobs(store: Store, namespace: str, name: str) -> dict[int, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each revision's parity check Job with its pods (spec.rollout.parityCheck)."""
    def check(obj: dict[str, Any]) -> int | None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        rev = labels.get(c.LABEL_REVISION, "")
        return int(rev) if labels.get(c.LABEL_COMPONENT) == PARITY and rev.isdigit() else None
    pods: dict[int, list[dict[str, Any]]] = {}
    for pod in store.owned("Pod", namespace, name):
        if (rev := check(pod)) is not None:
            pods.setdefault(rev, []).append(pod)
    return {rev: (job, pods.get(rev, [])) for job in store.owned("Job", namespace, name) if (rev := check(job)) is not None}


def _carriers(store: Store, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Gateways and GatewayClasses, for a ModelDeployment whose routes attach to a Gateway."""
    if ((body.get("spec") or {}).get("traffic") or {}).get("router") != "gatewayAPI":
        return []
    return [obj for k in CARRIER_KINDS for obj in store.all(k.kind)]


def _revisions(store: Store, kind: str, namespace: str, name: str) -> frozenset[int]:
    """The revisions that have a `kind` of their own."""
    return frozenset(int(rev) for h in store.owned(kind, namespace, name)
                     if (rev := ((h.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION, "")).isdigit())


def chain_steps(kube: KubeClient, store: Store, config: OperatorConfig, body: dict[str, Any], plan: Plan) -> Plan:
    """While a plan completes a step, apply it and plan again on the write-through cache: a step
    whose gate our own write met (the next setWeight) completes now, not after a status write and
    the watch's echo. Returns the last plan, unapplied, with every plan's Events; status is written
    once. A crash in between leaves status at the first step: the next reconcile puts that step's
    weight back (less canary traffic, the safe side), then chains again."""
    deadline = time.monotonic() + CHAIN_SECONDS
    working = body
    for _ in range(CHAIN_LIMIT):
        if not completed_a_step(working.get("status") or {}, plan) or time.monotonic() > deadline:
            break
        try:
            apply_children(kube, store, body, plan.apply, plan.scale, plan.delete)
        except ApplyError:
            break  # apply_and_report applies this plan again and reports the refusal
        working = {**working, "status": plan.status}
        following = plan_model_deployment(working, config, observe(kube, store, config, working))
        following.events[:0] = plan.events
        plan = following
    return plan


def _count(namespace: str, name: str, body: dict[str, Any], plan: Plan) -> None:
    """The rollout metrics of what this reconcile reported."""
    for _, reason, _ in plan.events:
        if reason == "RolloutAborted":
            metrics.ROLLBACKS.labels(reason=((plan.status.get("rollout") or {}).get("aborted") or {}).get("reason", "Unknown")).inc()
        elif reason == "RolloutPromoted":
            metrics.PROMOTIONS.labels(strategy=((body.get("spec") or {}).get("rollout") or {}).get("strategy", "direct")).inc()
    weights = plan.status.get("weights") or {}
    for role in ("stable", "canary", "mirror"):
        metrics.WEIGHT.labels(namespace=namespace, name=name, role=role).set(float(weights.get(role) or 0))
    metrics.STEP.labels(namespace=namespace, name=name).set(float(plan.status.get("currentStep", -1)))


def _analyzer(config: OperatorConfig, now: str, namespace: str) -> AnalyzeFn | None:
    """analysis.step with the clock and the configured Prometheus bound; None without a Prometheus."""
    if not config.prometheus_url:
        return None
    client = PrometheusClient.for_namespace(config, namespace)
    # The real clock, not `now`'s whole seconds: on those, the next measurement could come
    # milliseconds after the last, and a short Prometheus blip counted more errors than it lasted.
    ts = max(time.time(), to_epoch(now))
    return lambda spec, run, ctx: analysis_step(dict(spec), run, ts, client.query, dict(ctx))
