"""The storage-initializer and TorchServe images run the containers of a rendered serving pod.

The operator renders a TorchServe revision's Deployment; the test runs its init container (the
storage-init image) against file://, http:// and s3:// (moto) sources into a host directory that
stands for the pod's model-repository emptyDir, then the server container (the torchserve image)
on that repository, waits with the rendered readiness probe (exec'd in the container, as the
kubelet does), and checks the model's answers against the source model's.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.config import parse_config
from modelpilot.render import build_model_config_map, build_revision_deployment
from modelpilot.runtimes import Signature

from podman_run import config_map_dir, engine, run_args, writable

from tests.conftest import free_port

CONFIG = parse_config({"nodePools": {"cpu": {"nodeSelector": {"modelpilot.io/pool": "cpu"}}}})
SIGNATURE = Signature.from_dict({
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}, {"name": "ids", "dtype": "int64", "shape": [-1, 5]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}, {"name": "score", "dtype": "float32", "shape": [-1]}],
})


def torchserve_deployment(uri: str, **model: object) -> tuple[dict, dict]:
    body = {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "twoheads", "namespace": "ml", "uid": "u1", "generation": 1},
        "spec": {"model": {"uri": uri, "format": "torchscript", "name": "twoheads", **model},
                 "runtime": {"kind": "torchserve"}, "replicas": 1, "placement": {"nodePool": "cpu"}},
    }
    md = parse_model_deployment(body)
    return build_revision_deployment(md, 1, CONFIG, 1, signature=SIGNATURE), build_model_config_map(md, 1, SIGNATURE)


def pod_volumes(tmp_path: Path, deployment: dict, config_map: dict) -> dict[str, Path]:
    """Host directories for the pod's volumes; the ConfigMap laid out by its items (key -> path)."""
    pod = deployment["spec"]["template"]["spec"]
    (cm,) = [v for v in pod["volumes"] if "configMap" in v]
    items = {i["path"]: config_map["data"][i["key"]] for i in cm["configMap"]["items"]}
    return {"model-repository": writable(tmp_path / "models"), "tmp": writable(tmp_path / "tmp"),
            "dshm": writable(tmp_path / "dshm"), "model-config": config_map_dir(tmp_path / "config", items)}


