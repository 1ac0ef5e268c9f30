"""``modelpilot-storage-init``: the init container that lays out a revision's model repository.

It runs before the model server, in the exporter image, and writes into the pod's model-repository
emptyDir (``--repository``, /models) exactly what the runtime reads:

* the artifact, fetched from ``--uri`` into ``--dest`` (a path under the repository that the
  operator's runtime module chose: ``<m>/1/model.onnx`` for Triton, ``<m>/1`` for TF Serving,
  ``<m>.mar`` for TorchServe);
* the runtime's config files, copied from the revision's ConfigMap mounted at ``--config-dir``
  (``config.pbtxt``, ``config.properties``, ``models.config``... at their relative paths).

Sources (``--uri``): ``file://``, ``pvc://<claim>/<path>`` (the claim is mounted under
``/mnt/pvc/<claim>``; env ``MODELPILOT_PVC_ROOT`` overrides the root), ``http(s)://`` (env
``HTTP_AUTHORIZATION``), ``s3://`` (boto3; ``--endpoint``, AWS_* env from spec.model.secretRef),
``gs://``, and ``export://<ModelExport>[/<target>]``, resolved through ``--manifest`` (the
ModelExport's ``status.manifestUri``: the exporter's manifest.json, see manifest.py): the target
must have succeeded; its ``uri``, ``format`` and ``signature`` are used, and its ``sha256`` is
checked against what was downloaded. Archives (.tar.gz, .tgz, .tar, .zip) are unpacked.

Layout per format (``--format``; ``auto`` = the export's format, or guessed from the file):

* ``onnx``/``torchscript``: the file is copied to ``--dest``; an ONNX model given as a directory
  (external data) has its one ``.onnx`` file copied to ``--dest`` and the rest beside it.
* ``savedmodel``: the directory holding ``saved_model.pb`` (at the top, or the only one below)
  is copied to ``--dest`` (TF Serving's numeric version directory, or Triton's model.savedmodel).
* ``mar``: copied as it is.
* ``torchscript``/``pt2`` with a ``--dest`` ending in ``.mar``: archived with torch-model-archiver,
  with :data:`HANDLER_SOURCE` as the handler and the IO signature (from the manifest, or
  ``signature.json`` in ``--config-dir``) as an extra file. The handler calls
  ``torch.export.load``, which unpickles what the archive marks ``use_pickle``: a ``.pt2`` is
  therefore inspected here first, and refused when it holds such entries, unless
  ``--allow-pickle`` (``spec.model.allowPickle``). The handler checks again before loading, with
  ``pt2_archive.py`` and ``modelpilot.json`` (the allowPickle setting) packed beside it.

Every failure is ONE line naming the URI on stderr and in the termination message; exit code 2
for bad input (not found, bad credentials, wrong layout), 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelpilot.uris import redact_text

from . import pt2_archive, sources
from .errors import EXIT_EXPORT_FAILED, ExporterError, ExportError, InputError, one_line
from .manifest import digest_dir, sha256_file, write_termination_message

SIGNATURE_FILE = "signature.json"
HANDLER_FILE = "modelpilot_handler.py"
PT2_CHECK_FILE = "pt2_archive.py"  # packed beside the handler: it checks a .pt2 before loading it
OPTIONS_FILE = "modelpilot.json"  # {"allowPickle": ...} from spec.model.allowPickle
FORMATS = ("onnx", "torchscript", "pt2", "savedmodel", "mar")

# The TorchServe handler packed into every .mar that modelpilot builds. It is source text, not an
# import, because TorchServe loads it from inside the archive in the server's Python.
HANDLER_SOURCE = '''\
"""modelpilot's TorchServe handler for TorchScript (.pt) and torch.export (.pt2) models.

Request body (JSON), for a model with inputs x and y:
    {"inputs": {"x": [[...]], "y": [[...]]}}   by name
    {"inputs": [[[...]], [[...]]]}             in order
    [[...]]                                    a model with one input
