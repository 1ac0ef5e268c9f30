"""Typed, defaulted view of a ModelExport manifest (pure: no I/O, no heavy imports).

The CRD schema and its CEL rules already reject most bad specs at the door. The exporter also
runs outside the cluster (``modelpilot-export -f FILE`` on a laptop), so :func:`parse` repeats the
cross-field rules here, and every error names the field (``spec.targets[1].quantization.mode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelpilot.uris import redact_uri

from .errors import SpecError
from .sources import Limits

SOURCE_FORMATS = ("pytorch", "tensorflow", "onnx")
TARGET_FORMATS = ("onnx", "torchscript", "pt2", "savedmodel", "tflite")
LOADERS = ("exportedProgram", "torchscript", "stateDict")
DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")
QUANT_MODES = ("none", "dynamic", "int8", "fp16", "int4")
OPT_LEVELS = ("none", "basic", "extended", "all")
FUSIONS = ("auto", "transformer", "none")
AUTOTUNE_FUSIONS = ("none", "transformer")
PRUNE_METHODS = ("unstructured", "structured")
URI_SCHEMES = ("file://", "pvc://", "http://", "https://", "s3://", "gs://")

# which source formats can produce which target formats
TARGETS_BY_SOURCE = {
    "pytorch": ("onnx", "torchscript", "pt2"),
    "tensorflow": ("savedmodel", "tflite", "onnx"),
    "onnx": ("onnx",),
}


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def dynamic_dims(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if d == -1)


@dataclass(frozen=True)
class Source:
    uri: str
    format: str
    loader: str = "exportedProgram"
    factory: str | None = None
    endpoint: str | None = None
    secret_name: str | None = None
    allow_pickle: bool = False
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Calibration:
    uri: str | None = None
    synthetic: bool = False
    samples: int = 64


@dataclass(frozen=True)
class Quantization:
    mode: str = "none"
    calibration: Calibration | None = None
    keep_io_types: bool = True
    per_channel: bool = False

    @property
    def lossy(self) -> bool:
        return self.mode != "none"


@dataclass(frozen=True)
class Pruning:
    method: str
    amount: float


@dataclass(frozen=True)
class Autotune:
    """``optimization.autotune``: candidates and the accuracy budget. ``modes``/``fusions`` empty
    means the defaults, resolved by the exporter once it knows the graph (see autotune.py)."""
    modes: tuple[str, ...] = ()
    fusions: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = (1,)
    max_accuracy_drop: float = 0.01
    max_rel_l2_error: float = 0.05


@dataclass(frozen=True)
class Target:
    index: int
    name: str
    format: str
    opset: int | None = None
    quantization: Quantization = field(default_factory=Quantization)
    optimization: str = "none"
    pruning: Pruning | None = None
    fusion: str = "auto"
    autotune: Autotune | None = None

    @property
    def path(self) -> str:
        """The field path of this target, for error messages."""
        return f"spec.targets[{self.index}]"


@dataclass(frozen=True)
class Validation:
    atol: float = 1e-4
    rtol: float = 1e-3
    samples: int = 8
    samples_uri: str | None = None
    warn_only: bool = False


@dataclass(frozen=True)
class ExportSpec:
    name: str
    namespace: str | None
    source: Source
    inputs: tuple[InputSpec, ...]
    targets: tuple[Target, ...]
    validation: Validation
    output_uri: str
    output_endpoint: str | None = None


def _get(d: Any, key: str, path: str, typ: type | tuple[type, ...] | None = None,
         required: bool = False, default: Any = None) -> Any:
    if not isinstance(d, dict):
        raise SpecError(path.rsplit(".", 1)[0], "must be a mapping")
    if key not in d or d[key] is None:
        if required:
            raise SpecError(f"{path}", "is required")
        return default
    v = d[key]
    if typ is not None:
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if typ is int and isinstance(v, bool) or (typ is float and isinstance(v, bool)):
            raise SpecError(path, f"must be a {typ.__name__}, got {v!r}")
        if not isinstance(v, typ):
            names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise SpecError(path, f"must be a {names}, got {v!r}")
    return v


def _enum(v: str, allowed: tuple[str, ...], path: str) -> str:
    if v not in allowed:
        raise SpecError(path, f"must be one of {', '.join(allowed)}; got {v!r}")
    return v


def _uri(v: str, path: str, suffix: str | None = None) -> str:
    if not v.startswith(URI_SCHEMES):
        raise SpecError(path, f"unsupported URI {v!r}: use file://, pvc://<claim>/<path>, "
                              "http(s)://, s3://bucket/key or gs://bucket/key")
    if v.startswith("pvc://") and len(v[len("pvc://"):].split("/", 1)) < 2:
        raise SpecError(path, f"{v!r}: expected pvc://<claim>/<path>")
    if suffix and not v.split("?", 1)[0].endswith(suffix):
        raise SpecError(path, f"{v!r}: expected a {suffix} file")
    return v


def _bytes(v: Any, path: str) -> int:
    from modelpilot.placement import parse_quantity

    try:
        n = int(parse_quantity(v))
    except ValueError:
        raise SpecError(path, f"must be a size such as 20Gi or 500Mi; got {v!r}") from None
    if n < 1:
        raise SpecError(path, f"must be positive; got {v!r}")
    return n


def parse_limits(raw: dict, path: str) -> Limits:
    """``limits`` of spec.source (ModelExport) or spec.model (ModelDeployment): every bound on
    what a download may write, each defaulted."""
    d = Limits()
    files = _get(raw, "maxFiles", f"{path}.maxFiles", int, default=d.files)
    if files < 1:
        raise SpecError(f"{path}.maxFiles", f"must be >= 1; got {files}")
    return Limits(download_bytes=_bytes(raw.get("maxDownloadSize", d.download_bytes), f"{path}.maxDownloadSize"),
                  unpacked_bytes=_bytes(raw.get("maxUnpackedSize", d.unpacked_bytes), f"{path}.maxUnpackedSize"),
                  files=files, field=path)


def parse_manifest(doc: Any) -> ExportSpec:
    """Parse a whole ModelExport document (``apiVersion``/``kind``/``metadata``/``spec``).

    A bare spec mapping (no ``kind``) is accepted too.
    """
    if not isinstance(doc, dict):
        raise SpecError("manifest", "must be a YAML mapping (a ModelExport document)")
    kind = doc.get("kind")
    if kind is not None and kind != "ModelExport":
        raise SpecError("kind", f"expected ModelExport, got {kind!r}")
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") if "spec" in doc or kind else doc
    if spec is None:
        raise SpecError("spec", "is required")
    return parse(spec, name=str(meta.get("name") or "modelexport"), namespace=meta.get("namespace"))


def parse(spec: Any, name: str = "modelexport", namespace: str | None = None) -> ExportSpec:
    """Parse and default ``spec``; raise :class:`SpecError` naming the field on bad input."""
    if not isinstance(spec, dict):
        raise SpecError("spec", "must be a mapping")
    source = _parse_source(_get(spec, "source", "spec.source", dict, required=True))
    inputs = [_parse_input(inp, f"spec.inputs[{i}]") for i, inp in enumerate(_nonempty(spec, "inputs", "input"))]
    _unique([x.name for x in inputs], "spec.inputs[{}].name", "input")
    targets = [_parse_target(t, i, source.format) for i, t in enumerate(_nonempty(spec, "targets", "target"))]
    _unique([t.name for t in targets], "spec.targets[{}].name", "target")
    out = _get(spec, "output", "spec.output", dict, required=True)
    return ExportSpec(name=name, namespace=namespace, source=source, inputs=tuple(inputs),
                      targets=tuple(targets), validation=_parse_validation(_get(spec, "validation", "spec.validation", dict, default={})),
                      output_uri=_parse_output_uri(out).rstrip("/"),
                      output_endpoint=_get(out, "endpoint", "spec.output.endpoint", str))


def _nonempty(spec: dict[str, Any], key: str, what: str) -> list[Any]:
    raw = _get(spec, key, f"spec.{key}", list, required=True)
    if not raw:
        raise SpecError(f"spec.{key}", f"needs at least one {what}")
    return list(raw)


def _unique(names: list[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise SpecError(field.format(i), f"duplicate {what} name {n!r}" + ("; names must be unique" if what == "target" else ""))
        seen.add(n)


def _parse_source(src: dict[str, Any]) -> Source:
    uri = _uri(_get(src, "uri", "spec.source.uri", str, required=True), "spec.source.uri")
    fmt = _enum(_get(src, "format", "spec.source.format", str, required=True), SOURCE_FORMATS, "spec.source.format")
    pt = _get(src, "pytorch", "spec.source.pytorch", dict, default={})
    loader = _enum(_get(pt, "loader", "spec.source.pytorch.loader", str, default="exportedProgram"), LOADERS,
                   "spec.source.pytorch.loader")
    factory = _get(pt, "factory", "spec.source.pytorch.factory", str)
    if pt and fmt != "pytorch":
        raise SpecError("spec.source.pytorch", f"only applies to a pytorch source, not {fmt}")
    if fmt == "pytorch" and loader == "stateDict" and not factory:
        raise SpecError("spec.source.pytorch.factory", "is required when loader is stateDict (\"package.module:callable\")")
    if factory is not None and (":" not in factory or factory.startswith(":") or factory.endswith(":")):
        raise SpecError("spec.source.pytorch.factory", f"expected \"package.module:callable\", got {factory!r}")
    secret = _get(src, "secretRef", "spec.source.secretRef", dict, default={})
    allow_pickle = _get(src, "allowPickle", "spec.source.allowPickle", bool, default=False)
    if allow_pickle and fmt != "pytorch":
        raise SpecError("spec.source.allowPickle", f"only applies to a pytorch source, not {fmt}: remove it")
    return Source(uri=uri, format=fmt, loader=loader, factory=factory,
                  endpoint=_get(src, "endpoint", "spec.source.endpoint", str),
                  secret_name=secret.get("name"), allow_pickle=allow_pickle,
                  limits=parse_limits(_get(src, "limits", "spec.source.limits", dict, default={}), "spec.source.limits"))


def _parse_input(inp: Any, p: str) -> InputSpec:
    iname = _get(inp, "name", f"{p}.name", str, required=True)
    dtype = _enum(_get(inp, "dtype", f"{p}.dtype", str, default="float32"), DTYPES, f"{p}.dtype")
    shape = _get(inp, "shape", f"{p}.shape", list, required=True)
    for j, d in enumerate(shape):
        if not isinstance(d, int) or isinstance(d, bool) or d < -1 or d == 0:
            raise SpecError(f"{p}.shape[{j}]", f"must be a positive int or -1 (dynamic); got {d!r}")
    return InputSpec(iname, dtype, tuple(shape))


def _parse_validation(val: dict[str, Any]) -> Validation:
    samples = _get(val, "samples", "spec.validation.samples", int, default=8)
    if not 1 <= samples <= 10000:
        raise SpecError("spec.validation.samples", f"must be in 1..10000; got {samples}")
    atol = _get(val, "atol", "spec.validation.atol", float, default=1e-4)
    rtol = _get(val, "rtol", "spec.validation.rtol", float, default=1e-3)
    if atol < 0:
        raise SpecError("spec.validation.atol", "must be >= 0")
    if rtol < 0:
        raise SpecError("spec.validation.rtol", "must be >= 0")
    samples_uri = _get(val, "samplesUri", "spec.validation.samplesUri", str)
    if samples_uri:
        _uri(samples_uri, "spec.validation.samplesUri", ".npz")
    return Validation(atol=atol, rtol=rtol, samples=samples, samples_uri=samples_uri,
                      warn_only=bool(_get(val, "warnOnly", "spec.validation.warnOnly", bool, default=False)))


def _parse_output_uri(out: dict[str, Any]) -> str:
    out_uri = _get(out, "uri", "spec.output.uri", str, required=True)
    if not out_uri.startswith(("file://", "pvc://", "s3://", "gs://")):
        raise SpecError("spec.output.uri", f"unsupported output URI {out_uri!r}: use file://, "
                                           "pvc://<claim>/<path>, s3://bucket/prefix or gs://bucket/prefix")
    _uri(out_uri, "spec.output.uri")
    if redact_uri(out_uri) != out_uri:
        raise SpecError("spec.output.uri", "must not carry user info, a query string or a fragment: "
                        "the artifact URIs in manifest.json and the status are built from it; "
                        "credentials go in spec.output.secretRef")
    return str(out_uri)


def _parse_target(t: Any, i: int, source_format: str) -> Target:
    p = f"spec.targets[{i}]"
    if not isinstance(t, dict):
        raise SpecError(p, "must be a mapping")
    fmt = _enum(_get(t, "format", f"{p}.format", str, required=True), TARGET_FORMATS, f"{p}.format")
    if fmt not in TARGETS_BY_SOURCE[source_format]:
        raise SpecError(f"{p}.format", f"a {source_format} source cannot be exported to {fmt}; "
                        f"possible: {', '.join(TARGETS_BY_SOURCE[source_format])}")
    name = _get(t, "name", f"{p}.name", str, default=fmt)
    if not name or "/" in name or name in (".", ".."):
        raise SpecError(f"{p}.name", f"must be a plain directory name; got {name!r}")
    opset = _get(t, "opset", f"{p}.opset", int)
    if opset is not None:
        if fmt != "onnx":
            raise SpecError(f"{p}.opset", f"only applies to onnx targets, not {fmt}")
        if not 13 <= opset <= 25:
            raise SpecError(f"{p}.opset", f"must be in 13..25; got {opset}")
    q = _get(t, "quantization", f"{p}.quantization", dict, default={})
    mode = _enum(_get(q, "mode", f"{p}.quantization.mode", str, default="none"), QUANT_MODES,
                 f"{p}.quantization.mode")
    if mode != "none" and fmt not in ("onnx", "tflite"):
        raise SpecError(f"{p}.quantization.mode",
                        f"{mode} quantization is only possible on onnx or tflite targets, not {fmt}")
    if mode == "int4" and fmt != "onnx":
        raise SpecError(f"{p}.quantization.mode",
                        f"int4 (weight-only, onnxruntime MatMulNBits) is only possible on onnx targets, not {fmt}")
    cal = _get(q, "calibration", f"{p}.quantization.calibration", dict)
    calibration = None
    if cal is not None:
        curi = _get(cal, "uri", f"{p}.quantization.calibration.uri", str)
        synth = _get(cal, "synthetic", f"{p}.quantization.calibration.synthetic", bool, default=False)
        if curi and synth:
            raise SpecError(f"{p}.quantization.calibration",
                            "set either uri or synthetic: true, not both")
        if curi:
            _uri(curi, f"{p}.quantization.calibration.uri", ".npz")
        n = _get(cal, "samples", f"{p}.quantization.calibration.samples", int, default=64)
        if n < 1:
            raise SpecError(f"{p}.quantization.calibration.samples", "must be >= 1")
        calibration = Calibration(uri=curi, synthetic=synth, samples=n)
    opt = _get(t, "optimization", f"{p}.optimization", dict, default={})
    autotune = _parse_autotune(opt, p, fmt, mode, calibration)
    if mode == "int8" and (calibration is None or not (calibration.uri or calibration.synthetic)):
        raise SpecError(f"{p}.quantization.calibration",
                        "static int8 needs calibration data; set uri to an .npz or synthetic: true")
    quant = Quantization(mode=mode, calibration=calibration,
                         keep_io_types=_get(q, "keepIOTypes", f"{p}.quantization.keepIOTypes", bool,
                                            default=True),
                         per_channel=_get(q, "perChannel", f"{p}.quantization.perChannel", bool,
                                          default=False))
    level = _enum(_get(opt, "level", f"{p}.optimization.level", str, default="none"), OPT_LEVELS,
                  f"{p}.optimization.level")
    if level != "none" and fmt != "onnx":
        raise SpecError(f"{p}.optimization.level", f"graph optimization only applies to onnx targets, not {fmt}")
    fusion = _enum(_get(opt, "fusion", f"{p}.optimization.fusion", str, default="auto"), FUSIONS,
                   f"{p}.optimization.fusion")
    if fusion == "transformer" and fmt != "onnx":
        raise SpecError(f"{p}.optimization.fusion", f"transformer fusion only applies to onnx targets, not {fmt}")
    pr = _get(t, "pruning", f"{p}.pruning", dict)
    pruning = None
    if pr is not None:
        if source_format != "pytorch":
            raise SpecError(f"{p}.pruning", f"pruning needs a pytorch source, not {source_format}")
        method = _enum(_get(pr, "method", f"{p}.pruning.method", str, default="unstructured"),
                       PRUNE_METHODS, f"{p}.pruning.method")
        amount = _get(pr, "amount", f"{p}.pruning.amount", float, required=True)
        if not 0 < amount < 1:
            raise SpecError(f"{p}.pruning.amount", f"must be between 0 and 1 (exclusive); got {amount}")
        pruning = Pruning(method, amount)
    return Target(index=i, name=name, format=fmt, opset=opset, quantization=quant,
                  optimization=level, pruning=pruning, fusion=fusion, autotune=autotune)


def _parse_autotune(opt: dict, p: str, fmt: str, mode: str, calibration: Calibration | None) -> Autotune | None:
    f = f"{p}.optimization.autotune"
    at = _get(opt, "autotune", f, dict)
    if at is None:
        return None
    if fmt != "onnx":
        raise SpecError(f, f"autotune only applies to onnx targets, not {fmt}")
    if mode != "none":
        raise SpecError(f"{p}.quantization.mode", f"is {mode!r} but autotune chooses the precision: "
                        f"remove quantization.mode and list the candidates in {f}.modes")
    modes = _enum_list(at, "modes", f, QUANT_MODES)
    if "int8" in modes and (calibration is None or not (calibration.uri or calibration.synthetic)):
        raise SpecError(f"{p}.quantization.calibration", f"{f}.modes lists int8 (static), which needs "
                        "calibration data; set uri to an .npz or synthetic: true")
    fusions = _enum_list(at, "fusions", f, AUTOTUNE_FUSIONS)
    sizes = _get(at, "batchSizes", f"{f}.batchSizes", list, default=[1])
    if not sizes:
        raise SpecError(f"{f}.batchSizes", "needs at least one batch size")
    for k, b in enumerate(sizes):
        if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 1024:
            raise SpecError(f"{f}.batchSizes[{k}]", f"must be an int in 1..1024; got {b!r}")
    drop = _get(at, "maxAccuracyDrop", f"{f}.maxAccuracyDrop", float, default=0.01)
    rel = _get(at, "maxRelL2Error", f"{f}.maxRelL2Error", float, default=0.05)
    if not 0 <= drop <= 1:
        raise SpecError(f"{f}.maxAccuracyDrop", f"must be in 0..1 (a fraction of top-1 agreement); got {drop}")
    if rel < 0:
        raise SpecError(f"{f}.maxRelL2Error", f"must be >= 0; got {rel}")
    return Autotune(modes=modes, fusions=fusions,
                    batch_sizes=tuple(dict.fromkeys(sizes)), max_accuracy_drop=drop, max_rel_l2_error=rel)


def _enum_list(d: dict, key: str, path: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """An optional list of enum strings, deduplicated in order."""
    out = []
    for k, v in enumerate(_get(d, key, f"{path}.{key}", list, default=[])):
        if not isinstance(v, str):
            raise SpecError(f"{path}.{key}[{k}]", f"must be a string; got {v!r}")
        out.append(_enum(v, allowed, f"{path}.{key}[{k}]"))
    return tuple(dict.fromkeys(out))
