"""TensorFlow Serving: `<model>/1/saved_model.pb` (+ variables/) plus models.config.

models.config (a ModelServerConfig in protobuf text format, checked against tensorflow-serving-api's
own protobuf in tests/runtimes) serves exactly version 1, the revision's SavedModel, under the
version label `serving`: every modelpilot revision is its own Deployment, so the version number
never changes inside a pod and rollouts happen between pods. Server-side batching
(`--enable_batching` with batching.config) follows spec.runtime.maxBatchSize and dynamicBatching;
`instances` becomes the number of batching threads. Prometheus metrics are served on the REST port.
"""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import ModelDeployment
from .base import MODEL_REPOSITORY, STARTUP_FAILURES, STARTUP_PERIOD_SECONDS, Ports, Signature, container_ports, env_list, http_probe

VERSION = 1
VERSION_LABEL = "serving"
METRICS_PATH = "/monitoring/prometheus/metrics"


def _batching(md: ModelDeployment, signature: Signature | None) -> bool:
    if md.runtime.max_batch_size < 1 or not md.runtime.dynamic_batching:
        return False
    return signature is None or all(t.shape and t.shape[0] == -1 for t in signature.inputs)


class TFServing:
    kind = "tfserving"
    # Prometheus metrics are served on the REST port under METRICS_PATH.
    ports = Ports(http=8501, grpc=8500, metrics=None)

    def container(self, md: ModelDeployment, image: str) -> dict[str, Any]:
        m = md.model.name
        args = [
            f"--port={self.ports.grpc}", f"--rest_api_port={self.ports.http}",
            f"--model_config_file={MODEL_REPOSITORY}/models.config",
            f"--monitoring_config_file={MODEL_REPOSITORY}/monitoring.config",
            # The label is set in the same config that loads the version; do not fail on the ordering.
            "--allow_version_labels_for_unavailable_models=true",
            # models.config never changes inside a pod: do not poll it.
            "--file_system_poll_wait_seconds=0",
        ]
        if _batching(md, None):
            args += ["--enable_batching=true", f"--batching_parameters_file={MODEL_REPOSITORY}/batching.config"]
        return {
            "name": "server",
            "image": image,
            "command": ["tensorflow_model_server"],
            "args": [*args, *md.runtime.args],
            "ports": container_ports(self.ports),
            "env": env_list(md),
            # The REST and gRPC servers start only after the initial load; metadata is served only for a
            # loaded version, so it stays the model-loaded check if the version later fails or unloads.
            "readinessProbe": http_probe(f"/v1/models/{m}/metadata", "http", period=5, failure=3),
            "livenessProbe": http_probe(f"/v1/models/{m}", "http", period=10, failure=3),
            "startupProbe": http_probe(f"/v1/models/{m}", "http", period=STARTUP_PERIOD_SECONDS, failure=STARTUP_FAILURES),
        }

    def config_files(self, md: ModelDeployment, signature: Signature | None = None) -> dict[str, str]:
        m = md.model.name
        models_config = (
            "model_config_list {\n"
            "  config {\n"
            f'    name: "{m}"\n'
            f'    base_path: "{MODEL_REPOSITORY}/{m}"\n'
            '    model_platform: "tensorflow"\n'
            f"    model_version_policy {{ specific {{ versions: {VERSION} }} }}\n"
            f'    version_labels {{ key: "{VERSION_LABEL}" value: {VERSION} }}\n'
            "  }\n"
            "}\n"
        )
        monitoring = f'prometheus_config {{\n  enable: true\n  path: "{METRICS_PATH}"\n}}\n'
        files = {"models.config": models_config, "monitoring.config": monitoring}
        if _batching(md, None):
            files["batching.config"] = render_batching_config(md)
        return files

    def artifact_path(self, md: ModelDeployment) -> str:
        return f"{md.model.name}/{VERSION}"

    def warnings(self, md: ModelDeployment, signature: Signature | None = None) -> list[str]:
        if _batching(md, None) and not _batching(md, signature):
            return [f"spec.runtime.maxBatchSize {md.runtime.max_batch_size}: the SavedModel has an input with a fixed "
                    "first dimension, which TF Serving's batching cannot concatenate; set maxBatchSize 0 or export "
                    "it with a dynamic batch dimension (-1)"]
        return []


def render_batching_config(md: ModelDeployment) -> str:
    """BatchingParameters text: allowed sizes must increase and end at max_batch_size."""
    r = md.runtime
    allowed = sorted({s for s in r.preferred_batch_sizes if 0 < s < r.max_batch_size} | {r.max_batch_size})
    lines = [
        f"max_batch_size {{ value: {r.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {r.max_queue_delay_us if r.max_queue_delay_us is not None else 1000} }}",
        f"num_batch_threads {{ value: {r.instances} }}",
        "max_enqueued_batches { value: 100 }",
    ]
    lines += [f"allowed_batch_sizes: {s}" for s in allowed]
    return "\n".join(lines) + "\n"
