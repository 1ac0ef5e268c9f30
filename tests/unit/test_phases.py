"""Each phase of the planner's walk (rollout/plan.py) on its own: checks, revisions, routes,
decide, sizing, history and status, with a Reconcile built from a body and observations."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelpilot import constants as c
from modelpilot.api.errors import SpecError
from modelpilot.clock import to_epoch
from modelpilot.hashing import object_hash
from modelpilot.rollout import plan_model_deployment
from modelpilot.rollout.checks import check_spec
from modelpilot.rollout.decide import decide_step, traffic_for
from modelpilot.rollout.history import settle_history
from modelpilot.rollout.model import Observed, Reconcile
from modelpilot.rollout.revisions import observe_revisions, observe_routes, unschedulable
from modelpilot.rollout.sizing import apply_scale_downs
from modelpilot.rollout.status import FIRST_STATUS_WAIT_S, derive_status, first_status_wait
from modelpilot.traffic import RouteHealth

from .helpers import CONFIG, NODES, md, ready_deployment

pytestmark = pytest.mark.unit
T0 = "2026-01-01T00:00:00Z"
GATEWAY = {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}}
CANARY = {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"setWeight": 60}]}}


def deployment(replicas: int, ready: int | None = None) -> dict[str, Any]:
    ready = replicas if ready is None else ready
    return {"metadata": {"generation": 1}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": ready, "readyReplicas": ready}}


def reconcile(body: dict[str, Any], deployments: dict[int, Any] | None = None, routes: dict | None = None,
              nodes: list | None = NODES) -> Reconcile:
    obs = Observed(deployments=deployments or {}, nodes=nodes, now=T0, routes=routes or {})
    return Reconcile(body, check_spec(body, CONFIG, obs), CONFIG, obs)


def rolling(stable_status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A body whose revision 1 is stable and whose spec now describes revision 2."""
    body = md(rollout=CANARY, traffic=GATEWAY, **spec)
    first = reconcile(body)
    revs = observe_revisions(first)
    assert revs is not None
    body = copy.deepcopy(body)
    body["status"] = {"stableRevision": 1, "revisions": revs.history, **(stable_status or {})}
    body["spec"]["model"] = {"uri": "pvc://models/resnet-v2/model.onnx", "format": "onnx"}
    return body


# ---------- check ----------

def test_check_computes_everything_once():
    checked = check_spec(md(rollout=CANARY, traffic=GATEWAY), CONFIG, Observed(deployments={}, nodes=NODES, now=T0))
    assert checked.router.kind == "gatewayAPI" and [s.kind for s in checked.steps] == ["weight", "pause", "weight"]
    assert checked.md.rollout.canary_steps[0] == {"setWeight": 20} and checked.export.artifact is None


def test_check_names_the_field():
    with pytest.raises(SpecError, match="spec.traffic.gateway.parentRefs"):
        check_spec(md(traffic={"router": "gatewayAPI"}), CONFIG, Observed(deployments={}, nodes=NODES, now=T0))


# ---------- observe ----------

def test_observe_gives_a_new_spec_the_next_revision():
    revs = observe_revisions(reconcile(rolling()))
    assert revs is not None and (revs.stable, revs.spec_rev, revs.target, revs.pinned) == (1, 2, 2, False)
    assert [r["revision"] for r in revs.history] == [1, 2]


def test_observe_finds_no_node_for_an_impossible_gpu():
    spec = md(placement={"nodePool": "gpu-a100", "gpu": {"count": 1, "product": "NVIDIA-H100"}})
    rc = reconcile(spec)
    revs = observe_revisions(rc)
    assert revs is not None and "cannot be scheduled" in (unschedulable(rc, revs) or "")


def test_observe_routes_reads_the_gateways_verdict():
    refused = {"kind": "HTTPRoute", "metadata": {"name": "resnet"}, "status": {"parents": [{"parentRef": {"name": "gw"}, "conditions": [
        {"type": "Accepted", "status": "False", "reason": "NoMatchingParent", "message": "no listener"}]}]}}
    health = observe_routes(reconcile(md(rollout=CANARY, traffic=GATEWAY), routes={("HTTPRoute", "resnet"): refused}))
    assert (health.ready, health.reason) == (False, "NoMatchingParent") and "no listener" in health.message
    assert observe_routes(reconcile(md(rollout=CANARY, traffic=GATEWAY))).ready


# ---------- decide ----------

def _in_force(rc: Reconcile) -> dict[tuple[str, str], Any]:
    """The routes of step 0 (20 %), as the watch sees them once applied: with their spec hash."""
    out = {}
    for obj in rc.router.route_objects(rc.md, traffic_for(rc, 1, 2, 0, True)):
        live = copy.deepcopy(obj)
        live["metadata"]["annotations"] = {c.ANNOTATION_SPEC_HASH: object_hash(obj)}
        out[(obj["kind"], obj["metadata"]["name"])] = live
    return out


@pytest.mark.parametrize("routing,step", [(RouteHealth(), 1), (RouteHealth(False, "NoMatchingParent", "refused"), 0)])
def test_decide_completes_a_weight_step_only_when_the_route_is_accepted(routing, step):
    deps = {1: deployment(2), 2: deployment(1)}
    rc = reconcile(rolling(), deps)
    rc = reconcile(rolling(), deps, routes=_in_force(rc))
    revs = observe_revisions(rc)
    assert revs is not None
    d = decide_step(rc, revs, routing)
    assert (d.stable, d.canary, d.step_index) == (1, 2, step)
    assert d.replicas_for == {1: 2, 2: 1}, "the router sizes the canary for 20 % of 2 replicas"


