"""Every transition of the rollout planner, driven through the Sim stand-in (tests/unit/sim.py)."""

from __future__ import annotations

import copy

import pytest

from modelpilot.conditions import get_condition
from modelpilot.kube import merge_patch
from modelpilot.rollout import Observed, plan_model_deployment

from .helpers import CONFIG, NODES, md
from .sim import Sim

pytestmark = pytest.mark.unit
T0 = "2026-01-01T00:00:00Z"


def cond(status, ctype):
    return get_condition(status["conditions"], ctype)


def v2(body):
    b = copy.deepcopy(body)
    b["spec"]["model"] = {"uri": "pvc://models/resnet-v2/model.onnx", "format": "onnx"}
    b["metadata"]["generation"] += 1
    return b


def kinds(plan):
    return sorted((o["kind"], o["metadata"]["name"]) for o in plan.apply)


# ---------- first deployment, direct strategy ----------

def test_new_deployment_renders_revision_1_and_its_routes():
    p = Sim(md()).reconcile()
    assert kinds(p) == [("ConfigMap", "resnet-r1-model"), ("Deployment", "resnet-r1"), ("PodDisruptionBudget", "resnet-r1"),
                        ("Service", "resnet"), ("Service", "resnet-r1")]
    assert p.status["revisions"][0]["revision"] == 1 and p.status["revisions"][0]["created"] == T0


def test_first_revision_becomes_stable_when_ready():
    s = Sim(md())
    s.settle()
    st = s.status
    assert st["phase"] == "Ready" and st["stableRevision"] == 1 and "canaryRevision" not in st
    assert st["readyReplicas"] == 2 and st["weights"] == {"stable": 100, "canary": 0, "mirror": 0, "achieved": True}
    assert st["revisions"][0]["outcome"] == "Stable"
    assert ("Normal", "AllReady", "revision 1 is serving") in s.events


def test_not_ready_pods_keep_it_progressing():
    s = Sim(md(), healthy=False)
    s.settle()
    assert s.status["phase"] == "Progressing" and cond(s.status, "WorkloadReady")["reason"] == "PodsNotReady"


def test_idle_replan_is_byte_identical():
    """The basis of zero writes on resync: the same observations give the same status."""
    s = Sim(md())
    s.settle()
    before = copy.deepcopy(s.status)
    s.advance(3600)
    p = s.reconcile()
    assert p.status == before and merge_patch(before, p.status) == {} and p.events == [] and p.scale == [] and p.delete == []


def test_direct_spec_change_keeps_old_until_new_ready_then_scales_it_down_later():
    s = Sim(md())
    s.settle()
    s.body = v2(s.body)
    s.healthy = False
    s.settle()
    assert s.status["stableRevision"] == 1 and s.status["canaryRevision"] == 2
    assert s.deps[1]["spec"]["replicas"] == 2, "the stable revision keeps serving"
    s.healthy = True
    s.settle()
    assert s.status["stableRevision"] == 2
    assert s.deps[1]["spec"]["replicas"] == 0, "direct scales the old revision to zero at once; kept for undo"
    assert [(r["revision"], r["outcome"]) for r in s.status["revisions"]] == [(1, "Superseded"), (2, "Stable")]


def test_returning_to_an_earlier_spec_reuses_its_revision_number():
    s = Sim(md())
    s.settle()
    s.body = v2(s.body)
    s.settle()
    s.body["spec"]["model"] = copy.deepcopy(md()["spec"]["model"])
    s.body["metadata"]["generation"] += 1
    s.settle()
    assert s.status["stableRevision"] == 1 and len(s.status["revisions"]) == 2


def test_replicas_changes_do_not_make_a_revision():
    s = Sim(md())
    s.settle()
    s.set_spec(replicas=5)
    s.settle()
    assert [r["revision"] for r in s.status["revisions"]] == [1] and s.deps[1]["spec"]["replicas"] == 5


def test_history_is_trimmed_to_the_limit():
    s = Sim(md(revisionHistoryLimit=1))
    for i in range(4):
        s.body["spec"]["model"] = {"uri": f"pvc://models/v{i}.onnx", "format": "onnx"}
        s.body["metadata"]["generation"] += 1
        s.settle()
        s.advance(31)
        s.settle()
    assert [r["revision"] for r in s.status["revisions"]] == [3, 4]  # v0..v3 are revisions 1..4
    assert sorted(s.deps) == [3, 4]


# ---------- invalid and impossible specs ----------

def test_invalid_spec_applies_nothing_and_names_the_field():
    p = Sim(md(placement={"nodePool": "gpu-h100", "gpu": {"count": 1}})).reconcile()
    assert p.apply == [] and p.status["phase"] == "Failed"
    x = cond(p.status, "SpecValid")
    assert x["reason"] == "InvalidSpec" and "spec.placement.nodePool" in x["message"] and "gpu-a100" in x["message"]
    assert p.events and p.events[0][0] == "Warning"


