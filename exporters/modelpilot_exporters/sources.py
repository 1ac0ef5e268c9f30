"""Reading sources and writing outputs by URI.

Schemes:

* ``file:///abs/path`` - a local path (file or directory).
* ``pvc://<claim>/<path>`` - the Job mounts the claim at ``/mnt/pvc/<claim>``; the root is
  overridable by env ``MODELPILOT_PVC_ROOT`` so that a local directory can stand in.
* ``http(s)://`` - downloaded with urllib; env ``HTTP_AUTHORIZATION`` becomes the
  ``Authorization`` header, sent over https:// only (unless env
  ``HTTP_ALLOW_INSECURE_AUTHORIZATION=true``) and never to another origin after a redirect.
* ``s3://bucket/key`` - boto3; ``endpoint`` overrides the endpoint (MinIO and friends);
  credentials from env ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (the Job gets them from
  ``spec.source.secretRef``). A key that names a "directory" (a prefix) is downloaded whole,
  which is how a SavedModel directory is read.
* ``gs://bucket/key`` - only if the optional ``google-cloud-storage`` package is installed;
  credentials from env ``GOOGLE_APPLICATION_CREDENTIALS_JSON``.

Downloads ending in ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip`` are unpacked (a SavedModel over
http is an archive). :class:`Limits` bounds the bytes downloaded, and the bytes and files an
archive unpacks to (a zip bomb), checked before they are written. Every failure is an
:class:`InputError` with ONE line naming the URI.
Outputs can go to ``file://``, ``pvc://`` or ``s3://``.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def _size(n: int) -> str:
    for unit, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one fetch may write to the pod's disk. ``field`` is where the spec sets
    them (``spec.source.limits`` / ``spec.model.limits``), so that an error says how to raise one."""

    download_bytes: int = 50 << 30
    unpacked_bytes: int = 50 << 30
    files: int = 10_000
    field: str = "spec.source.limits"

    def _refuse(self, what: str, excess: str, key: str, limit: str) -> InputError:
        return InputError(f"{what}: {excess} {self.field}.{key} ({limit}); raise {self.field}.{key} "
                          "if the model really is that large")

    def check_download(self, total: int, what: str) -> None:
        if total > self.download_bytes:
            raise self._refuse(what, "the download is larger than", "maxDownloadSize", _size(self.download_bytes))

    def check_files(self, n: int, what: str, where: str) -> None:
        if n > self.files:
            raise self._refuse(what, f"{where} holds more files than", "maxFiles", str(self.files))

    def check_unpacked(self, total: int, what: str, name: str) -> None:
        if total > self.unpacked_bytes:
            raise self._refuse(what, f"{name} unpacks to more than", "maxUnpackedSize", _size(self.unpacked_bytes))


def pvc_root() -> Path:
    return Path(os.environ.get("MODELPILOT_PVC_ROOT", "/mnt/pvc"))


def is_local(uri: str) -> bool:
    return uri.startswith(("file://", "pvc://"))


def local_path(uri: str) -> Path:
    """Map a ``file://`` or ``pvc://`` URI to the local path (no existence check)."""
    if uri.startswith("file://"):
        p = urllib.parse.unquote(uri[len("file://"):])
        if not p.startswith("/"):
            # file://relative/path is not standard, but people write it: resolve against the cwd
            p = os.path.abspath(p)
        return Path(p)
    if uri.startswith("pvc://"):
        rest = uri[len("pvc://"):]
        claim, _, sub = rest.partition("/")
        return pvc_root() / claim / sub
    raise ValueError(f"not a local URI: {uri}")


def _split_bucket(uri: str, scheme: str) -> tuple[str, str]:
    rest = uri[len(scheme):]
    bucket, _, key = rest.partition("/")
    return bucket, key


