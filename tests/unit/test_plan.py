"""Every transition of the direct-strategy planner, without a cluster."""

from __future__ import annotations

import copy

import pytest

from modelpilot.conditions import get_condition
from modelpilot.kube import merge_patch
from modelpilot.rollout import Observed, plan_model_deployment

from .helpers import CONFIG, NODES, md, ready_deployment

pytestmark = pytest.mark.unit
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def plan(body, deployments=None, nodes=NODES, now=T0):
    return plan_model_deployment(body, CONFIG, Observed(deployments=deployments or {}, nodes=nodes, now=now))


def with_status(body, status):
    b = copy.deepcopy(body)
    b["status"] = status
    return b


def cond(status, ctype):
    return get_condition(status["conditions"], ctype)


def test_new_deployment_creates_revision_1_and_progresses():
    p = plan(md())
    assert [o["kind"] for o in p.apply] == ["Service", "ConfigMap", "Deployment"]
    assert p.apply[2]["metadata"]["name"] == "resnet-r1"
    assert p.delete == []
    st = p.status
    assert st["phase"] == "Progressing"
    assert st["revisions"][0]["revision"] == 1 and st["revisions"][0]["outcome"] == "Progressing"
    assert st["revisions"][0]["created"] == T0
    assert st["canaryRevision"] == 1 and "stableRevision" not in st
    assert cond(st, "Ready")["status"] == "False"
    assert cond(st, "WorkloadReady")["reason"] == "PodsNotReady"


def test_ready_pods_make_it_ready_and_stable():
    first = plan(md()).status
    p = plan(with_status(md(), first), {1: ready_deployment(1, 2)}, now=T1)
    st = p.status
    assert st["phase"] == "Ready"
    assert st["stableRevision"] == 1 and "canaryRevision" not in st
    assert st["readyReplicas"] == 2 and st["replicas"] == 2
    assert st["selector"] == "modelpilot.io/model-deployment=resnet,modelpilot.io/revision=1"
    assert st["revisions"][0]["outcome"] == "Stable"
    assert cond(st, "Ready")["lastTransitionTime"] == T1
    assert ("Normal", "AllReady", "revision 1 is serving") in p.events


def test_partially_ready_is_not_ready():
    first = plan(md()).status
    st = plan(with_status(md(), first), {1: ready_deployment(1, 2, ready=1)}).status
    assert st["phase"] == "Progressing" and st["readyReplicas"] == 1
    assert "1/2 replicas" in cond(st, "WorkloadReady")["message"]


def test_stale_deployment_generation_is_not_ready():
    first = plan(md()).status
    dep = ready_deployment(1, 2)
    dep["metadata"]["generation"] = 2  # the controller has not seen our latest write yet
    st = plan(with_status(md(), first), {1: dep}).status
    assert st["phase"] == "Progressing"


def test_idle_replan_is_byte_identical():
    """The basis of zero writes on resync: the same observations give the same status."""
    s1 = plan(with_status(md(), plan(md()).status), {1: ready_deployment(1, 2)}, now=T1).status
    s2 = plan(with_status(md(), s1), {1: ready_deployment(1, 2)}, now="2026-01-01T09:00:00Z")
    assert s2.status == s1
    assert merge_patch(s1, s2.status) == {}
    assert s2.events == []


def test_spec_change_makes_revision_2_and_keeps_1_until_ready():
    stable = plan(with_status(md(), plan(md()).status), {1: ready_deployment(1, 2)}).status
    changed = md(model={"uri": "pvc://models/resnet-v2/model.onnx", "format": "onnx"})
    changed["metadata"]["generation"] = 2
    p = plan(with_status(changed, stable), {1: ready_deployment(1, 2)}, now=T1)
    assert p.apply[2]["metadata"]["name"] == "resnet-r2"
    assert p.delete == []  # revision 1 keeps serving until revision 2 is ready
    assert p.status["stableRevision"] == 1 and p.status["canaryRevision"] == 2
    assert [r["revision"] for r in p.status["revisions"]] == [1, 2]

    p2 = plan(with_status(changed, p.status), {1: ready_deployment(1, 2), 2: ready_deployment(2, 2)}, now=T1)
    assert ("Deployment", "ml", "resnet-r1") in p2.delete and ("ConfigMap", "ml", "resnet-r1-model") in p2.delete
    assert p2.status["stableRevision"] == 2
    outcomes = {r["revision"]: r["outcome"] for r in p2.status["revisions"]}
    assert outcomes == {1: "Superseded", 2: "Stable"}


