"""Plan one reconcile of a ModelDeployment. Pure: no API calls, the clock comes in as `now`.

Revisions: every distinct content hash of the serving spec (model, runtime, placement) gets the
next revision number, recorded in status.revisions with its hash. Returning to an earlier spec
reuses that revision's number. The direct strategy applies the new revision next to the old one
and removes the old one only once the new one is fully ready, so a bad revision never takes the
service down. The progressive strategies (issue: progressive delivery) plug in here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import constants as c
from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment, parse_model_deployment
from ..conditions import changed_conditions, is_true, set_condition
from ..config import OperatorConfig
from ..placement import find_unschedulable_reason, scheduling_for
from ..render import build_entry_service, build_revision_objects, endpoint


IMPLEMENTED_STRATEGIES = ("direct",)


@dataclass(frozen=True)
class Observed:
    """What the handler saw: the revision Deployments by number, the nodes, and the time."""

    deployments: Mapping[int, Mapping[str, Any]]
    nodes: list[Mapping[str, Any]] | None  # None: the node cache is not filled yet; skip the check
    now: str
    autoscalers: frozenset[int] = frozenset()  # revisions that have an HPA


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, namespace, name)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def _ready_replicas(dep: Mapping[str, Any] | None) -> int:
    return int(((dep or {}).get("status") or {}).get("readyReplicas") or 0)


def _rollout_complete(dep: Mapping[str, Any] | None, desired: int) -> bool:
    if not dep:
        return False
    st = dep.get("status") or {}
    gen_ok = int(st.get("observedGeneration") or 0) >= int((dep.get("metadata") or {}).get("generation") or 0)
    return gen_ok and int(st.get("updatedReplicas") or 0) >= desired and _ready_replicas(dep) >= desired


def _events_for(old: list[dict], new: list[dict]) -> list[tuple[str, str, str]]:
    events = []
    for cond in changed_conditions(old, new):
        if cond["type"] == c.COND_READY or cond["status"] == "False":
            events.append(("Normal" if cond["status"] == "True" else "Warning", cond["reason"], cond["message"]))
    return events


def _invalid(body: Mapping[str, Any], status: dict[str, Any], err: SpecError, now: str,
             reason: str = c.REASON_INVALID_SPEC) -> Plan:
    """Nothing is applied for a spec the operator cannot act on: the condition says why, naming the field."""
    gen = int((body.get("metadata") or {}).get("generation") or 0)
    conds = status.get("conditions") or []
    new_conds = set_condition(conds, c.COND_SPEC_VALID, False, reason, str(err), gen, now)
    new_conds = set_condition(new_conds, c.COND_READY, False, reason, str(err), gen, now)
    st = copy.deepcopy(status)
    st.update({"phase": "Failed", "observedGeneration": gen, "conditions": new_conds})
    return Plan(status=st, events=_events_for(conds, new_conds))


def plan_model_deployment(body: Mapping[str, Any], config: OperatorConfig, observed: Observed) -> Plan:
    status: dict[str, Any] = copy.deepcopy(dict(body.get("status") or {}))
    now = observed.now
    try:
        md = parse_model_deployment(body)
        sched = scheduling_for(md.placement, config)
    except SpecError as err:
        return _invalid(body, status, err, now)
    if md.strategy not in IMPLEMENTED_STRATEGIES:
        return _invalid(body, status, SpecError(
            "spec.rollout.strategy", f"{md.strategy} is not implemented by this operator version yet",
            f"use one of: {', '.join(IMPLEMENTED_STRATEGIES)}"), now, reason=c.REASON_STRATEGY_UNSUPPORTED)
    gen = md.generation
    old_conds = list(status.get("conditions") or [])
    conds = set_condition(old_conds, c.COND_SPEC_VALID, True, c.REASON_VALID, "spec is valid", gen, now)

    # --- revision bookkeeping ---
    history = [dict(r) for r in status.get("revisions") or []]
    h = md.revision_hash
    current = next((r for r in history if r.get("hash") == h), None)
    if current is None:
        number = max([int(r["revision"]) for r in history] + [0]) + 1
        current = {
            "revision": number,
            "hash": h,
            "modelDigest": md.model.uri or f"export:{md.model.export_name}/{md.model.export_target or ''}",
            "created": now,
            "outcome": "Progressing",
        }
        history.append(current)
    revision = int(current["revision"])

    # --- can any node host it? Nothing is applied if not: no half-applied revision. ---
    unschedulable = find_unschedulable_reason(sched, observed.nodes) if observed.nodes is not None else None
    if unschedulable:
        msg = f"revision {revision} cannot be scheduled: {unschedulable} (spec.placement)"
        conds = set_condition(conds, c.COND_SCHEDULABLE, False, c.REASON_UNSCHEDULABLE, msg, gen, now)
        conds = set_condition(conds, c.COND_READY, False, c.REASON_UNSCHEDULABLE, msg, gen, now)
        status.update({"phase": "Pending", "observedGeneration": gen, "conditions": conds, "revisions": history,
                       "canaryRevision": revision})
        return Plan(status=status, events=_events_for(old_conds, conds))
    conds = set_condition(conds, c.COND_SCHEDULABLE, True, c.REASON_SCHEDULABLE, "a node can host the pods", gen, now)

    replicas = None if md.autoscaling else md.replicas
    desired = md.replicas if replicas is not None else int(((observed.deployments.get(revision) or {}).get("spec") or {}).get("replicas") or 1)
    plan = Plan()
    plan.apply.append(build_entry_service(md))
    plan.apply.extend(build_revision_objects(md, revision, config, replicas))

    if not md.autoscaling and revision in observed.autoscalers:
        # spec.autoscaling was removed: the HPA goes, and spec.replicas owns the Deployment again.
        plan.delete.append(("HorizontalPodAutoscaler", md.namespace, c.revision_name(md.name, revision)))
    dep = observed.deployments.get(revision)
    complete = _rollout_complete(dep, desired)
    ready = _ready_replicas(dep)
    stable = int(status.get("stableRevision") or 0) or None
    if complete:
        for old_rev in sorted(observed.deployments):
            if old_rev != revision:
                plan.delete.append(("Deployment", md.namespace, c.revision_name(md.name, old_rev)))
                plan.delete.append(("ConfigMap", md.namespace, c.config_map_name(md.name, old_rev)))
                if old_rev in observed.autoscalers:
                    plan.delete.append(("HorizontalPodAutoscaler", md.namespace, c.revision_name(md.name, old_rev)))
        stable = revision
        for r in history:
            if int(r["revision"]) == revision:
                r["outcome"] = "Stable"
            elif r.get("outcome") in ("Stable", "Progressing"):
                r["outcome"] = "Superseded"
    # Trim history: the newest `revisionHistoryLimit` entries, always keeping the current one.
    keep = sorted(history, key=lambda r: int(r["revision"]))
    excess = [r for r in keep if int(r["revision"]) != revision][: max(0, len(keep) - 1 - md.revision_history_limit)]
    history = [r for r in keep if r not in excess]

    if desired == 0 and complete:
        conds = set_condition(conds, c.COND_WORKLOAD_READY, True, c.REASON_SCALED_TO_ZERO, "spec.replicas is 0", gen, now)
    elif complete:
        conds = set_condition(conds, c.COND_WORKLOAD_READY, True, c.REASON_PODS_READY,
                              c.MSG_PODS_READY.format(ready=ready, desired=desired, revision=revision), gen, now)
    else:
        conds = set_condition(conds, c.COND_WORKLOAD_READY, False, c.REASON_PODS_NOT_READY,
                              c.MSG_PODS_NOT_READY.format(ready=ready, desired=desired, revision=revision), gen, now)
    conds = set_condition(conds, c.COND_ROUTING_READY, True, c.REASON_ROUTED,
                          c.MSG_ROUTED.format(service=md.name, revision=revision), gen, now)
    all_ready = all(is_true(conds, t) for t in (c.COND_SPEC_VALID, c.COND_SCHEDULABLE, c.COND_WORKLOAD_READY, c.COND_ROUTING_READY))
    conds = set_condition(conds, c.COND_READY, all_ready, c.REASON_ALL_READY if all_ready else c.REASON_NOT_READY,
                          f"revision {revision} is serving" if all_ready else f"revision {revision} is rolling out", gen, now)

    status.update({
        "phase": "Ready" if all_ready else "Progressing",
        "observedGeneration": gen,
        "conditions": conds,
        "revisions": history,
        "stableRevision": stable,
        "canaryRevision": None if stable == revision else revision,
        "currentStep": None,
        "weights": {"stable": 100, "canary": 0, "mirror": 0, "achieved": True},
        "endpoint": endpoint(md),
        "replicas": int(((dep or {}).get("status") or {}).get("replicas") or 0),
        "readyReplicas": ready,
        "selector": f"{c.LABEL_DEPLOYMENT}={md.name},{c.LABEL_REVISION}={revision}",
    })
    status = {k: v for k, v in status.items() if v is not None}
    plan.status = status
    plan.events = _events_for(old_conds, conds)
    return plan