def fetch(uri: str, workdir: Path, *, endpoint: str | None = None, field: str = "spec.source.uri",
          limits: Limits = Limits()) -> Path:
    """Make ``uri`` available locally and return its path (a file or a directory).

    Local URIs are returned in place (no copy). Remote ones are downloaded under ``workdir``.
    Downloads and archives are bounded by ``limits``.
    """
    what = f"{field}: {uri}"
    if is_local(uri):
        p = local_path(uri)
        try:
            p.stat()
        except PermissionError as e:
            raise InputError(f"{what}: not readable by this pod's user (uid {os.getuid()}): {e.strerror}; give the "
                             "volume's files read permission for it, or set the pod's fsGroup") from e
        except OSError:
            pass
        if not p.exists():
            hint = ""
            if uri.startswith("pvc://"):
                hint = f" (looked at {p}; the claim is mounted under MODELPILOT_PVC_ROOT={pvc_root()})"
            raise InputError(f"{what}: not found{hint}")
        return _maybe_unpack(p, workdir, limits, what) if p.is_file() else p
    workdir.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="src-", dir=workdir))
    if uri.startswith(("http://", "https://")):
        p = _fetch_http(uri, dest, what, limits)
    elif uri.startswith("s3://"):
        p = _fetch_s3(uri, dest, endpoint, what, limits)
    elif uri.startswith("gs://"):
        p = _fetch_gs(uri, dest, what, limits)
    else:
        raise InputError(f"{what}: unsupported URI scheme")
    return _maybe_unpack(p, workdir, limits, what) if p.is_file() else p


def _zip_members(z: zipfile.ZipFile, limits: Limits, what: str, name: str) -> None:
    """Check a zip's declared sizes (zipfile never writes more than a member declares)."""
    infos = z.infolist()
    limits.check_files(len(infos), what, name)
    limits.check_unpacked(sum(i.file_size for i in infos), what, name)


def _tar_members(t: tarfile.TarFile, limits: Limits, what: str, name: str) -> None:
    """Walk a tar's headers, stopping as soon as a limit is passed (a compressed tar is read, not
    written, to find them)."""
    n = total = 0
    for member in t:
        n += 1
        total += member.size
        limits.check_files(n, what, name)
        limits.check_unpacked(total, what, name)


