"""What a model's source may do to the export Job and the storage initializer, over real transports
(docs/security.md, "Model files and sources"): a .pt2 whose pickled weight runs code, object keys
that climb out of the download directory (moto's S3 server), credentials sent where they do not
belong (two local HTTP servers on 127.0.0.1 are two origins), secrets in URIs copied into logs,
termination messages and manifest.json, and downloads and archives without a bound (zip bombs)."""

from __future__ import annotations

import http.server
import io
import shutil
import tarfile
import threading
import uuid
import zipfile
from contextlib import contextmanager

import pytest

from modelpilot_exporters import sources, storage_init
from modelpilot_exporters.errors import InputError

import mp_export_models as mm
from conftest import MLP_INPUTS



def test_a_pt2_with_a_pickled_weight_is_refused_unless_allowed(export, models, tmp_path):
    """A real hostile .pt2: its first weight is marked use_pickle, and its pickle writes a marker
    file. torch.export.load would run it (allowPickle: true shows that it does)."""
    marker = tmp_path / "marker"
    evil = mm.pickled_pt2(models["mlp_pt2"], tmp_path / "evil.pt2", marker)
    spec = {"source": {"uri": f"file://{evil}", "format": "pytorch"}, "inputs": MLP_INPUTS,
            "targets": [{"format": "onnx"}]}
    r = export(spec)
    assert not marker.exists()
    assert r.rc == 2
    assert r.term["message"] == (
        f"spec.source.uri: file://{evil}: refusing to load: the .pt2 holds entries that run code when "
        "loaded: data/weights/weight_0 (0.weight: marked use_pickle). Re-export it with plain tensors, "
        "or set spec.source.allowPickle: true if you trust whoever wrote the file as you trust code you run")
    spec["source"]["allowPickle"] = True
    export(spec)
    assert marker.read_text() == "pwned"


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A boto3 client of the moto server, with the credentials the exporter reads from the env."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


@pytest.mark.parametrize("shape", ["dotdot", "absolute"])
def test_prefix_keys_cannot_write_outside_the_download_directory(s3, s3_server, tmp_path, shape):
    """A prefix (a SavedModel directory) holding one hostile key: `..` segments, or a `/` right
    after the prefix. The victim is another export's manifest.json on a shared output claim."""
    victim = tmp_path / "claim" / "other-export" / "manifest.json"
    victim.parent.mkdir(parents=True)
    victim.write_text("theirs")
    rel = ("../" * 32 + str(victim).lstrip("/")) if shape == "dotdot" else str(victim)
    bucket = f"hostile-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="sm/saved_model.pb", Body=b"pb")
    s3.put_object(Bucket=bucket, Key=f"sm/{rel}", Body=b"pwned")
    assert any(o["Key"] == f"sm/{rel}" for o in s3.list_objects_v2(Bucket=bucket)["Contents"]), \
        "the S3 server must keep the hostile key as it is, or this test proves nothing"
    work = tmp_path / "work"
    with pytest.raises(InputError) as e:
        sources.fetch(f"s3://{bucket}/sm", work, endpoint=s3_server)
    assert victim.read_text() == "theirs"
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"pwned"]
    assert str(e.value) == (f"spec.source.uri: s3://{bucket}/sm: refusing object {rel!r}: it would be "
                            "written outside the download directory; object names under the prefix must "
                            "not start with '/' or contain '..' segments: rename it in the bucket")
    # the same prefix without the hostile key downloads as before
    s3.delete_object(Bucket=bucket, Key=f"sm/{rel}")
    got = sources.fetch(f"s3://{bucket}/sm", work, endpoint=s3_server)
    assert [p.relative_to(got).as_posix() for p in got.rglob("*")] == ["saved_model.pb"]


@contextmanager
def http_server(routes):
    """A real HTTP server on 127.0.0.1. ``routes(path, headers)`` returns (status, headers, body);
    every request's path and headers are recorded in the yielded ``seen`` list."""
    seen: list[tuple[str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, dict(self.headers)))
            status, headers, body = routes(self.path, self.headers)
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a, **k):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()


def test_authorization_stays_with_its_origin_and_presigned_redirects_work(tmp_path, monkeypatch):
    """The model server answers an authorized request with a redirect to a presigned URL on
    another origin (object storage). That origin must not see the Secret; and like S3 it refuses a
    request that carries an Authorization header next to a presigned query (two auth mechanisms)."""
    monkeypatch.setenv("HTTP_AUTHORIZATION", "Bearer s3cret")
    monkeypatch.setenv("HTTP_ALLOW_INSECURE_AUTHORIZATION", "true")  # both servers are plain http

    def storage(path, headers):
        if headers.get("Authorization"):
            return 400, {}, b"Only one auth mechanism allowed"
        return 200, {}, b"weights"

    with http_server(storage) as (store, store_seen):
        presigned = f"{store}/bucket/model.onnx?X-Amz-Signature=abc&X-Amz-Expires=60"

        def registry(path, headers):
            if headers.get("Authorization") != "Bearer s3cret":
                return 401, {}, b""
            if path == "/same-origin":
                return 302, {"Location": "/model.onnx"}, b""
            return (302, {"Location": presigned}, b"") if path == "/model.onnx" else (404, {}, b"")

        with http_server(registry) as (reg, reg_seen):
            got = sources.fetch(f"{reg}/same-origin", tmp_path / "work")
    assert got.name == "same-origin" and got.read_bytes() == b"weights"
    assert [(p, h.get("Authorization")) for p, h in reg_seen] == [
        ("/same-origin", "Bearer s3cret"), ("/model.onnx", "Bearer s3cret")]
    assert [(p, h.get("Authorization")) for p, h in store_seen] == [
        ("/bucket/model.onnx?X-Amz-Signature=abc&X-Amz-Expires=60", None)]


