"""Validation: run the source model and an artifact on the same samples and compare (pure numpy).

Samples come from ``spec.validation.samplesUri`` (an ``.npz`` whose arrays are keyed by input name)
or are generated from ``spec.inputs`` with a fixed seed:

* float inputs: standard normal; int inputs: uniform in [0, 10) (safe token ids / indices for any
  vocabulary of at least 10); uint8: [0, 256); int8: [-128, 128); bool: fair coin.
* a dynamic (-1) first dimension is the batch: each sample has batch 1. Any other dynamic
  dimension is given size 8.

Each sample is run on its own (that gives the p50 latency at batch 1), and when the first dimension
of every input is dynamic, all samples are also run as one batch, which checks the dynamic batch
dimension of the artifact. Errors are taken over both runs.

Judgement:

* exact targets (no quantization; any graph optimization level; pruned models compared with the
  pruned source): every element must satisfy ``|a - b| <= atol + rtol * |b|`` (numpy's allclose,
  ``b`` = source output), as Hugging Face Optimum does.
* lossy targets (fp16, dynamic and static int8, weight-only int4, on onnx and tflite): element-wise tolerances mean
  nothing at 8 bits, so they are judged by what the model is for. A classifier-shaped output
  (2-D ``[batch, classes]`` float with ``classes > 1``) must keep top-1 agreement with the source of
  at least ``LOSSY_TOP1[mode]``. Any other output must keep its relative L2 error
  ``||a - b|| / ||b||`` under ``LOSSY_REL_L2[mode]``. The max abs/rel errors are still reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .spec import InputSpec

Sample = dict[str, np.ndarray]
Runner = Callable[[Sample], list[np.ndarray]]

SEED = 20240601
DYNAMIC_OTHER_DIM = 8
LOSSY_TOP1 = {"fp16": 0.95, "dynamic": 0.85, "int8": 0.85, "int4": 0.85}
LOSSY_REL_L2 = {"fp16": 0.01, "dynamic": 0.15, "int8": 0.15, "int4": 0.25}

_NP_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int64": np.int64,
    "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}


def np_dtype(name: str) -> np.dtype:
    return np.dtype(_NP_DTYPES[name])


def concrete_shape(inp: InputSpec, batch: int = 1) -> tuple[int, ...]:
    return tuple((batch if i == 0 else DYNAMIC_OTHER_DIM) if d == -1 else d
                 for i, d in enumerate(inp.shape))


def batch_dynamic(inputs: Sequence[InputSpec]) -> bool:
    """True when every input has a dynamic first dimension (samples can be stacked)."""
    return all(len(i.shape) > 0 and i.shape[0] == -1 for i in inputs)


def random_array(inp: InputSpec, rng: np.random.Generator, batch: int = 1) -> np.ndarray:
    shape = concrete_shape(inp, batch)
    dt = inp.dtype
    if dt.startswith("float"):
        return rng.standard_normal(shape).astype(np_dtype(dt))
    if dt == "bool":
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dt == "uint8":
        return rng.integers(0, 256, shape).astype(np.uint8)
    if dt == "int8":
        return rng.integers(-128, 128, shape).astype(np.int8)
    return rng.integers(0, 10, shape).astype(np_dtype(dt))


def make_samples(inputs: Sequence[InputSpec], n: int, seed: int = SEED) -> list[Sample]:
    """``n`` seeded synthetic samples, batch 1 each where the batch is dynamic."""
    rng = np.random.default_rng(seed)
    return [{i.name: random_array(i, rng) for i in inputs} for _ in range(n)]


def samples_from_npz(path, inputs: Sequence[InputSpec], n: int | None, field: str) -> list[Sample]:
    """Split an ``.npz`` (arrays keyed by input name) into samples.

    If an input's first dimension is -1 or 1, rows along axis 0 are samples (each kept with batch
    1); otherwise the array must have an extra leading sample axis.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{field}: cannot read .npz: {e}") from e
    with data:
        missing = [i.name for i in inputs if i.name not in data.files]
        if missing:
            raise InputError(f"{field}: the .npz lacks arrays for input(s) {', '.join(missing)} "
                             f"(has {', '.join(data.files) or 'none'})")
        arrays = {i.name: np.asarray(data[i.name]) for i in inputs}
    counts = set()
    for i in inputs:
        a = arrays[i.name]
        rows_mode = len(i.shape) > 0 and i.shape[0] in (-1, 1)
        want_ndim = len(i.shape) if rows_mode else len(i.shape) + 1
        if a.ndim != want_ndim:
            raise InputError(f"{field}: array {i.name!r} has shape {list(a.shape)}, expected "
                             f"{want_ndim} dims for input shape {list(i.shape)}")
        counts.add(a.shape[0])
    if len(counts) != 1:
        raise InputError(f"{field}: arrays have different sample counts {sorted(counts)}")
    total = counts.pop()
    if total == 0:
        raise InputError(f"{field}: the .npz holds no samples")
    k = total if n is None else min(n, total)
    out: list[Sample] = []
    for r in range(k):
        s = {}
        for i in inputs:
            a = arrays[i.name]
            rows_mode = len(i.shape) > 0 and i.shape[0] in (-1, 1)
            s[i.name] = (a[r:r + 1] if rows_mode else a[r]).astype(np_dtype(i.dtype), copy=False)
        out.append(s)
    return out


