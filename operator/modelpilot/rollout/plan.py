"""Plan one reconcile of a ModelDeployment. Pure: observations in; objects, scale changes,
deletions, the next status and Events out. The clock and the analysis queries come in through
`Observed`, so a unit test drives every transition without a cluster.

Revisions: every distinct content hash of the serving spec (model, runtime, placement) gets the
next revision number (status.revisions). Only the revision the spec describes is rendered and
server-side applied; every other revision's Deployment is only scaled (the stable one during a
rollout, old ones down to zero and kept for `kubectl modelpilot undo`, up to
revisionHistoryLimit).

Rollout: the strategy is compiled to steps (steps.py) and interpreted here. The interpreter's
state lives in status (currentStep, weights, rollout.*, analysis), so a restarted operator
resumes exactly where it stood: a finished step is never repeated, a weight never jumps.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .. import constants as c
from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment, parse_model_deployment
from ..conditions import cap_message, changed_conditions, is_true, set_condition
from ..config import OperatorConfig
from ..kube import object_hash
from ..placement import find_unschedulable_reason, scheduling_for
from ..api.modeldeployment import check_runtime_format, spec_hash
from ..render import ExportArtifact, build_network_policy, build_revision_objects, endpoint, runtime_warnings
from ..traffic import TrafficState, get_router, header_matches_from_spec
from ..traffic.base import ReplicaPlan
from ..uris import redact_uri
from .objects import build_revision_service, check_service_ports
from ..analysis import validate as validate_analysis
from .steps import Step, analysis_blocks, background_analysis, compile_steps

# run = analyze(spec, previous_run, ctx): the analysis state machine with the clock and the
# Prometheus client bound (analysis.run.step); None when no Prometheus is configured.
AnalyzeFn = Callable[[Mapping[str, Any], dict | None, dict], dict]
ABORT_SCALE_DOWN_SECONDS = 30
DEFAULT_SCALE_DOWN_SECONDS = 30


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


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _rfc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(dep: Mapping[str, Any] | None) -> int:
    return int(((dep or {}).get("status") or {}).get("readyReplicas") or 0)


def _complete(dep: Mapping[str, Any] | None, desired: int) -> bool:
    """The Deployment controller has seen our latest spec and `desired` pods are ready."""
    if not dep:
        return False
    st = dep.get("status") or {}
    gen_ok = int(st.get("observedGeneration") or 0) >= int((dep.get("metadata") or {}).get("generation") or 0)
    return gen_ok and int(st.get("updatedReplicas") or 0) >= desired and _ready(dep) >= desired


# Reasons that are a problem for the user the moment they appear, even on a new object.
PROBLEM_REASONS = frozenset({c.REASON_INVALID_SPEC, c.REASON_STRATEGY_UNSUPPORTED, c.REASON_UNSCHEDULABLE,
                             c.REASON_EXPORT_NOT_READY, "RolloutAborted"})


def _events_for(old: list[dict], new: list[dict]) -> list[tuple[str, str, str]]:
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


def _invalid(body: Mapping[str, Any], status: dict[str, Any], err: SpecError, now: str, reason: str = c.REASON_INVALID_SPEC) -> Plan:
    """Nothing is applied for a spec the operator cannot act on: the condition says why, naming the field."""
    gen = int((body.get("metadata") or {}).get("generation") or 0)
    conds = status.get("conditions") or []
    new_conds = set_condition(conds, c.COND_SPEC_VALID, False, reason, str(err), gen, now)
    new_conds = set_condition(new_conds, c.COND_READY, False, reason, str(err), gen, now)
    st = copy.deepcopy(status)
    st.update({"phase": "Failed", "observedGeneration": gen, "conditions": new_conds, "message": str(err)})
    return Plan(status=st, events=_events_for(conds, new_conds))


class _Rollout:
    """One reconcile's working state; `run()` fills `plan`. Kept as a class only to share locals."""

    def __init__(self, body: Mapping[str, Any], md: ModelDeployment, config: OperatorConfig, obs: Observed, steps: list[Step]):
        self.body, self.md, self.config, self.obs, self.steps = body, md, config, obs, steps
        self.router = get_router(md.traffic.get("router") or "replicas")
        self.status: dict[str, Any] = copy.deepcopy(dict(body.get("status") or {}))
        self.ro: dict[str, Any] = copy.deepcopy(dict(self.status.get("rollout") or {}))
        self.analysis: dict[str, Any] = copy.deepcopy(dict(self.status.get("analysis") or {}))
        self.now_s = obs.now
        self.now = _ts(obs.now)
        self.plan = Plan()
        self.gen = md.generation
        self.pause_reason: str | None = None
        self.export: ExportArtifact | None = None
        self.message = ""

    # ---------- helpers ----------
    def event(self, etype: str, reason: str, message: str) -> None:
        self.plan.events.append((etype, reason, message))

    def dep(self, rev: int | None) -> Mapping[str, Any] | None:
        return self.obs.deployments.get(rev) if rev else None

    def total(self) -> int:
        if self.md.autoscaling:
            return max(int((self.md.autoscaling or {}).get("minReplicas", 1)), 1)
        return self.md.replicas

    def canary_replicas_for(self, state: TrafficState, step: Step | None) -> int:
        total = self.total()
        if total == 0:
            return 0
        if state.preview:
            bg = self.md.rollout.get("blueGreen") or {}
            return int(bg.get("previewReplicas") or total)
        share = max(state.canary_weight, state.mirror_percent)
        if step is not None and step.kind in ("weight", "match", "mirror"):
            share = max(share, step.weight or 0, step.mirror)
        if share == 0 and not state.has_match:
            return 0
        return max(1, math.ceil(total * share / 100))

    def routes_in_force(self, objs: list[dict[str, Any]]) -> bool:
        for obj in objs:
            live = self.obs.routes.get((obj["kind"], obj["metadata"]["name"]))
            ann = (((live or {}).get("metadata") or {}).get("annotations") or {})
            if ann.get(c.ANNOTATION_SPEC_HASH) != object_hash(obj):
                return False
        return True

    # ---------- the interpreter ----------
    def traffic_for(self, stable: int, canary: int | None, upto: int, weight_ok: bool) -> TrafficState:
        """The split the steps before and including `upto` ask for. Without `weight_ok` (the canary
        cannot carry the new share yet) the weight stays at what was last achieved."""
        if canary is None:
            return TrafficState(stable_revision=stable)
        weight, mirror, preview, matches, cookie = 0, 0, False, (), None
        for s in self.steps[: upto + 1]:
            if s.kind == "weight":
                weight = s.weight or 0
            elif s.kind == "mirror":
                mirror = s.mirror
            elif s.kind == "preview":
                preview = True
            elif s.kind == "match":
                matches, cookie = header_matches_from_spec(self.md)
                weight = s.weight or 0
        if not weight_ok:
            weight = min(weight, int((self.status.get("weights") or {}).get("canary") or 0))
        return TrafficState(stable_revision=stable, canary_revision=canary, canary_weight=weight, mirror_percent=mirror,
                            header_matches=matches, cookie_match=cookie, preview=preview)

    def ctx(self, stable: int, canary: int, background: bool) -> dict[str, Any]:
        return {"namespace": self.md.namespace, "name": self.md.name, "service": self.md.name,
                "stableRevision": stable, "canaryRevision": canary, "background": background}

    def run_analysis(self, key: str, spec: Mapping[str, Any], stable: int, canary: int, background: bool) -> dict | None:
        if self.obs.analyze is None:
            return None
        prev = (self.analysis.get("runs") or {}).get(key)
        run = self.obs.analyze(spec, prev, self.ctx(stable, canary, background))
        self.analysis.setdefault("runs", {})[key] = run
        from ..analysis import describe, new_measurements  # local: keeps the planner importable alone
        for m in new_measurements(prev, run):
            self.event("Normal" if m.get("verdict") == "Successful" else "Warning", "AnalysisMeasurement", describe(m))
        if run.get("nextMeasurementAt") and run.get("phase") == "Running":
            self.plan.wake(_ts(run["nextMeasurementAt"]) - self.now)
        return run

    def abort(self, revision: int, reason: str, message: str) -> None:
        message = cap_message(message)  # an abort must always fit in status
        self.ro["aborted"] = {"revision": revision, "reason": reason, "message": message, "at": self.now_s}
        self.ro.setdefault("scaleDown", {})[str(revision)] = _rfc(self.now + ABORT_SCALE_DOWN_SECONDS)
        self.event("Warning", "RolloutAborted", f"revision {revision}: {message}; all traffic back to stable")

    def consume_control(self, stable: int | None, target: int) -> None:
        ctl = self.status.pop("control", None)
        if not ctl or ctl.get("requestedAt") == self.ro.get("lastAction"):
            return
        self.ro["lastAction"] = ctl.get("requestedAt")
        action, who = ctl.get("action"), ctl.get("requestedBy") or "kubectl modelpilot"
        aborted = (self.ro.get("aborted") or {}).get("revision") == target
        if action in ("promote", "resume") and aborted:
            self.ro.pop("aborted", None)
            self.ro.pop("revision", None)  # restart the steps from the beginning
            self.ro["paused"] = False
            self.analysis = {}
            self.event("Normal", "RolloutRetried", f"{action} by {who}: revision {target} rolls out again from step 0")
        elif action == "promote":
            self.ro["paused"] = False
            self.ro["skip"] = int(self.status.get("currentStep") or 0)
            self.event("Normal", "Promoted", f"promote by {who}: step {self.ro['skip']} skipped")
        elif action == "promoteFull":
            self.ro["paused"] = False
            self.ro["skip"] = len(self.steps)
            self.event("Normal", "Promoted", f"full promotion by {who}: remaining steps skipped")
        elif action == "pause":
            self.ro["paused"] = True
            self.event("Normal", "Paused", f"paused by {who}")
        elif action == "resume":
            self.ro["paused"] = False
            self.event("Normal", "Resumed", f"resumed by {who}")
        elif action == "abort":
            if stable is not None and target != stable:
                self.abort(target, "AbortedByUser", f"aborted by {who}")
        elif action == "undo":
            history = {int(r["revision"]) for r in self.status.get("revisions") or []}
            to = ctl.get("toRevision") or self._previous_stable(stable)
            if to is None or to not in history or to not in self.obs.deployments:
                self.event("Warning", "UndoRejected", f"undo by {who}: revision {to} is not in the history with a Deployment "
                           f"(known: {sorted(r for r in history if r in self.obs.deployments)})")
            else:
                self.ro["pinned"] = {"revision": int(to), "generation": self.gen}
                self.event("Normal", "Undo", f"undo by {who}: rolling back to revision {to}; the spec still describes "
                           f"revision {target}: revert it in git to make this permanent")

    def _previous_stable(self, stable: int | None) -> int | None:
        older = [int(r["revision"]) for r in self.status.get("revisions") or []
                 if int(r["revision"]) != stable and r.get("outcome") in ("Superseded", "Stable", "RolledBack")]
        return max(older) if older else None

    def run(self) -> Plan:  # noqa: C901 - one readable interpreter beats five half-ones
        md, obs = self.md, self.obs
        status = self.status
        old_conds = list(status.get("conditions") or [])
        conds = set_condition(old_conds, c.COND_SPEC_VALID, True, c.REASON_VALID, "spec is valid", self.gen, self.now_s)

        # --- an exportRef model: the ModelExport's artifact decides the revision ---
        export, digest, export_problem = resolve_export(md, obs.export)
        if export_problem:
            conds = set_condition(conds, c.COND_EXPORT_READY, False, c.REASON_EXPORT_NOT_READY, export_problem, self.gen, self.now_s)
        elif md.model.export_name:
            conds = set_condition(conds, c.COND_EXPORT_READY, True, "ArtifactReady", f"artifact {digest}", self.gen, self.now_s)
        self.export = export

        # --- revisions ---
        history = [dict(r) for r in status.get("revisions") or []]
        if export_problem and not history:
            conds = set_condition(conds, c.COND_READY, False, c.REASON_EXPORT_NOT_READY, export_problem, self.gen, self.now_s)
            status.update({"phase": "Pending", "observedGeneration": self.gen, "conditions": conds, "message": export_problem})
            self.plan.status = status
            self.plan.events += _events_for(old_conds, conds)
            return self.plan
        h = md.revision_hash if not digest else spec_hash({**md.serving_spec, "artifact": digest})
        if export_problem:
            # Keep serving what runs; the spec's revision waits for its artifact.
            h = next((r["hash"] for r in history if int(r["revision"]) == int(status.get("stableRevision") or 0)), h)
        cur = next((r for r in history if r.get("hash") == h), None)
        if cur is None:
            cur = {"revision": max([int(r["revision"]) for r in history] + [0]) + 1, "hash": h,
                   "modelDigest": digest or redact_uri(md.model.uri or "") or f"export:{md.model.export_name}/{md.model.export_target or ''}",
                   "created": self.now_s, "outcome": "Progressing"}
            history.append(cur)
            for w in runtime_warnings(md, export=export):
                self.event("Warning", "RuntimeWarning", f"revision {cur['revision']}: {w}")
        spec_rev = int(cur["revision"])
        status["revisions"] = history
        stable = int(status.get("stableRevision") or 0) or None

        pinned = self.ro.get("pinned")
        if pinned and int(pinned.get("generation", -1)) != self.gen:
            self.ro.pop("pinned", None)  # the spec changed since the undo: the new spec wins
            pinned = None
        self.consume_control(stable, spec_rev)
        pinned = self.ro.get("pinned")
        target = int(pinned["revision"]) if pinned else spec_rev

        # --- can any node host the spec's revision? Nothing is applied if not. ---
        if target == spec_rev:
            sched = scheduling_for(md.placement, self.config)
            unschedulable = find_unschedulable_reason(sched, obs.nodes) if obs.nodes is not None else None
            if unschedulable:
                msg = f"revision {spec_rev} cannot be scheduled: {unschedulable} (spec.placement)"
                conds = set_condition(conds, c.COND_SCHEDULABLE, False, c.REASON_UNSCHEDULABLE, msg, self.gen, self.now_s)
                conds = set_condition(conds, c.COND_READY, False, c.REASON_UNSCHEDULABLE, msg, self.gen, self.now_s)
                status.update({"phase": "Pending", "observedGeneration": self.gen, "conditions": conds, "message": msg})
                status["rollout"] = self.ro
                self.plan.status = status
                self.plan.events += _events_for(old_conds, conds)
                return self.plan
        conds = set_condition(conds, c.COND_SCHEDULABLE, True, c.REASON_SCHEDULABLE, "a node can host the pods", self.gen, self.now_s)

        total = self.total()
        replicas_for: dict[int, int] = {}  # revision -> desired replicas
        canary: int | None = None
        step_index: int | None = None
        state = TrafficState(stable_revision=stable or target)
        promoted_now = False

        if stable is None:
            # First revision ever: nothing to protect, it takes all traffic once ready.
            replicas_for[target] = total
            if _complete(self.dep(target), total):
                stable, promoted_now = target, True
            state = TrafficState(stable_revision=target)
        elif target == stable:
            replicas_for[stable] = total
            self.ro.pop("revision", None)
            self.ro.pop("skip", None)
            self.analysis = {}
        elif (self.ro.get("aborted") or {}).get("revision") == target:
            canary = None
            replicas_for[stable] = total
            ab = self.ro["aborted"]
            self.message = f"revision {target} was rolled back: {ab['message']}"
        elif pinned:
            # Undo: bring the pinned revision back at full size, then switch at once.
            replicas_for[stable] = total
            replicas_for[target] = total
            if _complete(self.dep(target), total):
                promoted_now = True
            else:
                canary = target
                self.message = f"undo: waiting for revision {target} to be ready"
        else:
            canary = target
            if self.ro.get("revision") != target:
                if self.ro.get("revision") and int(self.ro["revision"]) not in (stable, target):
                    self.ro.setdefault("scaleDown", {})[str(self.ro["revision"])] = self.now_s  # superseded canary: at once
                self.ro.update({"revision": target, "step": 0, "stepStartedAt": self.now_s, "paused": False})
                self.ro.pop("skip", None)
                self.ro.pop("aborted", None)  # an earlier revision's abort does not hold back a new one
                self.analysis = {}
                self.event("Normal", "RolloutStarted", f"revision {target} rolls out by {md.strategy} "
                           f"({len(self.steps)} steps) next to stable revision {stable}")
            step_index = int(self.ro.get("step") or 0)
            if "skip" in self.ro:
                skip = int(self.ro.pop("skip"))
                if skip >= step_index:
                    step_index = min(skip + 1, len(self.steps)) if skip < len(self.steps) else len(self.steps)
                    self.ro["stepStartedAt"] = self.now_s
            deadline = float(md.rollout.get("progressDeadlineSeconds") or 600)

            # Background analysis runs from the first step until promotion.
            bg_spec, _ = background_analysis(md)
            if bg_spec is not None and not self.ro.get("paused"):
                run = self.run_analysis("background", bg_spec, stable, target, True)
                if run is not None and run.get("phase") == "Failed":
                    self.abort(target, "AnalysisFailed", f"background analysis failed: {run.get('message')}")
                elif run is not None and run.get("phase") == "Inconclusive":
                    self.pause_reason = f"background analysis inconclusive: {run.get('message')}"

            for _ in range(len(self.steps) + 1):
                if "aborted" in self.ro or self.pause_reason or self.ro.get("paused"):
                    break
                if step_index >= len(self.steps):
                    break
                s = self.steps[step_index]
                started = _ts(self.ro.get("stepStartedAt") or self.now_s)
                done = False
                if s.kind in ("weight", "mirror", "match", "preview"):
                    want = self.traffic_for(stable, target, step_index, True)
                    need = self.canary_replicas_for(want, s)
                    if _complete(self.dep(target), need):
                        routes = self.router.route_objects(md, want)
                        done = self.routes_in_force(routes) and self._replica_router_settled(want, stable, target)
                    if not done and self.now - started > deadline:
                        self.abort(target, "ProgressDeadlineExceeded",
                                   f"step {step_index} ({s.label}) not done within progressDeadlineSeconds={int(deadline)}")
                        break
                    if not done:
                        self.plan.wake(min(deadline - (self.now - started) + 0.1, 5.0))
                elif s.kind == "pause":
                    if s.duration is None:
                        self.pause_reason = f"step {step_index} ({s.label}): waiting for `kubectl modelpilot promote`"
                    elif self.now >= started + s.duration:
                        done = True
                    else:
                        self.plan.wake(started + s.duration - self.now)
                elif s.kind == "analysis":
                    run = self.run_analysis(f"step-{step_index}", s.analysis or {}, stable, target, False)
                    if run is None:
                        self.pause_reason = f"step {step_index} ({s.label}): no Prometheus configured for analysis (prometheusUrl)"
                    elif run.get("phase") == "Successful":
                        done = True
                    elif run.get("phase") == "Failed":
                        self.abort(target, "AnalysisFailed", f"step {step_index} analysis failed: {run.get('message')}")
                        break
                    elif run.get("phase") == "Inconclusive":
                        self.pause_reason = f"step {step_index} analysis inconclusive: {run.get('message')}"
                if not done:
                    break
                self.event("Normal", "StepCompleted", f"revision {target}: step {step_index} ({s.label}) completed")
                step_index += 1
                self.ro["stepStartedAt"] = self.now_s

            self.ro["step"] = step_index
            if "aborted" in self.ro:
                canary = None
                replicas_for[stable] = total
                self.message = f"revision {target} was rolled back: {self.ro['aborted']['message']}"
            elif step_index >= len(self.steps) and not self.pause_reason and not self.ro.get("paused"):
                # Promotion: the canary at full size first, then all traffic at once.
                replicas_for[stable] = total
                replicas_for[target] = total
                if _complete(self.dep(target), total):
                    promoted_now = True
                else:
                    state = self.traffic_for(stable, target, len(self.steps) - 1, False) if self.steps else TrafficState(stable_revision=stable)
                    self.message = f"revision {target}: scaling to {total} replicas before the switch"
            else:
                cur_step = self.steps[min(step_index, len(self.steps) - 1)] if self.steps else None
                want = self.traffic_for(stable, target, step_index, True)
                can_carry = _complete(self.dep(target), self.canary_replicas_for(want, cur_step))
                state = self.traffic_for(stable, target, step_index, can_carry)
                # The replica router's weight is the pods themselves: size for the wanted split.
                rp = self._replicas(want if self.router.kind == "replicas" else state, stable, target, total, cur_step)
                replicas_for[stable] = rp.stable
                replicas_for[target] = rp.canary
                if self.ro.get("paused"):
                    self.pause_reason = "paused by `kubectl modelpilot pause`"
                self.message = f"revision {target}: step {step_index}/{len(self.steps)}" + (
                    f" ({self.steps[step_index].label})" if step_index < len(self.steps) else "")

        if promoted_now:
            old = stable if stable != target else None
            stable, canary = target, None
            state = TrafficState(stable_revision=target)
            replicas_for[target] = total
            # direct replaces like a Deployment does; the progressive strategies keep the old revision
            # up a little for an instant switch-back (Argo's scaleDownDelaySeconds).
            delay = 0 if md.strategy == "direct" else int(
                (md.rollout.get("blueGreen") or {}).get("scaleDownDelaySeconds", DEFAULT_SCALE_DOWN_SECONDS))
            if old is not None:
                self.ro.setdefault("scaleDown", {})[str(old)] = _rfc(self.now + delay)
                replicas_for[old] = total
                self.event("Normal", "RolloutPromoted", f"revision {target} is stable and takes all traffic; revision {old} scales down in {delay}s")
            for k in ("revision", "step", "stepStartedAt", "skip", "aborted"):
                self.ro.pop(k, None)
            if pinned and target != spec_rev:
                for r in history:
                    if int(r["revision"]) == spec_rev:
                        r["outcome"] = "RolledBack"
            self.analysis = {}

        # --- aborted rollouts and earlier revisions: scale down when due ---
        due: dict[str, str] = dict(self.ro.get("scaleDown") or {})
        for rev_s, at in list(due.items()):
            rev = int(rev_s)
            if rev in (stable, canary) and rev in replicas_for:
                due.pop(rev_s)  # it serves again (undo, retry)
                continue
            if self.now >= _ts(at):
                replicas_for[rev] = 0
                if int(((self.dep(rev) or {}).get("spec") or {}).get("replicas") or 0) == 0:
                    due.pop(rev_s)
            else:
                replicas_for.setdefault(rev, int(((self.dep(rev) or {}).get("spec") or {}).get("replicas") or 0))
                self.plan.wake(_ts(at) - self.now)
        if due:
            self.ro["scaleDown"] = due
        else:
            self.ro.pop("scaleDown", None)
        for rev in obs.deployments:
            replicas_for.setdefault(rev, 0)

        # --- objects ---
        # The spec's revision is rendered and applied; every other revision is only scaled.
        if spec_rev in replicas_for or spec_rev == target:
            want = replicas_for.get(spec_rev, 0)
            objs = build_revision_objects(md, spec_rev, self.config, None if md.autoscaling and want else want, export=self.export,
                                          mount_pvc_sources=self.config.mount_pvc_sources)
            self.plan.apply.extend(objs)
            self.plan.apply.append(build_revision_service(md, spec_rev))
            if spec_rev in obs.disruption_budgets and not any(o["kind"] == "PodDisruptionBudget" for o in objs):
                self.plan.delete.append(("PodDisruptionBudget", md.namespace, c.revision_name(md.name, spec_rev)))
        for rev, n in sorted(replicas_for.items()):
            dep = self.dep(rev)
            if rev == spec_rev or dep is None:
                continue
            if md.autoscaling and n > 0:
                continue  # the revision's HPA owns its size
            if int((dep.get("spec") or {}).get("replicas") or 0) != n:
                self.plan.scale.append((md.namespace, c.revision_name(md.name, rev), n))
        routes = self.router.route_objects(md, state)
        self.plan.apply.extend(routes)
        wanted = {(o["kind"], o["metadata"]["name"]) for o in routes}
        for (kind, name) in obs.routes:
            if (kind, name) not in wanted:
                self.plan.delete.append((kind, md.namespace, name))
        policy = build_network_policy(md, self.config)
        if policy is not None:
            self.plan.apply.append(policy)
        elif obs.network_policy:
            self.plan.delete.append(("NetworkPolicy", md.namespace, md.name))
        for rev in obs.autoscalers:
            if not md.autoscaling or replicas_for.get(rev, 0) == 0:
                self.plan.delete.append(("HorizontalPodAutoscaler", md.namespace, c.revision_name(md.name, rev)))

        # --- history ---
        for r in history:
            rev = int(r["revision"])
            if rev == stable:
                r["outcome"] = "Stable"
            elif rev == canary:
                r["outcome"] = "Progressing"
            elif (self.ro.get("aborted") or {}).get("revision") == rev:
                r["outcome"] = "Aborted"
            elif r.get("outcome") in ("Stable", "Progressing"):
                r["outcome"] = "Superseded"
        keep = sorted(history, key=lambda r: int(r["revision"]))
        protected = {stable, canary, target, spec_rev}
        excess = [r for r in keep if int(r["revision"]) not in protected][: max(0, len(keep) - len(protected & {int(x["revision"]) for x in keep}) - md.revision_history_limit)]
        for r in excess:
            rev = int(r["revision"])
            if rev in obs.deployments:
                for kind, name in (("Deployment", c.revision_name(md.name, rev)), ("ConfigMap", c.config_map_name(md.name, rev)),
                                   ("Service", c.revision_name(md.name, rev)), ("PodDisruptionBudget", c.revision_name(md.name, rev))):
                    self.plan.delete.append((kind, md.namespace, name))
        history = [r for r in keep if r not in excess]

        # --- status ---
        stable_dep = self.dep(stable)
        ready = _ready(stable_dep)
        desired_stable = replicas_for.get(stable or -1, total)
        workload_ok = stable is not None and _complete(stable_dep, min(desired_stable, total))
        if stable is None:
            conds = set_condition(conds, c.COND_WORKLOAD_READY, False, c.REASON_PODS_NOT_READY,
                                  c.MSG_PODS_NOT_READY.format(ready=_ready(self.dep(target)), desired=total, revision=target), self.gen, self.now_s)
        elif total == 0 and workload_ok:
            conds = set_condition(conds, c.COND_WORKLOAD_READY, True, c.REASON_SCALED_TO_ZERO, "spec.replicas is 0", self.gen, self.now_s)
        elif workload_ok:
            conds = set_condition(conds, c.COND_WORKLOAD_READY, True, c.REASON_PODS_READY,
                                  c.MSG_PODS_READY.format(ready=ready, desired=desired_stable, revision=stable), self.gen, self.now_s)
        else:
            conds = set_condition(conds, c.COND_WORKLOAD_READY, False, c.REASON_PODS_NOT_READY,
                                  c.MSG_PODS_NOT_READY.format(ready=ready, desired=desired_stable, revision=stable), self.gen, self.now_s)
        # Status is written only after every apply of this reconcile succeeded, so the routes it
        # applies are in force by the time anyone reads it.
        conds = set_condition(conds, c.COND_ROUTING_READY, True, c.REASON_ROUTED,
                              f"{self.router.kind} routes {state.stable_weight}% to revision {state.stable_revision}"
                              + (f" and {state.canary_weight}% to revision {state.canary_revision}" if state.canary_revision else ""),
                              self.gen, self.now_s)
        all_ready = all(is_true(conds, t) for t in (c.COND_SPEC_VALID, c.COND_SCHEDULABLE, c.COND_WORKLOAD_READY, c.COND_ROUTING_READY))
        aborted = "aborted" in self.ro
        if aborted:
            conds = set_condition(conds, c.COND_READY, False, "RolloutAborted", self.message, self.gen, self.now_s)
        else:
            conds = set_condition(conds, c.COND_READY, all_ready, c.REASON_ALL_READY if all_ready else c.REASON_NOT_READY,
                                  f"revision {stable} is serving" if all_ready else f"revision {target} is rolling out", self.gen, self.now_s)

        rolling = canary is not None or (stable != target)
        if aborted:
            phase = "Degraded"
        elif self.pause_reason or self.ro.get("paused"):
            phase = "Paused"
        elif rolling or not all_ready:
            phase = "Progressing"
        else:
            phase = "Ready"
        if self.pause_reason and self.pause_reason != status.get("pauseReason"):
            self.event("Normal", "RolloutPaused", self.pause_reason)

        ready_plan = ReplicaPlan(stable=_ready(stable_dep), canary=_ready(self.dep(canary)))
        # A gateway or mesh carries exactly the split this reconcile applied; the replica router
        # carries what the ready pods make of it, which can differ from the step's weight.
        weights = {"stable": state.stable_weight, "canary": state.canary_weight, "mirror": state.mirror_percent, "achieved": True}
        if self.router.kind == "replicas" and state.canary_revision is not None:
            achieved = self.router.achieved(md, state, ready_plan, [obs.routes[k] for k in wanted if k in obs.routes])
            if achieved is not None:
                weights = {"stable": achieved.stable_weight, "canary": achieved.canary_weight, "mirror": achieved.mirror_percent,
                           "achieved": bool(achieved.exact)}
            else:
                weights["achieved"] = False
        self.ro["desiredWeight"] = state.canary_weight

        status.update({
            "phase": phase,
            "observedGeneration": self.gen,
            "conditions": conds,
            "revisions": history,
            "stableRevision": stable,
            "canaryRevision": canary,
            "currentStep": step_index if canary is not None and step_index is not None else None,
            "weights": weights,
            "endpoint": endpoint(md),
            "replicas": int(((stable_dep or {}).get("status") or {}).get("replicas") or 0),
            "readyReplicas": ready,
            "selector": f"{c.LABEL_DEPLOYMENT}={md.name},{c.LABEL_REVISION}={stable or target}",
            "pauseReason": self.pause_reason or ("paused by `kubectl modelpilot pause`" if self.ro.get("paused") else None),
            "message": self.message or None,
            "analysis": self.analysis or None,
            "rollout": self.ro or None,
        })
        self.plan.status = {k: v for k, v in status.items() if v is not None}
        self.plan.events += _events_for(old_conds, conds)
        return self.plan

    def _replicas(self, state: TrafficState, stable: int, canary: int, total: int, step: Step | None) -> ReplicaPlan:
        if self.router.kind == "replicas" and not state.preview:
            return self.router.replicas(self.md, state, total)
        return ReplicaPlan(stable=total, canary=self.canary_replicas_for(state, step))

    def _replica_router_settled(self, want: TrafficState, stable: int, canary: int) -> bool:
        if self.router.kind != "replicas" or want.preview:
            return True
        rp = self.router.replicas(self.md, want, self.total())
        sdep = self.dep(stable)
        return int(((sdep or {}).get("spec") or {}).get("replicas") or 0) == rp.stable and _ready(sdep) >= rp.stable


