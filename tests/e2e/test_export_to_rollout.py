"""The whole pipeline: a ModelExport's artifact is what a ModelDeployment serves (spec.model.exportRef),
and every new artifact the export produces is rolled out by the deployment's strategy, with no
edit to the ModelDeployment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ..conftest import Kubectl
from .conftest import Operator, wait_for
from .rollout_helpers import GATEWAY, apply, route_weights, wait_status
from .test_modelexport import complete_pod, export_body, mex_status, provide_pvc, run_job_like_a_kubelet, tiny_onnx

pytestmark = pytest.mark.e2e


def run_export(kubectl: Kubectl, ns: str, job_name: str, pvc_root: Path, tmp: Path) -> None:
    job = wait_for(lambda: (r := kubectl("-n", ns, "get", "job", job_name, "-o", "json", check=False)).returncode == 0
                   and json.loads(r.stdout), 60, what=f"Job {job_name}")
    code, message = run_job_like_a_kubelet(kubectl, ns, job, pvc_root, tmp)
    assert code == 0, message
    complete_pod(kubectl, ns, job_name, code, message)


def test_export_artifacts_are_served_and_rolled_out(kubectl: Kubectl, namespace: str, operator: Operator, tmp_path: Path) -> None:
    pvc_root = tmp_path / "pvc"
    provide_pvc(kubectl, namespace, "models", pvc_root / "models")
    tiny_onnx(pvc_root / "models" / "tiny" / "model.onnx")
    export = export_body("pipe", [{"name": "onnx", "format": "onnx"}])
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(export))
    deployment = {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "pipe"},
        "spec": {"model": {"exportRef": {"name": "pipe", "target": "onnx"}}, "runtime": {"kind": "triton"}, "replicas": 2,
                 "placement": {"nodePool": "cpu"}, "traffic": GATEWAY,
                 # kwok runs no Triton to check the new artifact against: the parity check has its own
                 # test with real TorchServe servers (test_parity_check.py).
                 "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "2s"}}]},
                             "parityCheck": {"enabled": False}}},
    }
    apply(kubectl, namespace, deployment)
    st = wait_status(kubectl, namespace, "pipe", lambda s: s.get("phase") == "Pending", what="waiting for the export")
    assert "ModelExport pipe has no artifact yet" in st["message"]

    run_export(kubectl, namespace, "pipe-export-g1", pvc_root, tmp_path / "run1")
    art = wait_for(lambda: (s := mex_status(kubectl, namespace, "pipe")).get("phase") == "Succeeded" and s["artifacts"][0], 90,
                   what="export 1 succeeded")
    st = wait_status(kubectl, namespace, "pipe", lambda s: s.get("phase") == "Ready", what="serving the artifact")
    assert st["revisions"][0]["modelDigest"] == f"sha256:{art['sha256']}"
    dep = json.loads(kubectl("-n", namespace, "get", "deployment", "pipe-r1", "-o", "json").stdout)
    init_args = dep["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert "--uri=export://pipe/onnx" in init_args and any(a.startswith("--manifest=pvc://models/out/pipe/") for a in init_args)

    # A new export (int8 this time) makes a new artifact: the deployment canaries it on its own.
    export["spec"]["targets"] = [{"name": "onnx", "format": "onnx", "quantization": {"mode": "dynamic"}}]
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(export))
    run_export(kubectl, namespace, "pipe-export-g2", pvc_root, tmp_path / "run2")
    art2 = wait_for(lambda: (s := mex_status(kubectl, namespace, "pipe")).get("jobName") == "pipe-export-g2"
                    and s.get("phase") == "Succeeded" and s["artifacts"][0], 90, what="export 2 succeeded")
    assert art2["sha256"] != art["sha256"]
    wait_status(kubectl, namespace, "pipe", lambda s: s.get("canaryRevision") == 2, what="canary of the new artifact")
    st = wait_status(kubectl, namespace, "pipe", lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready",
                     what="the new artifact promoted")
    assert st["revisions"][-1]["modelDigest"] == f"sha256:{art2['sha256']}"
    route = json.loads(kubectl("-n", namespace, "get", "httproute", "pipe", "-o", "json").stdout)
    assert route_weights(route).get("pipe-r2") == 100