Each request carries its own batch (the first dimension). Requests that TorchServe batches are
concatenated along it, run once, and split back. Response: {"outputs": {"<name>": [...]}}, with
names from signature.json (packed beside the model), else output0, output1, ...
"""

import json
import os

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64,
          "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
          "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


class ModelpilotTensorHandler:
    def initialize(self, context):
        props = context.system_properties
        model_dir = props["model_dir"]
        path = os.path.join(model_dir, context.manifest["model"]["serializedFile"])
        gpu = props.get("gpu_id")
        self.device = torch.device(f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu")
        if path.endswith(".pt2"):
            self._refuse_code_in(path, model_dir)
            self.model = torch.export.load(path).module().to(self.device)
        else:
            self.model = torch.jit.load(path, map_location=self.device)
            self.model.eval()
        sig_path = os.path.join(model_dir, "signature.json")
        sig = json.load(open(sig_path)) if os.path.exists(sig_path) else {}
        self.inputs = sig.get("inputs") or []
        self.outputs = [o["name"] for o in sig.get("outputs") or []]
        self.initialized = True

    @staticmethod
    def _refuse_code_in(path, model_dir):
        """torch.export.load unpickles what the archive marks use_pickle: check first, with the
        modelpilot pt2_archive.py packed beside this handler (spec.model.allowPickle allows it)."""
        import importlib.util

        spec = importlib.util.spec_from_file_location("modelpilot_pt2_archive", os.path.join(model_dir, "pt2_archive.py"))
        check = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(check)
        options_path = os.path.join(model_dir, "modelpilot.json")
        options = json.load(open(options_path)) if os.path.exists(options_path) else {}
        why = check.refusal(path, bool(options.get("allowPickle")), "spec.model.allowPickle")
        if why:
            raise RuntimeError(f"{os.path.basename(path)}: {why}")

    def _tensors(self, body):
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body)
        if isinstance(body, dict) and "inputs" in body:
            body = body["inputs"]
        elif isinstance(body, dict) and "instances" in body:
            body = body["instances"]
        else:
            body = [body]
        if isinstance(body, dict):
            names = [i["name"] for i in self.inputs] or list(body)
            missing = [n for n in names if n not in body]
            if missing:
                raise ValueError(f"request misses inputs {missing}")
            body = [body[n] for n in names]
        out = []
        for i, value in enumerate(body):
            dtype = DTYPES.get(self.inputs[i]["dtype"]) if i < len(self.inputs) else None
            out.append(torch.as_tensor(value, dtype=dtype, device=self.device))
        return out

    def handle(self, data, context):
        per_request = [self._tensors(r.get("body") if r.get("body") is not None else r.get("data")) for r in data]
        sizes = [t[0].shape[0] for t in per_request]
        batch = [torch.cat([r[i] for r in per_request]) for i in range(len(per_request[0]))]
        with torch.inference_mode():
            result = self.model(*batch)
        if isinstance(result, dict):
            names, values = list(result), list(result.values())
        else:
            values = list(result) if isinstance(result, (tuple, list)) else [result]
            names = self.outputs if len(self.outputs) == len(values) else [f"output{i}" for i in range(len(values))]
        responses, start = [], 0
        for n in sizes:
            responses.append({"outputs": {k: v[start:start + n].detach().cpu().tolist() for k, v in zip(names, values)}})
            start += n
        return responses
'''


def guess_format(path: Path) -> str:
    if path.is_dir():
        if (path / "saved_model.pb").exists() or any(path.rglob("saved_model.pb")):
            return "savedmodel"
        onnx = list(path.glob("*.onnx"))
        if len(onnx) == 1:
            return "onnx"
    suffix = path.suffix.lower()
    guessed = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".pt2": "pt2", ".mar": "mar"}.get(suffix)
    if guessed is None:
        raise InputError(f"{path.name}: cannot tell the model format; set spec.model.format")
    return guessed


def resolve_export(uri: str, manifest_uri: str | None, fmt: str, work: Path, endpoint: str | None,
                   limits: sources.Limits = sources.Limits()) -> dict[str, Any]:
    """The manifest target that `export://<name>[/<target>]` names: uri, format, signature, sha256."""
    name, _, target = uri[len("export://"):].partition("/")
    if not manifest_uri:
        raise InputError(f"{uri}: an export:// model needs --manifest (the ModelExport's status.manifestUri); "
                         "the export has not finished, or the operator could not read it")
    path = sources.fetch(manifest_uri, work / "manifest", endpoint=endpoint, field="--manifest", limits=limits)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"--manifest: {manifest_uri}: not a readable manifest.json: {e}") from e
    if man.get("name") and man["name"] != name:
        raise InputError(f"{uri}: the manifest {manifest_uri} belongs to ModelExport {man['name']!r}, not {name!r}")
    targets = man.get("targets") or []
    if target:
        chosen = next((t for t in targets if t.get("name") == target), None)
        if chosen is None:
            known = ", ".join(str(t.get("name")) for t in targets) or "none"
            raise InputError(f"{uri}: ModelExport {name} has no target {target!r} (targets: {known})")
    else:
        ok = [t for t in targets if t.get("phase") == "Succeeded"]
        chosen = next((t for t in ok if fmt in ("auto", t.get("format"))), None)
        if chosen is None:
            raise InputError(f"{uri}: ModelExport {name} has no succeeded target"
                             + (f" in format {fmt}" if fmt != "auto" else ""))
    if chosen.get("phase") != "Succeeded":
        raise InputError(f"{uri}: target {chosen.get('name')!r} of ModelExport {name} did not succeed: "
                         f"{chosen.get('error') or chosen.get('phase')}")
    if fmt != "auto" and chosen.get("format") != fmt:
        raise InputError(f"{uri}: target {chosen.get('name')!r} is {chosen.get('format')}, but {fmt} is needed")
    if not chosen.get("uri"):
        raise InputError(f"{uri}: target {chosen.get('name')!r} has no uri in {manifest_uri}")
    return chosen


def _verify(path: Path, sha256: str | None, uri: str) -> None:
    if not sha256:
        return
    got = digest_dir(path)[0] if path.is_dir() else sha256_file(path)
    if got != sha256:
        raise ExportError(f"{uri}: sha256 {got} does not match the manifest's {sha256}: the artifact changed "
                          "after the export; re-run the export")


def _fresh(dest: Path) -> None:
    """Remove what an earlier run of this init container left (the emptyDir survives restarts)."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)