def stack(samples: Sequence[Sample]) -> Sample:
    return {k: np.concatenate([s[k] for s in samples], axis=0) for k in samples[0]}


def is_classifier(ref: np.ndarray) -> bool:
    return ref.ndim == 2 and ref.shape[1] > 1 and np.issubdtype(ref.dtype, np.floating)


@dataclass
class OutputReport:
    name: str
    shape: list[int]
    max_abs_error: float
    max_rel_error: float
    rel_l2_error: float
    allclose: bool
    top1_agreement: float | None = None

    def to_json(self) -> dict:
        d = {"name": self.name, "shape": self.shape, "maxAbsError": self.max_abs_error,
             "maxRelError": self.max_rel_error, "relL2Error": self.rel_l2_error,
             "withinTolerance": self.allclose}
        if self.top1_agreement is not None:
            d["top1Agreement"] = self.top1_agreement
        return d


@dataclass
class ValidationReport:
    samples: int
    outputs: list[OutputReport]
    source_latency_ms: float
    artifact_latency_ms: float
    passed: bool
    criterion: str
    message: str = ""
    batched_run: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs), default=0.0)

    def to_json(self) -> dict:
        d = {"samples": self.samples, "passed": self.passed, "criterion": self.criterion,
             "batchedRun": self.batched_run, "maxAbsError": self.max_abs_error,
             "sourceLatencyMsP50": self.source_latency_ms,
             "artifactLatencyMsP50": self.artifact_latency_ms,
             "outputs": [o.to_json() for o in self.outputs]}
        if self.message:
            d["message"] = self.message
        d.update(self.extra)
        return d


def _f(x: float) -> float:
    return float(f"{float(x):.6g}")


def compare_arrays(name: str, ref: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> OutputReport:
    """Error figures of one output (``ref`` = source). Shapes must match."""
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.shape != got.shape:
        raise ValueError(f"output {name!r}: shape {list(got.shape)} differs from the source's "
                         f"{list(ref.shape)}")
    if not np.issubdtype(ref.dtype, np.floating) and not np.issubdtype(ref.dtype, np.complexfloating):
        exact = bool(np.array_equal(ref, got))
        diff = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))) if ref.size else 0.0
        return OutputReport(name, list(ref.shape), _f(diff), 0.0 if exact else 1.0, 0.0 if exact else 1.0, exact)
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    if not np.all(np.isfinite(g)) and not np.array_equal(np.isfinite(g), np.isfinite(r)):
        return OutputReport(name, list(ref.shape), float("inf"), float("inf"), float("inf"), False,
                            0.0 if is_classifier(ref) else None)
    d = np.abs(r - g)
    d = np.where(np.isnan(d) & np.isnan(r) & np.isnan(g), 0.0, d)
    max_abs = float(d.max()) if d.size else 0.0
    max_rel = float((d / np.maximum(np.abs(r), 1e-12)).max()) if d.size else 0.0
    nr = float(np.linalg.norm(r))
    rel_l2 = float(np.linalg.norm(r - g) / nr) if nr > 0 else (0.0 if max_abs == 0 else float("inf"))
    ok = bool(np.all(d <= atol + rtol * np.abs(r)))
    top1 = None
    if is_classifier(ref):
        top1 = float(np.mean(np.argmax(r, axis=1) == np.argmax(g, axis=1)))
    return OutputReport(name, list(ref.shape), _f(max_abs), _f(max_rel), _f(rel_l2), ok,
                        None if top1 is None else _f(top1))


def _merge(a: OutputReport, b: OutputReport) -> OutputReport:
    """Worst-case merge of the per-sample and the batched report of one output."""
    return OutputReport(a.name, a.shape, max(a.max_abs_error, b.max_abs_error),
                        max(a.max_rel_error, b.max_rel_error), max(a.rel_l2_error, b.rel_l2_error),
                        a.allclose and b.allclose,
                        None if a.top1_agreement is None else min(a.top1_agreement, b.top1_agreement or 0.0))


