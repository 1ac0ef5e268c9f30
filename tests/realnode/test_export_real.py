"""A ModelExport runs as a real pod on the real node: the exporter-onnx image, the output on a real
PersistentVolume, and the status from the kubelet's real termination message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..conftest import Kubectl
from .conftest import POOL, InCluster, get, host_volume, wait_for


def tiny_onnx(path: Path, seed: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def test_export_job_runs_on_the_real_node(incluster: InCluster, kubectl: Kubectl, real_node: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    ns = incluster.namespace
    root = tmp_path / "pv"
    host_volume(kubectl, ns, "models", root)
    tiny_onnx(root / "tiny" / "model.onnx", seed=3)
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport", "metadata": {"name": "tiny"},
        "spec": {"source": {"uri": "pvc://models/tiny/model.onnx", "format": "onnx"},
                 "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 16]}],
                 "targets": [{"name": "optimized", "format": "onnx", "optimization": {"level": "extended"}},
                             {"name": "int8", "format": "onnx", "quantization": {"mode": "dynamic"}}],
                 "validation": {"samples": 8}, "output": {"uri": "pvc://models/exports/tiny"}, "nodePool": POOL}}))

    def done() -> dict | None:
        st = get(kubectl, "-n", ns, "get", "mex", "tiny").get("status") or {}
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for("the export to finish", done, timeout=300, interval=1)
    assert status["phase"] == "Succeeded", status
    pods = get(kubectl, "-n", ns, "get", "pods", "-l", f"batch.kubernetes.io/job-name={status['jobName']}")["items"]
    assert [p["spec"]["nodeName"] for p in pods] == [real_node]
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and json.loads(terminated["message"])["phase"] == "Succeeded"
    assert {a["name"] for a in status["artifacts"]} == {"optimized", "int8"}
    x = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
    for a in status["artifacts"]:
        path = root / a["uri"].removeprefix("pvc://models/")
        assert path.is_file(), a
        import hashlib

        assert hashlib.sha256(path.read_bytes()).hexdigest() == a["sha256"]
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert sess.run(None, {"features": x})[0].shape == (2, 4)
