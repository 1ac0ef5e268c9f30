"""``manifest.json`` and the compact termination message (pure apart from hashing files).

manifest.json (written to ``<output.uri>/manifest.json``, also when the export failed)::

    {
      "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExportManifest",
      "name": "...", "namespace": "...",          # metadata of the ModelExport
      "phase": "Succeeded" | "Failed", "message": "...",
      "startedAt": "RFC 3339", "completedAt": "RFC 3339", "durationSeconds": 12.3,
      "source": {"uri", "format", "loader", "sha256", "sizeBytes", "signature": {...}},
      "validation": {"atol", "rtol", "samples", "samplesSource", "warnOnly"},
      "tools": {"python", "modelpilot", "numpy", "torch", "onnx", "onnxruntime", ...},
      "targets": [{
        "name", "format", "phase": "Succeeded" | "Failed", "error": "...",   # error only if failed
        "uri",                     # the main file (model.onnx, model.pt2, ...), or the directory
        "sha256", "sizeBytes",     # of the main file; of all files for a directory (see digest_dir)
        "files": [{"path": "<target>/model.onnx", "sha256", "sizeBytes"}],   # relative to output.uri
        "zlibSizeBytes",           # how small the main file compresses (shows what pruning bought)
        "opset", "quantization": {...}, "optimization": "none|basic|extended|all",
        "fusion": {"mode": "none|transformer", "reason", "fused": {"Attention": 4, ...},  # onnx
                   "left": {"Softmax": 0, ...}, "rules": {...}, "ortOptimizer": {...}},
        "autotune": {"batchSizes", "maxAccuracyDrop", "maxRelL2Error",
                     "chosen": "transformer+dynamic",
                     "candidates": [{"name", "fusion", "mode", "sizeBytes", "latencyMs": [...],
                                     "accuracyDrop"?, "relL2Error"?, "withinBudget", "error"?}]},
        "pruning": {...},          # sparsity achieved etc., only with spec pruning
        "signature": {"inputs": [{"name", "dtype", "shape"}], "outputs": [...]},  # -1 = dynamic
        "validation": {"passed", "criterion", "samples", "batchedRun", "maxAbsError",
                        "sourceLatencyMsP50", "artifactLatencyMsP50",
                        "outputs": [{"name", "shape", "maxAbsError", "maxRelError", "relL2Error",
                                     "withinTolerance", "top1Agreement"?}], "message"?},
        "parity": {"uri", "samples"},   # parity/<target>.json: inputs + the artifact's outputs,
                                         # for the pre-traffic check (modelpilot.comparator.parity)
        "seconds": {"export", "validate"},
        "warnings": ["..."]
      }]
    }

Termination message (compact JSON, < 4096 bytes; fields are dropped, never the JSON broken)::

    {"phase": "Succeeded"|"Failed", "message": "...", "manifestUri": "...",
     "validation": {"samplesSource", "samples"},          # which inputs validation used
     "artifacts": [{"name", "format", "uri", "sha256", "sizeBytes", "maxAbsError", "latencyMs",
                    "validated", "autotune"?: {"chosen", "batchSizes",
                                               "candidates": [{"name", "latencyMs", "sizeBytes",
                                                               "accuracyDrop"?, "relL2Error"?,
                                                               "withinBudget"}]}}],
     "failed": [{"name", "error"}]}

``artifacts`` lists the targets that succeeded; ``failed`` the ones that did not. ``validated`` is
false only for a target kept by ``warnOnly`` although it missed its criterion. ``autotune`` (for
autotuned targets) is the choice and the candidate table; the table is the first thing dropped
when the message is too long.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import zlib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from modelpilot.uris import redact_text

TERMINATION_LIMIT = 4096
TOOL_PACKAGES = ("modelpilot", "numpy", "torch", "onnx", "onnxruntime", "onnxscript", "tensorflow",
                 "tf2onnx", "boto3")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_dir(root: Path) -> tuple[str, int, list[tuple[str, str, int]]]:
    """sha256 of a directory = sha256 over the lines ``"<relpath>\\0<sha256>\\n"`` sorted by path."""
    entries = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            entries.append((p.relative_to(root).as_posix(), sha256_file(p), p.stat().st_size))
    h = hashlib.sha256()
    for rel, sha, _ in entries:
        h.update(f"{rel}\0{sha}\n".encode())
    return h.hexdigest(), sum(e[2] for e in entries), entries


def zlib_size(path: Path, limit: int = 512 << 20) -> int | None:
    """Size after zlib level 6, for files up to ``limit`` bytes (None above)."""
    if not path.is_file() or path.stat().st_size > limit:
        return None
    c = zlib.compressobj(6)
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += len(c.compress(chunk))
    return n + len(c.flush())


def tool_versions(packages: Iterable[str] = TOOL_PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def join_uri(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel.lstrip("/")


def _top1(validation: dict[str, Any]) -> float | None:
    """The lowest top-1 agreement over the classifier outputs, None when no output is a classifier."""
    found = [o["top1Agreement"] for o in validation.get("outputs") or [] if o.get("top1Agreement") is not None]
    return min(found) if found else None


def termination_message(manifest: dict[str, Any], manifest_uri: str | None,
                        limit: int = TERMINATION_LIMIT) -> str:
    """The compact result for the Job's termination message, always under ``limit`` bytes."""
    arts, failed = [], []
    for t in manifest.get("targets", []):
        if t.get("phase") == "Succeeded":
            v = t.get("validation") or {}
            arts.append({"name": t["name"], "format": t["format"], "uri": t.get("uri"),
                         "sha256": t.get("sha256"), "sizeBytes": t.get("sizeBytes"),
                         "maxAbsError": v.get("maxAbsError"),
                         "latencyMs": v.get("artifactLatencyMsP50"),
                         "sourceLatencyMs": v.get("sourceLatencyMsP50"),
                         "top1Agreement": _top1(v),
                         "validated": bool(v.get("passed"))})
            if t.get("autotune", {}).get("chosen"):
                arts[-1]["autotune"] = _autotune_summary(t["autotune"])
        else:
            failed.append({"name": t["name"], "error": t.get("error", "")})
    msg: dict[str, Any] = {"phase": manifest.get("phase"), "message": manifest.get("message", "")}
    if manifest_uri:
        msg["manifestUri"] = manifest_uri
    msg["artifacts"] = arts
    v = manifest.get("validation") or {}
    if v.get("samplesSource"):
        msg["validation"] = {"samplesSource": v["samplesSource"], "samples": v.get("samples")}
    if failed:
        msg["failed"] = failed

    def enc(m):
        return json.dumps(m, separators=(",", ":"), sort_keys=False)

    s = enc(msg)
    if len(s.encode()) <= limit:
        return s
    # shrink: the autotune tables (the choice stays), errors of failed targets, the message,
    # then trailing artifacts
    for a in arts:
        a.get("autotune", {}).pop("candidates", None)
    for f in msg.get("failed", []):
        f["error"] = f["error"][:120]
    msg["message"] = msg["message"][:400]
    s = enc(msg)
    while len(s.encode()) > limit and (msg.get("failed") or msg["artifacts"]):
        if msg.get("failed"):
            msg["failed"].pop()
        else:
            msg["artifacts"].pop()
        msg["truncated"] = True
        s = enc(msg)
    if len(s.encode()) > limit:
        msg["message"] = msg["message"][:100]
        s = enc(msg)
    return s


def _autotune_summary(at: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "latencyMs", "sizeBytes", "accuracyDrop", "relL2Error", "withinBudget")
    return {"chosen": at["chosen"], "batchSizes": at["batchSizes"],
            "candidates": [{k: c[k] for k in keys if k in c} for c in at["candidates"] if "error" not in c]}


def write_termination_message(text: str) -> str | None:
    """Write ``text``, URIs redacted (it becomes status and Events), to env MODELPILOT_TERMINATION_LOG, else to /dev/termination-log when it exists (the
    kubelet creates it in a container; on a laptop it does not, and nothing is written).
    Skipped silently when not writable."""
    path = os.environ.get("MODELPILOT_TERMINATION_LOG")
    if not path:
        path = "/dev/termination-log"
        if not os.path.exists(path):
            return None
    try:
        with open(path, "w") as f:
            f.write(redact_text(text))
        return path
    except OSError:
        return None
