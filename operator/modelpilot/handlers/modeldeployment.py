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
from ..kube import KubeClient
from ..rollout import Observed, plan_model_deployment
from ..rollout.plan import AnalyzeFn
from ..traffic.base import ROUTE_COMPONENTS
from .apply import STALE, apply_and_report

log = logging.getLogger(__name__)
KIND = "ModelDeployment"


def _nodes(kube: KubeClient, store: Store) -> list[dict[str, Any]]:
    if not store.nodes_synced:
        for n in kube.list("Node"):
            store.put("Node", n)
        store.nodes_synced = True
    return store.all("Node")


def reconcile(kube: KubeClient, store: Store, config: OperatorConfig, namespace: str, name: str) -> float | None:
    """Returns seconds after which to look again (None: wait for the next event)."""
    body = store.get(KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        metrics.forget_model_deployment(namespace, name)
        return None  # gone or going: garbage collection removes the children

    # Observe.
    deployments: dict[int, dict[str, Any]] = {}
    for dep in store.owned("Deployment", namespace, name):
        rev = ((dep.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION)
        if rev and rev.isdigit():
            deployments[int(rev)] = dep
    autoscalers = frozenset(
        int(rev) for h in store.owned("HorizontalPodAutoscaler", namespace, name)
        if (rev := ((h.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION, "")).isdigit()
    )
    routes: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in ("Service", "HTTPRoute", "VirtualService"):
        for obj in store.owned(kind, namespace, name):
            if ((obj.get("metadata") or {}).get("labels") or {}).get(c.LABEL_COMPONENT) in ROUTE_COMPONENTS:
                routes[(kind, obj["metadata"]["name"])] = obj
    pdbs = frozenset(
        int(rev) for h in store.owned("PodDisruptionBudget", namespace, name)
        if (rev := ((h.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION, "")).isdigit()
    )
    export_name = (((body.get("spec") or {}).get("model") or {}).get("exportRef") or {}).get("name")
    export = store.get("ModelExport", namespace, export_name) if export_name else None
    now = now_rfc3339()
    observed = Observed(deployments=deployments, nodes=_nodes(kube, store), now=now, autoscalers=autoscalers,
                        routes=routes, analyze=_analyzer(config, now, namespace), export=export, disruption_budgets=pdbs,
                        network_policy=bool(store.owned("NetworkPolicy", namespace, name)),
                        comparator=any(((d.get("metadata") or {}).get("labels") or {}).get(c.LABEL_COMPONENT) == COMPARATOR
                                       for d in store.owned("Deployment", namespace, name)))

    # Plan.
    plan = plan_model_deployment(body, config, observed)

    # Apply, then report.
    updated = apply_and_report(kube, store, KIND, body, plan, observed.now)
    if updated is STALE:
        return 1.0
    for _, reason, _ in plan.events:
        if reason == "RolloutAborted":
            metrics.ROLLBACKS.labels(reason=((plan.status.get("rollout") or {}).get("aborted") or {}).get("reason", "Unknown")).inc()
        elif reason == "RolloutPromoted":
            metrics.PROMOTIONS.labels(strategy=((body.get("spec") or {}).get("rollout") or {}).get("strategy", "direct")).inc()
    weights = plan.status.get("weights") or {}
    for role in ("stable", "canary", "mirror"):
        metrics.WEIGHT.labels(namespace=namespace, name=name, role=role).set(float(weights.get(role) or 0))
    metrics.STEP.labels(namespace=namespace, name=name).set(float(plan.status.get("currentStep", -1)))
    return plan.requeue_after


def _analyzer(config: OperatorConfig, now: str, namespace: str) -> AnalyzeFn | None:
    """analysis.step with the clock and the configured Prometheus bound; None without a Prometheus."""
    if not config.prometheus_url:
        return None
    client = PrometheusClient.for_namespace(config, namespace)
    # The real clock, not `now`'s whole seconds: on those, the next measurement could come
    # milliseconds after the last, and a short Prometheus blip counted more errors than it lasted.
    ts = max(time.time(), to_epoch(now))
    return lambda spec, run, ctx: analysis_step(dict(spec), run, ts, client.query, dict(ctx))
