"""NVIDIA Triton Inference Server: model repository `<model>/config.pbtxt` + `<model>/1/<file>`.

config.pbtxt is rendered here in protobuf text format (checked against Triton's own ModelConfig
protobuf in tests/runtimes). With the artifact's IO signature it declares every input and output:
name, data type and dims (-1 = dynamic; the batch dimension is left out when `max_batch_size` > 0,
as Triton expects). Without it the IO is left to Triton's auto-complete, which works for ONNX and
SavedModel but not for TorchScript (a warning says so).

Batching needs a dynamic first dimension on every tensor: a signature with a fixed first dimension
gets `max_batch_size: 0` and no `dynamic_batching`, with a warning, rather than a config that
Triton rejects at load time.
"""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import ModelDeployment
from .base import MODEL_REPOSITORY, STARTUP_FAILURES, STARTUP_PERIOD_SECONDS, Ports, Signature, TensorSpec, container_ports, env_list, http_probe

# format -> (platform, file or directory name under <model>/<version>/)
PLATFORMS = {
    "onnx": ("onnxruntime_onnx", "model.onnx"),
    "torchscript": ("pytorch_libtorch", "model.pt"),
    "savedmodel": ("tensorflow_savedmodel", "model.savedmodel"),
}

# numpy-style dtype names (as the exporter's manifest writes them) -> Triton data types.
DATA_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16",
    "string": "TYPE_STRING", "bytes": "TYPE_STRING", "object": "TYPE_STRING",
}

TF_BACKEND_DEPRECATED = ("Triton's TensorFlow backend is deprecated upstream since release 25.03 and will be "
                         "removed: export to onnx (spec.model.format onnx) or serve the SavedModel with tfserving")


def _format(md: ModelDeployment) -> str:
    return md.model.format if md.model.format in PLATFORMS else "onnx"


def _batchable(sig: Signature) -> bool:
    return all(t.shape and t.shape[0] == -1 for t in (*sig.inputs, *sig.outputs))


def _unknown_dtypes(sig: Signature) -> list[str]:
    return [f"{t.name}: {t.dtype}" for t in (*sig.inputs, *sig.outputs) if _dtype(t.dtype) is None]


def _dtype(name: str) -> str | None:
    return DATA_TYPES.get(name.lower().removeprefix("tf.").removeprefix("torch."))


def _effective_max_batch(md: ModelDeployment, sig: Signature | None) -> int:
    if sig is not None and md.runtime.max_batch_size > 0 and not _unknown_dtypes(sig) and not _batchable(sig):
        return 0
    return md.runtime.max_batch_size


class Triton:
    kind = "triton"
    ports = Ports(http=8000, grpc=8001, metrics=8002)

    def container(self, md: ModelDeployment, image: str) -> dict[str, Any]:
        m = md.model.name
        return {
            "name": "server",
            "image": image,
            "command": ["tritonserver"],
            "args": [
                f"--model-repository={MODEL_REPOSITORY}",
                "--model-control-mode=none",
                "--strict-readiness=true",
                "--exit-on-error=true",
                f"--http-port={self.ports.http}",
                f"--grpc-port={self.ports.grpc}",
                f"--metrics-port={self.ports.metrics}",
                *md.runtime.args,
            ],
            "ports": container_ports(self.ports),
            "env": env_list(md),
            # Ready means the model itself is loaded, not only that the server answers.
            "readinessProbe": http_probe(f"/v2/models/{m}/ready", "http", period=5, failure=3),
            "livenessProbe": http_probe("/v2/health/live", "http", period=10, failure=3),
            # With --strict-readiness, /v2/health/ready is true once every model has loaded.
            "startupProbe": http_probe("/v2/health/ready", "http", period=STARTUP_PERIOD_SECONDS, failure=STARTUP_FAILURES),
        }

    def config_files(self, md: ModelDeployment, signature: Signature | None = None) -> dict[str, str]:
        return {f"{md.model.name}/config.pbtxt": render_config_pbtxt(md, signature)}

    def artifact_path(self, md: ModelDeployment) -> str:
        return f"{md.model.name}/1/{PLATFORMS[_format(md)][1]}"

    def warnings(self, md: ModelDeployment, signature: Signature | None = None) -> list[str]:
        out = []
        fmt = _format(md)
        if fmt == "savedmodel":
            out.append(TF_BACKEND_DEPRECATED)
        if signature is None and fmt == "torchscript":
            out.append("Triton cannot auto-complete a TorchScript model's inputs and outputs, and the artifact's "
                       "signature is not known: use spec.model.exportRef (its manifest carries the signature) "
                       "or an onnx model")
        if signature is not None:
            unknown = _unknown_dtypes(signature)
            if unknown:
                out.append(f"data types Triton does not know ({', '.join(unknown)}): inputs and outputs are left to "
                           "Triton's auto-complete")
            elif md.runtime.max_batch_size > 0 and not _batchable(signature):
                out.append(f"spec.runtime.maxBatchSize {md.runtime.max_batch_size} is ignored: the model has a fixed "
                           "first dimension, so Triton serves it with max_batch_size 0 and no dynamic batching; "
                           "export it with a dynamic batch dimension (-1)")
        return out


def _tensor_block(t: TensorSpec, batched: bool) -> list[str]:
    dims = list(t.shape[1:] if batched else t.shape)
    lines = ["  {", f'    name: "{t.name}"', f"    data_type: {_dtype(t.dtype)}"]
    if dims:
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    else:
        # A scalar per batch item: Triton wants at least one dim, so declare [1] and reshape to [].
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return lines + ["  }"]


def _io(key: str, tensors: tuple[TensorSpec, ...], batched: bool) -> list[str]:
    if not tensors:
        return []
    lines = [f"{key} ["]
    for i, t in enumerate(tensors):
        block = _tensor_block(t, batched)
        if i < len(tensors) - 1:
            block[-1] += ","
        lines += block
    return lines + ["]"]


def render_config_pbtxt(md: ModelDeployment, signature: Signature | None = None) -> str:
    fmt = _format(md)
    kind = "KIND_GPU" if md.placement.gpu.count > 0 else "KIND_CPU"
    max_batch = _effective_max_batch(md, signature)
    lines = []
    if fmt == "savedmodel":
        lines.append(f"# modelpilot: {TF_BACKEND_DEPRECATED}")
    lines += [
        f'name: "{md.model.name}"',
        f'platform: "{PLATFORMS[fmt][0]}"',
        f"max_batch_size: {max_batch}",
    ]
    if signature is not None and not _unknown_dtypes(signature):
        lines += _io("input", signature.inputs, max_batch > 0)
        lines += _io("output", signature.outputs, max_batch > 0)
    if md.runtime.dynamic_batching and max_batch > 0:
        lines.append("dynamic_batching {")
        preferred = [s for s in md.runtime.preferred_batch_sizes if s <= max_batch]
        if preferred:
            lines.append("  preferred_batch_size: [ " + ", ".join(str(s) for s in preferred) + " ]")
        if md.runtime.max_queue_delay_us is not None:
            lines.append(f"  max_queue_delay_microseconds: {md.runtime.max_queue_delay_us}")
        lines.append("}")
    lines += ["instance_group [", "  {", f"    count: {md.runtime.instances}", f"    kind: {kind}", "  }", "]"]
    return "\n".join(lines) + "\n"