def _saved_model_dir(path: Path, uri: str) -> Path:
    if path.is_dir() and (path / "saved_model.pb").exists():
        return path
    found = sorted({p.parent for p in path.rglob("saved_model.pb")}) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"{uri}: no SavedModel (saved_model.pb) found")
    # Several versions side by side (<m>/1, <m>/2...): serve the highest numbered one.
    numbered = [p for p in found if p.name.isdigit()]
    if numbered:
        return max(numbered, key=lambda p: int(p.name))
    raise InputError(f"{uri}: {len(found)} SavedModels found; point the URI at one")


def _single_file(path: Path, fmt: str, uri: str) -> tuple[Path, list[Path]]:
    """The model file, plus files that must sit beside it (ONNX external data)."""
    if path.is_file():
        return path, []
    suffix = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2", "mar": ".mar"}[fmt]
    files = sorted(path.glob(f"*{suffix}"))
    if len(files) != 1:
        raise InputError(f"{uri}: expected one *{suffix} file in the directory, found {len(files)}")
    extra = [p for p in path.iterdir() if p != files[0] and fmt == "onnx"]
    return files[0], extra


def build_mar(model: Path, fmt: str, dest: Path, model_name: str, signature: dict | None, work: Path,
              allow_pickle: bool = False) -> None:
    """Archive a TorchScript or torch.export model into `dest` with torch-model-archiver. Beside the
    handler go pt2_archive.py and the spec's allowPickle, so that the handler checks a .pt2 again."""
    try:
        from model_archiver.model_archiver_config import ModelArchiverConfig
        from model_archiver.model_packaging import generate_model_archive
    except ImportError as e:
        raise ExportError(f"building {dest.name} needs torch-model-archiver, which this image lacks: {e}") from e
    stage = Path(tempfile.mkdtemp(prefix="mar-", dir=work))
    serialized = stage / ("model.pt2" if fmt == "pt2" else "model.pt")
    shutil.copyfile(model, serialized)
    handler = stage / HANDLER_FILE
    handler.write_text(HANDLER_SOURCE)
    shutil.copyfile(pt2_archive.__file__, stage / PT2_CHECK_FILE)
    (stage / OPTIONS_FILE).write_text(json.dumps({"allowPickle": allow_pickle}))
    extra = [str(stage / PT2_CHECK_FILE), str(stage / OPTIONS_FILE)]
    if signature:
        (stage / SIGNATURE_FILE).write_text(json.dumps(signature, indent=1))
        extra.append(str(stage / SIGNATURE_FILE))
    out_dir = stage / "out"
    out_dir.mkdir()
    cfg = ModelArchiverConfig(model_name=model_name, handler=str(handler), version="1.0",
                              serialized_file=str(serialized), extra_files=",".join(extra) or None,
                              export_path=str(out_dir), archive_format="default", force=True)
    try:
        generate_model_archive(cfg)
    except Exception as e:  # noqa: BLE001 - the archiver raises several types; all mean the same here
        raise ExportError(f"torch-model-archiver failed for {model.name}: {e}") from e
    shutil.move(str(out_dir / f"{model_name}.mar"), dest)
    shutil.rmtree(stage, ignore_errors=True)


