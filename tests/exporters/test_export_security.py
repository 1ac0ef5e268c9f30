"""What a model's source may do to the export Job, over real transports (docs/security.md, "Model
files and sources"): object keys that climb out of the download directory (moto's S3 server)."""

from __future__ import annotations

import uuid

import pytest

from modelpilot_exporters import sources
from modelpilot_exporters.errors import InputError


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

