"""ONNX operations: offline graph optimization, dynamic / static int8 quantization, fp16, running.

* :func:`optimize` - onnxruntime graph optimizations at ``basic``/``extended``/``all`` saved
  offline through ``SessionOptions.optimized_model_filepath``. ``extended`` and ``all`` may emit
  onnxruntime contrib ops (the result then needs onnxruntime to run), and ``all`` adds layout
  optimizations that are specific to the CPU it ran on: use it on the serving hardware class.
* :func:`quantize_dynamic` - ``onnxruntime.quantization.quantize_dynamic``, int8 weights, int8
  activations quantized at run time.
* :func:`quantize_static` - QDQ int8 (``QuantFormat.QDQ``, uint8 activations and int8 weights, the
  "U8S8" combination that onnxruntime's x86 kernels run fastest; MinMax calibration) from
  calibration samples. Measured on the benchmark transformer: S8S8 QDQ ran at fp32 speed, U8S8
  1.6x faster.
* :func:`to_fp16` - ``onnxruntime.transformers.float16.convert_float_to_float16`` with
  ``keep_io_types`` (fp32 inputs/outputs with casts inside).
* :func:`quantize_int4` - weight-only int4: ``MatMulNBitsQuantizer`` turns MatMuls with constant
  weights (and Gemms, rewritten to MatMul + Add first) into ``MatMulNBits`` and embedding Gathers into ``GatherBlockQuantized`` (symmetric,
  blocks of 32, ``accuracy_level`` 4: int8 compute on the activations, which is what onnxruntime's
  x86 kernels run fastest).

Models over 2 GB are written with external data (``<file>.data`` next to the model).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ExportError

TWO_GB = 2 * 1024**3


def external_threshold() -> int:
    """Models with more weight bytes than this get external data. Protobuf's limit is 2 GB; env
    MODELPILOT_EXTERNAL_DATA_BYTES lowers it (tests use it to exercise the path on tiny models)."""
    v = os.environ.get("MODELPILOT_EXTERNAL_DATA_BYTES")
    return int(v) if v else TWO_GB - (128 << 20)

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}
_ONNX_DTYPE_NAMES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8",
                     2: "uint8", 9: "bool", 16: "bfloat16"}


def threads() -> int:
    """Intra-op threads for onnxruntime and torch during validation (env MODELPILOT_THREADS)."""
    v = os.environ.get("MODELPILOT_THREADS")
    return int(v) if v else min(os.cpu_count() or 1, 4)


def model_files(path: Path) -> list[Path]:
    """The model file plus its external-data files, if any."""
    import onnx

    files = [path]
    m = onnx.load(str(path), load_external_data=False)
    locs = set()
    for t in _all_initializers(m):
        for e in t.external_data:
            if e.key == "location":
                locs.add(e.value)
    files += [path.parent / loc for loc in sorted(locs)]
    return files


def _all_initializers(m):
    yield from m.graph.initializer
    for n in m.graph.node:
        for a in n.attribute:
            if a.t is not None and a.t.data_location == 1:
                yield a.t


def save(model, path: Path) -> list[Path]:
    """Save a ModelProto, with external data when it is over 2 GB. Returns the files written."""
    import onnx

    big = model.ByteSize() > external_threshold() if _inline_size_ok(model) else True
    path.parent.mkdir(parents=True, exist_ok=True)
    if big:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return model_files(path)


def _inline_size_ok(model) -> bool:
    try:
        model.ByteSize()
        return True
    except Exception:  # noqa: BLE001 - protobuf refuses > 2 GB
        return False


def file_size(files: Sequence[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def _external(path: Path) -> bool:
    return len(model_files(path)) > 1


def session(path: Path, n_threads: int | None = None, spinning: bool = True):
    """A CPU session. ``spinning=False`` stops idle worker threads from spin-waiting after a run,
    so that runners measured in turns do not steal the cores from each other."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = n_threads or threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtRunner:
    """A validation runner over an ONNX file: dict of numpy inputs -> list of outputs."""

    def __init__(self, path: Path, output_order: Sequence[str] | None = None, n_threads: int | None = None,
                 spinning: bool = True):
        self.sess = session(path, n_threads, spinning)
        self.inputs = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in self.sess.get_inputs()}
        names = [o.name for o in self.sess.get_outputs()]
        if output_order and set(output_order) <= set(names) and len(output_order) == len(names):
            names = list(output_order)
        self.output_names = names

    def __call__(self, sample: dict) -> list[np.ndarray]:
        feed = {}
        for name, dt in self.inputs.items():
            if name not in sample:
                raise ExportError(f"the ONNX model has an input {name!r} that spec.inputs does not name "
                                  f"(spec.inputs names: {', '.join(sample)})")
            feed[name] = np.asarray(sample[name]).astype(dt, copy=False)
        return self.sess.run(self.output_names, feed)