def test_credentials_are_not_sent_over_plain_http_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTP_AUTHORIZATION", "Bearer s3cret")
    with http_server(lambda path, headers: (200, {}, b"weights")) as (base, seen):
        with pytest.raises(InputError) as e:
            sources.fetch(f"{base}/m.onnx", tmp_path / "work", field="spec.model.uri")
        assert seen == []
        assert str(e.value) == (
            f"spec.model.uri: {base}/m.onnx: refusing to send HTTP_AUTHORIZATION (from the secretRef's "
            "Secret) over plain http://, where anyone on the way can read it: use https://, or add "
            "HTTP_ALLOW_INSECURE_AUTHORIZATION=true to that Secret to allow it")
        monkeypatch.setenv("HTTP_ALLOW_INSECURE_AUTHORIZATION", "true")
        assert sources.fetch(f"{base}/m.onnx", tmp_path / "work").read_bytes() == b"weights"
        assert [h.get("Authorization") for _, h in seen] == ["Bearer s3cret"]


def test_uris_are_redacted_in_logs_termination_messages_and_the_manifest(export, models, http_dir, tmp_path,
                                                                         capsys, monkeypatch):
    root, base = http_dir
    shutil.copy(models["mlp_pt2"], root / "mlp.pt2")
    shutil.copy(models["mlp_onnx"], root / "mlp.onnx")
    presigned = f"{base}/mlp.pt2?X-Amz-Signature=s3cr3t&X-Amz-Expires=60"
    r = export({"source": {"uri": presigned, "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "onnx"}]})
    assert r.rc == 0, r.stderr
    assert r.manifest["source"]["uri"] == f"{base}/mlp.pt2?X-Amz-Signature=REDACTED&X-Amz-Expires=REDACTED"
    r = export({"source": {"uri": f"{base}/missing.pt2?token=s3cr3t", "format": "pytorch"},
                "inputs": MLP_INPUTS, "targets": [{"format": "onnx"}]})
    assert r.rc == 2
    assert r.term["message"] == f"spec.source.uri: {base}/missing.pt2?token=REDACTED: HTTP 404 not found"
    shown = [r.stderr, (r.out / "manifest.json").read_text(), (tmp_path / "test.term").read_text()]
    # the storage initializer: its log line, its error and its termination message
    term = tmp_path / "storage-init.term"
    monkeypatch.setenv("MODELPILOT_TERMINATION_LOG", str(term))
    for uri in (f"{base}/mlp.onnx?X-Amz-Signature=s3cr3t", f"{base}/nope.onnx?X-Amz-Signature=s3cr3t"):
        storage_init.main([f"--uri={uri}", "--format=onnx", f"--repository={tmp_path}/models",
                           f"--dest={tmp_path}/models/m/1/model.onnx"])
    out = capsys.readouterr()
    shown += [out.out, out.err, term.read_text()]
    assert f"{base}/mlp.onnx?X-Amz-Signature=REDACTED (onnx) -> " in out.out
    assert term.read_text() == f"spec.model.uri: {base}/nope.onnx?X-Amz-Signature=REDACTED: HTTP 404 not found"
    assert [text for text in shown if "s3cr3t" in text] == []


def test_an_output_uri_with_credentials_is_refused(export):
    r = export({"source": {"uri": "file:///m.pt2", "format": "pytorch"}, "inputs": MLP_INPUTS,
                "targets": [{"format": "onnx"}], "output": {"uri": "s3://b/out?token=s3cr3t"}})
    assert r.rc == 2
    assert r.term["message"] == ("spec.output.uri: must not carry user info, a query string or a fragment: "
                                 "the artifact URIs in manifest.json and the status are built from it; "
                                 "credentials go in spec.output.secretRef")


def _disk_bytes(root) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _zip_bomb(path, size=100 << 20):
    """A real zip bomb in miniature: ~100 KiB on disk, 100 MiB once unpacked."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("sm/saved_model.pb", "w", force_zip64=True) as f:
            for _ in range(size >> 20):
                f.write(bytes(1 << 20))
    return path


def _tar_bomb(path, size=100 << 20):
    with tarfile.open(path, "w:gz", compresslevel=1) as t:
        info = tarfile.TarInfo("sm/saved_model.pb")
        info.size = size
        t.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_archives_that_unpack_past_the_limits_are_refused_before_unpacking(export, tmp_path):
    zbomb, tbomb = _zip_bomb(tmp_path / "bomb.zip"), _tar_bomb(tmp_path / "bomb.tar.gz")
    assert zbomb.stat().st_size < 1 << 20 and tbomb.stat().st_size < 1 << 20
    limits = sources.Limits(unpacked_bytes=64 << 20)
    for bomb in (zbomb, tbomb):
        work = tmp_path / f"work-{bomb.name}"
        with pytest.raises(InputError) as e:
            sources.fetch(f"file://{bomb}", work, limits=limits)
        assert str(e.value) == (f"spec.source.uri: file://{bomb}: {bomb.name} unpacks to more than "
                                "spec.source.limits.maxUnpackedSize (64Mi); raise "
                                "spec.source.limits.maxUnpackedSize if the model really is that large")
        assert _disk_bytes(work) == 0
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(30):
            z.writestr(f"sm/variables/shard-{i}", b"x")
    with pytest.raises(InputError, match=r"many.zip holds more files than spec.source.limits.maxFiles \(20\); raise"):
        sources.fetch(f"file://{many}", tmp_path / "work-many", limits=sources.Limits(files=20))
    # the field, through the export command; under the limit, the same archive unpacks as before
    r = export({"source": {"uri": f"file://{zbomb}", "format": "tensorflow", "limits": {"maxUnpackedSize": "64Mi"}},
                "inputs": [{"name": "x", "shape": [-1, 4]}], "targets": [{"format": "savedmodel"}]})
    assert r.rc == 2 and "bomb.zip unpacks to more than spec.source.limits.maxUnpackedSize (64Mi)" in r.term["message"]
    got = sources.fetch(f"file://{zbomb}", tmp_path / "work-ok", limits=sources.Limits(unpacked_bytes=128 << 20))
    assert (got / "saved_model.pb").stat().st_size == 100 << 20


def test_downloads_past_the_limit_are_refused(tmp_path, s3, s3_server, monkeypatch, capsys):
    body = bytes(3 << 20)

    def announced(path, headers):
        return 200, {}, body

    class Unannounced(http.server.BaseHTTPRequestHandler):
        """HTTP/1.0 without Content-Length: the size is known only by reading."""

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a, **k):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unannounced)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    limits = sources.Limits(download_bytes=1 << 20)
    want = ("the download is larger than spec.source.limits.maxDownloadSize (1Mi); raise "
            "spec.source.limits.maxDownloadSize if the model really is that large")
    try:
        with http_server(announced) as (base, _):
            for uri in (f"{base}/m.onnx", f"http://127.0.0.1:{srv.server_address[1]}/m.onnx"):
                work = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
                with pytest.raises(InputError) as e:
                    sources.fetch(uri, work, limits=limits)
                assert str(e.value) == f"spec.source.uri: {uri}: {want}"
                assert _disk_bytes(work) <= 1 << 20
            # the storage initializer, with the flags render.py derives from spec.model.limits
            from modelpilot.api.modeldeployment import parse_model_deployment
            from modelpilot.render import build_revision_deployment
            from tests.unit.helpers import CONFIG, md

            dep = parse_model_deployment(md(model={"uri": f"{base}/m.onnx", "format": "onnx",
                                                   "limits": {"maxDownloadSize": "1Mi", "maxFiles": 5}}))
            args = build_revision_deployment(dep, 1, CONFIG, 1)["spec"]["template"]["spec"]["initContainers"][0]["args"]
            assert [a for a in args if a.startswith("--max-")] == ["--max-download-size=1Mi", "--max-files=5"]
            rc = storage_init.main([f"--uri={base}/m.onnx", "--format=onnx", f"--repository={tmp_path}/models",
                                    f"--dest={tmp_path}/models/m/1/model.onnx", "--max-download-size=1Mi"])
            assert rc == 2
            assert capsys.readouterr().err.strip().splitlines()[-1] == (  # before it: servers' broken pipes
                f"modelpilot-storage-init: error: spec.model.uri: {base}/m.onnx: " + want.replace("spec.source", "spec.model"))
    finally:
        srv.shutdown()
        srv.server_close()
    # s3: one object, and a prefix whose objects add up past the limit
    s3.create_bucket(Bucket="big")
    s3.put_object(Bucket="big", Key="m.onnx", Body=body)
    for i in range(3):
        s3.put_object(Bucket="big", Key=f"sm/variables/part-{i}", Body=bytes(600 << 10))
    for uri in ("s3://big/m.onnx", "s3://big/sm"):
        with pytest.raises(InputError) as e:
            sources.fetch(uri, tmp_path / "work-s3", endpoint=s3_server, limits=limits)
        assert str(e.value) == f"spec.source.uri: {uri}: {want}"
    assert _disk_bytes(tmp_path / "work-s3") <= 1 << 20
