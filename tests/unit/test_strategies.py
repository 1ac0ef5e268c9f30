"""Canary, blue-green, shadow and A/B through the planner: steps, pauses, analysis, aborts,
manual actions and undo. Every test drives the pure planner via Sim (tests/unit/sim.py)."""

from __future__ import annotations

import copy

import pytest

from modelpilot.conditions import get_condition
from modelpilot.rollout import completed_a_step

from .helpers import md
from .sim import Sim

pytestmark = pytest.mark.unit
GATEWAY = {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}}
STEPS = [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 80}]


def rollout(strategy_block: dict, traffic: dict | None = None, replicas: int = 4, **extra) -> dict:
    body = md(replicas=replicas, rollout=strategy_block, **({"traffic": traffic} if traffic else {}), **extra)
    return body


def start(body: dict, healthy: bool = True, analyze=None) -> Sim:
    s = Sim(body, analyze=analyze)
    s.settle()
    assert s.status["stableRevision"] == 1
    s.healthy = healthy
    s.body["spec"]["model"] = {"uri": "pvc://models/resnet-v2/model.onnx", "format": "onnx"}
    s.body["metadata"]["generation"] += 1
    return s


def route(s: Sim) -> dict:
    return s.routes[("HTTPRoute", "resnet")]


def backend_weights(s: Sim) -> dict[str, int]:
    rules = route(s)["spec"]["rules"]
    return {b["name"]: b.get("weight", 1) for b in rules[-1]["backendRefs"]}


def cond(s: Sim, t: str) -> dict:
    return get_condition(s.status["conditions"], t)


# ---------- canary ----------

def test_canary_walks_its_steps_and_promotes_on_gateway_api():
    s = start(rollout({"strategy": "canary", "canary": {"steps": STEPS}}, GATEWAY))
    s.settle()
    assert s.status["canaryRevision"] == 2 and s.status["currentStep"] == 1  # setWeight 10 done, in the 1m pause
    assert backend_weights(s) == {"resnet-r1": 90, "resnet-r2": 10}
    assert s.deps[2]["spec"]["replicas"] == 1 and s.deps[1]["spec"]["replicas"] == 4
    assert s.plans[-1].requeue_after and 59 <= s.plans[-1].requeue_after <= 60
    s.advance(61)
    s.settle()
    assert s.status["currentStep"] == 3 and s.status["phase"] == "Paused"
    assert "kubectl modelpilot promote" in s.status["pauseReason"]
    assert backend_weights(s) == {"resnet-r1": 50, "resnet-r2": 50} and s.deps[2]["spec"]["replicas"] == 2
    s.control("promote")
    s.settle()
    assert s.status["stableRevision"] == 2 and "canaryRevision" not in s.status and s.status["phase"] == "Ready"
    assert backend_weights(s) == {"resnet-r2": 100} or backend_weights(s) == {"resnet-r1": 0, "resnet-r2": 100}
    assert [w for w, _ in s.weights] == [0, 10, 50, 80, 0], "every weight once, in order, then all to the new stable"
    reasons = [e[1] for e in s.events]
    assert reasons.count("StepCompleted") == 4 and reasons.count("Promoted") == 1 and "RolloutPromoted" in reasons


def test_completed_a_step_marks_the_plans_a_reconcile_may_chain():
    """Back-to-back setWeights: the plans that move the rollout to a later step chain (the handler
    applies them and plans again at once); the rollout's start, a plan that waits and an abort do not."""
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": w} for w in (10, 20, 30)] + [{"pause": {}}]}}, GATEWAY))
    chained = []
    for _ in range(12):
        before = copy.deepcopy(s.status)
        chained.append(completed_a_step(before, s.reconcile()))
    assert not chained[0], "a new rollout (step 0 of a new revision) is not a completed step"
    assert chained.count(True) == 3 and s.status["currentStep"] == 3 and s.status["phase"] == "Paused"
    assert not chained[-1], "the pause waits"
    before = copy.deepcopy(s.status)
    s.control("abort")
    assert not completed_a_step(before, s.reconcile())