def timed_runs(run: Runner, samples: Sequence[Sample]) -> tuple[list[list[np.ndarray]], float]:
    """Run every sample (one untimed warm-up first); return outputs and p50 latency in ms."""
    run(samples[0])
    outs, times = [], []
    for s in samples:
        t = time.perf_counter()
        o = run(s)
        times.append((time.perf_counter() - t) * 1000.0)
        outs.append([np.asarray(x) for x in o])
    return outs, _f(statistics.median(times))


def concat_outputs(per_sample: list[list[np.ndarray]]) -> list[np.ndarray]:
    n_out = len(per_sample[0])
    res = []
    for k in range(n_out):
        parts = [o[k] for o in per_sample]
        if all(p.ndim >= 1 for p in parts):
            res.append(np.concatenate(parts, axis=0))
        else:
            res.append(np.stack(parts))
    return res


def criterion_for(mode: str, atol: float, rtol: float) -> str:
    if mode in LOSSY_TOP1:
        return (f"lossy ({mode}): classifier outputs top-1 agreement >= {LOSSY_TOP1[mode]}, "
                f"other outputs relative L2 error <= {LOSSY_REL_L2[mode]}")
    return f"allclose(atol={atol:g}, rtol={rtol:g})"


def judge(reports: Sequence[OutputReport], mode: str, atol: float, rtol: float) -> tuple[bool, str]:
    """Apply the criterion; return (passed, one-line reason naming the first failing output)."""
    for o in reports:
        if mode in LOSSY_TOP1:
            if o.top1_agreement is not None:
                if o.top1_agreement < LOSSY_TOP1[mode]:
                    return False, (f"output {o.name!r}: top-1 agreement {o.top1_agreement:.3f} < "
                                   f"{LOSSY_TOP1[mode]} for {mode} quantization "
                                   f"(max abs error {o.max_abs_error:.4g})")
            elif not (o.rel_l2_error <= LOSSY_REL_L2[mode]):
                return False, (f"output {o.name!r}: relative L2 error {o.rel_l2_error:.4g} > "
                               f"{LOSSY_REL_L2[mode]} for {mode} quantization")
        elif not o.allclose:
            return False, (f"output {o.name!r}: max abs error {o.max_abs_error:.4g} "
                           f"(max rel {o.max_rel_error:.4g}) exceeds atol={atol:g}, rtol={rtol:g}")
    return True, ""


def validate(source: Runner, artifact: Runner, samples: Sequence[Sample], output_names: Sequence[str],
             *, mode: str = "none", atol: float = 1e-4, rtol: float = 1e-3,
             batched: bool = True, source_outputs: tuple[list[list[np.ndarray]], float] | None = None,
             ) -> ValidationReport:
    """Run both on ``samples`` (and once as one batch when ``batched``), compare, judge."""
    ref_runs, ref_lat = source_outputs if source_outputs is not None else timed_runs(source, samples)
    got_runs, got_lat = timed_runs(artifact, samples)
    if len(got_runs[0]) != len(ref_runs[0]):
        return ValidationReport(len(samples), [], ref_lat, got_lat, False, criterion_for(mode, atol, rtol),
                                f"the artifact has {len(got_runs[0])} outputs, the source {len(ref_runs[0])}")
    ref = concat_outputs(ref_runs)
    got = concat_outputs(got_runs)
    names = list(output_names) + [f"output_{k}" for k in range(len(output_names), len(ref))]
    try:
        reports = [compare_arrays(names[k], ref[k], got[k], atol, rtol) for k in range(len(ref))]
        did_batch = False
        if batched and len(samples) > 1:
            big = stack(samples)
            rb, gb = source(big), artifact(big)
            breps = [compare_arrays(names[k], np.asarray(rb[k]), np.asarray(gb[k]), atol, rtol)
                     for k in range(len(ref))]
            reports = [_merge(a, b) for a, b in zip(reports, breps, strict=False)]
            did_batch = True
    except ValueError as e:
        return ValidationReport(len(samples), [], ref_lat, got_lat, False,
                                criterion_for(mode, atol, rtol), str(e))
    ok, msg = judge(reports, mode, atol, rtol)
    return ValidationReport(len(samples), reports, ref_lat, got_lat, ok, criterion_for(mode, atol, rtol),
                            msg, batched_run=did_batch)