def _maybe_unpack(p: Path, workdir: Path, limits: Limits, what: str) -> Path:
    name = p.name.lower()
    if not name.endswith(ARCHIVE_SUFFIXES):
        return p
    workdir.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="unpacked-", dir=workdir))
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(p) as z:
                _zip_members(z, limits, what, p.name)
                z.extractall(out)
        else:
            with tarfile.open(p) as t:
                _tar_members(t, limits, what, p.name)
                t.extractall(out, filter="data")
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise InputError(f"cannot unpack {p.name}: {e}") from e
    entries = list(out.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else out


INSECURE_AUTHORIZATION_ENV = "HTTP_ALLOW_INSECURE_AUTHORIZATION"


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urllib.parse.urlsplit(url)
    return u.scheme.lower(), (u.hostname or "").lower(), u.port or {"http": 80, "https": 443}.get(u.scheme.lower())


class _SameOriginAuthorization(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send ``Authorization`` only to the origin it was given for (what
    requests and curl do). A presigned URL on another host then works, and sees no credentials."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _copy_bounded(r, f, limits: Limits, what: str) -> None:
    """Copy the response to ``f``, never more than ``limits.download_bytes``."""
    length = r.headers.get("Content-Length")
    if length and length.isdigit():
        limits.check_download(int(length), what)
    total = 0
    while chunk := r.read(1 << 20):
        total += len(chunk)
        limits.check_download(total, what)  # a server may send more than it announced, or no length
        f.write(chunk)


def _fetch_http(uri: str, dest: Path, what: str, limits: Limits) -> Path:
    headers = {"User-Agent": "modelpilot-export"}
    if os.environ.get("HTTP_AUTHORIZATION"):
        if _origin(uri)[0] == "http" and os.environ.get(INSECURE_AUTHORIZATION_ENV, "").lower() != "true":
            raise InputError(f"{what}: refusing to send HTTP_AUTHORIZATION (from the secretRef's Secret) "
                             "over plain http://, where anyone on the way can read it: use https://, or "
                             f"add {INSECURE_AUTHORIZATION_ENV}=true to that Secret to allow it")
        headers["Authorization"] = os.environ["HTTP_AUTHORIZATION"]
    target = under(dest, Path(urllib.parse.urlparse(uri).path).name or "download", what)
    req = urllib.request.Request(uri, headers=headers)
    try:
        with urllib.request.build_opener(_SameOriginAuthorization).open(req, timeout=60) as r, \
                open(target, "wb") as f:
            _copy_bounded(r, f, limits, what)
    except urllib.error.HTTPError as e:
        reason = {401: "unauthorized (check HTTP_AUTHORIZATION from secretRef)",
                  403: "forbidden (check HTTP_AUTHORIZATION from secretRef)",
                  404: "not found"}.get(e.code, e.reason)
        raise InputError(f"{what}: HTTP {e.code} {reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"{what}: cannot download: {getattr(e, 'reason', e)}") from e
    return target


def under(root: Path, rel: str, what: str) -> Path:
    """``root/rel``, refused unless it stays inside ``root``. An object key is chosen by whoever
    writes the bucket: ``..`` segments, or a ``/`` right after the prefix (``Path("/w") / "/etc"``
    is ``/etc``), would otherwise write anywhere the Job can, such as a shared output claim."""
    base = root.resolve()
    target = (root / rel).resolve()
    if target == base or not target.is_relative_to(base):
        raise InputError(f"{what}: refusing object {rel!r}: it would be written outside the download "
                         "directory; object names under the prefix must not start with '/' or "
                         "contain '..' segments: rename it in the bucket")
    return target


def _download_prefix(objects: Iterable[tuple[str, int, Callable[[Path], None]]], prefix: str, dest: Path,
                     name: str, what: str, limits: Limits) -> Path:
    """Download every ``(key, size, download_to)`` under ``prefix`` into ``dest/name`` (keys
    relative to the prefix). Each target is checked by :func:`under`, and the running totals by
    ``limits``, before anything is written."""
    root = under(dest, name, what)
    n = total = 0
    for key, size, download_to in objects:
        rel = key[len(prefix):]
        if not rel or rel.endswith("/"):
            continue
        total += size
        limits.check_download(total, what)
        limits.check_files(n + 1, what, "the prefix")
        target = under(root, rel, what)
        target.parent.mkdir(parents=True, exist_ok=True)
        download_to(target)
        n += 1
    if n == 0:
        raise InputError(f"{what}: not found (no object and no objects under the prefix)")
    return root


def _s3_client(endpoint: str | None, for_output: bool = False):
    """An S3 client with the credentials in the environment now. For the output, the variables
    ``MODELPILOT_OUTPUT_AWS_ACCESS_KEY_ID`` / ``MODELPILOT_OUTPUT_AWS_SECRET_ACCESS_KEY`` (from
    ``spec.output.secretRef``) win over the plain ``AWS_*`` ones when set."""
    import boto3
    from botocore.config import Config

    kw = {}
    if for_output and os.environ.get("MODELPILOT_OUTPUT_AWS_ACCESS_KEY_ID"):
        kw = {"aws_access_key_id": os.environ["MODELPILOT_OUTPUT_AWS_ACCESS_KEY_ID"],
              "aws_secret_access_key": os.environ.get("MODELPILOT_OUTPUT_AWS_SECRET_ACCESS_KEY", "")}

    # a fresh Session reads the credentials from the environment now (the default session caches)
    return boto3.session.Session(**kw).client(
        "s3",
        endpoint_url=endpoint or os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=10,
                      read_timeout=60),
    )


def _s3_error(e: Exception, what: str) -> InputError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(e, NoCredentialsError):
        return InputError(f"{what}: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (spec.source.secretRef)")
    if isinstance(e, EndpointConnectionError):
        return InputError(f"{what}: cannot reach the S3 endpoint: {e}")
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                    "InvalidToken", "ExpiredToken"):
            return InputError(f"{what}: access denied ({code}): check the credentials in "
                              "spec.source.secretRef")
        if code in ("NoSuchBucket",):
            return InputError(f"{what}: bucket does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return InputError(f"{what}: not found")
        return InputError(f"{what}: S3 error {code}: {e}")
    return InputError(f"{what}: {type(e).__name__}: {e}")


def _fetch_s3(uri: str, dest: Path, endpoint: str | None, what: str, limits: Limits) -> Path:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_bucket(uri, "s3://")
    if not bucket:
        raise InputError(f"{what}: expected s3://bucket/key")
    s3 = _s3_client(endpoint)
    try:
        if key and not key.endswith("/"):
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
                limits.check_download(int(head.get("ContentLength") or 0), what)
                target = under(dest, Path(key).name, what)
                s3.download_file(bucket, key, str(target))
                return target
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                if code not in ("404", "NoSuchKey", "NotFound"):
                    raise
        # a prefix: download everything under it (a SavedModel directory)
        prefix = key.rstrip("/") + "/" if key else ""
        objects = ((obj["Key"], int(obj.get("Size") or 0), lambda t, k=obj["Key"]: s3.download_file(bucket, k, str(t)))
                   for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                   for obj in page.get("Contents", []))
        return _download_prefix(objects, prefix, dest, Path(key.rstrip("/")).name or bucket, what, limits)
    except (ClientError, BotoCoreError) as e:
        raise _s3_error(e, what) from e


def _fetch_gs(uri: str, dest: Path, what: str, limits: Limits) -> Path:
    client = _gs_client(what)
    bucket_name, key = _split_bucket(uri, "gs://")
    try:
        bucket = client.bucket(bucket_name)
        blob = bucket.blob(key)
        if key and blob.exists():
            blob.reload()
            limits.check_download(int(blob.size or 0), what)
            target = under(dest, Path(key).name, what)
            blob.download_to_filename(str(target))
            return target
        prefix = key.rstrip("/") + "/"
        objects = ((b.name, int(b.size or 0), lambda t, b=b: b.download_to_filename(str(t)))
                   for b in client.list_blobs(bucket_name, prefix=prefix))
        return _download_prefix(objects, prefix, dest, Path(key.rstrip("/")).name or bucket_name, what, limits)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - google's error zoo; one line is what we owe
        raise InputError(f"{what}: {type(e).__name__}: {e}") from e


def upload_dir(local_dir: Path, uri: str, *, endpoint: str | None = None,
               only: list[str] | None = None) -> None:
    """Upload the files under ``local_dir`` to an ``s3://`` or ``gs://`` prefix."""
    files = [local_dir / r for r in only] if only else [p for p in local_dir.rglob("*")]
    if uri.startswith("gs://"):
        _upload_gs(local_dir, files, uri)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_bucket(uri, "s3://")
    prefix = key.strip("/")
    s3 = _s3_client(endpoint, for_output=True)
    try:
        for p in files:
            if p.is_file():
                rel = p.relative_to(local_dir).as_posix()
                s3.upload_file(str(p), bucket, f"{prefix}/{rel}" if prefix else rel)
    except (ClientError, BotoCoreError) as e:
        raise _s3_error(e, f"spec.output.uri: {uri}") from e


def _gs_client(what: str):
    try:
        from google.cloud import storage  # type: ignore[import-not-found]
    except ImportError as e:
        raise InputError(f"{what}: gs:// needs the google-cloud-storage package, which this "
                         "exporter image does not include; use s3:// or a PVC") from e
    creds_json = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS_JSON")
    if creds_json:
        import json

        return storage.Client.from_service_account_info(json.loads(creds_json))
    return storage.Client()


def _upload_gs(local_dir: Path, files: list[Path], uri: str) -> None:
    what = f"spec.output.uri: {uri}"
    client = _gs_client(what)
    bucket_name, key = _split_bucket(uri, "gs://")
    prefix = key.strip("/")
    try:
        bucket = client.bucket(bucket_name)
        for p in files:
            if p.is_file():
                rel = p.relative_to(local_dir).as_posix()
                bucket.blob(f"{prefix}/{rel}" if prefix else rel).upload_from_filename(str(p))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{what}: {type(e).__name__}: {e}") from e