def test_weight_waits_for_canary_pods_then_moves():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 25}]}}, GATEWAY), healthy=False)
    s.settle()
    assert s.status["currentStep"] == 0 and backend_weights(s) == {"resnet-r1": 100, "resnet-r2": 0}, "no traffic to unready pods"
    s.healthy = True
    s.settle()
    assert s.status["stableRevision"] == 2


def test_progress_deadline_aborts_and_returns_all_traffic():
    s = start(rollout({"strategy": "canary", "progressDeadlineSeconds": 60, "canary": {"steps": [{"setWeight": 25}]}}, GATEWAY), healthy=False)
    s.settle()
    s.advance(61)
    s.settle()
    assert s.status["phase"] == "Degraded" and cond(s, "Ready")["reason"] == "RolloutAborted"
    assert "progressDeadlineSeconds=60" in s.status["message"]
    assert backend_weights(s) == {"resnet-r1": 100} or backend_weights(s).get("resnet-r2", 0) == 0
    assert s.status["revisions"][-1]["outcome"] == "Aborted" and s.status["stableRevision"] == 1
    s.advance(31)
    s.settle()
    assert s.deps[2]["spec"]["replicas"] == 0, "the aborted canary scales down after the delay"


def test_canary_on_replica_router_reports_the_achieved_weight():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}, replicas=4))
    s.settle()
    st = s.status
    assert (s.deps[1]["spec"]["replicas"], s.deps[2]["spec"]["replicas"]) == (3, 1)
    assert st["weights"]["canary"] == 25 and st["weights"]["achieved"] is False, "10% asked, 1 of 4 pods is 25%"
    assert ("Service", "resnet") in s.routes and ("HTTPRoute", "resnet") not in s.routes


def test_analysis_step_success_failure_and_inconclusive():
    def analyze_with(phase):
        def analyze(spec, run, ctx):
            assert ctx["canaryRevision"] == 2 and ctx["stableRevision"] == 1
            return {"phase": phase, "taken": 1, "message": f"metric {phase}",
                    "latest": [{"seq": 1, "metric": "err", "verdict": phase, "value": 0.5, "query": "q", "message": "m"}]}
        return analyze

    steps = {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"analysis": {"metrics": [{"name": "err", "query": "q", "successCondition": "result < 1"}]}}]}}
    ok = start(rollout(steps, GATEWAY), analyze=analyze_with("Successful"))
    ok.settle()
    assert ok.status["stableRevision"] == 2
    assert any(e[1] == "AnalysisMeasurement" and "query: q" in e[2] for e in ok.events), "each measurement is an Event with its query"

    bad = start(rollout(steps, GATEWAY), analyze=analyze_with("Failed"))
    bad.settle()
    assert bad.status["phase"] == "Degraded" and "analysis failed" in bad.status["message"]
    assert bad.status["weights"]["canary"] == 0

    unsure = start(rollout(steps, GATEWAY), analyze=analyze_with("Inconclusive"))
    unsure.settle()
    assert unsure.status["phase"] == "Paused" and "inconclusive" in unsure.status["pauseReason"]
    assert unsure.status["canaryRevision"] == 2, "inconclusive never passes"
    unsure.control("promote")
    unsure.settle()
    assert unsure.status["stableRevision"] == 2, "a human can promote past it"


def test_background_analysis_failure_aborts_mid_pause():
    calls = []

    def analyze(spec, run, ctx):
        calls.append(ctx["background"])
        return {"phase": "Failed" if len(calls) > 2 else "Running", "taken": 0, "message": "latency up"}

    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]},
                       "analysis": {"metrics": [{"name": "lat", "query": "q", "successCondition": "result < 1"}]}}, GATEWAY), analyze=analyze)
    s.settle()
    assert s.status["phase"] == "Degraded" and "background analysis failed" in s.status["message"]
    assert all(calls)


