"""TorchServe: a model store holding `<model>.mar`, plus config.properties."""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import ModelDeployment
from .base import MODEL_REPOSITORY, Ports, container_ports, env_list, http_probe


class TorchServe:
    kind = "torchserve"
    ports = Ports(http=8080, grpc=7070, metrics=8082)

    def container(self, md: ModelDeployment, image: str) -> dict[str, Any]:
        m = md.model.name
        return {
            "name": "server",
            "image": image,
            "command": ["torchserve"],
            "args": [
                "--start", "--foreground", "--disable-token-auth",
                f"--model-store={MODEL_REPOSITORY}",
                f"--ts-config={MODEL_REPOSITORY}/config.properties",
                *md.runtime.args,
            ],
            "ports": container_ports(self.ports),
            "env": env_list(md),
            # The management API on the same pod tells whether the model's workers are up; the
            # inference /ping only says the frontend is alive.
            "readinessProbe": http_probe(f"/models/{m}", 8081, period=5, failure=3),
            "livenessProbe": http_probe("/ping", self.ports.http, period=10, failure=3),
            "startupProbe": http_probe("/ping", self.ports.http, period=10, failure=180),
        }

    def config_files(self, md: ModelDeployment) -> dict[str, str]:
        r = md.runtime
        props = {
            "inference_address": "http://0.0.0.0:8080",
            "management_address": "http://0.0.0.0:8081",
            "metrics_address": "http://0.0.0.0:8082",
            "grpc_inference_port": "7070",
            "model_store": MODEL_REPOSITORY,
            "load_models": f"{md.model.name}.mar",
            "default_workers_per_model": str(r.instances),
            "metrics_mode": "prometheus",
        }
        if r.max_batch_size > 1:
            props["models"] = (
                '{"%s":{"1.0":{"marName":"%s.mar","minWorkers":%d,"maxWorkers":%d,"batchSize":%d,"maxBatchDelay":%d}}}'
                % (md.model.name, md.model.name, r.instances, r.instances, r.max_batch_size,
                   (r.max_queue_delay_us or 5000) // 1000)
            )
        return {"config.properties": "".join(f"{k}={v}\n" for k, v in props.items())}

    def artifact_path(self, md: ModelDeployment) -> str:
        return f"{md.model.name}.mar"
