"""TensorFlow Serving: `<model>/<version>/saved_model.pb` plus models.config."""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import ModelDeployment
from .base import MODEL_REPOSITORY, Ports, container_ports, env_list, http_probe


class TFServing:
    kind = "tfserving"
    # Prometheus metrics are served on the REST port under /monitoring/prometheus/metrics.
    ports = Ports(http=8501, grpc=8500, metrics=None)

    def container(self, md: ModelDeployment, image: str) -> dict[str, Any]:
        m = md.model.name
        return {
            "name": "server",
            "image": image,
            "command": ["tensorflow_model_server"],
            "args": [
                "--port=8500", "--rest_api_port=8501",
                f"--model_config_file={MODEL_REPOSITORY}/models.config",
                "--monitoring_config_file=" + f"{MODEL_REPOSITORY}/monitoring.config",
                *md.runtime.args,
            ],
            "ports": container_ports(self.ports),
            "env": env_list(md),
            # /v1/models/<m> answers 200 with state AVAILABLE only once a version is loaded.
            "readinessProbe": http_probe(f"/v1/models/{m}", self.ports.http, period=5, failure=3),
            "livenessProbe": http_probe(f"/v1/models/{m}", self.ports.http, period=10, failure=6),
            "startupProbe": http_probe(f"/v1/models/{m}", self.ports.http, period=10, failure=180),
        }

    def config_files(self, md: ModelDeployment) -> dict[str, str]:
        m = md.model.name
        models_config = (
            "model_config_list {\n"
            "  config {\n"
            f'    name: "{m}"\n'
            f'    base_path: "{MODEL_REPOSITORY}/{m}"\n'
            '    model_platform: "tensorflow"\n'
            "    model_version_policy { latest { num_versions: 1 } }\n"
            "  }\n"
            "}\n"
        )
        monitoring = 'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'
        return {"models.config": models_config, "monitoring.config": monitoring}

    def artifact_path(self, md: ModelDeployment) -> str:
        return f"{md.model.name}/1"