def fp32_weight_fraction(path: Path) -> float:
    """Fraction of initializer elements stored as fp32 (1 = all fp32)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    n32 = n = 0
    for t in m.graph.initializer:
        k = int(np.prod(t.dims)) if len(t.dims) else 1
        n += k
        if t.data_type == onnx.TensorProto.FLOAT:
            n32 += k
    return n32 / n if n else 0.0


def io_signature(path: Path) -> dict:
    """Names, dtypes and shapes (-1 for a dynamic dimension) of the graph's inputs and outputs."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in m.graph.initializer}

    def vi(v):
        tt = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        return {"name": v.name, "dtype": _ONNX_DTYPE_NAMES.get(tt.elem_type, str(tt.elem_type)), "shape": shape}

    return {"inputs": [vi(v) for v in m.graph.input if v.name not in init],
            "outputs": [vi(v) for v in m.graph.output]}


def opset_of(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return None


LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def optimize(src: Path, dst: Path, level: str) -> list[Path]:
    """Run onnxruntime's graph optimizations at ``level`` and save the result offline."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    if _external(src) or src.stat().st_size > external_threshold():
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                    dst.name + ".data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    dst.parent.mkdir(parents=True, exist_ok=True)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return model_files(dst)


def _preprocess(src: Path, workdir: Path) -> Path:
    """Shape inference + basic optimization before quantization (recommended by onnxruntime)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = workdir / (src.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(out), save_as_external_data=_external(src))
        return out
    except Exception:  # noqa: BLE001 - symbolic shape inference is best effort
        try:
            quant_pre_process(str(src), str(out), skip_symbolic_shape=True,
                              save_as_external_data=_external(src))
            return out
        except Exception:  # noqa: BLE001
            return src


def quantize_dynamic(src: Path, dst: Path, per_channel: bool = False) -> list[Path]:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as qd

    with tempfile.TemporaryDirectory(prefix="q-") as td:
        pre = _preprocess(src, Path(td))
        dst.parent.mkdir(parents=True, exist_ok=True)
        qd(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
           use_external_data_format=_external(pre))
    return model_files(dst)


class _Reader:
    def __init__(self, samples: Sequence[dict], input_types: dict):
        self._it = iter([{k: np.asarray(v).astype(input_types.get(k, np.float32), copy=False)
                          for k, v in s.items() if k in input_types} for s in samples])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - not used by MinMax
        pass


def quantize_static(src: Path, dst: Path, samples: Sequence[dict], per_channel: bool = False) -> list[Path]:
    """QDQ int8 (uint8 activations, int8 weights) with MinMax calibration over ``samples``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as qs

    class Reader(_Reader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix="q-") as td:
        pre = _preprocess(src, Path(td))
        types = OrtRunner(pre).inputs
        dst.parent.mkdir(parents=True, exist_ok=True)
        qs(str(pre), str(dst), Reader(samples, types), quant_format=QuantFormat.QDQ,
           activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
           use_external_data_format=_external(pre),
           extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return model_files(dst)


INT4_BLOCK = 32


def quantize_int4(src: Path, dst: Path, block_size: int = INT4_BLOCK) -> list[Path]:
    """Weight-only int4 (MatMulNBits / GatherBlockQuantized)."""
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    model = onnx.load(str(src))
    _gemm_to_matmul(model)
    cfg = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=4,
                                       op_types_to_quantize=("MatMul", "Gather"),
                                       quant_axes=(("MatMul", 0), ("Gather", 1)))
    q = MatMulNBitsQuantizer(model, algo_config=cfg)
    q.process()
    if not any(n.op_type in ("MatMulNBits", "GatherBlockQuantized") for n in q.model.model.graph.node):
        raise ExportError("int4 quantization found no MatMul or Gemm with a constant weight (nor an embedding "
                          "Gather) to quantize: int4 is weight-only and only pays on transformer-like "
                          "models; use dynamic or int8 for this one")
    return save(q.model.model, dst)


def _gemm_to_matmul(model) -> int:
    """Rewrite ``Gemm(A, B, C)`` with a constant B (alpha = beta = 1, A not transposed; what a 2-D
    ``nn.Linear`` exports to) into ``MatMul(A, B') + C``, so that MatMulNBits covers it too. In
    place; returns how many were rewritten."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    n_done = 0
    for n in list(g.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type != "Gemm" or n.input[1] not in inits or attrs.get("transA", 0) \
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        w = np.ascontiguousarray(w.T if attrs.get("transB", 0) else w)
        wname = f"{n.input[1]}_matmul"
        g.initializer.append(numpy_helper.from_array(w, wname))
        has_c = len(n.input) > 2 and n.input[2]
        mm_out = f"{n.output[0]}_mm" if has_c else n.output[0]
        new = [helper.make_node("MatMul", [n.input[0], wname], [mm_out], name=f"{n.name}_matmul")]
        if has_c:
            new.append(helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]], name=f"{n.name}_add"))
        idx = next(i for i, m in enumerate(g.node) if m.output[0] == n.output[0])
        del g.node[idx]
        for j, m in enumerate(new):
            g.node.insert(idx + j, m)
        n_done += 1
    used = {i for m in g.node for i in m.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    return n_done


def to_fp16(src: Path, dst: Path, keep_io_types: bool = True) -> list[Path]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m = onnx.load(str(src))
    m16 = convert_float_to_float16(m, keep_io_types=keep_io_types)
    return save(m16, dst)