def init_container(deployment: dict) -> tuple[dict, dict]:
    pod = deployment["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    return pod, init


def run_storage_init(images, tmp_path: Path, deployment: dict, config_map: dict, *, secrets=None,
                     extra: tuple[str, ...] = ()) -> dict[str, Path]:
    pod, init = init_container(deployment)
    volumes = pod_volumes(tmp_path, deployment, config_map)
    args = run_args(pod, init, volumes, termination_log=tmp_path / "init-termination-log", secrets=secrets,
                    image=images["storage-init"])
    i = args.index(images["storage-init"])
    r = engine(*args[:i], *extra, *args[i:], check=False, timeout=600)
    assert r.returncode == 0, f"storage initializer exit {r.returncode}:\n{r.stderr[-3000:]}"
    with zipfile.ZipFile(volumes["model-repository"] / "twoheads.mar") as z:
        assert {"modelpilot_handler.py", "signature.json", "model.pt", "MAR-INF/MANIFEST.json"} <= set(z.namelist())
    assert (volumes["model-repository"] / "config.properties").is_file()
    return volumes


def readable_copy(src: Path, tmp_path: Path) -> Path:
    """The model in a directory the pod's user (uid 1000) may read, as a volume would hold it."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / src.name).write_bytes(src.read_bytes())
    (data / src.name).chmod(0o644)
    return data / src.name


def test_storage_init_image_from_file(images, two_heads, tmp_path: Path) -> None:
    src = readable_copy(two_heads["torchscript"], tmp_path)
    deployment, cm = torchserve_deployment(f"file:///data/{src.name}")
    run_storage_init(images, tmp_path, deployment, cm, extra=("-v", f"{src.parent}:/data:ro"))


def test_storage_init_image_from_http(images, two_heads, http_dir, tmp_path: Path) -> None:
    root, base = http_dir
    (root / "model.pt").write_bytes(two_heads["torchscript"].read_bytes())
    deployment, cm = torchserve_deployment(f"{base}/model.pt")
    run_storage_init(images, tmp_path, deployment, cm)


def test_storage_init_image_from_s3_with_a_secret(images, two_heads, s3_server: str, tmp_path: Path) -> None:
    import boto3

    creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="twoheads/model.pt", Body=two_heads["torchscript"].read_bytes())
    deployment, cm = torchserve_deployment("s3://models/twoheads/model.pt", endpoint=s3_server,
                                           secretRef={"name": "model-store"})
    run_storage_init(images, tmp_path, deployment, cm, secrets={"model-store": creds})


def test_torchserve_image_serves_the_rendered_pod(images, two_heads, tmp_path: Path) -> None:
    src = readable_copy(two_heads["torchscript"], tmp_path)
    deployment, cm = torchserve_deployment(f"file:///data/{src.name}")
    volumes = run_storage_init(images, tmp_path, deployment, cm, extra=("-v", f"{src.parent}:/data:ro"))
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    name, port = f"mp-ts-{uuid.uuid4().hex[:8]}", free_port()
    args = run_args(pod, server, volumes, termination_log=tmp_path / "server-termination-log", network="bridge",
                    image=images["torchserve"], detach=True, name=name)
    i = args.index(images["torchserve"])
    r = engine(*args[:i], "-p", f"127.0.0.1:{port}:8080", *args[i:], check=False)
    assert r.returncode == 0, r.stderr
    try:
        probe = server["readinessProbe"]["exec"]["command"]
        deadline = time.monotonic() + 240
        while True:
            ready = engine("exec", name, *probe, check=False, timeout=60)
            if ready.returncode == 0:
                break
            state = engine("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                logs = engine("logs", name, check=False)
                raise AssertionError(f"TorchServe never became ready ({state}): {ready.stderr[-500:]}\n"
                                     f"{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
            time.sleep(2)
        ref = np.load(two_heads["reference"])
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predictions/twoheads", method="POST",
                                     data=json.dumps({"inputs": {"x": ref["x"].tolist(), "ids": ref["ids"].tolist()}}).encode(),
                                     headers={"Content-Type": "application/json"})
        out = json.loads(urllib.request.urlopen(req, timeout=30).read())["outputs"]
        np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["score"], ref["score"], rtol=1e-5, atol=1e-5)
        check_parity_in_image(images, tmp_path, ref, f"http://127.0.0.1:{port}")
    finally:
        engine("rm", "-f", "-t", "5", name, check=False)


def check_parity_in_image(images, tmp_path: Path, ref, url: str) -> None:
    """The parity check Job the operator renders (rollout/parity.py), run in the storage-init image
    under its securityContext against the serving container: the export's record passes; the same
    record with one output moved fails and names it."""
    from modelpilot.placement import scheduling_for
    from modelpilot.render import ExportArtifact
    from modelpilot.rollout.parity import build_parity_job

    md = parse_model_deployment({"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment",
                                 "metadata": {"name": "twoheads", "namespace": "ml", "uid": "u1", "generation": 1},
                                 "spec": {"model": {"exportRef": {"name": "twoheads", "target": "ts"}, "name": "twoheads"},
                                          "runtime": {"kind": "torchserve"}, "placement": {"nodePool": "cpu"}}})
    art = ExportArtifact(format="torchscript", manifest_uri="file:///export/manifest.json", target="ts")
    job = build_parity_job(md, 2, art, CONFIG, scheduling_for(md.placement, CONFIG))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    container["args"] = [f"--url={url}" if a.startswith("--url=") else a for a in container["args"]]
    rows = range(3)
    record = {"atol": 1e-4, "rtol": 1e-3,
              "inputs": [{"x": {"dtype": "float32", "data": ref["x"][i:i + 1].tolist()},
                          "ids": {"dtype": "int64", "data": ref["ids"][i:i + 1].tolist()}} for i in rows],
              "outputs": [{"logits": ref["logits"][i:i + 1].tolist(), "score": ref["score"][i:i + 1].tolist()} for i in rows]}
    for case, expect in (("right", 0), ("moved", 1)):
        export = tmp_path / f"export-{case}"
        (export / "parity").mkdir(parents=True)
        if case == "moved":
            record["outputs"][1]["score"][0] += 0.5
        (export / "parity" / "ts.json").write_text(json.dumps(record))
        (export / "manifest.json").write_text(json.dumps({"name": "twoheads", "targets": [
            {"name": "ts", "phase": "Succeeded", "format": "torchscript", "uri": "file:///export/model.pt",
             "parity": {"uri": "file:///export/parity/ts.json", "samples": 3}}]}))
        for p in (export, export / "parity"):
            p.chmod(0o755)
        term = tmp_path / f"parity-termination-{case}"
        args = run_args(pod, container, {"tmp": writable(tmp_path / f"parity-tmp-{case}")}, termination_log=term,
                        image=images["storage-init"])
        i = args.index(images["storage-init"])
        r = engine(*args[:i], "-v", f"{export}:/export:ro", *args[i:], check=False, timeout=120)
        verdict = json.loads(term.read_text())
        assert (r.returncode, verdict["passed"]) == (expect, not expect), f"{r.stdout}{r.stderr[-2000:]}"
        if case == "moved":
            assert verdict["sample"] == 1 and verdict["output"] == "score" and "recorded input 1 (x[1, 4]" in verdict["message"]