def test_returning_to_an_earlier_spec_reuses_its_revision_number():
    s1 = plan(md()).status
    v2 = md(model={"uri": "pvc://models/v2.onnx", "format": "onnx"})
    s2 = plan(with_status(v2, s1)).status
    back = plan(with_status(md(), s2)).status
    assert back["canaryRevision"] == 1 and len(back["revisions"]) == 2


def test_replicas_and_rollout_changes_do_not_make_a_revision():
    s1 = plan(md()).status
    s2 = plan(with_status(md(replicas=5), s1)).status
    assert [r["revision"] for r in s2["revisions"]] == [1]


def test_history_is_trimmed_to_the_limit_keeping_current():
    status: dict = {}
    for i in range(5):
        body = md(model={"uri": f"pvc://models/v{i}.onnx", "format": "onnx"}, revisionHistoryLimit=2)
        status = plan(with_status(body, status)).status
    assert [r["revision"] for r in status["revisions"]] == [3, 4, 5]


def test_invalid_spec_applies_nothing_and_names_the_field():
    p = plan(md(placement={"nodePool": "gpu-h100", "gpu": {"count": 1}}))
    assert p.apply == [] and p.delete == []
    assert p.status["phase"] == "Failed"
    c = cond(p.status, "SpecValid")
    assert c["status"] == "False" and c["reason"] == "InvalidSpec"
    assert "spec.placement.nodePool" in c["message"] and "gpu-a100" in c["message"]
    assert p.events and p.events[0][0] == "Warning"


def test_runtime_that_cannot_serve_the_format_is_invalid():
    p = plan(md(runtime={"kind": "tfserving"}))
    msg = cond(p.status, "SpecValid")["message"]
    assert "spec.model.format" in msg and "tfserving cannot serve a onnx model" in msg


def test_unschedulable_product_applies_nothing():
    p = plan(md(placement={"nodePool": "gpu-a100", "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}}))
    assert p.apply == []
    assert p.status["phase"] == "Pending"
    c = cond(p.status, "Schedulable")
    assert c["reason"] == "Unschedulable"
    assert "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3" in c["message"]


def test_too_many_gpus_is_unschedulable():
    p = plan(md(placement={"nodePool": "gpu-a100", "gpu": {"count": 16}}))
    assert "16 allocatable nvidia.com/gpu" in cond(p.status, "Schedulable")["message"]


def test_unknown_node_cache_skips_the_check():
    p = plan(md(placement={"nodePool": "gpu-a100", "gpu": {"count": 16}}), nodes=None)
    assert len(p.apply) == 3


def test_unimplemented_strategy_is_reported_not_half_applied():
    p = plan(md(rollout={"strategy": "canary", "canary": {"steps": [{"setWeight": 10}]}}))
    assert p.apply == []
    c = cond(p.status, "SpecValid")
    assert c["reason"] == "StrategyNotSupported" and "spec.rollout.strategy" in c["message"]


def test_scaled_to_zero_is_ready():
    first = plan(md(replicas=0)).status
    dep = ready_deployment(1, 0)
    st = plan(with_status(md(replicas=0), first), {1: dep}).status
    assert cond(st, "WorkloadReady")["reason"] == "ScaledToZero"
    assert st["phase"] == "Ready"


def test_recovery_from_invalid_spec_clears_the_message():
    bad = plan(md(placement={"nodePool": "nope"})).status
    good = plan(with_status(md(), bad)).status
    assert cond(good, "SpecValid")["status"] == "True"


def test_autoscaling_adds_hpa_and_leaves_replicas_alone():
    body = md(autoscaling={"minReplicas": 2, "maxReplicas": 6, "metrics": [{"type": "cpu", "targetAverageUtilization": 60}]})
    p = plan(body)
    kinds = [o["kind"] for o in p.apply]
    assert kinds == ["Service", "ConfigMap", "Deployment", "HorizontalPodAutoscaler"]
    assert "replicas" not in p.apply[2]["spec"]
    hpa = p.apply[3]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "resnet-r1" and (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_removing_autoscaling_deletes_the_hpa():
    p = plan_model_deployment(md(), CONFIG, Observed(deployments={}, nodes=NODES, now=T0, autoscalers=frozenset({1})))
    assert ("HorizontalPodAutoscaler", "ml", "resnet-r1") in p.delete
