"""ModelExport end to end: the operator creates the Job, the Job's exact command runs for real, and
the operator records the real result.

How the test stays faithful without a container runtime: kwok plays the kubelet, so nothing
executes inside the pod. The test therefore does what the kubelet would (hack/testbed/kubelet_run.py,
which hack/demo.sh uses too): it takes the Job's pod
template as the operator rendered it (command, args, env), materialises its volumes locally (the
ConfigMap holding the spec becomes a file, a temporary directory stands in for each PVC mount via
MODELPILOT_PVC_ROOT, the termination-message path becomes a file) and runs that exact command with
that environment. It then hands the process's real exit code and termination message to kwok
(pod annotations read by the test bed's `modelexport-pod-complete` stage), which writes them into
the container status exactly where a kubelet would. From there on, everything is the real
control plane: the Job controller completes or fails the Job, and the operator reads the result.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from ..conftest import REPO, Kubectl
from .conftest import Operator, wait_for

sys.path.insert(0, str(REPO / "hack" / "testbed"))
import kubelet_run  # noqa: E402  (hack/testbed/kubelet_run.py: plays the kubelet, shared with hack/demo.sh)

pytestmark = pytest.mark.e2e


def tiny_onnx(path: Path) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def run_job_like_a_kubelet(kubectl: Kubectl, ns: str, job: dict, pvc_root: Path, tmp: Path) -> tuple[int, str]:
    """Run the Job's container command for real, with its env and volumes mapped onto local paths."""
    return kubelet_run.run_job(kubectl, ns, job, pvc_root, tmp)


def mex_status(kubectl: Kubectl, ns: str, name: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", "modelexport", name, "-o", "json").stdout).get("status") or {}


def export_body(name: str, targets: list[dict]) -> dict:
    return {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport", "metadata": {"name": name},
            "spec": {"source": {"uri": "pvc://models/tiny/model.onnx", "format": "onnx"},
                     "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
                     "targets": targets, "validation": {"samples": 4},
                     "output": {"uri": f"pvc://models/out/{name}"}, "nodePool": "cpu"}}


def provide_pvc(kubectl: Kubectl, ns: str, claim: str, host_path: Path) -> None:
    """A statically bound PV + PVC, as a platform team provides them (there is no provisioner here)."""
    pv = f"{ns}-{claim}"
    kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": str(host_path)},
                 "claimRef": {"namespace": ns, "name": claim}}}))
    kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                 "resources": {"requests": {"storage": "1Gi"}}}}))


@pytest.fixture(scope="module")
def models_pvc(kubectl: Kubectl, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    provide_pvc(kubectl, namespace, "models", tmp_path_factory.mktemp("pv"))
    yield "models"
    kubectl("delete", "pv", f"{namespace}-models", "--wait=false", check=False)


def complete_pod(kubectl: Kubectl, ns: str, job_name: str, code: int, message: str) -> None:
    kubelet_run.hand_result_to_kwok(kubectl, ns, job_name, code, message, timeout=60)


def test_export_job_runs_for_real_and_status_has_the_result(kubectl: Kubectl, namespace: str, operator: Operator, tmp_path: Path, models_pvc: str) -> None:
    pvc_root = tmp_path / "pvc"
    tiny_onnx(pvc_root / "models" / "tiny" / "model.onnx")
    body = export_body("tiny", [{"name": "optimized", "format": "onnx", "optimization": {"level": "extended"}},
                                {"name": "int8", "format": "onnx", "quantization": {"mode": "dynamic"}}])
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    job = wait_for(lambda: (r := kubectl("-n", namespace, "get", "job", "tiny-export-g1", "-o", "json", check=False)).returncode == 0
                   and json.loads(r.stdout), 60, what="the export Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["modelpilot-export"]
    wait_for(lambda: mex_status(kubectl, namespace, "tiny").get("phase") == "Running", 60, what="phase Running")

    code, message = run_job_like_a_kubelet(kubectl, namespace, job, pvc_root, tmp_path / "run")
    assert code == 0, message
    complete_pod(kubectl, namespace, "tiny-export-g1", code, message)

    st = wait_for(lambda: (s := mex_status(kubectl, namespace, "tiny")).get("phase") in ("Succeeded", "Failed") and s, 90, what="a final phase")
    assert st["phase"] == "Succeeded", st
    arts = {a["name"]: a for a in st["artifacts"]}
    assert set(arts) == {"optimized", "int8"}
    for a in arts.values():
        local = pvc_root / a["uri"][len("pvc://"):]
        assert local.exists(), a["uri"]
        assert hashlib.sha256(local.read_bytes()).hexdigest() == a["sha256"]
        assert a["sizeBytes"] == local.stat().st_size
        assert a["maxAbsError"] >= 0 and a["latencyMs"] > 0 and a["sourceLatencyMs"] > 0
        assert a["validated"] is True and 0.85 <= a["top1Agreement"] <= 1.0, "y [batch, 3] is a classifier output"
    assert st["completionTime"] and st["startTime"]
    events = json.loads(kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=tiny", "-o", "json").stdout)["items"]
    assert any(e["reason"] == "ExportSucceeded" for e in events)


def test_failed_export_shows_the_exporters_message(kubectl: Kubectl, namespace: str, operator: Operator, tmp_path: Path, models_pvc: str) -> None:
    pvc_root = tmp_path / "pvc"
    pvc_root.mkdir()  # the source model is missing: the exporter must say which URI
    body = export_body("missing", [{"format": "onnx"}])
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    job = wait_for(lambda: (r := kubectl("-n", namespace, "get", "job", "missing-export-g1", "-o", "json", check=False)).returncode == 0
                   and json.loads(r.stdout), 60, what="the export Job")
    code, message = run_job_like_a_kubelet(kubectl, namespace, job, pvc_root, tmp_path / "run")
    assert code != 0
    complete_pod(kubectl, namespace, "missing-export-g1", code, message)
    st = wait_for(lambda: (s := mex_status(kubectl, namespace, "missing")).get("phase") == "Failed" and s, 90, what="phase Failed")
    assert "pvc://models/tiny/model.onnx" in st["message"]
    events = json.loads(kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=missing", "-o", "json").stdout)["items"]
    assert any(e["reason"] == "ExportFailed" and "pvc://models/tiny/model.onnx" in e["message"] for e in events)


def test_spec_change_makes_a_new_job_and_deletion_cleans_up(kubectl: Kubectl, namespace: str, operator: Operator, models_pvc: str) -> None:
    body = export_body("regen", [{"format": "onnx"}])
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    wait_for(lambda: kubectl("-n", namespace, "get", "job", "regen-export-g1", check=False).returncode == 0, 60, what="job g1")
    body["spec"]["validation"] = {"samples": 2}
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(body))
    wait_for(lambda: kubectl("-n", namespace, "get", "job", "regen-export-g2", check=False).returncode == 0, 60, what="job g2")
    wait_for(lambda: kubectl("-n", namespace, "get", "job", "regen-export-g1", check=False).returncode != 0, 60,
             what="the obsolete running job g1 deleted")
    assert mex_status(kubectl, namespace, "regen")["jobName"] == "regen-export-g2"
    kubectl("-n", namespace, "delete", "modelexport", "regen", timeout=120)
    wait_for(lambda: json.loads(kubectl("-n", namespace, "get", "jobs,configmaps", "-l", "modelpilot.io/model-export=regen",
                                        "-o", "json").stdout)["items"] == [], 90, what="children garbage-collected")
