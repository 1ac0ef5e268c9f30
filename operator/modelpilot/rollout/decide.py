"""Phase 2, decide the step: interpret the compiled steps (steps.py) from where status.rollout
stands, and decide the traffic split and the size of every serving revision.

A step completes only when what it asks for is in force: the canary carries its share, the
routes carry the weights (their spec-hash annotation matches) and the router's carrier accepts
them (RoutingReady). A step that does not complete within progressDeadlineSeconds aborts the
rollout. The interpreter's state lives in status, so a restarted operator resumes where it stood:
a finished step is never repeated, a weight never jumps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import constants as c
from ..clock import to_epoch, to_rfc3339
from ..hashing import object_hash
from ..traffic import RouteHealth, TrafficState, header_matches_from_spec, routed_replicas
from . import parity
from .control import abort
from .model import Reconcile, ready_replicas, rollout_complete, spec_replicas
from .revisions import Revisions
from .steps import Step, background_analysis

DEFAULT_PROGRESS_DEADLINE_SECONDS = 600


@dataclass
class Decision:
    stable: int | None  # after a promotion in this reconcile: the promoted revision
    canary: int | None  # the revision rolling out next to stable, if any
    step_index: int | None
    state: TrafficState  # the split to put in force now
    replicas_for: dict[int, int] = field(default_factory=dict)  # revision -> desired replicas
    rolled_back: int | None = None  # an undo completed: this spec revision's outcome is RolledBack


def decide_step(rc: Reconcile, revs: Revisions, routing: RouteHealth) -> Decision:
    stable, target, total = revs.stable, revs.target, rc.total()
    if stable is None:  # first revision ever: nothing to protect, it takes all traffic once ready
        d = Decision(stable=None, canary=None, step_index=None, state=TrafficState(stable_revision=target),
                     replicas_for={target: total})
        return _promote(rc, revs, d, target) if rollout_complete(rc.dep(target), total) else d
    d = Decision(stable=stable, canary=None, step_index=None, state=TrafficState(stable_revision=stable),
                 replicas_for={stable: total})
    if target == stable:
        for k in ("revision", "skip"):
            rc.ro.pop(k, None)
        rc.analysis = {}
        return d
    if (rc.ro.get("aborted") or {}).get("revision") == target:
        rc.message = f"revision {target} was rolled back: {rc.ro['aborted']['message']}"
        return d
    if revs.pinned:  # undo: bring the pinned revision back at full size, then switch at once
        d.replicas_for[target] = total
        if rollout_complete(rc.dep(target), total):
            return _promote(rc, revs, d, target)
        d.canary = target
        rc.message = f"undo: waiting for revision {target} to be ready"
        return d
    return _progress(rc, revs, d, routing)


def _progress(rc: Reconcile, revs: Revisions, d: Decision, routing: RouteHealth) -> Decision:
    stable, target, total = d.stable or 0, revs.target, rc.total()
    d.canary = target
    step_index = _start_or_resume(rc, stable, target)
    if not parity.gate(rc, stable, target):
        return _hold_for_parity(rc, d, stable, target, step_index)
    _background_analysis(rc, stable, target)
    step_index = _advance(rc, stable, target, step_index, routing)
    rc.ro["step"] = d.step_index = step_index
    if "aborted" in rc.ro:
        d.canary = None
        rc.message = f"revision {target} was rolled back: {rc.ro['aborted']['message']}"
    elif step_index >= len(rc.steps) and not rc.paused():
        # Promotion: the canary at full size first, then all traffic at once.
        d.replicas_for[target] = total
        if rollout_complete(rc.dep(target), total):
            return _promote(rc, revs, d, target)
        d.state = traffic_for(rc, stable, target, len(rc.steps) - 1, False) if rc.steps else TrafficState(stable_revision=stable)
        rc.message = f"revision {target}: scaling to {total} replicas before the switch"
    else:
        _size_step(rc, d, stable, target, step_index)
    return d


def _hold_for_parity(rc: Reconcile, d: Decision, stable: int, target: int, step_index: int) -> Decision:
    """The new revision is up, at the size its first step wants (one pod at least, to be checked),
    while all traffic stays on stable; a check that outlasts progressDeadlineSeconds aborts."""
    rc.ro["step"] = d.step_index = step_index
    if "aborted" in rc.ro:
        d.canary = None
        rc.message = f"revision {target} was rolled back: {rc.ro['aborted']['message']}"
        return d
    if step_index < len(rc.steps):
        rp = rc.router.replicas(rc.md, traffic_for(rc, stable, target, step_index, True), rc.total())
        d.replicas_for[stable], d.replicas_for[target] = rp.stable, max(rp.canary, 1)
    else:  # no steps (direct): the revision comes up whole and waits for the switch
        d.replicas_for[target] = rc.total()
    started = to_epoch(rc.ro.get("stepStartedAt") or rc.now_s)
    deadline = float(rc.md.rollout.progress_deadline_seconds or DEFAULT_PROGRESS_DEADLINE_SECONDS)
    if rc.now - started > deadline:
        abort(rc, target, c.ABORT_PROGRESS_DEADLINE, f"served-model parity not checked within progressDeadlineSeconds={int(deadline)}: {rc.message}")
        d.canary = None
    return d


def _size_step(rc: Reconcile, d: Decision, stable: int, target: int, step_index: int) -> None:
    """The split and sizes while a step is in progress: the router sizes both revisions for the
    split the step wants; the split in force waits until the canary can carry it."""
    want = traffic_for(rc, stable, target, step_index, True)
    can_carry = rollout_complete(rc.dep(target), routed_replicas(rc.md, want, rc.total()).canary)
    d.state = traffic_for(rc, stable, target, step_index, can_carry)
    rp = rc.router.replicas(rc.md, want, rc.total())
    d.replicas_for[stable], d.replicas_for[target] = rp.stable, rp.canary
    if rc.ro.get("paused"):
        rc.pause_reason = "paused by `kubectl modelpilot pause`"
    rc.message = f"revision {target}: step {step_index}/{len(rc.steps)}" + (
        f" ({rc.steps[step_index].label})" if step_index < len(rc.steps) else "")


def _start_or_resume(rc: Reconcile, stable: int, target: int) -> int:
    """The step to work on: 0 for a new target, else where status.rollout stands (after a skip)."""
    if rc.ro.get("revision") != target:
        if rc.ro.get("revision") and int(rc.ro["revision"]) not in (stable, target):
            rc.ro.setdefault("scaleDown", {})[str(rc.ro["revision"])] = rc.now_s  # superseded canary: at once
        rc.ro.update({"revision": target, "step": 0, "stepStartedAt": rc.now_s, "paused": False})
        rc.ro.pop("skip", None)
        rc.ro.pop("parity", None)
        rc.ro.pop("aborted", None)  # an earlier revision's abort does not hold back a new one
        rc.analysis = {}
        rc.event("Normal", c.EVENT_ROLLOUT_STARTED, f"revision {target} rolls out by {rc.md.strategy} "
                 f"({len(rc.steps)} steps) next to stable revision {stable}")
    step_index = int(rc.ro.get("step") or 0)
    if "skip" in rc.ro:
        skip = int(rc.ro.pop("skip"))
        if skip >= step_index:
            step_index = min(skip + 1, len(rc.steps)) if skip < len(rc.steps) else len(rc.steps)
            rc.ro["stepStartedAt"] = rc.now_s
    return step_index


def _background_analysis(rc: Reconcile, stable: int, target: int) -> None:
    """Background analysis runs from the first step until promotion."""
    bg_spec, _ = background_analysis(rc.md)
    if bg_spec is None or rc.ro.get("paused"):
        return
    run = run_analysis(rc, "background", bg_spec, stable, target, True)
    if run is not None and run.get("phase") == "Failed":
        abort(rc, target, c.ABORT_ANALYSIS_FAILED, f"background analysis failed: {run.get('message')}")
    elif run is not None and run.get("phase") == "Inconclusive":
        rc.pause_reason = f"background analysis inconclusive: {run.get('message')}"


def _advance(rc: Reconcile, stable: int, target: int, step_index: int, routing: RouteHealth) -> int:
    """Complete as many steps as are done now; the index of the first one that is not."""
    while step_index < len(rc.steps) and not ("aborted" in rc.ro or rc.paused()):
        s = rc.steps[step_index]
        if s.kind in ("weight", "mirror", "match", "preview"):
            done = _traffic_step_done(rc, s, step_index, stable, target, routing)
        elif s.kind == "pause":
            done = _pause_done(rc, s, step_index)
        else:
            done = _analysis_done(rc, s, step_index, stable, target)
        if not done:
            break
        rc.event("Normal", c.EVENT_STEP_COMPLETED, f"revision {target}: step {step_index} ({s.label}) completed")
        step_index += 1
        rc.ro["stepStartedAt"] = rc.now_s
    return step_index


def _traffic_step_done(rc: Reconcile, s: Step, index: int, stable: int, target: int, routing: RouteHealth) -> bool:
    started = to_epoch(rc.ro.get("stepStartedAt") or rc.now_s)
    deadline = float(rc.md.rollout.progress_deadline_seconds or DEFAULT_PROGRESS_DEADLINE_SECONDS)
    want = traffic_for(rc, stable, target, index, True)
    done = False
    if rollout_complete(rc.dep(target), routed_replicas(rc.md, want, rc.total()).canary):
        done = routing.ready and routes_in_force(rc, rc.router.route_objects(rc.md, want)) and _settled(rc, want, stable)
    if not done and rc.now - started > deadline:
        why = "" if routing.ready else f"; {routing.message}"
        abort(rc, target, c.ABORT_PROGRESS_DEADLINE,
              f"step {index} ({s.label}) not done within progressDeadlineSeconds={int(deadline)}{why}")
    elif not done:
        rc.plan.wake(min(deadline - (rc.now - started) + 0.1, 5.0))
    return done


def _pause_done(rc: Reconcile, s: Step, index: int) -> bool:
    started = to_epoch(rc.ro.get("stepStartedAt") or rc.now_s)
    if s.duration is None:
        rc.pause_reason = f"step {index} ({s.label}): waiting for `kubectl modelpilot promote`"
        return False
    if rc.now >= started + s.duration:
        return True
    rc.plan.wake(started + s.duration - rc.now)
    return False


def _analysis_done(rc: Reconcile, s: Step, index: int, stable: int, target: int) -> bool:
    run = run_analysis(rc, f"step-{index}", s.analysis or {}, stable, target, False)
    if run is None:
        rc.pause_reason = f"step {index} ({s.label}): no Prometheus configured for analysis (prometheusUrl)"
    elif run.get("phase") == "Failed":
        abort(rc, target, c.ABORT_ANALYSIS_FAILED, f"step {index} analysis failed: {run.get('message')}")
    elif run.get("phase") == "Inconclusive":
        rc.pause_reason = f"step {index} analysis inconclusive: {run.get('message')}"
    return run is not None and run.get("phase") == "Successful"


def _settled(rc: Reconcile, want: TrafficState, stable: int) -> bool:
    """A router that splits by pods carries the weight only once stable has shrunk to its share."""
    if not rc.router.weights_by_pods or want.preview:
        return True
    rp = rc.router.replicas(rc.md, want, rc.total())
    sdep = rc.dep(stable)
    return spec_replicas(sdep) == rp.stable and ready_replicas(sdep) >= rp.stable


def routes_in_force(rc: Reconcile, objs: list[dict[str, Any]]) -> bool:
    for obj in objs:
        live = rc.obs.routes.get((obj["kind"], obj["metadata"]["name"]))
        ann = (((live or {}).get("metadata") or {}).get("annotations") or {})
        if ann.get(c.ANNOTATION_SPEC_HASH) != object_hash(obj):
            return False
    return True


def traffic_for(rc: Reconcile, stable: int, canary: int | None, upto: int, weight_ok: bool) -> TrafficState:
    """The split the steps before and including `upto` ask for. Without `weight_ok` (the canary
    cannot carry the new share yet) the weight stays at what was last achieved."""
    if canary is None:
        return TrafficState(stable_revision=stable)
    weight, mirror, preview = 0, 0, False
    matches: tuple[Any, ...] = ()
    cookie = None
    for s in rc.steps[: upto + 1]:
        if s.kind in ("weight", "match"):
            weight = s.weight or 0
        if s.kind == "match":
            matches, cookie = header_matches_from_spec(rc.md)
        mirror = s.mirror if s.kind == "mirror" else mirror
        preview = preview or s.kind == "preview"
    if not weight_ok:
        weight = min(weight, int((rc.status.get("weights") or {}).get("canary") or 0))
    return TrafficState(stable_revision=stable, canary_revision=canary, canary_weight=weight, mirror_percent=mirror,
                        header_matches=matches, cookie_match=cookie, preview=preview)


def run_analysis(rc: Reconcile, key: str, spec: Mapping[str, Any], stable: int, canary: int, background: bool) -> dict[str, Any] | None:
    if rc.obs.analyze is None:
        return None
    prev = (rc.analysis.get("runs") or {}).get(key)
    ctx = {"namespace": rc.md.namespace, "name": rc.md.name, "service": rc.md.name,
           "stableRevision": stable, "canaryRevision": canary, "background": background}
    run = rc.obs.analyze(spec, prev, ctx)
    rc.analysis.setdefault("runs", {})[key] = run
    from ..analysis import describe, new_measurements  # local: keeps the planner importable alone
    for m in new_measurements(prev, run):
        rc.event("Normal" if m.get("verdict") == "Successful" else "Warning", c.EVENT_ANALYSIS_MEASUREMENT, describe(m))
    if run.get("nextMeasurementAt") and run.get("phase") == "Running":
        rc.plan.wake(to_epoch(run["nextMeasurementAt"]) - rc.now)
    return run


def _promote(rc: Reconcile, revs: Revisions, d: Decision, target: int) -> Decision:
    """`target` becomes stable with all traffic. direct replaces like a Deployment does; the
    progressive strategies keep the old revision up a little for an instant switch-back (Argo's
    scaleDownDelaySeconds)."""
    total = rc.total()
    old = d.stable if d.stable != target else None
    d.stable, d.canary, d.state = target, None, TrafficState(stable_revision=target)
    d.replicas_for[target] = total
    delay = 0 if rc.md.strategy == "direct" else rc.md.rollout.blue_green.scale_down_delay_seconds
    if old is not None:
        rc.ro.setdefault("scaleDown", {})[str(old)] = to_rfc3339(rc.now + delay)
        d.replicas_for[old] = total
        rc.event("Normal", c.EVENT_ROLLOUT_PROMOTED, f"revision {target} is stable and takes all traffic; revision {old} scales down in {delay}s")
    for k in ("revision", "step", "stepStartedAt", "skip", "aborted", "parity"):
        rc.ro.pop(k, None)
    if revs.pinned and target != revs.spec_rev:
        d.rolled_back = revs.spec_rev
    rc.analysis = {}
    return d