def test_manual_pause_resume_abort_and_retry():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}]}}, GATEWAY))
    s.settle()
    s.control("pause")
    s.settle()
    assert s.status["phase"] == "Paused"
    s.advance(120)
    s.settle()
    assert s.status["currentStep"] == 1, "a paused rollout does not move"
    s.control("resume")
    s.settle()
    assert s.status["stableRevision"] == 2

    s2 = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}, GATEWAY))
    s2.settle()
    s2.control("abort")
    s2.settle()
    assert s2.status["phase"] == "Degraded" and s2.status["weights"]["canary"] == 0
    s2.control("resume")  # retry from step 0
    s2.settle()
    assert s2.status["phase"] == "Paused" and s2.status["currentStep"] == 1 and s2.status["weights"]["canary"] == 10


def test_promote_full_skips_every_step():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}, GATEWAY))
    s.settle()
    s.control("promoteFull")
    s.settle()
    assert s.status["stableRevision"] == 2
    assert 50 not in [w for w, _ in s.weights], "skipped steps apply no weight"


def test_a_control_is_applied_once():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 20}, {"pause": {}}]}}, GATEWAY))
    s.settle()
    s.control("promote")
    ctl = copy.deepcopy(s.status["control"])
    s.settle()
    assert s.status["currentStep"] == 3
    s.body["status"]["control"] = ctl  # a stale copy of the same request comes back
    s.settle()
    assert s.status["currentStep"] == 3


def test_new_spec_mid_canary_supersedes_the_canary():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}, GATEWAY))
    s.settle()
    s.body["spec"]["model"] = {"uri": "pvc://models/resnet-v3/model.onnx", "format": "onnx"}
    s.body["metadata"]["generation"] += 1
    s.settle()
    assert s.status["canaryRevision"] == 3 and s.deps[2]["spec"]["replicas"] == 0
    assert s.status["currentStep"] == 1


def test_undo_to_a_revision_without_touching_spec():
    s = start(rollout({"strategy": "direct"}))
    s.settle()
    assert s.status["stableRevision"] == 2 and s.deps[1]["spec"]["replicas"] == 0
    spec_before = copy.deepcopy(s.body["spec"])
    s.control("undo", toRevision=1)
    s.settle()
    assert s.status["stableRevision"] == 1 and s.deps[1]["spec"]["replicas"] == 4
    assert s.body["spec"] == spec_before
    assert [(r["revision"], r["outcome"]) for r in s.status["revisions"]] == [(1, "Stable"), (2, "RolledBack")]
    # The next spec change (a git commit) wins over the pin.
    s.body["spec"]["replicas"] = 3
    s.body["metadata"]["generation"] += 1
    s.settle()
    assert s.status["stableRevision"] == 2


def test_undo_to_an_unknown_revision_is_refused_with_an_event():
    s = start(rollout({"strategy": "direct"}))
    s.settle()
    s.control("undo", toRevision=7)
    s.settle()
    assert any(e[1] == "UndoRejected" and "revision 7" in e[2] for e in s.events)


# ---------- blue-green ----------

def test_blue_green_previews_then_switches_atomically_and_scales_down_later():
    s = start(rollout({"strategy": "blueGreen", "blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": 60}}))
    s.settle()
    assert s.status["phase"] == "Paused" and s.deps[2]["spec"]["replicas"] == 4, "the preview runs at full size"
    assert s.routes[("Service", "resnet")]["spec"]["selector"]["modelpilot.io/revision"] == "1"
    assert s.routes[("Service", "resnet-preview")]["spec"]["selector"]["modelpilot.io/revision"] == "2"
    s.control("promote")
    s.settle()
    assert s.routes[("Service", "resnet")]["spec"]["selector"]["modelpilot.io/revision"] == "2", "one atomic switch"
    assert ("Service", "resnet-preview") not in s.routes
    assert s.deps[1]["spec"]["replicas"] == 4
    s.advance(61)
    s.settle()
    assert s.deps[1]["spec"]["replicas"] == 0