def test_decide_sizes_from_the_router_and_weights_follow_the_carried_share():
    rc = reconcile(rolling(), {1: deployment(2)})
    revs = observe_revisions(rc)
    assert revs is not None
    d = decide_step(rc, revs, RouteHealth())
    assert d.state.canary_weight == 0, "no canary pod is ready: the weight waits"
    assert traffic_for(rc, 1, 2, 0, True).canary_weight == 20


def test_decide_promotes_the_first_revision_when_ready():
    rc = reconcile(md(), {1: deployment(2)})
    revs = observe_revisions(rc)
    assert revs is not None
    d = decide_step(rc, revs, RouteHealth())
    assert (d.stable, d.canary, d.state.canary_revision) == (1, None, None)


# ---------- sizing and history ----------

def test_scale_downs_that_are_due_go_to_zero():
    rc = reconcile(rolling({"rollout": {"scaleDown": {"3": "2025-12-31T23:59:00Z"}}}), {1: deployment(2), 3: deployment(2)})
    revs = observe_revisions(rc)
    assert revs is not None
    d = decide_step(rc, revs, RouteHealth())
    apply_scale_downs(rc, d)
    assert d.replicas_for[3] == 0 and "scaleDown" in rc.ro, "kept until the Deployment is at zero"


def test_history_beyond_the_limit_is_deleted_with_every_per_revision_kind():
    body = rolling(revisionHistoryLimit=0)
    body["status"]["revisions"].insert(0, {"revision": 0, "hash": "old", "outcome": "Superseded"})
    rc = reconcile(body, {0: deployment(0), 1: deployment(2)})
    revs = observe_revisions(rc)
    assert revs is not None
    history = settle_history(rc, revs, decide_step(rc, revs, RouteHealth()))
    assert [r["revision"] for r in history] == [1, 2]
    assert {k for k, _, n in rc.plan.delete if n.startswith("resnet-r0")} == {"Deployment", "ConfigMap", "Service", "PodDisruptionBudget"}


# ---------- status ----------

def test_status_says_the_route_is_refused():
    rc = reconcile(rolling(), {1: deployment(2), 2: deployment(1)})
    revs = observe_revisions(rc)
    assert revs is not None
    routing = RouteHealth(False, "NotAllowedByListeners", "HTTPRoute resnet is refused")
    d = decide_step(rc, revs, routing)
    plan = derive_status(rc, revs.target, d, settle_history(rc, revs, d), [], routing)
    routing_cond = next(c for c in plan.status["conditions"] if c["type"] == "RoutingReady")
    assert (routing_cond["status"], routing_cond["reason"]) == ("False", "NotAllowedByListeners")
    assert next(c for c in plan.status["conditions"] if c["type"] == "Ready")["status"] == "False"
    assert plan.status["weights"]["achieved"] is False


# ---------- the first status ----------

def _first_plan(deployments: dict[int, Any] | None = None, **spec: Any):
    return plan_model_deployment(md(**spec), CONFIG, Observed(deployments=deployments or {}, nodes=NODES, now=T0))


def _unobserved(created: str = T0) -> dict[str, Any]:
    dep = ready_deployment(1, 2, ready=0)
    dep["metadata"]["creationTimestamp"] = created
    dep["status"] = {}  # as the apply returns it: the Deployment controller has not acted yet
    return dep


def test_first_status_waits_for_the_deployment_controller():
    t0 = to_epoch(T0)
    plan = _first_plan()
    assert plan.status["phase"] == "Progressing" and not plan.events
    assert first_status_wait({}, plan, {}, t0) == FIRST_STATUS_WAIT_S  # this reconcile creates the Deployment
    assert first_status_wait({}, _first_plan({1: _unobserved()}), {1: _unobserved()}, t0 + 2) == FIRST_STATUS_WAIT_S - 2
    # ... but never longer than that: a slow or absent controller still gets a status written
    assert first_status_wait({}, _first_plan({1: _unobserved()}), {1: _unobserved()}, t0 + FIRST_STATUS_WAIT_S) is None
    # once the controller has observed it, the first status says what it saw: 0 of 2 ready here
    observed = ready_deployment(1, 2, ready=0)
    assert first_status_wait({}, _first_plan({1: observed}), {1: observed}, t0) is None


def test_first_status_holds_nothing_else():
    t0 = to_epoch(T0)
    plan = _first_plan()
    assert first_status_wait({"phase": "Progressing"}, plan, {}, t0) is None  # not the first status
    with_event = _first_plan()
    with_event.events.append(("Warning", c.REASON_UNSCHEDULABLE, "no node"))
    assert first_status_wait({}, with_event, {}, t0) is None  # a problem is reported at once
    invalid = _first_plan(replicas=-1)
    assert invalid.status["phase"] == "Failed" and first_status_wait({}, invalid, {}, t0) is None
    ready = _first_plan({1: ready_deployment(1, 2)})
    assert ready.status["phase"] == "Ready" and first_status_wait({}, ready, {1: ready_deployment(1, 2)}, t0) is None