def test_runtime_that_cannot_serve_the_format_is_invalid():
    msg = cond(Sim(md(runtime={"kind": "tfserving"})).reconcile().status, "SpecValid")["message"]
    assert "spec.model.format" in msg and "tfserving cannot serve a onnx model" in msg


def test_shadow_on_the_replica_router_is_refused():
    p = Sim(md(rollout={"strategy": "shadow", "shadow": {"percent": 10}})).reconcile()
    assert p.apply == [] and "spec.traffic.router" in cond(p.status, "SpecValid")["message"]


def test_unschedulable_product_applies_nothing():
    p = Sim(md(placement={"nodePool": "gpu-a100", "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}})).reconcile()
    assert p.apply == [] and p.status["phase"] == "Pending"
    x = cond(p.status, "Schedulable")
    assert x["reason"] == "Unschedulable" and "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3" in x["message"]


def test_too_many_gpus_is_unschedulable():
    p = Sim(md(placement={"nodePool": "gpu-a100", "gpu": {"count": 16}})).reconcile()
    assert "16 allocatable nvidia.com/gpu" in cond(p.status, "Schedulable")["message"]


def test_unknown_node_cache_skips_the_check():
    body = md(placement={"nodePool": "gpu-a100", "gpu": {"count": 16}})
    p = plan_model_deployment(body, CONFIG, Observed(deployments={}, nodes=None, now=T0))
    assert any(o["kind"] == "Deployment" for o in p.apply)


def test_recovery_from_invalid_spec_clears_the_message():
    s = Sim(md(placement={"nodePool": "nope"}))
    s.reconcile()
    s.body["spec"] = md()["spec"]
    s.settle()
    assert "message" not in s.status and cond(s.status, "SpecValid")["status"] == "True"


def test_scaled_to_zero_is_ready():
    s = Sim(md(replicas=0))
    s.settle()
    assert cond(s.status, "WorkloadReady")["reason"] == "ScaledToZero" and s.status["phase"] == "Ready"


# ---------- autoscaling ----------

def test_autoscaling_adds_hpa_and_leaves_replicas_alone():
    p = Sim(md(autoscaling={"minReplicas": 2, "maxReplicas": 6, "metrics": [{"type": "cpu", "targetAverageUtilization": 60}]})).reconcile()
    objs = {o["kind"]: o for o in p.apply}
    assert "replicas" not in objs["Deployment"]["spec"]
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "resnet-r1" and (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_removing_autoscaling_deletes_the_hpa():
    p = plan_model_deployment(md(), CONFIG, Observed(deployments={}, nodes=NODES, now=T0, autoscalers=frozenset({1})))
    assert ("HorizontalPodAutoscaler", "ml", "resnet-r1") in p.delete


def test_an_istio_host_of_another_namespace_is_refused_before_anything_is_applied():
    """Issue 11, scenario 6: a ModelDeployment in `ml` must not route payments' Service."""
    p = Sim(md(traffic={"router": "istio", "istio": {"hosts": ["payments.payments.svc.cluster.local"]}})).reconcile()
    x = cond(p.status, "SpecValid")
    assert p.apply == [] and x["status"] == "False" and x["message"].startswith("spec.traffic.istio.hosts[0]")


def test_network_policy_is_applied_when_enabled_and_deleted_when_turned_off():
    from modelpilot.config import parse_config
    on = parse_config({"nodePools": {"gpu-a100": {"nodeSelector": {"modelpilot.io/pool": "gpu-a100"}}},
                       "networkPolicy": {"enabled": True, "ingressFrom": [{"podSelector": {}}]}})
    p = plan_model_deployment(md(), on, Observed(deployments={}, nodes=None, now=T0))
    assert [o["metadata"]["name"] for o in p.apply if o["kind"] == "NetworkPolicy"] == ["resnet"]
    off = plan_model_deployment(md(), CONFIG, Observed(deployments={}, nodes=None, now=T0, network_policy=True))
    assert not [o for o in off.apply if o["kind"] == "NetworkPolicy"]
    assert ("NetworkPolicy", "ml", "resnet") in off.delete


def test_a_service_port_equal_to_the_runtimes_grpc_port_is_invalid_naming_the_field():
    # Found by the bad-input campaign: server-side apply answered 500 (duplicate Service port), retried for ever.
    from modelpilot.conditions import get_condition
    from modelpilot.rollout import Observed, plan_model_deployment

    from .helpers import CONFIG, NODES, md
    body = md(traffic={"port": 8001})
    plan = plan_model_deployment(body, CONFIG, Observed(deployments={}, nodes=NODES, now="2026-01-01T00:00:00Z"))
    ready = get_condition(plan.status["conditions"], "Ready")
    assert ready["reason"] == "InvalidSpec" and ready["message"].startswith("spec.traffic.port: 8001 is the triton gRPC port")
    assert plan.apply == []
