"""Phase 5, derive the status: the one place where status and its conditions are composed, and
the Events of their transitions."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .. import constants as c
from ..api.errors import SpecError
from ..clock import to_epoch
from ..conditions import changed_conditions, is_true, set_condition
from ..render import endpoint
from ..traffic import RouteHealth, TrafficState
from ..traffic.base import ReplicaPlan
from .decide import Decision
from .model import Plan, Reconcile, controller_observed, ready_replicas, rollout_complete

# Reasons that are a problem for the user the moment they appear, even on a new object.
PROBLEM_REASONS = frozenset({c.REASON_INVALID_SPEC, c.REASON_STRATEGY_UNSUPPORTED, c.REASON_UNSCHEDULABLE,
                             c.REASON_EXPORT_NOT_READY, c.REASON_ROLLOUT_ABORTED})
CONDITIONS = list[dict[str, Any]]


def events_for(old: CONDITIONS, new: CONDITIONS) -> list[tuple[str, str, str]]:
    """One Event per state transition: Ready turning True or False, and problems as they appear.
    A new object's first "not ready yet" is not a transition and makes no Event."""
    events = []
    for x in changed_conditions(old, new):
        prev = next((o for o in old if o.get("type") == x["type"]), None)
        if x["type"] == c.COND_READY:
            if x["status"] == "True" or prev is not None or x["reason"] in PROBLEM_REASONS:
                events.append(("Normal" if x["status"] == "True" else "Warning", x["reason"], x["message"]))
        elif x["status"] == "False" and (x["reason"] in PROBLEM_REASONS or (prev is not None and prev.get("status") == "True")):
            events.append(("Warning", x["reason"], x["message"]))
    return events


def invalid_status(body: Mapping[str, Any], err: SpecError, now: str) -> Plan:
    """Nothing is applied for a spec the operator cannot act on: the condition says why, naming the field."""
    status: dict[str, Any] = dict(body.get("status") or {})
    gen = int((body.get("metadata") or {}).get("generation") or 0)
    conds = status.get("conditions") or []
    new_conds = set_condition(conds, c.COND_SPEC_VALID, False, err.reason, str(err), gen, now)
    new_conds = set_condition(new_conds, c.COND_READY, False, err.reason, str(err), gen, now)
    st = copy.deepcopy(status)
    st.update({"phase": "Failed", "observedGeneration": gen, "conditions": new_conds, "message": str(err)})
    return Plan(status=st, events=events_for(conds, new_conds))


def _base_conditions(rc: Reconcile) -> CONDITIONS:
    """SpecValid, and ExportReady for an exportRef model."""
    conds = set_condition(rc.old_conditions, c.COND_SPEC_VALID, True, c.REASON_VALID, "spec is valid", rc.gen, rc.now_s)
    if rc.export.problem:
        return set_condition(conds, c.COND_EXPORT_READY, False, c.REASON_EXPORT_NOT_READY, rc.export.problem, rc.gen, rc.now_s)
    if rc.md.model.export_name:
        return set_condition(conds, c.COND_EXPORT_READY, True, c.REASON_ARTIFACT_READY, f"artifact {rc.export.digest}", rc.gen, rc.now_s)
    return conds


def waiting_status(rc: Reconcile, reason: str, message: str, unschedulable: bool) -> Plan:
    """Nothing can be applied yet: the export's artifact is missing, or no node can host the pods."""
    conds = _base_conditions(rc)
    if unschedulable:
        conds = set_condition(conds, c.COND_SCHEDULABLE, False, reason, message, rc.gen, rc.now_s)
        rc.status["rollout"] = rc.ro
    conds = set_condition(conds, c.COND_READY, False, reason, message, rc.gen, rc.now_s)
    rc.status.update({"phase": "Pending", "observedGeneration": rc.gen, "conditions": conds, "message": message})
    rc.plan.status = rc.status
    rc.plan.events += events_for(rc.old_conditions, conds)
    return rc.plan