def test_blue_green_failed_pre_promotion_analysis_never_switches():
    def analyze(spec, run, ctx):
        return {"phase": "Failed", "taken": 1, "message": "p99 too high"}

    s = start(rollout({"strategy": "blueGreen", "blueGreen": {"prePromotionAnalysis": {"metrics": [{"name": "p99", "query": "q", "successCondition": "result < 1"}]}}}),
              analyze=analyze)
    s.settle()
    assert s.status["phase"] == "Degraded"
    assert s.routes[("Service", "resnet")]["spec"]["selector"]["modelpilot.io/revision"] == "1"


def test_blue_green_switch_back_with_undo():
    s = start(rollout({"strategy": "blueGreen", "blueGreen": {"scaleDownDelaySeconds": 300}}))
    s.settle()
    assert s.status["stableRevision"] == 2
    s.control("undo")
    s.settle()
    assert s.routes[("Service", "resnet")]["spec"]["selector"]["modelpilot.io/revision"] == "1", "instant switch-back: 1 is still up"
    assert s.status["stableRevision"] == 1


# ---------- shadow and A/B ----------

def test_shadow_mirrors_and_serves_nothing_then_promotes_after_duration():
    s = start(rollout({"strategy": "shadow", "shadow": {"percent": 20, "duration": "5m"}}, GATEWAY))
    s.settle()
    rules = route(s)["spec"]["rules"]
    mirror = [f for r in rules for f in r.get("filters", []) if f["type"] == "RequestMirror"]
    assert mirror and mirror[0]["requestMirror"]["percent"] == 20 and mirror[0]["requestMirror"]["backendRef"]["name"] == "resnet-r2"
    assert s.status["weights"]["canary"] == 0 and s.status["weights"]["mirror"] == 20
    s.advance(301)
    s.settle()
    assert s.status["stableRevision"] == 2


def test_shadow_with_compare_mirrors_to_the_comparator_which_calls_both_revisions_then_goes():
    s = start(rollout({"strategy": "shadow", "shadow": {"percent": 20, "duration": "5m", "compare": True}}, GATEWAY))
    s.settle()
    mirror = [f for r in route(s)["spec"]["rules"] for f in r.get("filters", []) if f["type"] == "RequestMirror"]
    assert [m["requestMirror"] for m in mirror] == [{"backendRef": {"name": "resnet-comparator", "port": 80}, "percent": 20}]
    assert set(s.comparator) == {"Deployment", "Service"}
    args = s.comparator["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:4] == ["--stable-url", "http://resnet-r1.ml.svc:80", "--shadow-url", "http://resnet-r2.ml.svc:80"]
    assert s.status["weights"] == {"stable": 100, "canary": 0, "mirror": 20, "achieved": True}
    s.advance(301)
    s.settle()
    assert s.status["stableRevision"] == 2 and s.comparator == {}
    assert not [f for r in route(s)["spec"]["rules"] for f in r.get("filters", [])]


def gateway_of_class(features: list[str] | None) -> list[dict]:
    """The Gateway `gw` (GATEWAY's parentRef) and its GatewayClass, which declares `features`."""
    status = {} if features is None else {"supportedFeatures": [{"name": f} for f in features]}
    return [{"kind": "Gateway", "metadata": {"name": "gw", "namespace": "ml"}, "spec": {"gatewayClassName": "edge"}},
            {"kind": "GatewayClass", "metadata": {"name": "edge"}, "status": status}]


def test_shadow_through_a_gateway_that_cannot_mirror_applies_nothing_and_says_why():
    """Traefik lists its features without HTTPRouteRequestMirror and answers 500 to every request of
    a rule with the filter: the rollout is held before anything is applied, stable keeps serving."""
    s = start(rollout({"strategy": "shadow", "shadow": {"percent": 20, "duration": "5m"}}, GATEWAY))
    s.carriers = gateway_of_class(["Gateway", "HTTPRoute", "HTTPRouteHostRewrite"])
    before = copy.deepcopy(s.routes)
    s.settle()
    assert s.routes == before and 2 not in s.deps
    ready = cond(s, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "MirrorUnsupported"
    assert "GatewayClass edge" in ready["message"] and "HTTPRouteRequestMirror" in ready["message"] and "spec.traffic.router" in ready["message"]
    assert s.status["stableRevision"] == 1
    s.carriers = gateway_of_class(["Gateway", "HTTPRoute", "HTTPRouteRequestMirror"])  # the gateway upgraded
    s.settle()
    assert s.status["weights"]["mirror"] == 20 and cond(s, "Ready")["reason"] != "MirrorUnsupported"


@pytest.mark.parametrize("features", [None, []], ids=["no-status", "no-features-listed"])
def test_a_gateway_class_that_says_nothing_does_not_hold_the_shadow(features):
    s = start(rollout({"strategy": "shadow", "shadow": {"percent": 20, "duration": "5m"}}, GATEWAY))
    s.carriers = gateway_of_class(features)
    s.settle()
    assert s.status["weights"]["mirror"] == 20


def test_a_canary_through_a_gateway_that_cannot_mirror_rolls_out():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 50}]}}, GATEWAY))
    s.carriers = gateway_of_class(["Gateway", "HTTPRoute"])
    s.settle()
    assert s.status["stableRevision"] == 2