def place(src: Path, fmt: str, dest: Path, *, model_name: str, signature: dict | None, uri: str, work: Path,
          allow_pickle: bool = False) -> None:
    """Put the fetched artifact at `dest` in the runtime's layout."""
    _fresh(dest)
    if dest.name.endswith(".mar"):
        if fmt == "mar":
            shutil.copyfile(_single_file(src, fmt, uri)[0], dest)
        elif fmt in ("torchscript", "pt2"):
            build_mar(_single_file(src, fmt, uri)[0], fmt, dest, model_name, signature, work, allow_pickle)
        else:
            raise InputError(f"{uri}: TorchServe needs a mar, torchscript or pt2 model, not {fmt}")
    elif fmt == "savedmodel":
        shutil.copytree(_saved_model_dir(src, uri), dest)
    elif fmt == "mar":
        raise InputError(f"{uri}: a .mar archive is served by TorchServe only")
    else:
        main_file, beside = _single_file(src, fmt, uri)
        shutil.copyfile(main_file, dest)
        for extra in beside:
            (shutil.copytree if extra.is_dir() else shutil.copyfile)(extra, dest.parent / extra.name)


def copy_config(config_dir: Path, repository: Path) -> list[str]:
    """Copy the ConfigMap's files (skipping the kubelet's `..data` bookkeeping) into the repository."""
    copied = []
    if not config_dir.is_dir():
        return copied
    for root, dirs, files in os.walk(config_dir, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith("..")]
        for f in files:
            if f.startswith(".."):
                continue
            rel = (Path(root) / f).relative_to(config_dir)
            target = repository / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(root) / f, target)
            copied.append(rel.as_posix())
    return sorted(copied)


def _config_signature(config_dir: Path | None) -> dict | None:
    if config_dir and (config_dir / SIGNATURE_FILE).is_file():
        return json.loads((config_dir / SIGNATURE_FILE).read_text())
    return None


def _limits(args: argparse.Namespace) -> sources.Limits:
    """spec.model.limits, as render.py passes them (each flag only when the spec sets it)."""
    from .spec import parse_limits

    raw = {k: v for k, v in (("maxDownloadSize", args.max_download_size), ("maxUnpackedSize", args.max_unpacked_size),
                             ("maxFiles", args.max_files)) if v is not None}
    return parse_limits(raw, "spec.model.limits")


