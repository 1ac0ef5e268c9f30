"""What a model's source may do to the export Job and the storage initializer, over real transports
(docs/security.md, "Model files and sources"): a .pt2 whose pickled weight runs code, object keys
that climb out of the download directory (moto's S3 server), credentials sent where they do not
belong (two local HTTP servers on 127.0.0.1 are two origins), and secrets in URIs copied into
logs, termination messages and manifest.json."""

from __future__ import annotations

import http.server
import shutil
import threading
import uuid
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