def test_ab_test_routes_matching_requests_then_promotes():
    ab = {"strategy": "abTest", "abTest": {"match": {"headers": [{"name": "x-user-group", "value": "beta"}]}, "duration": "10m"}}
    s = start(rollout(ab, GATEWAY))
    s.settle()
    rules = route(s)["spec"]["rules"]
    matched = [r for r in rules if any(m.get("headers") for m in r.get("matches", []))]
    assert matched and matched[0]["backendRefs"][0]["name"] == "resnet-r2"
    assert matched[0]["matches"][0]["headers"][0] == {"type": "Exact", "name": "x-user-group", "value": "beta"}
    s.advance(601)
    s.settle()
    assert s.status["stableRevision"] == 2


def test_state_lives_in_status_so_any_reconcile_resumes():
    """A restart is a reconcile with no memory: replaying from status alone repeats nothing."""
    s = start(rollout({"strategy": "canary", "canary": {"steps": STEPS}}, GATEWAY))
    s.settle()
    before = copy.deepcopy(s.status)
    events = len(s.events)
    for _ in range(3):
        s.reconcile()
    assert s.status == before and len(s.events) == events


def test_a_new_revision_after_an_abort_rolls_out():
    s = start(rollout({"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, GATEWAY))
    s.settle()
    s.control("abort")
    s.settle()
    assert s.status["phase"] == "Degraded"
    s.body["spec"]["model"] = {"uri": "pvc://models/resnet-v3/model.onnx", "format": "onnx"}
    s.body["metadata"]["generation"] += 1
    s.settle()
    assert s.status["phase"] == "Paused" and s.status["canaryRevision"] == 3 and s.status["weights"]["canary"] == 50
    outcomes = {r["revision"]: r["outcome"] for r in s.status["revisions"]}
    assert outcomes == {1: "Stable", 2: "Aborted", 3: "Progressing"}


# ---------- exportRef: the export's artifact decides the revision ----------

def export_body(sha: str, phase: str = "Succeeded", fmt: str = "onnx") -> dict:
    return {"metadata": {"name": "resnet-export"}, "status": {"phase": phase, "manifestUri": "pvc://art/resnet/manifest.json",
            "artifacts": [{"name": "onnx", "format": fmt, "uri": "pvc://art/resnet/onnx/model.onnx", "sha256": sha}] if phase == "Succeeded" else []}}


def exported(**kw) -> dict:
    return md(model={"exportRef": {"name": "resnet-export", "target": "onnx"}}, **kw)


def test_export_ref_waits_for_the_artifact_then_serves_it():
    s = Sim(exported())
    s.export = None
    s.reconcile()
    assert s.status["phase"] == "Pending" and "not found" in s.status["message"] and s.deps == {}
    s.export = export_body("a" * 64, phase="Running")
    s.reconcile()
    assert "no artifact yet" in s.status["message"]
    s.export = export_body("a" * 64)
    s.settle()
    assert s.status["phase"] == "Ready" and s.status["revisions"][0]["modelDigest"] == "sha256:" + "a" * 64
    assert get_condition(s.status["conditions"], "ExportReady")["status"] == "True"


def test_a_new_export_artifact_rolls_out_a_new_revision():
    s = Sim(exported(rollout={"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}, traffic=GATEWAY))
    s.export = export_body("a" * 64)
    s.settle()
    s.export = export_body("b" * 64)  # the ModelExport was re-run: same spec, new artifact
    s.settle()
    assert s.status["canaryRevision"] == 2 and s.status["weights"]["canary"] == 50


def test_export_ref_to_a_format_the_runtime_cannot_serve_is_invalid():
    s = Sim(exported(runtime={"kind": "tfserving"}))
    s.export = export_body("a" * 64)
    s.reconcile()
    assert s.status["phase"] == "Failed" and "spec.model.exportRef.target" in s.status["message"]


def test_an_analysis_typo_is_reported_before_the_rollout_starts():
    steps = {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"analysis": {"metrics": [
        {"name": "err", "query": 'rate(errors{revision="{{canaryRevison}}"}[1m])', "successCondition": "result < 1"}]}}]}}
    p = Sim(rollout(steps, GATEWAY)).reconcile()
    msg = get_condition(p.status["conditions"], "SpecValid")["message"]
    assert p.status["phase"] == "Failed" and p.apply == []
    assert msg.startswith("spec.rollout.canary.steps[1].analysis.metrics[err].query") and "canaryRevison" in msg


def test_an_analysis_condition_that_would_freeze_the_operator_is_refused_before_the_rollout():
    """Issue 11, scenario 1: `4000000**4000000` passes simpleeval's power cap and holds the GIL ~26 s."""
    import time
    steps = {"strategy": "canary", "canary": {"steps": [{"setWeight": 10}, {"analysis": {"metrics": [
        {"name": "err", "query": "errors", "successCondition": "4000000**4000000 > result"}]}}]}}
    t0 = time.monotonic()
    p = Sim(rollout(steps, GATEWAY)).reconcile()
    assert time.monotonic() - t0 < 1.0
    msg = get_condition(p.status["conditions"], "SpecValid")["message"]
    assert p.status["phase"] == "Failed" and p.apply == []
    assert msg.startswith("spec.rollout.canary.steps[1].analysis.metrics[err].successCondition") and "too large" in msg


def test_an_analysis_over_thousands_of_series_keeps_status_small_and_the_abort_recordable():
    # A query that returns 5,000 series, all outside the range: before, every value went into the
    # measurement, the run's message, the abort and the Ready condition (over 32 KiB: rejected).
    from modelpilot.analysis import QueryResult, step
    from modelpilot.conditions import MAX_MESSAGE, MAX_STATUS_BYTES
    import json

    huge = QueryResult(tuple(float(i) for i in range(5000)), "vector", 5000)
    analyze = lambda spec, run, ctx: step(dict(spec), run, 1_790_000_000.0, lambda q: huge, dict(ctx))  # noqa: E731
    steps = {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"analysis": {"metrics": [
        {"name": "err", "query": "errors_by_pod", "thresholdRange": {"max": 1}}]}}]}}
    s = start(rollout(steps, GATEWAY), analyze=analyze)
    s.settle()
    assert s.status["phase"] == "Degraded" and s.status["rollout"]["aborted"]["revision"] == 2
    assert len(json.dumps(s.status)) < MAX_STATUS_BYTES
    assert all(len(c["message"]) <= MAX_MESSAGE for c in s.status["conditions"])
    assert all(len(e[2]) <= MAX_MESSAGE for e in s.events)
    assert "4998 values" in s.status["rollout"]["aborted"]["message"], "the message still says how many values failed"
