"""The storage initializer (modelpilot-storage-init): each source scheme, each runtime's layout,
export:// through an exporter manifest, and one-line errors that name the URI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modelpilot.runtimes import MODEL_REPOSITORY, get_runtime
from modelpilot_exporters import storage_init

from .conftest import deployment

pytestmark = pytest.mark.unit


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kubelet_config_dir(root: Path, files: dict[str, str]) -> Path:
    """A ConfigMap volume as the kubelet writes it: files under ..<timestamp>, reached through ..data links."""
    real = root / "..2026_01_01_00_00_00.000"
    for rel, body in files.items():
        (real / rel).parent.mkdir(parents=True, exist_ok=True)
        (real / rel).write_text(body)
    (root / "..data").symlink_to(real.name)
    for top in {rel.split("/")[0] for rel in files}:
        (root / top).symlink_to(f"..data/{top}")
    return root


def run(tmp_path: Path, *args: str, term: bool = True) -> tuple[int, Path]:
    repo = tmp_path / "models"
    os.environ["MODELPILOT_TERMINATION_LOG"] = str(tmp_path / "termination-log")
    try:
        return storage_init.main([f"--repository={repo}", *args]), repo
    finally:
        os.environ.pop("MODELPILOT_TERMINATION_LOG", None)


def test_triton_layout_from_file_with_kubelet_config_volume(tmp_path, two_heads, capsys) -> None:
    md = deployment(model={"uri": f"file://{two_heads['onnx']}", "format": "onnx"})
    triton = get_runtime("triton")
    cfg = kubelet_config_dir(tmp_path / "cfg", triton.config_files(md))
    rc, repo = run(tmp_path, f"--uri=file://{two_heads['onnx']}", "--format=onnx",
                   f"--dest={repo_path(tmp_path, triton.artifact_path(md))}", f"--config-dir={cfg}")
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()) == [
        "resnet/1/model.onnx", "resnet/config.pbtxt"]
    assert sha256(repo / "resnet/1/model.onnx") == sha256(two_heads["onnx"])
    assert (repo / "resnet/config.pbtxt").read_text() == triton.config_files(md)["resnet/config.pbtxt"]


def repo_path(tmp_path: Path, rel: str) -> str:
    return str(tmp_path / "models" / rel)


def test_rerun_replaces_what_an_earlier_run_left(tmp_path, two_heads) -> None:
    dest = repo_path(tmp_path, "m/1/model.onnx")
    for _ in range(2):
        rc, repo = run(tmp_path, f"--uri=file://{two_heads['onnx']}", "--format=onnx", f"--dest={dest}")
        assert rc == 0
    assert sha256(Path(dest)) == sha256(two_heads["onnx"])


def test_pvc_source_and_one_line_not_found(tmp_path, two_heads, monkeypatch, capsys) -> None:
    root = tmp_path / "pvc"
    (root / "claim" / "m").mkdir(parents=True)
    (root / "claim" / "m" / "model.onnx").write_bytes(two_heads["onnx"].read_bytes())
    monkeypatch.setenv("MODELPILOT_PVC_ROOT", str(root))
    rc, _ = run(tmp_path, "--uri=pvc://claim/m/model.onnx", "--format=auto", f"--dest={repo_path(tmp_path, 'm/1/model.onnx')}")
    assert rc == 0
    rc, _ = run(tmp_path, "--uri=pvc://claim/nope.onnx", "--format=onnx", f"--dest={repo_path(tmp_path, 'm/1/model.onnx')}")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("modelpilot-storage-init: error: spec.model.uri: pvc://claim/nope.onnx: not found")
    assert (tmp_path / "termination-log").read_text().startswith("spec.model.uri: pvc://claim/nope.onnx")


def test_ready_mar_over_http_and_404(tmp_path, http_dir, capsys) -> None:
    root, base = http_dir
    with zipfile.ZipFile(root / "bert.mar", "w") as z:
        z.writestr("MAR-INF/MANIFEST.json", "{}")
    rc, repo = run(tmp_path, f"--uri={base}/bert.mar", "--format=mar", f"--dest={repo_path(tmp_path, 'bert.mar')}")
    assert rc == 0 and zipfile.is_zipfile(repo / "bert.mar")
    rc, _ = run(tmp_path, f"--uri={base}/missing.mar", "--format=mar", f"--dest={repo_path(tmp_path, 'bert.mar')}")
    assert rc == 2
    assert f"{base}/missing.mar: HTTP 404" in capsys.readouterr().err


def test_savedmodel_archive_lands_in_the_version_directory(tmp_path, http_dir) -> None:
    import tarfile

    root, base = http_dir
    sm = tmp_path / "src" / "mobilenet" / "3"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"pb")
    (sm / "variables" / "variables.index").write_bytes(b"ix")
    with tarfile.open(root / "mobilenet.tar.gz", "w:gz") as t:
        t.add(tmp_path / "src" / "mobilenet", arcname="mobilenet")
    md = deployment(model={"uri": f"{base}/mobilenet.tar.gz", "format": "savedmodel", "name": "mobilenet"},
                    runtime={"kind": "tfserving"})
    dest = repo_path(tmp_path, get_runtime("tfserving").artifact_path(md))
    rc, repo = run(tmp_path, f"--uri={base}/mobilenet.tar.gz", "--format=savedmodel", f"--dest={dest}")
    assert rc == 0
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()) == [
        "mobilenet/1/saved_model.pb", "mobilenet/1/variables/variables.index"]


def test_onnx_directory_with_external_data(tmp_path) -> None:
    src = tmp_path / "onnx"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"graph")
    (src / "model.onnx.data").write_bytes(b"weights")
    rc, repo = run(tmp_path, f"--uri=file://{src}", "--format=onnx", f"--dest={repo_path(tmp_path, 'm/1/model.onnx')}")
    assert rc == 0
    assert sorted(p.name for p in (repo / "m" / "1").iterdir()) == ["model.onnx", "model.onnx.data"]


def test_wrong_format_for_torchserve_is_one_line(tmp_path, two_heads, capsys) -> None:
    rc, _ = run(tmp_path, f"--uri=file://{two_heads['onnx']}", "--format=onnx", f"--dest={repo_path(tmp_path, 'm.mar')}")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and f"file://{two_heads['onnx']}" in err and "TorchServe" in err


def manifest(tmp_path: Path, artifact: Path, **target) -> Path:
    """A manifest.json in the exporter's format (modelpilot_exporters.manifest)."""
    out = tmp_path / "export-out"
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "onnx" / "model.onnx").write_bytes(artifact.read_bytes())
    t = {"name": "onnx", "format": "onnx", "phase": "Succeeded", "uri": f"file://{out}/onnx/model.onnx",
         "sha256": sha256(artifact), "sizeBytes": artifact.stat().st_size,
         "signature": {"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}], "outputs": []}}
    t.update(target)
    doc = {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExportManifest", "name": "resnet-export",
           "phase": "Succeeded", "targets": [{"name": "tflite", "format": "tflite", "phase": "Failed", "error": "boom"}, t]}
    (out / "manifest.json").write_text(json.dumps(doc))
    return out / "manifest.json"


def test_export_uri_resolves_through_the_manifest(tmp_path, two_heads) -> None:
    man = manifest(tmp_path, two_heads["onnx"])
    dest = repo_path(tmp_path, "resnet/1/model.onnx")
    for uri in ("export://resnet-export/onnx", "export://resnet-export"):
        rc, repo = run(tmp_path, f"--uri={uri}", "--format=auto", f"--manifest=file://{man}", f"--dest={dest}")
        assert rc == 0
        assert sha256(Path(dest)) == sha256(two_heads["onnx"])


@pytest.mark.parametrize("uri, manifest_args, target, expect", [
    ("export://resnet-export/onnx", False, {}, "needs --manifest"),
    ("export://other/onnx", True, {}, "belongs to ModelExport 'resnet-export', not 'other'"),
    ("export://resnet-export/nope", True, {}, "has no target 'nope' (targets: tflite, onnx)"),
    ("export://resnet-export/tflite", True, {}, "did not succeed: boom"),
    ("export://resnet-export/onnx", True, {"sha256": "0" * 64}, "does not match the manifest's"),
])
def test_export_errors_are_one_line(tmp_path, two_heads, capsys, uri, manifest_args, target, expect) -> None:
    man = manifest(tmp_path, two_heads["onnx"], **target)
    args = [f"--uri={uri}", "--format=auto", f"--dest={repo_path(tmp_path, 'resnet/1/model.onnx')}"]
    if manifest_args:
        args.append(f"--manifest=file://{man}")
    rc, _ = run(tmp_path, *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc in (1, 2) and len(err) == 1, err
    assert expect in err[0] and "://" in err[0]


def test_dest_outside_the_repository_is_refused(tmp_path, two_heads, capsys) -> None:
    rc, _ = run(tmp_path, f"--uri=file://{two_heads['onnx']}", "--format=onnx", f"--dest={tmp_path}/elsewhere/model.onnx")
    assert rc == 2 and "is not inside --repository" in capsys.readouterr().err


def test_pt2_with_a_pickled_weight_is_refused_before_the_mar_is_built(tmp_path, two_heads, capsys) -> None:
    """TorchServe's handler would torch.export.load the .pt2 in every serving pod, unpickling what
    it marks use_pickle: the storage initializer refuses it unless spec.model.allowPickle."""
    from ..exporters.mp_export_models import pickled_pt2

    marker = tmp_path / "marker"
    evil = pickled_pt2(two_heads["pt2"], tmp_path / "evil.pt2", marker)
    md = deployment(model={"uri": f"file://{evil}", "format": "pt2"}, runtime={"kind": "torchserve"})
    dest = repo_path(tmp_path, get_runtime("torchserve").artifact_path(md))
    rc, _ = run(tmp_path, f"--uri=file://{evil}", "--format=pt2", f"--dest={dest}")
    assert capsys.readouterr().err.strip() == (
        f"modelpilot-storage-init: error: file://{evil}: refusing to load: the .pt2 holds entries that run "
        "code when loaded: data/weights/weight_0 (lin.weight: marked use_pickle). Re-export it with plain "
        "tensors, or set spec.model.allowPickle: true if you trust whoever wrote the file as you trust code you run")
    assert rc == 2 and not Path(dest).exists() and not marker.exists()
    from modelpilot.render import build_revision_deployment

    from ..unit.helpers import CONFIG

    allowed = deployment(model={"uri": f"file://{evil}", "format": "pt2", "allowPickle": True},
                         runtime={"kind": "torchserve"})
    init = build_revision_deployment(allowed, 1, CONFIG, 1)["spec"]["template"]["spec"]["initContainers"][0]
    assert "--allow-pickle" in init["args"]
    assert "--allow-pickle" not in build_revision_deployment(md, 1, CONFIG, 1)["spec"]["template"]["spec"][
        "initContainers"][0]["args"]
    rc, _ = run(tmp_path, f"--uri=file://{evil}", "--format=pt2", f"--dest={dest}", "--allow-pickle")
    assert rc == 0 and Path(dest).is_file(), capsys.readouterr().err
    with zipfile.ZipFile(dest) as z:
        assert json.loads(z.read("modelpilot.json")) == {"allowPickle": True} and "pt2_archive.py" in z.namelist()
    assert not marker.exists()


def test_the_torchserve_handler_checks_a_pt2_again_before_loading_it(tmp_path, two_heads) -> None:
    """Defence in depth: a .mar with our handler, built without the storage initializer's check (as
    by hand), still refuses the hostile .pt2. The handler's own check, on the files it was packed with."""
    import importlib.util

    from ..exporters.mp_export_models import pickled_pt2

    marker = tmp_path / "marker"
    evil = pickled_pt2(two_heads["pt2"], tmp_path / "evil.pt2", marker)
    storage_init.build_mar(evil, "pt2", tmp_path / "m.mar", "m", None, tmp_path)
    model_dir = tmp_path / "model-dir"  # where TorchServe unpacks a .mar
    with zipfile.ZipFile(tmp_path / "m.mar") as z:
        z.extractall(model_dir)
    spec = importlib.util.spec_from_file_location("modelpilot_handler", model_dir / storage_init.HANDLER_FILE)
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    with pytest.raises(RuntimeError, match=r"model.pt2: refusing to load: .* spec.model.allowPickle: true"):
        handler.ModelpilotTensorHandler._refuse_code_in(str(model_dir / "model.pt2"), str(model_dir))
    assert not marker.exists()
    handler.ModelpilotTensorHandler._refuse_code_in(str(two_heads["pt2"]), str(model_dir))  # a clean model passes


def test_console_script_as_rendered_in_the_pod(tmp_path, two_heads) -> None:
    """The init container's exact args from render.py, with the paths moved to a temporary directory."""
    from modelpilot.render import build_revision_deployment

    from ..unit.helpers import CONFIG

    md = deployment(model={"uri": f"file://{two_heads['onnx']}", "format": "onnx"})
    dep = build_revision_deployment(md, 1, CONFIG, 1)
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    cfg = kubelet_config_dir(tmp_path / "cfg", get_runtime("triton").config_files(md))
    args = [a.replace(f"={MODEL_REPOSITORY}", f"={tmp_path}/models").replace("=/etc/modelpilot/model-config", f"={cfg}")
            for a in init["args"]]
    exe = Path(sys.executable).parent / init["command"][0]
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "models" / "resnet" / "1" / "model.onnx").is_file()
    assert (tmp_path / "models" / "resnet" / "config.pbtxt").is_file()


@pytest.mark.integration
def test_s3_savedmodel_prefix_with_endpoint_and_bad_credentials(tmp_path, monkeypatch, capsys) -> None:
    """A SavedModel under an s3:// prefix on a real S3-compatible server (moto's, on 127.0.0.1)."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        s3.put_object(Bucket="models", Key="mobilenet/saved_model/saved_model.pb", Body=b"pb")
        s3.put_object(Bucket="models", Key="mobilenet/saved_model/variables/variables.index", Body=b"ix")
        dest = repo_path(tmp_path, "mobilenet/1")
        rc, repo = run(tmp_path, "--uri=s3://models/mobilenet/saved_model", "--format=savedmodel",
                       f"--endpoint={endpoint}", f"--dest={dest}")
        assert rc == 0, capsys.readouterr().err
        assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()) == [
            "mobilenet/1/saved_model.pb", "mobilenet/1/variables/variables.index"]
        rc, _ = run(tmp_path, "--uri=s3://models/nothing-here", "--format=savedmodel", f"--endpoint={endpoint}",
                    f"--dest={dest}")
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "s3://models/nothing-here: not found" in err[0]
    finally:
        srv.stop()
