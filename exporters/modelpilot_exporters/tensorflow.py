"""TensorFlow SavedModel sources and their targets.

The source is a SavedModel directory (or an archive of one) with a ``serving_default`` signature
(the first signature if there is no ``serving_default``). ``spec.inputs`` names are the signature's
input names; outputs are the signature's outputs in sorted name order.

Targets:

* ``savedmodel`` - re-saved with ``tf.saved_model.save`` (signatures kept), falling back to a
  verbatim copy. The target directory IS the SavedModel; TF Serving's version directory
  (``<model>/1/``) is added by the deployment, not here.
* ``tflite`` via ``tf.lite.TFLiteConverter.from_saved_model``:
  ``none`` = fp32; ``fp16`` = float16 weights; ``dynamic`` = dynamic-range int8 (int8 weights,
  float activations); ``int8`` = full integer with a representative dataset, int8 builtins only;
  inputs/outputs stay float32 when ``keepIOTypes`` (default), else they become int8.
* ``onnx`` via tf2onnx (``python -m tf2onnx.convert --saved-model``), then the ONNX
  quantizations/optimizations like any ONNX target. If tf2onnx cannot be imported with the
  installed TensorFlow, the target fails with "unsupported with TF x.y" and the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ExportError, InputError, SpecError
from .spec import InputSpec, Target


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def tf_version() -> str:
    return _tf().__version__


def _find_saved_model(path: Path, what: str) -> Path:
    if path.is_dir() and (path / "saved_model.pb").exists():
        return path
    if path.is_dir():
        found = sorted(p.parent for p in path.rglob("saved_model.pb"))
        if found:
            return found[0]
    raise InputError(f"{what}: no SavedModel (saved_model.pb) found")


class SavedModelSource:
    """A loaded SavedModel signature, callable as a validation runner."""

    def __init__(self, path: Path, inputs: Sequence[InputSpec], uri: str):
        tf = _tf()
        self.path = _find_saved_model(path, f"spec.source.uri: {uri}")
        try:
            self.obj = tf.saved_model.load(str(self.path))
        except Exception as e:  # noqa: BLE001
            raise InputError(f"spec.source.uri: {uri}: cannot load SavedModel: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e
        sigs = dict(self.obj.signatures)
        if not sigs:
            raise InputError(f"spec.source.uri: {uri}: the SavedModel has no signatures")
        self.signature_key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
        self.fn = sigs[self.signature_key]
        sig_inputs = self.fn.structured_input_signature[1]
        self.input_specs = {k: v for k, v in sig_inputs.items()}
        for i, inp in enumerate(inputs):
            if inp.name not in self.input_specs:
                raise SpecError(f"spec.inputs[{i}].name", f"{inp.name!r} is not an input of signature "
                                f"{self.signature_key!r} (inputs: {', '.join(sorted(self.input_specs))})")
        missing = set(self.input_specs) - {i.name for i in inputs}
        if missing:
            raise SpecError("spec.inputs", f"signature {self.signature_key!r} also needs "
                            f"{', '.join(sorted(missing))}")
        self.output_names = sorted(self.fn.structured_outputs.keys())

    def __call__(self, sample: dict) -> list[np.ndarray]:
        tf = _tf()
        feed = {k: tf.constant(np.asarray(sample[k]), dtype=spec.dtype)
                for k, spec in self.input_specs.items()}
        out = self.fn(**feed)
        return [out[k].numpy() for k in self.output_names]


def to_savedmodel(src: SavedModelSource, out_dir: Path) -> None:
    tf = _tf()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    try:
        tf.saved_model.save(src.obj, str(out_dir), signatures=dict(src.obj.signatures))
    except Exception:  # noqa: BLE001 - some restored objects cannot be re-saved: copy verbatim
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(src.path, out_dir)


def to_tflite(src: SavedModelSource, target: Target, out_file: Path,
              calibration: Sequence[dict] | None) -> None:
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(src.path), signature_keys=[src.signature_key])
    mode = target.quantization.mode
    if mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if not calibration:
            raise SpecError(f"{target.path}.quantization.calibration",
                            "full int8 needs a representative dataset; set uri to an .npz or synthetic: true")
        specs = src.input_specs

        def rep():
            for s in calibration:
                yield {k: np.asarray(s[k]).astype(specs[k].dtype.as_numpy_dtype) for k in specs}

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not target.quantization.keep_io_types:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    try:
        data = conv.convert()
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{target.path}: TFLite conversion ({mode}) failed: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}") from e
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_bytes(data)


class TFLiteRunner:
    """Runs a .tflite file through its signature runner; (de)quantizes int8 IO. Uses LiteRT
    (``ai_edge_litert``) when installed, else ``tf.lite.Interpreter`` (deprecated but present in
    TF 2.21)."""

    def __init__(self, path: Path, output_order: Sequence[str], n_threads: int | None = None):
        import warnings

        try:  # LiteRT, tf.lite.Interpreter's successor, when installed
            from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]
        except ImportError:
            Interpreter = _tf().lite.Interpreter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interp = Interpreter(model_path=str(path), num_threads=n_threads)
        sigs = self.interp.get_signature_list()
        key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
        self.runner = self.interp.get_signature_runner(key)
        self.in_details = self.runner.get_input_details()
        self.out_details = self.runner.get_output_details()
        self.output_order = list(output_order)

    def __call__(self, sample: dict) -> list[np.ndarray]:
        feed = {}
        for k, d in self.in_details.items():
            x = np.asarray(sample[k])
            scale, zp = d.get("quantization", (0.0, 0))
            if d["dtype"] in (np.int8, np.uint8) and scale:
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / scale + zp), info.min, info.max)
            feed[k] = x.astype(d["dtype"])
        out = self.runner(**feed)
        res = []
        for k in self.output_order:
            y = out[k]
            d = self.out_details[k]
            scale, zp = d.get("quantization", (0.0, 0))
            if d["dtype"] in (np.int8, np.uint8) and scale:
                y = (y.astype(np.float32) - zp) * scale
            res.append(y)
        return res

    def io_signature(self) -> dict:
        def one(name, d):
            sig = d.get("shape_signature", d["shape"])
            return {"name": name, "dtype": np.dtype(d["dtype"]).name, "shape": [int(x) for x in sig]}

        return {"inputs": [one(k, d) for k, d in self.in_details.items()],
                "outputs": [one(k, self.out_details[k]) for k in self.output_order]}


def savedmodel_signature(src: SavedModelSource) -> dict:
    def one(name, spec):
        return {"name": name, "dtype": spec.dtype.name,
                "shape": [-1 if d is None else int(d) for d in spec.shape.as_list()]}

    outs = src.fn.structured_outputs
    return {"signature": src.signature_key,
            "inputs": [one(k, v) for k, v in sorted(src.input_specs.items())],
            "outputs": [one(k, outs[k]) for k in src.output_names]}


def tf2onnx_available() -> tuple[bool, str]:
    try:
        import tf2onnx  # noqa: F401

        return True, getattr(tf2onnx, "__version__", "?")
    except Exception as e:  # noqa: BLE001 - an incompatible tf2onnx fails in many ways on import
        return False, f"{type(e).__name__}: {e}"


def to_onnx(src: SavedModelSource, target: Target, out_file: Path) -> None:
    ok, info = tf2onnx_available()
    if not ok:
        raise ExportError(f"{target.path}.format: onnx from a tensorflow source is unsupported with "
                          f"TF {tf_version()}: tf2onnx cannot be used ({info}); export to savedmodel "
                          "or tflite, or convert with a TF version tf2onnx supports")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(src.path),
           "--signature_def", src.signature_key, "--output", str(out_file),
           "--opset", str(target.opset or 17)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0 or not out_file.exists():
        err = [ln for ln in (r.stderr or "").strip().splitlines() if ln.strip()]
        raise ExportError(f"{target.path}: tf2onnx {info} failed with TF {tf_version()}: "
                          f"{err[-1] if err else 'exit code ' + str(r.returncode)}")
