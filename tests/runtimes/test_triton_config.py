"""Triton's config.pbtxt, checked with Triton's own ModelConfig protobuf (tritonclient), and the ONNX
model checked with onnxruntime against the names, data types and dims that the config declares."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from modelpilot.render import runtime_warnings
from modelpilot.runtimes import Signature, get_runtime
from modelpilot.runtimes.triton import TF_BACKEND_DEPRECATED

from .conftest import TwoHeads, deployment

pytestmark = pytest.mark.unit
TRITON = get_runtime("triton")

SIG = Signature.from_dict({
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}, {"name": "ids", "dtype": "int64", "shape": [-1, 5]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}, {"name": "score", "dtype": "float32", "shape": [-1]}],
})

# Triton data type -> onnxruntime's type string.
ORT_TYPES = {"TYPE_FP32": "tensor(float)", "TYPE_INT64": "tensor(int64)", "TYPE_BOOL": "tensor(bool)",
             "TYPE_FP16": "tensor(float16)", "TYPE_INT32": "tensor(int32)"}
NUMPY = {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64}


def config_of(md, signature=None) -> mc.ModelConfig:
    files = TRITON.config_files(md, signature)
    assert list(files) == [f"{md.model.name}/config.pbtxt"]
    return text_format.Parse(files[f"{md.model.name}/config.pbtxt"], mc.ModelConfig())


def test_gpu_config_with_signature_parses_as_triton_model_config() -> None:
    md = deployment(runtime={"kind": "triton", "maxBatchSize": 16, "instances": 2,
                             "dynamicBatching": {"preferredBatchSizes": [4, 8], "maxQueueDelayMicroseconds": 1500}})
    cfg = config_of(md, SIG)
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("resnet", "onnxruntime_onnx", 16)
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [
        ("x", "TYPE_FP32", [4]), ("ids", "TYPE_INT64", [5])]
    outs = {o.name: o for o in cfg.output}
    assert list(outs["logits"].dims) == [3] and mc.DataType.Name(outs["logits"].data_type) == "TYPE_FP32"
    # A scalar per batch item: dims [1], reshaped to [] (Triton rejects empty dims).
    assert list(outs["score"].dims) == [1] and outs["score"].HasField("reshape") and list(outs["score"].reshape.shape) == []
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1500
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group] == [(2, "KIND_GPU")]


def test_cpu_config_without_signature_leaves_io_to_auto_complete() -> None:
    md = deployment(placement={"nodePool": "cpu"})
    cfg = config_of(md)
    assert len(cfg.input) == 0 and len(cfg.output) == 0
    assert cfg.HasField("dynamic_batching")
    assert mc.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_CPU"


def test_batching_off_keeps_every_dim() -> None:
    md = deployment(runtime={"kind": "triton", "maxBatchSize": 0})
    cfg = config_of(md, SIG)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert [list(i.dims) for i in cfg.input] == [[-1, 4], [-1, 5]]
    assert list(cfg.output[1].dims) == [-1]


def test_disabled_dynamic_batching_keeps_max_batch_size() -> None:
    cfg = config_of(deployment(runtime={"kind": "triton", "maxBatchSize": 4, "dynamicBatching": {"enabled": False}}), SIG)
    assert cfg.max_batch_size == 4 and not cfg.HasField("dynamic_batching")


def test_fixed_first_dim_turns_batching_off_with_a_warning() -> None:
    fixed = Signature.from_dict({"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, 224, 224]}],
                                 "outputs": [{"name": "y", "dtype": "float16", "shape": [1, 1000]}]})
    md = deployment()
    cfg = config_of(md, fixed)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [1, 3, 224, 224]
    assert mc.DataType.Name(cfg.output[0].data_type) == "TYPE_FP16"
    assert any("maxBatchSize 8 is ignored" in w for w in runtime_warnings(md, signature=fixed))


def test_unknown_dtype_falls_back_to_auto_complete_with_a_warning() -> None:
    odd = Signature.from_dict({"inputs": [{"name": "x", "dtype": "complex64", "shape": [-1, 2]}], "outputs": []})
    md = deployment()
    cfg = config_of(md, odd)
    assert len(cfg.input) == 0
    assert any("complex64" in w for w in runtime_warnings(md, signature=odd))


@pytest.mark.parametrize("fmt, platform, file", [
    ("torchscript", "pytorch_libtorch", "resnet/1/model.pt"),
    ("savedmodel", "tensorflow_savedmodel", "resnet/1/model.savedmodel"),
])
def test_other_platforms(fmt: str, platform: str, file: str) -> None:
    md = deployment(model={"uri": "s3://models/resnet", "format": fmt})
    assert config_of(md).platform == platform
    assert TRITON.artifact_path(md) == file


def test_tensorflow_backend_is_deprecated_and_says_so() -> None:
    md = deployment(model={"uri": "s3://models/resnet", "format": "savedmodel"})
    assert TF_BACKEND_DEPRECATED in runtime_warnings(md)
    assert "# modelpilot: " in TRITON.config_files(md)["resnet/config.pbtxt"]  # a comment Triton ignores
    assert runtime_warnings(deployment()) == []


def test_torchscript_without_signature_warns() -> None:
    md = deployment(model={"uri": "s3://models/resnet/model.pt", "format": "torchscript"})
    assert any("auto-complete" in w for w in runtime_warnings(md))
    assert not any("auto-complete" in w for w in runtime_warnings(md, signature=SIG))


def _ort_dims(shape) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def test_onnx_model_runs_in_onnxruntime_as_the_config_declares(two_heads) -> None:
    """The signature comes from the exported ONNX graph (the exporter's own io_signature), the config
    from the runtime module, and onnxruntime must agree with every name, type and dim it declares."""
    import onnxruntime as ort
    import torch

    from modelpilot_exporters.onnx_ops import io_signature

    sig = Signature.from_dict(io_signature(two_heads["onnx"]))
    md = deployment(runtime={"kind": "triton", "maxBatchSize": 8})
    cfg = config_of(md, sig)
    assert cfg.max_batch_size == 8, "the exported model has a dynamic batch dimension"

    sess = ort.InferenceSession(str(two_heads["onnx"]), providers=["CPUExecutionProvider"])
    ort_inputs = {i.name: i for i in sess.get_inputs()}
    ort_outputs = {o.name: o for o in sess.get_outputs()}
    assert len(cfg.input) == len(ort_inputs) and len(cfg.output) == len(ort_outputs)

    def full_dims(t) -> list[int]:
        dims = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
        return [-1, *dims] if cfg.max_batch_size > 0 else dims

    for declared, actual in [*((i, ort_inputs[i.name]) for i in cfg.input), *((o, ort_outputs[o.name]) for o in cfg.output)]:
        assert ORT_TYPES[mc.DataType.Name(declared.data_type)] == actual.type, declared.name
        assert full_dims(declared) == _ort_dims(actual.shape), declared.name

    # Feed a full batch shaped by the config and compare with the source model.
    x, ids = TwoHeads.inputs(batch=cfg.max_batch_size)
    feeds = {i.name: t.numpy().astype(NUMPY[mc.DataType.Name(i.data_type)]) for i, t in zip(cfg.input, (x, ids))}
    for i in cfg.input:
        assert list(feeds[i.name].shape[1:]) == list(i.dims)
    got = sess.run([o.name for o in cfg.output], feeds)
    with torch.no_grad():
        want = TwoHeads.module()(x, ids)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)