def _workload_condition(rc: Reconcile, conds: CONDITIONS, d: Decision, target: int) -> CONDITIONS:
    total, stable = rc.total(), d.stable
    stable_dep = rc.dep(stable)
    ready = ready_replicas(stable_dep)
    desired = d.replicas_for.get(stable or -1, total)
    ok = stable is not None and rollout_complete(stable_dep, min(desired, total))
    if stable is None:
        return set_condition(conds, c.COND_WORKLOAD_READY, False, c.REASON_PODS_NOT_READY,
                             c.MSG_PODS_NOT_READY.format(ready=ready_replicas(rc.dep(target)), desired=total, revision=target), rc.gen, rc.now_s)
    if total == 0 and ok:
        return set_condition(conds, c.COND_WORKLOAD_READY, True, c.REASON_SCALED_TO_ZERO, "spec.replicas is 0", rc.gen, rc.now_s)
    msg = c.MSG_PODS_READY if ok else c.MSG_PODS_NOT_READY
    return set_condition(conds, c.COND_WORKLOAD_READY, ok, c.REASON_PODS_READY if ok else c.REASON_PODS_NOT_READY,
                         msg.format(ready=ready, desired=desired, revision=stable), rc.gen, rc.now_s)


def _routing_condition(rc: Reconcile, conds: CONDITIONS, state: TrafficState, routing: RouteHealth) -> CONDITIONS:
    """Status is written only after every apply of this reconcile succeeded, so the routes it
    applies are in force by the time anyone reads it, unless their carrier refuses them."""
    if not routing.ready:
        return set_condition(conds, c.COND_ROUTING_READY, False, routing.reason, routing.message, rc.gen, rc.now_s)
    return set_condition(conds, c.COND_ROUTING_READY, True, c.REASON_ROUTED,
                         f"{rc.router.kind} routes {state.stable_weight}% to revision {state.stable_revision}"
                         + (f" and {state.canary_weight}% to revision {state.canary_revision}" if state.canary_revision else ""),
                         rc.gen, rc.now_s)


def _phase(rc: Reconcile, d: Decision, target: int, all_ready: bool) -> str:
    if "aborted" in rc.ro:
        return "Degraded"
    if rc.paused():
        return "Paused"
    rolling = d.canary is not None or d.stable != target
    return "Progressing" if rolling or not all_ready else "Ready"


def _weights(rc: Reconcile, d: Decision, routes: list[dict[str, Any]], routing: RouteHealth) -> dict[str, Any]:
    """The split in force. A gateway or mesh carries exactly the split this reconcile applied,
    unless it refuses the route; the replica router carries what the ready pods make of it."""
    state = d.state
    weights = {"stable": state.stable_weight, "canary": state.canary_weight, "mirror": state.mirror_percent,
               "achieved": routing.ready}
    if state.canary_revision is None:
        return weights
    ready = ReplicaPlan(stable=ready_replicas(rc.dep(d.stable)), canary=ready_replicas(rc.dep(d.canary)))
    achieved = rc.router.achieved(rc.md, state, ready, with_live_status(rc, routes))
    if achieved is None:
        return {**weights, "achieved": False}
    return {"stable": achieved.stable_weight, "canary": achieved.canary_weight, "mirror": achieved.mirror_percent,
            "achieved": bool(achieved.exact)}


