"""Sources and outputs over real transports: pvc:// with a stand-in root, http:// from a local
server, s3:// against a real S3-compatible server (moto's) on 127.0.0.1, and the one-line errors
for missing sources and bad credentials. Also the console script as a subprocess."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import MLP_INPUTS, free_port


def test_pvc_source_and_output(export, models, tmp_path, monkeypatch):
    root = tmp_path / "pvcroot"
    (root / "models" / "mlp").mkdir(parents=True)
    shutil.copy(models["mlp_pt2"], root / "models" / "mlp" / "model.pt2")
    monkeypatch.setenv("MODELPILOT_PVC_ROOT", str(root))
    r = export({"source": {"uri": "pvc://models/mlp/model.pt2", "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "onnx"}], "output": {"uri": "pvc://models/exports/mlp"}},
               out=root / "models" / "exports" / "mlp")
    assert r.rc == 0, r.stderr
    assert (root / "models" / "exports" / "mlp" / "onnx" / "model.onnx").is_file()
    assert r.term["artifacts"][0]["uri"] == "pvc://models/exports/mlp/onnx/model.onnx"
    r = export({"source": {"uri": "pvc://models/nope.pt2", "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "onnx"}]})
    assert r.rc == 2
    assert r.term["message"].startswith("spec.source.uri: pvc://models/nope.pt2: not found (looked at ")


def test_http_source_and_archived_savedmodel(export, models, tf_savedmodel, http_dir):
    root, base = http_dir
    shutil.copy(models["mlp_pt2"], root / "mlp.pt2")
    shutil.make_archive(str(root / "sm"), "gztar", root_dir=tf_savedmodel.parent, base_dir=tf_savedmodel.name)
    r = export({"source": {"uri": f"{base}/mlp.pt2", "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "pt2"}]})
    assert r.rc == 0, r.stderr
    assert r.manifest["source"]["sha256"] == __import__("hashlib").sha256(models["mlp_pt2"].read_bytes()).hexdigest()
    r = export({"source": {"uri": f"{base}/sm.tar.gz", "format": "tensorflow"},
                "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 16]}],
                "targets": [{"format": "tflite"}]})
    assert r.rc == 0, r.stderr
    r = export({"source": {"uri": f"{base}/missing.pt2", "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "onnx"}]})
    assert r.rc == 2 and r.term["message"] == f"spec.source.uri: {base}/missing.pt2: HTTP 404 not found"


def test_http_authorization(export, models, tmp_path, monkeypatch):
    """HTTP_AUTHORIZATION (from secretRef) is sent as the Authorization header; a server that
    rejects the request gives one line naming the URI."""
    root = tmp_path / "private"
    root.mkdir()
    shutil.copy(models["mlp_pt2"], root / "mlp.pt2")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer s3cret":
                self.send_error(401)
                return
            super().do_GET()

        def log_message(self, *a, **k):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{srv.server_address[1]}/mlp.pt2"
    try:
        spec = {"source": {"uri": uri, "format": "pytorch"}, "inputs": MLP_INPUTS, "targets": [{"format": "pt2"}]}
        r = export(spec)
        assert r.rc == 2
        assert r.term["message"] == f"spec.source.uri: {uri}: HTTP 401 unauthorized (check HTTP_AUTHORIZATION from secretRef)"
        monkeypatch.setenv("HTTP_AUTHORIZATION", "Bearer s3cret")
        r = export(spec)
        assert r.rc == 2 and "refusing to send HTTP_AUTHORIZATION" in r.term["message"]
        monkeypatch.setenv("HTTP_ALLOW_INSECURE_AUTHORIZATION", "true")  # this server is plain http
        r = export(spec)
        assert r.rc == 0, r.stderr
    finally:
        srv.shutdown()
        srv.server_close()


def test_s3_source_and_output(export, models, tf_savedmodel, s3_server, monkeypatch, tmp_path):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    s3.upload_file(str(models["mlp_pt2"]), "models", "mlp/model.pt2")
    for p in tf_savedmodel.rglob("*"):  # a SavedModel directory under a prefix
        if p.is_file():
            s3.upload_file(str(p), "models", f"tf/sm/{p.relative_to(tf_savedmodel).as_posix()}")
    r = export({"source": {"uri": "s3://models/mlp/model.pt2", "format": "pytorch", "endpoint": s3_server},
                "inputs": MLP_INPUTS, "targets": [{"format": "onnx"}],
                "output": {"uri": "s3://models/exports/mlp", "endpoint": s3_server}}, out=tmp_path / "unused")
    assert r.rc == 0, r.stderr
    assert r.term["manifestUri"] == "s3://models/exports/mlp/manifest.json"
    assert r.term["artifacts"][0]["uri"] == "s3://models/exports/mlp/onnx/model.onnx"
    man = json.loads(s3.get_object(Bucket="models", Key="exports/mlp/manifest.json")["Body"].read())
    body = s3.get_object(Bucket="models", Key="exports/mlp/onnx/model.onnx")["Body"].read()
    assert __import__("hashlib").sha256(body).hexdigest() == man["targets"][0]["sha256"] == r.term["artifacts"][0]["sha256"]
    r = export({"source": {"uri": "s3://models/tf/sm", "format": "tensorflow", "endpoint": s3_server},
                "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 16]}],
                "targets": [{"format": "savedmodel"}]})
    assert r.rc == 0, r.stderr
    # missing key / missing bucket: one line naming the URI, exit 2
    r = export({"source": {"uri": "s3://models/nope.pt2", "format": "pytorch", "endpoint": s3_server},
                "inputs": MLP_INPUTS, "targets": [{"format": "onnx"}]})
    assert r.rc == 2 and r.term["message"].startswith("spec.source.uri: s3://models/nope.pt2: not found")
    r = export({"source": {"uri": "s3://nobucket/x.pt2", "format": "pytorch", "endpoint": s3_server},
                "inputs": MLP_INPUTS, "targets": [{"format": "onnx"}]})
    assert r.rc == 2 and r.term["message"].startswith("spec.source.uri: s3://nobucket/x.pt2:")
    assert "\n" not in r.term["message"]


@pytest.fixture
def s3_server_with_auth(tmp_path):
    """A second S3-compatible server (moto_server, own process) that checks credentials from the
    first request on: an unknown access key is rejected for real (InvalidAccessKeyId)."""
    import time
    import urllib.request

    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0")
    log = open(tmp_path / "moto.log", "w")
    proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except Exception:  # noqa: BLE001
                if proc.poll() is not None:
                    pytest.fail(f"moto_server exited: {(tmp_path / 'moto.log').read_text()[-1000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_s3_bad_credentials(export, s3_server_with_auth, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    r = export({"source": {"uri": "s3://secure/m.pt2", "format": "pytorch", "endpoint": s3_server_with_auth},
                "inputs": MLP_INPUTS, "targets": [{"format": "onnx"}]})
    assert r.rc == 2
    msg = r.term["message"]
    assert msg.startswith("spec.source.uri: s3://secure/m.pt2: access denied"), msg
    assert "secretRef" in msg and "\n" not in msg


def test_gs_without_client_library(export):
    import importlib.util

    try:
        if importlib.util.find_spec("google.cloud.storage") is not None:
            pytest.skip("google-cloud-storage is installed here")
    except ModuleNotFoundError:
        pass
    r = export({"source": {"uri": "gs://bucket/model.pt2", "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "onnx"}]})
    assert r.rc == 2
    assert r.term["message"].startswith("spec.source.uri: gs://bucket/model.pt2: gs:// needs the "
                                        "google-cloud-storage package")


def test_missing_file_source(export):
    r = export({"source": {"uri": "file:///nonexistent/model.pt2", "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "onnx"}]})
    assert r.rc == 2
    assert r.term == {"phase": "Failed", "message": "spec.source.uri: file:///nonexistent/model.pt2: not found",
                      "manifestUri": r.term["manifestUri"], "artifacts": []}
    assert r.manifest["phase"] == "Failed"


def test_console_script(tmp_path, models):
    """The real entry point in a subprocess: exit codes, stderr progress, termination message."""
    exe = Path(sys.executable).parent / "modelpilot-export"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "modelpilot_exporters"]
    out = tmp_path / "out"
    doc = {"kind": "ModelExport", "metadata": {"name": "cli"},
           "spec": {"source": {"uri": f"file://{models['mlp_pt2']}", "format": "pytorch"}, "inputs": MLP_INPUTS,
                    "targets": [{"format": "onnx", "quantization": {"mode": "int8"}}],
                    "output": {"uri": f"file://{out}"}}}
    f = tmp_path / "mex.yaml"
    import yaml

    f.write_text(yaml.safe_dump(doc))
    env = dict(os.environ, MODELPILOT_TERMINATION_LOG=str(tmp_path / "term"))
    p = subprocess.run(cmd + ["-f", str(f)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2
    want = ("spec.targets[0].quantization.calibration: static int8 needs calibration data; "
            "set uri to an .npz or synthetic: true")
    assert p.stderr.strip().splitlines()[-1] == f"modelpilot-export: error: {want}"
    assert json.loads((tmp_path / "term").read_text())["message"] == want
    doc["spec"]["targets"][0]["quantization"]["calibration"] = {"synthetic": True}
    f.write_text(yaml.safe_dump(doc))
    p = subprocess.run(cmd + ["-f", str(f), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "onnx: validate on 8 sample(s) done in" in p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["phase"] == "Succeeded" and res["artifacts"][0]["format"] == "onnx"
    assert json.loads((tmp_path / "term").read_text()) == res


def test_an_unreadable_local_source_is_one_line_naming_the_field(tmp_path):
    """Found by running the exporter image as the pod's user: a file it may not read was a traceback."""
    import os

    import pytest as _pytest

    from modelpilot_exporters import sources
    from modelpilot_exporters.errors import InputError

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "m.onnx").write_bytes(b"x")
    locked.chmod(0o000)
    try:
        if os.access(locked / "m.onnx", os.R_OK):  # root reads anything: drop to another user to check
            pid = os.fork()
            if pid == 0:
                os.setgid(1000)
                os.setuid(1000)
                try:
                    sources.fetch(f"file://{locked}/m.onnx", tmp_path / "w")
                except InputError as e:
                    os._exit(0 if "spec.source.uri" in str(e) and "not readable" in str(e) else 2)
                os._exit(3)
            assert os.waitpid(pid, 0)[1] == 0
        else:
            with _pytest.raises(InputError, match="spec.source.uri: .*not readable"):
                sources.fetch(f"file://{locked}/m.onnx", tmp_path / "w")
    finally:
        locked.chmod(0o755)