def resolve_export(md: ModelDeployment, body: Mapping[str, Any] | None) -> tuple[ExportArtifact | None, str | None, str | None]:
    """(artifact, its sha256 digest, why it cannot be used yet) for an exportRef model."""
    if not md.model.export_name:
        return None, None, None
    ref = f"ModelExport {md.model.export_name}"
    if body is None:
        return None, None, f"{ref} not found in namespace {md.namespace} (spec.model.exportRef.name)"
    st = body.get("status") or {}
    arts = st.get("artifacts") or []
    want = md.model.export_target
    art = next((a for a in arts if a.get("name") == want), None) if want else (arts[0] if arts else None)
    if art is None:
        if st.get("phase") == "Failed":
            return None, None, f"{ref} failed: {st.get('message', '')}"
        if want and arts:
            return None, None, (f"{ref} has no target {want!r} (spec.model.exportRef.target); "
                                f"it has: {', '.join(a.get('name', '') for a in arts)}")
        return None, None, f"{ref} has no artifact yet (phase {st.get('phase', 'Pending')})"
    if not st.get("manifestUri"):
        return None, None, f"{ref} reports no manifestUri"
    return ExportArtifact(format=art.get("format", ""), manifest_uri=st["manifestUri"]), f"sha256:{art.get('sha256', '')}", None


def plan_model_deployment(body: Mapping[str, Any], config: OperatorConfig, observed: Observed) -> Plan:
    status: dict[str, Any] = dict(body.get("status") or {})
    try:
        md = parse_model_deployment(body)
        check_service_ports(md)
        scheduling_for(md.placement, config)
        router = get_router(md.traffic.get("router") or "replicas")
        export, _, _ = resolve_export(md, observed.export)
        if export is not None:
            check_runtime_format(md.runtime.kind, export.format, "spec.model.exportRef.target")
        err = router.check(md, config.route_policy)
        if err is not None:
            raise err
        steps = compile_steps(md)
        for field_path, block in analysis_blocks(md):
            problems = validate_analysis(block)
            if problems:
                # validate() names fields relative to the block ("metrics[err].query: ..."); prefix the path.
                first = problems[0][len("analysis."):] if problems[0].startswith("analysis.") else problems[0]
                raise SpecError(f"{field_path}.{first.split(':', 1)[0]}", first.split(":", 1)[1].strip() if ":" in first else first)
    except SpecError as err:
        return _invalid(body, status, err, observed.now)
    return _Rollout(body, md, config, observed, steps).run()