def with_live_status(rc: Reconcile, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The routing objects as they stand after this reconcile's apply: the rendered spec, and the
    status their carrier last wrote."""
    out = []
    for obj in routes:
        live = rc.obs.routes.get((obj["kind"], obj["metadata"]["name"])) or {}
        out.append({**obj, "status": live.get("status") or {}} if live.get("status") else obj)
    return out


def derive_status(rc: Reconcile, target: int, d: Decision, history: list[dict[str, Any]],
                  routes: list[dict[str, Any]], routing: RouteHealth) -> Plan:
    conds = set_condition(_base_conditions(rc), c.COND_SCHEDULABLE, True, c.REASON_SCHEDULABLE, "a node can host the pods", rc.gen, rc.now_s)
    conds = _workload_condition(rc, conds, d, target)
    conds = _routing_condition(rc, conds, d.state, routing)
    all_ready = all(is_true(conds, t) for t in (c.COND_SPEC_VALID, c.COND_SCHEDULABLE, c.COND_WORKLOAD_READY, c.COND_ROUTING_READY))
    if "aborted" in rc.ro:
        conds = set_condition(conds, c.COND_READY, False, c.REASON_ROLLOUT_ABORTED, rc.message, rc.gen, rc.now_s)
    else:
        conds = set_condition(conds, c.COND_READY, all_ready, c.REASON_ALL_READY if all_ready else c.REASON_NOT_READY,
                              f"revision {d.stable} is serving" if all_ready else f"revision {target} is rolling out", rc.gen, rc.now_s)
    if rc.pause_reason and rc.pause_reason != rc.status.get("pauseReason"):
        rc.event("Normal", c.EVENT_ROLLOUT_PAUSED, rc.pause_reason)
    rc.ro["desiredWeight"] = d.state.canary_weight
    stable_dep = rc.dep(d.stable)
    rc.status.update({
        "phase": _phase(rc, d, target, all_ready),
        "observedGeneration": rc.gen,
        "conditions": conds,
        "revisions": history,
        "stableRevision": d.stable,
        "canaryRevision": d.canary,
        "currentStep": d.step_index if d.canary is not None and d.step_index is not None else None,
        "weights": _weights(rc, d, routes, routing),
        "endpoint": endpoint(rc.md),
        "replicas": int(((stable_dep or {}).get("status") or {}).get("replicas") or 0),
        "readyReplicas": ready_replicas(stable_dep),
        "selector": f"{c.LABEL_DEPLOYMENT}={rc.md.name},{c.LABEL_REVISION}={d.stable or target}",
        "pauseReason": rc.pause_reason or ("paused by `kubectl modelpilot pause`" if rc.ro.get("paused") else None),
        "message": rc.message or None,
        "analysis": rc.analysis or None,
        "rollout": rc.ro or None,
    })
    rc.plan.status = {k: v for k, v in rc.status.items() if v is not None}
    rc.plan.events += events_for(rc.old_conditions, conds)
    return rc.plan


# A new object's first status waits, at most this long after its first Deployment was created, for
# the Deployment controller to observe that Deployment (docs/design.md, "The first status waits for the Deployment controller").
FIRST_STATUS_WAIT_S = 5.0


def first_status_wait(old_status: Mapping[str, Any], plan: Plan, deployments: Mapping[int, Mapping[str, Any]],
                      now: float) -> float | None:
    """Seconds to hold back a new object's first status; None to write it now. Held only while it
    would say no more than "Progressing" before the Deployment controller has acted: it then says
    what the controller saw (the replicas, or Ready at once for a Deployment that needs no new pod),
    and a fleet created at once is written once per object, not twice. Problems and Events are never
    held, and neither is anything after the first status."""
    if old_status or plan.events or plan.status.get("phase") != "Progressing":
        return None
    if not deployments:
        creates = any(obj.get("kind") == "Deployment" for obj in plan.apply)
        return FIRST_STATUS_WAIT_S if creates else None
    if any(controller_observed(dep) for dep in deployments.values()):
        return None
    created = min(_created(dep, now) for dep in deployments.values())
    wait = created + FIRST_STATUS_WAIT_S - now
    return wait if wait > 0 else None


def _created(dep: Mapping[str, Any], now: float) -> float:
    stamp = (dep.get("metadata") or {}).get("creationTimestamp")
    return to_epoch(stamp) if stamp else now
