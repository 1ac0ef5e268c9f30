"""Each exporter image runs the exact container of a rendered export Job.

The operator renders the Job for a ModelExport of each source format; the test runs its container
with podman as the kubelet would (command, args, env, the spec ConfigMap, the source and output
PersistentVolumes as host directories, the rendered securityContext: uid 1000, read-only root
filesystem, no capabilities). The exporter exports a small real model; then onnxruntime, on the
host, loads every artifact that the manifest lists, and the termination message is the one the
operator would read.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from modelpilot.config import parse_config
from modelpilot.export.job import build_export_job, build_spec_config_map

from podman_run import config_map_dir, engine, run_args, writable

CONFIG = parse_config({})


def export_body(fmt: str, source: str, inputs: list[dict]) -> dict:
    pytorch = {"pytorch": {"loader": "torchscript"}} if fmt == "pytorch" else {}
    return {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport",
        "metadata": {"name": f"mlp-{fmt}", "namespace": "team-a", "uid": "u1", "generation": 1},
        "spec": {
            "source": {"uri": f"pvc://models/{source}", "format": fmt, **pytorch},
            "inputs": inputs,
            "targets": [{"format": "onnx", "optimization": {"level": "basic"}},
                        {"name": "onnx-int8", "format": "onnx", "quantization": {"mode": "dynamic"}}],
            "validation": {"atol": 1e-4, "rtol": 1e-3, "samples": 8},
            "output": {"uri": f"pvc://artifacts/mlp-{fmt}"},
        },
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[str, list[dict]]]:
    """The MLP as ONNX and TorchScript, and a TensorFlow SavedModel: (path under the claim, inputs)."""
    import torch

    from tests.exporters import mp_export_models as mm

    root = tmp_path_factory.mktemp("models")
    mlp = mm.make_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(mlp, (torch.randn(2, 16),)), str(root / "mlp.ts"))
        torch.onnx.export(mlp, (torch.randn(2, 16),), str(root / "mlp.onnx"), dynamo=False, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    mm.make_tf_savedmodel(root / "sm")
    # A volume the pod's user (uid 1000) can read, as a claim's files would be.
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    x = [{"name": "x", "dtype": "float32", "shape": [-1, 16]}]
    features = [{"name": "features", "dtype": "float32", "shape": [-1, 16]}]
    return {"root": root, "onnx": ("mlp.onnx", x), "pytorch": ("mlp.ts", x), "tensorflow": ("sm", features)}


@pytest.mark.parametrize("fmt", ["onnx", "pytorch", "tensorflow"])
def test_exporter_image_runs_the_rendered_job(images, sources, tmp_path: Path, fmt: str) -> None:
    import onnxruntime as ort

    source, inputs = sources[fmt]
    body = export_body(fmt, source, inputs)
    job = build_export_job(body, f"mlp-{fmt}-export-g1", CONFIG)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].split("/")[-1].split(":")[0] == f"exporter-{fmt}", "the image follows the source format"
    volumes = {
        "spec": config_map_dir(tmp_path / "spec", build_spec_config_map(body, "cm")["data"]),
        "tmp": writable(tmp_path / "tmp"),
        **{v["name"]: (sources["root"] if v["persistentVolumeClaim"]["claimName"] == "models"
                       else writable(tmp_path / "artifacts"))
           for v in pod["volumes"] if "persistentVolumeClaim" in v},
    }
    term = tmp_path / "termination-log"
    r = engine(*run_args(pod, container, volumes, termination_log=term, image=images[f"exporter-{fmt}"]),
               check=False, timeout=900)
    assert r.returncode == 0, f"exit {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"

    message = json.loads(term.read_text())
    assert message["phase"] == "Succeeded", message
    assert [a["name"] for a in message["artifacts"]] == ["onnx", "onnx-int8"]
    out = tmp_path / "artifacts" / f"mlp-{fmt}"
    manifest = json.loads((out / "manifest.json").read_text())
    listed = [t for t in manifest["targets"] if t["phase"] == "Succeeded"]
    assert {t["name"] for t in listed} == {"onnx", "onnx-int8"}, manifest["targets"]
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    for target in listed:
        path = out / target["uri"].removeprefix(body["spec"]["output"]["uri"] + "/")
        assert path.is_file(), f"{target['name']}: {path} is listed but missing"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {session.get_inputs()[0].name: x})
        assert y.shape == (3, 4), (target["name"], y.shape)
    # Everything the container wrote is on the volumes: nothing else was writable.
    assert {p.name for p in out.iterdir()} >= {"manifest.json", "onnx", "onnx-int8"}
