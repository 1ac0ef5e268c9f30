"""The export pipeline: fetch the source, load it, produce each target, validate, write results.

Each target is independent: one failing target does not stop the others. The export's phase is
Failed if any target failed. Layout of the output::

    <output.uri>/manifest.json
    <output.uri>/<target name>/model.onnx | model.pt2 | model.pt (TorchScript) | model.tflite
    <output.uri>/<target name>/            (the SavedModel itself, for savedmodel)

ONNX targets are built in this order: export (or copy) fp32 -> transformer fusion (when the graph
has attention, see fusion.py) -> quantization (dynamic / int8 QDQ / int4 weight-only / fp16) ->
graph optimization at the chosen level, saved offline. With ``optimization.autotune`` the steps
after the export run once per candidate and the fastest one within the budget is kept
(autotune.py).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelpilot.uris import redact_json

from . import manifest as mf
from . import sources
from .errors import ExporterError, ExportError, InputError, SpecError, one_line
from .progress import Progress
from .spec import ExportSpec, Target
from .validate import SEED, batch_dynamic, compare_arrays, concat_outputs, make_samples, samples_from_npz, timed_runs, validate


@dataclass
class Result:
    phase: str
    message: str
    manifest: dict
    manifest_uri: str | None
    termination: str
    exit_code: int
    errors: list[ExporterError] = field(default_factory=list)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class _Ctx:
    def __init__(self, spec: ExportSpec, progress: Progress, workdir: Path):
        self.spec = spec
        self.p = progress
        self.work = workdir
        self.src_path: Path | None = None
        self.torch_model = None
        self.tf_source = None
        self.onnx_source: Path | None = None
        self.samples: list[dict] = []
        self.samples_source = ""
        self.held_back: dict[str, int] = {}  # calibration uri -> rows held back for validation
        self.ref_cache: dict[str, Any] = {}
        self.output_names: list[str] = []
        self.source_signature: dict = {}


def run(spec: ExportSpec, progress: Progress | None = None) -> Result:
    """Run the whole export. Never raises for export problems: they end up in the Result."""
    p = progress or Progress()
    started = _now()
    t0 = time.perf_counter()
    man: dict[str, Any] = {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExportManifest",
        "name": spec.name, "namespace": spec.namespace, "phase": "Running", "message": "",
        "startedAt": started,
        "source": {"uri": spec.source.uri, "format": spec.source.format},
        "output": {"uri": spec.output_uri},
        "validation": {"atol": spec.validation.atol, "rtol": spec.validation.rtol,
                       "samples": spec.validation.samples, "warnOnly": spec.validation.warn_only},
        "targets": [],
    }
    if spec.source.format == "pytorch":
        man["source"]["loader"] = spec.source.loader
        if spec.source.factory:
            man["source"]["factory"] = spec.source.factory
    errors: list[ExporterError] = []
    local_out = sources.is_local(spec.output_uri)
    with tempfile.TemporaryDirectory(prefix="modelpilot-export-") as td:
        work = Path(td)
        out_root = sources.local_path(spec.output_uri) if local_out else work / "out"
        ctx = _Ctx(spec, p, work)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                _prepare(ctx, man)
                for t in spec.targets:
                    entry = _run_target(ctx, t, out_root)
                    man["targets"].append(entry)
                    if entry["phase"] != "Succeeded":
                        errors.append(entry.pop("_exc"))
                    entry.pop("_exc", None)
        except ExporterError as e:
            errors.append(e)
        except Exception as e:  # noqa: BLE001 - last resort: one line, exit 1
            traceback.print_exc(file=sys.stderr)
            errors.append(ExportError(f"internal error: {type(e).__name__}: {e}"))
        man["phase"] = "Failed" if errors else "Succeeded"
        if errors:
            more = f" (+{len(errors) - 1} more failure(s), see manifest.json)" if len(errors) > 1 else ""
            man["message"] = one_line(errors[0].message + more)
        else:
            man["message"] = (f"exported {len(man['targets'])} target(s): "
                              + ", ".join(t["name"] for t in man["targets"]))
        man["completedAt"] = _now()
        man["durationSeconds"] = round(time.perf_counter() - t0, 3)
        man["tools"] = mf.tool_versions()
        man = redact_json(man)  # manifest.json is read by more people than the spec
        manifest_uri = None
        try:
            out_root.mkdir(parents=True, exist_ok=True)
            (out_root / "manifest.json").write_text(json.dumps(man, indent=2, default=str) + "\n")
            if not local_out:
                with p.stage("upload"):
                    sources.upload_dir(out_root, spec.output_uri, endpoint=spec.output_endpoint)
            manifest_uri = mf.join_uri(spec.output_uri, "manifest.json")
        except ExporterError as e:
            errors.append(e)
            man["phase"] = "Failed"
            man["message"] = man["message"] if len(errors) > 1 else e.message
        except OSError as e:
            err = InputError(f"spec.output.uri: {spec.output_uri}: cannot write: {e}")
            errors.append(err)
            man["phase"] = "Failed"
            man["message"] = man["message"] if len(errors) > 1 else err.message
    man = redact_json(man)
    term = mf.termination_message(man, manifest_uri)
    code = 0
    if errors:
        code = max(e.exit_code for e in errors) if all(isinstance(e, InputError) for e in errors) else 1
    return Result(man["phase"], man["message"], man, manifest_uri, term, code, errors)


# --------------------------------------------------------------------------------------- source


def _prepare(ctx: _Ctx, man: dict) -> None:
    spec = ctx.spec
    with ctx.p.stage(f"fetch source {spec.source.uri}"):
        ctx.src_path = sources.fetch(spec.source.uri, ctx.work / "src", endpoint=spec.source.endpoint,
                                     limits=spec.source.limits)
    src = ctx.src_path
    if src.is_file():
        man["source"]["sha256"] = mf.sha256_file(src)
        man["source"]["sizeBytes"] = src.stat().st_size
    else:
        man["source"]["sha256"], man["source"]["sizeBytes"], _ = mf.digest_dir(src)
    with ctx.p.stage(f"load {spec.source.format} source"):
        if spec.source.format == "pytorch":
            from . import pytorch

            _set_torch_threads()
            ctx.torch_model = pytorch.load(src, spec.source, spec.inputs)
            ctx.output_names = list(ctx.torch_model.output_names)
            ctx.source_signature = {
                "inputs": [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in spec.inputs],
                "outputs": [{"name": n} for n in ctx.output_names]}
        elif spec.source.format == "tensorflow":
            from . import tensorflow as tfm

            ctx.tf_source = tfm.SavedModelSource(src, spec.inputs, spec.source.uri)
            ctx.output_names = list(ctx.tf_source.output_names)
            ctx.source_signature = tfm.savedmodel_signature(ctx.tf_source)
        else:
            from . import onnx_ops

            if src.is_dir():
                cands = sorted(src.glob("*.onnx"))
                if len(cands) != 1:
                    raise InputError(f"spec.source.uri: {spec.source.uri}: a directory needs exactly one .onnx file")
                src = cands[0]
            try:
                runner = onnx_ops.OrtRunner(src)
            except Exception as e:  # noqa: BLE001
                raise InputError(f"spec.source.uri: {spec.source.uri}: not a loadable ONNX model: "
                                 f"{one_line(str(e), 200)}") from e
            names = set(runner.inputs)
            for i, inp in enumerate(spec.inputs):
                if inp.name not in names:
                    raise SpecError(f"spec.inputs[{i}].name", f"{inp.name!r} is not an input of the ONNX "
                                    f"model (inputs: {', '.join(sorted(names))})")
            missing = names - {i.name for i in spec.inputs}
            if missing:
                raise SpecError("spec.inputs", f"the ONNX model also needs {', '.join(sorted(missing))}")
            ctx.onnx_source = src
            ctx.output_names = list(runner.output_names)
            ctx.source_signature = onnx_ops.io_signature(src)
    man["source"]["signature"] = ctx.source_signature
    v = spec.validation
    with ctx.p.stage("prepare validation samples"):
        if v.samples_uri:
            path = sources.fetch(v.samples_uri, ctx.work / "samples", endpoint=spec.source.endpoint,
                                 field="spec.validation.samplesUri", limits=spec.source.limits)
            ctx.samples = samples_from_npz(path, spec.inputs, v.samples, "spec.validation.samplesUri")
            ctx.samples_source = v.samples_uri
        elif not _hold_back_calibration(ctx):
            ctx.samples = make_samples(spec.inputs, v.samples)
            ctx.samples_source = f"synthetic (seed {SEED}, from spec.inputs)"
    man["validation"]["samplesSource"] = ctx.samples_source
    man["validation"]["samples"] = len(ctx.samples)


def _hold_back_calibration(ctx: _Ctx) -> bool:
    """Without spec.validation.samplesUri, validate on real inputs where the spec has some: the
    last rows of the first target's calibration data (at most spec.validation.samples, at most a
    fifth), which that calibration then does not use. Random inputs fail int8 models that are fine
    on real data (an MLP on digits: top-1 agreement 0.125 on random inputs)."""
    found = next(((t, t.quantization.calibration) for t in ctx.spec.targets
                  if t.quantization.calibration is not None and t.quantization.calibration.uri), None)
    if found is None:
        return False
    t, cal = found
    field = f"{t.path}.quantization.calibration.uri"
    path = sources.fetch(cal.uri, ctx.work / f"cal-{t.index}", endpoint=ctx.spec.source.endpoint, field=field,
                         limits=ctx.spec.source.limits)
    rows = samples_from_npz(path, ctx.spec.inputs, None, field)
    hold = min(ctx.spec.validation.samples, len(rows) // 5)
    if hold < 1:
        ctx.p.warn(f"{field}: {len(rows)} rows are too few to hold any back for validation (5 or more needed); "
                   "validating on synthetic inputs")
        return False
    ctx.samples = rows[len(rows) - hold:]
    ctx.held_back[cal.uri] = hold
    ctx.samples_source = (f"held back from {cal.uri} ({field}): the last {hold} of {len(rows)} rows; "
                          f"calibration used the other {len(rows) - hold}")
    return True


def _set_torch_threads() -> None:
    """Same intra-op thread count for torch as for onnxruntime and TFLite (fair latencies)."""
    import torch

    from .onnx_ops import threads

    torch.set_num_threads(threads())


def _source_runner(ctx: _Ctx):
    spec = ctx.spec
    if spec.source.format == "pytorch":
        from .pytorch import TorchRunner

        return TorchRunner(ctx.torch_model.module(), spec.inputs)
    if spec.source.format == "tensorflow":
        return ctx.tf_source
    from .onnx_ops import OrtRunner

    return OrtRunner(ctx.onnx_source)


def _reference(ctx: _Ctx):
    """Source outputs on the validation samples (+ p50 latency), computed once."""
    if "source" not in ctx.ref_cache:
        runner = _source_runner(ctx)
        ctx.ref_cache["runner"] = runner
        ctx.ref_cache["source"] = timed_runs(runner, ctx.samples)
    return ctx.ref_cache["runner"], ctx.ref_cache["source"]


# --------------------------------------------------------------------------------------- targets


def _calibration(ctx: _Ctx, t: Target) -> list[dict]:
    cal = t.quantization.calibration
    f = f"{t.path}.quantization.calibration"
    if cal is None or not (cal.uri or cal.synthetic):
        what = "static int8" if t.format == "onnx" else "full int8"
        raise SpecError(f, f"{what} needs calibration data; set uri to an .npz or synthetic: true")
    if cal.uri:
        path = sources.fetch(cal.uri, ctx.work / f"cal-{t.index}", endpoint=ctx.spec.source.endpoint,
                             field=f"{f}.uri", limits=ctx.spec.source.limits)
        rows = samples_from_npz(path, ctx.spec.inputs, None, f"{f}.uri")
        return rows[:len(rows) - ctx.held_back.get(cal.uri, 0)][:cal.samples]
    ctx.p.warn(f"{t.path} ({t.name}): calibrating int8 on {cal.samples} synthetic samples from "
               "spec.inputs: scales fit random data, not yours; give calibration.uri for real accuracy")
    return make_samples(ctx.spec.inputs, cal.samples, seed=SEED + 7)


def resolve_fusion(t: Target, fp32: Path) -> tuple[str, str]:
    """(fusion to run, why) for an onnx target. ``auto`` does not fuse a fixed target: measured on
    the benchmark's models (CPU time, onnxruntime 1.32), the fused graphs ran int8 slower than the
    unfused ones, which onnxruntime fuses itself at session time (DynamicQuantizeMatMul, its own
    LayerNorm/GELU fusions). Fusion is an autotune candidate instead, kept where it measures
    faster; ``transformer`` forces it."""
    if t.fusion == "transformer":
        return "transformer", "spec"
    return "none", "spec" if t.fusion == "none" else "auto: fusion is only tried by autotune"


def _onnx_chain(ctx: _Ctx, t: Target, fp32: Path, final: Path, warnings: list[str],
                extra: dict | None = None) -> list[Path]:
    """Fuse, quantize then optimize ``fp32`` into ``final``; returns the files of ``final``.
    The fusion record goes to ``extra["fusion"]``."""
    from . import onnx_ops

    steps = []
    q = t.quantization
    fusion, why = resolve_fusion(t, fp32)
    record: dict[str, Any] = {"mode": fusion, "reason": why}
    if extra is not None:
        extra["fusion"] = record
    if fusion == "transformer":
        from .fusion import fuse_transformer

        def fuse(s, d):
            record.update(fuse_transformer(s, d))
        steps.append(("transformer fusion", fuse))
    # Quantize first, then optimize. The other order was measured worse: extended/all fuse Gemm
    # into onnxruntime contrib ops (FusedGemm) that the quantizers skip, leaving the model fp32.
    if q.mode == "dynamic":
        steps.append(("quantize dynamic int8", lambda s, d: onnx_ops.quantize_dynamic(s, d, q.per_channel)))
    elif q.mode == "int8":
        cal = _calibration(ctx, t)
        steps.append(("quantize static int8 (QDQ)",
                      lambda s, d: onnx_ops.quantize_static(s, d, cal, q.per_channel)))
    elif q.mode == "int4":
        steps.append(("quantize weight-only int4 (MatMulNBits)", onnx_ops.quantize_int4))
    elif q.mode == "fp16":
        steps.append(("convert to fp16", lambda s, d: onnx_ops.to_fp16(s, d, q.keep_io_types)))
    if t.optimization != "none":
        steps.append((f"optimize graph ({t.optimization})",
                      lambda s, d: onnx_ops.optimize(s, d, t.optimization)))
    if not steps:
        if fp32 != final:
            files = onnx_ops.model_files(fp32)
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fp32, final)
            for extra_file in files[1:]:
                shutil.copyfile(extra_file, final.parent / extra_file.name)
        return onnx_ops.model_files(final)
    cur = fp32
    for k, (label, fn) in enumerate(steps):
        dst = final if k == len(steps) - 1 else ctx.work / f"t{t.index}-{final.parent.name}-step{k}.onnx"
        with ctx.p.stage(f"{t.name}: {label}"):
            try:
                fn(cur, dst)
            except ExporterError:
                raise
            except Exception as e:  # noqa: BLE001
                raise ExportError(f"{t.path} ({t.name}): {label} failed: {type(e).__name__}: "
                                  f"{one_line(str(e), 300)}") from e
        cur = dst
    if q.mode == "fp16" and t.optimization != "none" and onnx_ops.fp32_weight_fraction(final) > 0.5:
        msg = (f"{t.path}.optimization.level: onnxruntime's CPU optimizer at {t.optimization!r} folded "
               "the fp16 weights back to fp32 (the CPU has no fp16 kernels for these ops); use level "
               "none (or basic) for fp16 targets meant for GPUs")
        warnings.append(msg)
        ctx.p.warn(msg)
    return onnx_ops.model_files(final)


def _onnx_build(ctx: _Ctx, t: Target, fp32: Path, final: Path, warnings: list[str], extra: dict) -> None:
    if t.autotune is None:
        _onnx_chain(ctx, t, fp32, final, warnings, extra)
    else:
        _onnx_autotune(ctx, t, fp32, final, warnings, extra)


def _onnx_autotune(ctx: _Ctx, t: Target, fp32: Path, final: Path, warnings: list[str], extra: dict) -> None:
    """Build every candidate, measure accuracy and latency, copy the winner to ``final``."""
    import dataclasses

    import onnx

    from . import autotune as at
    from . import onnx_ops
    from .fusion import has_attention

    a = t.autotune
    spec = ctx.spec
    if max(a.batch_sizes) > 1 and not batch_dynamic(spec.inputs):
        raise SpecError(f"{t.path}.optimization.autotune.batchSizes",
                        "batch sizes above 1 need a dynamic (-1) first dimension on every spec.inputs entry")
    attention = has_attention(onnx.load(str(fp32), load_external_data=False))
    cal = t.quantization.calibration
    fusions = a.fusions or ((t.fusion,) if t.fusion != "auto" else ())
    cands = at.candidates(a.modes, fusions, attention, bool(cal and (cal.uri or cal.synthetic)))
    ref_runner, ref = _reference(ctx)
    fused: dict[str, Path] = {"none": fp32}
    runners: dict[str, Any] = {}
    records: dict[str, dict] = {}
    for c in cands:
        t0 = time.perf_counter()
        try:
            if c.fusion not in fused:
                dst = ctx.work / f"t{t.index}-fused.onnx"
                rec = {}
                _onnx_chain(ctx, dataclasses.replace(t, fusion=c.fusion, optimization="none",
                                                     autotune=None), fp32, dst, warnings, rec)
                fused[c.fusion], records[c.fusion] = dst, {**rec["fusion"], "reason": "autotune"}
            ct = dataclasses.replace(t, fusion="none", autotune=None,
                                     quantization=dataclasses.replace(t.quantization, mode=c.mode))
            path = ctx.work / f"t{t.index}-{c.name}" / "model.onnx"
            c.size_bytes = onnx_ops.file_size(_onnx_chain(ctx, ct, fused[c.fusion], path, warnings))
            runner = onnx_ops.OrtRunner(path, ctx.output_names, spinning=False)
            rep = validate(ref_runner, runner, ctx.samples, ctx.output_names, mode=c.mode,
                           batched=False, source_outputs=ref)
            at.judge(c, rep.outputs, a.max_accuracy_drop, a.max_rel_l2_error)
            runners[c.name] = runner
        except ExporterError as e:
            c.error = one_line(e.message, 200)
        c.build_seconds = time.perf_counter() - t0
    feeds = {b: at.batch_of(ctx.samples, b) for b in a.batch_sizes}
    with ctx.p.stage(f"{t.name}: autotune: latency of {len(runners)} candidate(s) at batch "
                     f"{', '.join(map(str, a.batch_sizes))}"):
        lat = at.interleaved_latency(runners, feeds)
    for c in cands:
        c.latency_ms = lat.get(c.name, {})
    best = at.choose(cands)
    table = {"batchSizes": list(a.batch_sizes), "maxAccuracyDrop": a.max_accuracy_drop,
             "maxRelL2Error": a.max_rel_l2_error,
             "candidates": [c.to_json(a.batch_sizes) for c in cands]}
    extra["autotune"] = table
    if best is None:
        raise ExportError(f"{t.path}.optimization.autotune: no candidate within the accuracy budget "
                          f"(maxAccuracyDrop {a.max_accuracy_drop}, maxRelL2Error {a.max_rel_l2_error}; "
                          f"see manifest.json targets[].autotune); raise the budget or list other modes")
    table["chosen"] = best.name
    src = ctx.work / f"t{t.index}-{best.name}" / "model.onnx"
    files = onnx_ops.model_files(src)
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, final)
    for f in files[1:]:
        shutil.copyfile(f, final.parent / f.name)
    extra["fusion"] = records.get(best.fusion, {"mode": "none", "reason": "autotune"})
    extra["quantization"] = {"mode": best.mode}
    if best.mode in ("dynamic", "int8"):
        extra["quantization"]["perChannel"] = t.quantization.per_channel
    ctx.p.log(f"{t.name}: autotune chose {best.name}")


def _run_target(ctx: _Ctx, t: Target, out_root: Path) -> dict:
    spec = ctx.spec
    entry: dict[str, Any] = {"name": t.name, "format": t.format, "phase": "Running",
                             "quantization": {"mode": t.quantization.mode}}
    if t.quantization.mode == "fp16":
        entry["quantization"]["keepIOTypes"] = t.quantization.keep_io_types
    if t.quantization.mode in ("dynamic", "int8"):
        entry["quantization"]["perChannel"] = t.quantization.per_channel
    if t.format == "onnx":
        entry["optimization"] = t.optimization
    warnings: list[str] = []
    partial: dict[str, Any] = {}
    tdir = out_root / t.name
    try:
        if tdir.exists():
            shutil.rmtree(tdir)
        tdir.mkdir(parents=True)
        t_exp = time.perf_counter()
        with ctx.p.stage(f"{t.name}: export {spec.source.format} -> {t.format}"):
            main, runner, ref_runner, ref, signature, extra = _produce(ctx, t, tdir, warnings, partial)
        entry.update(extra)
        entry["seconds"] = {"export": round(time.perf_counter() - t_exp, 3)}
        t_val = time.perf_counter()
        with ctx.p.stage(f"{t.name}: validate on {len(ctx.samples)} sample(s)"):
            rep = validate(ref_runner, runner, ctx.samples, ctx.output_names,
                           mode=entry["quantization"]["mode"], atol=spec.validation.atol,
                           rtol=spec.validation.rtol, batched=batch_dynamic(spec.inputs),
                           source_outputs=ref)
        entry["seconds"]["validate"] = round(time.perf_counter() - t_val, 3)
        entry["validation"] = rep.to_json()
        if "pruningEffect" in extra:
            entry["validation"]["comparedWith"] = "pruned source (pruningEffect: against the unpruned source)"
        entry["signature"] = signature
        # files, digests
        if main.is_dir():
            sha, size, files = mf.digest_dir(main)
            entry["uri"] = mf.join_uri(spec.output_uri, main.relative_to(out_root).as_posix()) + "/"
            entry["sha256"], entry["sizeBytes"] = sha, size
            prefix = main.relative_to(out_root).as_posix()
            entry["files"] = [{"path": f"{prefix}/{rel}", "sha256": s, "sizeBytes": n} for rel, s, n in files]
        else:
            entry["uri"] = mf.join_uri(spec.output_uri, main.relative_to(out_root).as_posix())
            entry["sha256"] = mf.sha256_file(main)
            files = sorted(p for p in tdir.rglob("*") if p.is_file())
            entry["files"] = [{"path": f.relative_to(out_root).as_posix(), "sha256": mf.sha256_file(f),
                               "sizeBytes": f.stat().st_size} for f in files]
            entry["sizeBytes"] = sum(f["sizeBytes"] for f in entry["files"])
            z = mf.zlib_size(main)
            if z is not None:
                entry["zlibSizeBytes"] = z
        entry["parity"] = _write_parity(ctx, runner, entry["signature"], out_root, t.name)
        ctx.p.log(f"{t.name}: max abs error {rep.max_abs_error:.3g}, p50 latency "
                  f"{rep.artifact_latency_ms:.3g} ms (source {rep.source_latency_ms:.3g} ms), "
                  f"{entry['sizeBytes']} bytes")
        if not rep.passed:
            msg = (f"{t.path} ({t.name}): validation failed: {rep.message} "
                   f"[{rep.criterion}, {rep.samples} samples]")
            if spec.validation.warn_only:
                warnings.append(msg + " (warnOnly: kept)")
                ctx.p.warn(msg + " (spec.validation.warnOnly: kept)")
            else:
                raise ExportError(msg + "; set spec.validation.warnOnly to keep it anyway")
        entry["phase"] = "Succeeded"
    except ExporterError as e:
        msg = e.message
        if not msg.startswith("spec.") and not msg.startswith(t.path):
            msg = f"{t.path} ({t.name}): {msg}"
        err = type(e).__new__(type(e))
        Exception.__init__(err, one_line(msg))
        entry["phase"], entry["error"], entry["_exc"] = "Failed", err.message, err
        ctx.p.log(f"{t.name}: FAILED: {err.message}")
    except Exception as e:  # noqa: BLE001 - a converter's own exception: one line, exit 1
        traceback.print_exc(file=sys.stderr)  # the details, for whoever reads the Job's log
        first = one_line(str(e), 400)
        err = ExportError(f"{t.path} ({t.name}): {spec.source.format} -> {t.format} failed: "
                          f"{type(e).__name__}: {first}")
        entry["phase"], entry["error"], entry["_exc"] = "Failed", err.message, err
        ctx.p.log(f"{t.name}: FAILED: {err.message}")
    if entry["phase"] == "Failed" and "autotune" in partial:
        entry["autotune"] = partial["autotune"]
    if warnings:
        entry["warnings"] = warnings
    return entry


PARITY_SAMPLES = 8
PARITY_MAX_BYTES = 1 << 20


def _write_parity(ctx: _Ctx, runner, signature: dict, out_root: Path, target: str) -> dict[str, Any]:
    """Record validation inputs and the artifact's own outputs on them, for the serving side's
    pre-traffic parity check (modelpilot.comparator.parity): `parity/<target>.json`, outside the
    target's directory so that the artifact's digest does not change. At most PARITY_SAMPLES
    samples and PARITY_MAX_BYTES: fewer samples are kept for large inputs."""
    spec = ctx.spec
    names = [o["name"] for o in (signature or {}).get("outputs") or []] or ctx.output_names
    inputs, outputs = [], []
    for sample in ctx.samples[:PARITY_SAMPLES]:
        outs = [np.asarray(o) for o in runner(sample)]
        inputs.append({k: {"dtype": str(v.dtype), "data": v.tolist()} for k, v in sample.items()})
        outputs.append({(names[j] if j < len(names) else f"output{j}"): o.tolist() for j, o in enumerate(outs)})
    record = {"atol": spec.validation.atol, "rtol": spec.validation.rtol, "samplesSource": ctx.samples_source,
              "inputs": inputs, "outputs": outputs}
    text = json.dumps(record)
    while len(text) > PARITY_MAX_BYTES and len(record["inputs"]) > 1:
        record["inputs"], record["outputs"] = record["inputs"][:-1], record["outputs"][:-1]
        text = json.dumps(record)
    if len(text) > PARITY_MAX_BYTES:
        return {"samples": 0, "skipped": f"one sample takes {len(text)} bytes, more than {PARITY_MAX_BYTES}"}
    rel = f"parity/{target}.json"
    (out_root / "parity").mkdir(parents=True, exist_ok=True)
    (out_root / rel).write_text(text)
    return {"uri": mf.join_uri(spec.output_uri, rel), "samples": len(record["inputs"])}


def _produce(ctx: _Ctx, t: Target, tdir: Path, warnings: list[str], extra: dict[str, Any]):
    """Build the artifact. Returns (main path, artifact runner, reference runner, reference
    outputs or None, IO signature, extra manifest fields). ``extra`` is filled as it goes, so that
    a failed target still reports what was measured (the autotune table)."""
    from . import onnx_ops

    spec = ctx.spec
    ref_runner, ref = _reference(ctx)
    if spec.source.format == "pytorch":
        from . import pytorch

        tm = ctx.torch_model
        if t.pruning:
            from .pruning import prune

            with ctx.p.stage(f"{t.name}: prune ({t.pruning.method}, amount {t.pruning.amount})"):
                tm = pytorch.load(ctx.src_path, spec.source, spec.inputs)
                extra["pruning"] = prune(tm, t.pruning.method, t.pruning.amount)
                ref_runner = pytorch.TorchRunner(tm.module(), spec.inputs)
                pruned_ref = timed_runs(ref_runner, ctx.samples)
                # effect of pruning itself, against the unpruned source (informational)
                a, b = concat_outputs(ref[0]), concat_outputs(pruned_ref[0])
                eff = [compare_arrays(n, x, y, spec.validation.atol, spec.validation.rtol).to_json()
                       for n, x, y in zip(ctx.output_names, a, b, strict=False)]
                extra["pruningEffect"] = {"outputs": eff, "unprunedLatencyMsP50": ref[1],
                                          "prunedLatencyMsP50": pruned_ref[1]}
                ref = pruned_ref
        sig_in = [{"name": i.name, "dtype": i.dtype, "shape": list(i.shape)} for i in spec.inputs]
        if t.format == "onnx":
            fp32 = tdir / "model.onnx" if not _onnx_steps(t) else ctx.work / f"t{t.index}-fp32.onnx"
            with ctx.p.stage(f"{t.name}: torch.onnx.export"):
                pytorch.to_onnx(tm, spec.inputs, fp32, t.opset)
            main = tdir / "model.onnx"
            _onnx_build(ctx, t, fp32, main, warnings, extra)
            runner = onnx_ops.OrtRunner(main, ctx.output_names)
            extra["opset"] = onnx_ops.opset_of(main)
            return main, runner, ref_runner, ref, onnx_ops.io_signature(main), extra
        if t.format == "pt2":
            main = tdir / "model.pt2"
            try:
                pytorch.to_pt2(tm, spec.inputs, main)
            except ExportError as e:
                raise ExportError(f"{t.path}.format: {e.message}") from e
            return main, pytorch.pt2_runner(main, spec.inputs), ref_runner, ref, \
                {"inputs": sig_in, "outputs": [{"name": n} for n in ctx.output_names]}, extra
        main = tdir / "model.pt"
        pytorch.to_torchscript(tm, spec.inputs, main)
        return main, pytorch.torchscript_runner(main, spec.inputs), ref_runner, ref, \
            {"inputs": sig_in, "outputs": [{"name": n} for n in ctx.output_names]}, extra
    if spec.source.format == "tensorflow":
        from . import tensorflow as tfm

        src = ctx.tf_source
        if t.format == "savedmodel":
            tfm.to_savedmodel(src, tdir)
            runner = tfm.SavedModelSource(tdir, spec.inputs, mf.join_uri(spec.output_uri, t.name))
            return tdir, runner, ref_runner, ref, tfm.savedmodel_signature(runner), extra
        if t.format == "tflite":
            cal = _calibration(ctx, t) if t.quantization.mode == "int8" else None
            main = tdir / "model.tflite"
            tfm.to_tflite(src, t, main, cal)
            from .onnx_ops import threads

            runner = tfm.TFLiteRunner(main, ctx.output_names, threads())
            return main, runner, ref_runner, ref, runner.io_signature(), extra
        # onnx via tf2onnx
        fp32 = tdir / "model.onnx" if not _onnx_steps(t) else ctx.work / f"t{t.index}-fp32.onnx"
        with ctx.p.stage(f"{t.name}: tf2onnx"):
            tfm.to_onnx(src, t, fp32)
        main = tdir / "model.onnx"
        _onnx_build(ctx, t, fp32, main, warnings, extra)
        extra["opset"] = onnx_ops.opset_of(main)
        return main, onnx_ops.OrtRunner(main, ctx.output_names), ref_runner, ref, \
            onnx_ops.io_signature(main), extra
    # onnx source
    main = tdir / "model.onnx"
    _onnx_build(ctx, t, ctx.onnx_source, main, warnings, extra)
    extra["opset"] = onnx_ops.opset_of(main)
    return main, onnx_ops.OrtRunner(main, ctx.output_names), ref_runner, ref, \
        onnx_ops.io_signature(main), extra


def _onnx_steps(t: Target) -> bool:
    return (t.quantization.mode != "none" or t.optimization != "none" or t.fusion == "transformer"
            or t.autotune is not None)
