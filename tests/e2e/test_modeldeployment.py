"""A user's day with ModelDeployment on the real control plane, with the operator running.

The samples in docs/samples are applied as a user would; the real scheduler places the pods onto
kwok's fake nodes, and kwok reports them ready.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from ..conftest import REPO, Kubectl
from .conftest import Operator, operator_writes, utcnow, wait_for

pytestmark = pytest.mark.e2e
SAMPLES = REPO / "docs" / "samples"


def get(kubectl: Kubectl, ns: str, *what: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", *what, "-o", "json").stdout)


def md_status(kubectl: Kubectl, ns: str, name: str) -> dict:
    return get(kubectl, ns, "modeldeployment", name).get("status") or {}


def condition(status: dict, ctype: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), {})


def apply_sample(kubectl: Kubectl, ns: str, filename: str) -> dict:
    body = yaml.safe_load((SAMPLES / filename).read_text())
    kubectl("-n", ns, "apply", "-f", str(SAMPLES / filename))
    return body


def pods_of(kubectl: Kubectl, ns: str, name: str) -> list[dict]:
    return get(kubectl, ns, "pods", "-l", f"modelpilot.io/model-deployment={name}")["items"]


def wait_ready(kubectl: Kubectl, ns: str, name: str, timeout: float = 90) -> dict:
    return wait_for(lambda: (s := md_status(kubectl, ns, name)).get("phase") == "Ready" and s, timeout, what=f"{name} Ready")


NODE_POOL = {"kwok-cpu": "cpu", "kwok-a100": "gpu-a100", "kwok-l4": "gpu-l4", "kwok-mig": "gpu-mig"}


def pool_of(node_name: str) -> str:
    return NODE_POOL[node_name.rsplit("-", 1)[0]]


@pytest.mark.parametrize("sample", [
    "modeldeployment-triton-gpu.yaml",
    "modeldeployment-triton-cpu.yaml",
    "modeldeployment-torchserve.yaml",
    "modeldeployment-tfserving.yaml",
    "modeldeployment-torchserve-gpu.yaml",
    "modeldeployment-tfserving-gpu.yaml",
])
def test_sample_is_reconciled_onto_its_pool(kubectl: Kubectl, namespace: str, operator: Operator, sample: str) -> None:
    body = apply_sample(kubectl, namespace, sample)
    name = body["metadata"]["name"]
    status = wait_ready(kubectl, namespace, name)
    assert status["stableRevision"] == 1
    assert status["observedGeneration"] == 1
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Ready")["observedGeneration"] == 1

    dep = get(kubectl, namespace, "deployment", f"{name}-r1", "--show-managed-fields")
    svc = get(kubectl, namespace, "service", name, "--show-managed-fields")
    cm = get(kubectl, namespace, "configmap", f"{name}-r1-model", "--show-managed-fields")
    for obj in (dep, svc, cm):
        ref = obj["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ModelDeployment" and ref["name"] == name and ref["controller"] is True
        managers = {m["manager"] for m in obj["metadata"]["managedFields"] if m["operation"] == "Apply"}
        assert managers == {"modelpilot"}, "children are applied server-side with one field manager"

    pods = pods_of(kubectl, namespace, name)
    want_pool = body["spec"]["placement"]["nodePool"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    assert {pool_of(p["spec"]["nodeName"]) for p in pods} == {want_pool}
    gpus = (body["spec"]["placement"].get("gpu") or {}).get("count", 0)
    for p in pods:
        limits = p["spec"]["containers"][0].get("resources", {}).get("limits", {})
        assert limits.get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    assert status["readyReplicas"] == len([p for p in pods if p["status"]["phase"] == "Running"])


def test_canary_sample_first_revision_goes_straight_to_stable(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    """The first revision has nothing to protect: steps apply from the second revision on."""
    body = apply_sample(kubectl, namespace, "modeldeployment-canary.yaml")
    name = body["metadata"]["name"]
    status = wait_ready(kubectl, namespace, name)
    assert status["stableRevision"] == 1 and "canaryRevision" not in status
    route = get(kubectl, namespace, "httproute", name)
    assert route["spec"]["parentRefs"][0]["name"] == "inference-gateway"
    backends = [b for r in route["spec"]["rules"] for b in r["backendRefs"]]
    assert {b["name"]: b.get("weight", 1) for b in backends if b.get("weight", 1)} == {f"{name}-r1": 100}


def test_unknown_node_pool_is_a_condition_naming_the_field(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "nopool"},
        "spec": {"model": {"uri": "pvc://m/model.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
                 "placement": {"nodePool": "gpu-h100", "gpu": {"count": 1}}}}))
    status = wait_for(lambda: (s := md_status(kubectl, namespace, "nopool")).get("phase") and s, 60, what="a phase")
    assert status["phase"] == "Failed"
    assert "spec.placement.nodePool" in condition(status, "SpecValid")["message"]
    assert "gpu-a100" in condition(status, "SpecValid")["message"], "the message lists the pools that exist"


def test_impossible_gpu_product_is_unschedulable_not_pending(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "h100"},
        "spec": {"model": {"uri": "pvc://m/model.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
                 "placement": {"nodePool": "gpu-a100", "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}}}}))
    status = wait_for(lambda: (s := md_status(kubectl, namespace, "h100")).get("phase") and s, 60, what="a phase")
    cond = condition(status, "Schedulable")
    assert status["phase"] == "Pending" and cond["reason"] == "Unschedulable"
    assert "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3" in cond["message"]
    assert pods_of(kubectl, namespace, "h100") == [], "nothing is applied for an unschedulable revision"


def test_mig_request_lands_on_the_mig_node(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "mig"},
        "spec": {"model": {"uri": "pvc://m/model.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
                 "placement": {"nodePool": "gpu-mig", "gpu": {"count": 1, "migProfile": "1g.10gb"}}}}))
    wait_ready(kubectl, namespace, "mig")
    assert {p["spec"]["nodeName"] for p in pods_of(kubectl, namespace, "mig")} == {"kwok-mig-0"}


def test_spec_change_rolls_a_new_revision_and_removes_the_old(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    body = yaml.safe_load((SAMPLES / "modeldeployment-triton-cpu.yaml").read_text())
    body["metadata"]["name"] = "rolling"
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    wait_ready(kubectl, namespace, "rolling")
    body["spec"]["model"]["uri"] = "file:///models/resnet50/v2/model.onnx"
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    status = wait_for(lambda: (s := md_status(kubectl, namespace, "rolling")).get("stableRevision") == 2 and s, 90, what="revision 2 stable")
    assert [(r["revision"], r["outcome"]) for r in status["revisions"]] == [(1, "Superseded"), (2, "Stable")]
    wait_for(lambda: get(kubectl, namespace, "deployment", "rolling-r1")["spec"]["replicas"] == 0, 60,
             what="r1 scaled to zero (kept for undo)")
    assert pods_of(kubectl, namespace, "rolling") and all(
        p["metadata"]["labels"]["modelpilot.io/revision"] == "2" for p in pods_of(kubectl, namespace, "rolling")
        if not p["metadata"].get("deletionTimestamp"))
    assert status["observedGeneration"] == 2


def test_scale_subresource(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    body = yaml.safe_load((SAMPLES / "modeldeployment-triton-cpu.yaml").read_text())
    body["metadata"]["name"] = "scaled"
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    wait_ready(kubectl, namespace, "scaled")
    kubectl("-n", namespace, "scale", "modeldeployment/scaled", "--replicas=3")
    wait_for(lambda: md_status(kubectl, namespace, "scaled").get("readyReplicas") == 3, 90, what="3 ready replicas")
    scale = json.loads(kubectl("-n", namespace, "get", "--raw",
                               f"/apis/modelpilot.io/v1alpha1/namespaces/{namespace}/modeldeployments/scaled/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert "modelpilot.io/revision=1" in scale["status"]["selector"]


def test_deletion_removes_children(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    body = yaml.safe_load((SAMPLES / "modeldeployment-triton-cpu.yaml").read_text())
    body["metadata"]["name"] = "doomed"
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    wait_ready(kubectl, namespace, "doomed")
    kubectl("-n", namespace, "delete", "modeldeployment", "doomed", "--wait=true", timeout=120)
    sel = "modelpilot.io/model-deployment=doomed"
    wait_for(lambda: get(kubectl, namespace, "deployments,services,configmaps,pods", "-l", sel)["items"] == [], 90,
             what="children garbage-collected")


def test_first_status_says_what_the_deployment_controller_saw(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    """A new object's first status waits (at most 5 s) for the Deployment controller: scaled to
    zero, its Deployment is complete as soon as the controller has seen it, so the first status
    written is Ready, in one write, with its Event; none says Progressing before the controller acted."""
    body = yaml.safe_load((SAMPLES / "modeldeployment-triton-cpu.yaml").read_text())
    body["metadata"]["name"] = "zero"
    body["spec"]["replicas"] = 0
    since = utcnow()
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    wait_ready(kubectl, namespace, "zero")
    time.sleep(1)  # a second write, were there one, would land by now
    writes = [w for w in operator_writes(since) if w["uri"].split("?")[0].endswith(f"/namespaces/{namespace}/modeldeployments/zero/status")]
    assert [w["code"] for w in writes] == [200], f"status writes: {writes}"
    events = get(kubectl, namespace, "events", "--field-selector", "involvedObject.name=zero")["items"]
    assert [(e["type"], e["reason"]) for e in events] == [("Normal", "AllReady")], events


def test_idle_resync_and_restart_make_zero_writes(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    body = yaml.safe_load((SAMPLES / "modeldeployment-triton-gpu.yaml").read_text())
    body["metadata"]["name"] = "idle"
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    before = wait_ready(kubectl, namespace, "idle")
    time.sleep(2)  # let the last status write land before the quiet window starts

    # Idle resync: the operator re-reconciles everything every few seconds in this test bed.
    since = utcnow()
    resyncs = operator.metric("modelpilot_resyncs_total")
    wait_for(lambda: operator.metric("modelpilot_resyncs_total") >= resyncs + 2, 30, what="two resyncs")
    writes = [w for w in operator_writes(since) if f"/namespaces/{namespace}/" in (w["uri"] or "")]
    assert writes == [], f"an idle resync wrote: {writes}"

    # Restart: a fresh process lists everything and reconciles it: still nothing to write.
    since = utcnow()
    # SIGTERM stops it at once (Kopf waited 5 s for the work queue's tasks before they were
    # stopped in its cleanup), then it starts again from the cache sync.
    took = operator.stop()
    assert took < 2.5, f"the operator took {took:.1f}s to stop on SIGTERM"
    operator.start()
    wait_for(lambda: operator.metric('modelpilot_reconcile_total') >= 1, 30, what="reconciles after restart")
    time.sleep(3)
    writes = [w for w in operator_writes(since) if f"/namespaces/{namespace}/" in (w["uri"] or "")]
    assert writes == [], f"a restart wrote: {writes}"
    after = md_status(kubectl, namespace, "idle")
    assert after == before


def test_operator_serves_health_and_metrics(operator: Operator) -> None:
    m = operator.metrics()
    assert any(k.startswith("modelpilot_reconcile_duration_seconds_bucket") for k in m)
    assert operator.metric("modelpilot_kube_requests_total") > 0