def run(args: argparse.Namespace) -> str:
    repository = Path(args.repository)
    dest = Path(args.dest)
    if not dest.is_absolute():
        dest = repository / dest
    if repository not in dest.parents:
        raise InputError(f"--dest {dest} is not inside --repository {repository}")
    config_dir = Path(args.config_dir) if args.config_dir else None
    limits = _limits(args)
    work = Path(tempfile.mkdtemp(prefix="storage-init-", dir=args.work_dir))
    try:
        uri, fmt, sha256 = args.uri, args.format, None
        signature = _config_signature(config_dir)
        if uri.startswith("export://"):
            target = resolve_export(uri, args.manifest, fmt, work, args.endpoint, limits)
            uri, fmt, sha256 = target["uri"], target["format"], target.get("sha256")
            signature = target.get("signature") or signature
        field = args.uri if args.uri != uri else "spec.model.uri"
        src = sources.fetch(uri, work / "src", endpoint=args.endpoint, field=field, limits=limits)
        _verify(src, sha256, uri)
        if fmt == "auto":
            fmt = guess_format(src)
        if fmt not in FORMATS:
            raise InputError(f"{uri}: no runtime serves format {fmt}")
        why = pt2_archive.refusal(_single_file(src, fmt, uri)[0], args.allow_pickle,
                                  "spec.model.allowPickle") if fmt == "pt2" else None
        if why:
            raise InputError(f"{uri}: {why}")
        place(src, fmt, dest, model_name=args.model_name or dest.name.split(".")[0], signature=signature,
              uri=uri, work=work, allow_pickle=args.allow_pickle)
        copied = copy_config(config_dir, repository) if config_dir else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return (f"{uri} ({fmt}) -> {dest}" + (f"; config: {', '.join(copied)}" if copied else ""))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="modelpilot-storage-init", description=__doc__.split("\n\n")[0])
    ap.add_argument("--uri", required=True, help="the model: file://, pvc://, http(s)://, s3://, gs:// or export://")
    ap.add_argument("--dest", required=True, help="where the artifact goes (absolute, or relative to --repository)")
    ap.add_argument("--repository", required=True, help="the model repository root (the shared emptyDir)")
    ap.add_argument("--config-dir", help="the runtime's config files (the revision's ConfigMap), copied into the repository")
    ap.add_argument("--format", default="auto", help=f"one of {', '.join(FORMATS)}, or auto")
    ap.add_argument("--model-name", help="the model's name in the server (names the .mar's model)")
    ap.add_argument("--manifest", help="manifest.json of the ModelExport, for export:// URIs")
    ap.add_argument("--endpoint", help="S3 endpoint override")
    ap.add_argument("--max-download-size", help="spec.model.limits.maxDownloadSize (a quantity, e.g. 50Gi)")
    ap.add_argument("--max-unpacked-size", help="spec.model.limits.maxUnpackedSize (a quantity)")
    ap.add_argument("--max-files", type=int, help="spec.model.limits.maxFiles")
    ap.add_argument("--allow-pickle", action="store_true",
                    help="load a .pt2 even if it holds pickled entries (spec.model.allowPickle): they run code")
    ap.add_argument("--work-dir", default=None, help="scratch space (default: $TMPDIR)")
    args = ap.parse_args(argv)
    try:
        print(f"modelpilot-storage-init: {redact_text(run(args))}", flush=True)
        return 0
    except ExporterError as e:
        message, code = e.message, e.exit_code
    except OSError as e:
        message, code = one_line(f"{args.uri}: {e.strerror or e}: {e.filename or ''}"), EXIT_EXPORT_FAILED
    if "://" not in message:
        message = one_line(f"{args.uri}: {message}")
    message = redact_text(message)
    write_termination_message(message)
    print(f"modelpilot-storage-init: error: {message}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
