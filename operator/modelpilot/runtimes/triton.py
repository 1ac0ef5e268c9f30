"""NVIDIA Triton Inference Server: model repository `<model>/config.pbtxt` + `<model>/1/<file>`.

config.pbtxt is rendered here in protobuf text format. IO tensors are left for Triton's
auto-complete (on by default for ONNX, TorchScript needs them; the export manifest provides them
once the artifact's signature is known).
"""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import ModelDeployment
from .base import MODEL_REPOSITORY, Ports, container_ports, env_list, http_probe

PLATFORMS = {
    "onnx": ("onnxruntime_onnx", "model.onnx"),
    "torchscript": ("pytorch_libtorch", "model.pt"),
    "savedmodel": ("tensorflow_savedmodel", "model.savedmodel"),
}


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
                *md.runtime.args,
            ],
            "ports": container_ports(self.ports),
            "env": env_list(md),
            # Ready means the model itself is loaded, not only that the server answers.
            "readinessProbe": http_probe(f"/v2/models/{m}/ready", self.ports.http, period=5, failure=3),
            "livenessProbe": http_probe("/v2/health/live", self.ports.http, period=10, failure=3),
            # Large models take minutes to load: allow up to 30 minutes before liveness applies.
            "startupProbe": http_probe("/v2/health/ready", self.ports.http, period=10, failure=180),
        }

    def config_files(self, md: ModelDeployment) -> dict[str, str]:
        return {f"{md.model.name}/config.pbtxt": render_config_pbtxt(md)}

    def artifact_path(self, md: ModelDeployment) -> str:
        fmt = md.model.format or "onnx"
        return f"{md.model.name}/1/{PLATFORMS.get(fmt, PLATFORMS['onnx'])[1]}"


def render_config_pbtxt(md: ModelDeployment) -> str:
    fmt = md.model.format or "onnx"
    platform = PLATFORMS.get(fmt, PLATFORMS["onnx"])[0]
    kind = "KIND_GPU" if md.placement.gpu.count > 0 else "KIND_CPU"
    lines = [
        f'name: "{md.model.name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {md.runtime.max_batch_size}",
    ]
    if md.runtime.dynamic_batching and md.runtime.max_batch_size > 0:
        lines.append("dynamic_batching {")
        if md.runtime.preferred_batch_sizes:
            lines.append("  preferred_batch_size: [ " + ", ".join(str(s) for s in md.runtime.preferred_batch_sizes) + " ]")
        if md.runtime.max_queue_delay_us is not None:
            lines.append(f"  max_queue_delay_microseconds: {md.runtime.max_queue_delay_us}")
        lines.append("}")
    lines += ["instance_group [", "  {", f"    count: {md.runtime.instances}", f"    kind: {kind}", "  }", "]"]
    return "\n".join(lines) + "\n"
