"""TorchServe: a model store holding `<model>.mar`, plus config.properties.

A ready `.mar` (format `mar`) is served as it is. A TorchScript (`model.pt`) or `torch.export`
(`model.pt2`) artifact is archived by the storage initializer with torch-model-archiver, using
modelpilot's tensor handler (JSON tensors in, JSON tensors out; see
modelpilot_exporters.storage_init). config.properties pins the addresses, the model to load at
start, its workers and server-side batching (`batchSize`, `maxBatchDelay`), turns off the model
registration API, and leaves no config snapshots, so that the server writes only under /tmp
(read-only root filesystem).

Token auth is off, so the management API (which can scale a model to zero workers) listens on the
pod's loopback only, HTTP and gRPC alike (issue 11); the probes that need it are exec probes, run
inside the container. Inference and metrics listen on all addresses for the Service and Prometheus.
"""

from __future__ import annotations

import json
from typing import Any

from ..api.modeldeployment import ModelDeployment
from .base import MODEL_REPOSITORY, STARTUP_FAILURES, STARTUP_PERIOD_SECONDS, Ports, Signature, container_ports, env_list

MANAGEMENT_PORT = 8081
GRPC_MANAGEMENT_PORT = 7071
SIGNATURE_FILE = "signature.json"

# Readiness: /ping answers 200 while the model's workers are still starting (seen on a real
# TorchServe 0.12), so the probe also asks the management API for a READY worker of the model.
# An exec probe, because one HTTP GET cannot check both; the TorchServe image has python3.
READY_CHECK = (
    "import json, sys, urllib.request as u\n"
    "u.urlopen('http://127.0.0.1:{http}/ping', timeout=3)\n"
    "models = json.load(u.urlopen('http://127.0.0.1:{management}/models/{model}', timeout=3))\n"
    "sys.exit(0 if any(w['status'] == 'READY' for m in models for w in m['workers']) else 1)\n"
)
# Liveness: the frontend answers its management API as long as it runs (TorchServe restarts dead
# workers itself); asked over loopback, since the API is not reachable from the kubelet.
LIVE_CHECK = "import urllib.request as u\nu.urlopen('http://127.0.0.1:{management}/models', timeout=3)\n"
LOOPBACK = "127.0.0.1"


def _exec_probe(script: str, *, period: int, failure: int) -> dict[str, Any]:
    return {"exec": {"command": ["python3", "-c", script]}, "periodSeconds": period, "failureThreshold": failure,
            "timeoutSeconds": 5}


def max_batch_delay_ms(md: ModelDeployment) -> int:
    us = md.runtime.max_queue_delay_us
    return 5 if us is None else max(1, (us + 999) // 1000)


def batch_size(md: ModelDeployment) -> int:
    return max(1, md.runtime.max_batch_size) if md.runtime.dynamic_batching else 1


class TorchServe:
    kind = "torchserve"
    ports = Ports(http=8080, grpc=7070, metrics=8082)

    def container(self, md: ModelDeployment, image: str) -> dict[str, Any]:
        return {
            "name": "server",
            "image": image,
            "command": ["torchserve"],
            "args": [
                "--start", "--foreground", "--disable-token-auth", "--ncs",
                f"--model-store={MODEL_REPOSITORY}",
                f"--ts-config={MODEL_REPOSITORY}/config.properties",
                *md.runtime.args,
            ],
            "workingDir": "/tmp",
            "ports": container_ports(self.ports),
            # Logs and metrics logs go to /tmp (an emptyDir): the root filesystem is read-only.
            "env": env_list(md, (("LOG_LOCATION", "/tmp/logs"), ("METRICS_LOCATION", "/tmp/logs"),
                                 ("PYTHONDONTWRITEBYTECODE", "1"))),
            "readinessProbe": self._ready_probe(md, period=5, failure=3),
            "livenessProbe": _exec_probe(LIVE_CHECK.format(management=MANAGEMENT_PORT), period=10, failure=3),
            "startupProbe": self._ready_probe(md, period=STARTUP_PERIOD_SECONDS, failure=STARTUP_FAILURES),
        }

    def _ready_probe(self, md: ModelDeployment, *, period: int, failure: int) -> dict[str, Any]:
        script = READY_CHECK.format(http=self.ports.http, management=MANAGEMENT_PORT, model=md.model.name)
        return _exec_probe(script, period=period, failure=failure)

    def config_files(self, md: ModelDeployment, signature: Signature | None = None) -> dict[str, str]:
        r = md.runtime
        m = md.model.name
        model_cfg = {m: {"1.0": {
            "defaultVersion": True,
            "marName": f"{m}.mar",
            "minWorkers": r.instances,
            "maxWorkers": r.instances,
            "batchSize": batch_size(md),
            "maxBatchDelay": max_batch_delay_ms(md),
            "responseTimeout": 120,
        }}}
        props = {
            "inference_address": f"http://0.0.0.0:{self.ports.http}",
            "management_address": f"http://{LOOPBACK}:{MANAGEMENT_PORT}",
            "metrics_address": f"http://0.0.0.0:{self.ports.metrics}",
            "grpc_inference_port": str(self.ports.grpc),
            "grpc_management_address": LOOPBACK,
            "grpc_management_port": str(GRPC_MANAGEMENT_PORT),
            "model_store": MODEL_REPOSITORY,
            # name=file: the model is served under spec.model.name whatever name the archive carries.
            "load_models": f"{m}={m}.mar",
            "models": json.dumps(model_cfg, sort_keys=True, separators=(",", ":")),
            "default_workers_per_model": str(r.instances),
            "number_of_gpu": str(md.placement.gpu.count),
            "metrics_mode": "prometheus",
            "disable_token_authorization": "true",
            "enable_model_api": "false",
            "install_py_dep_per_model": "false",
        }
        files = {"config.properties": "".join(f"{k}={v}\n" for k, v in props.items())}
        if signature is not None:
            files[SIGNATURE_FILE] = json.dumps(signature.to_dict(), sort_keys=True, indent=1) + "\n"
        return files

    def artifact_path(self, md: ModelDeployment) -> str:
        return f"{md.model.name}.mar"

    def warnings(self, md: ModelDeployment, signature: Signature | None = None) -> list[str]:
        out = []
        if signature is None and md.model.format in ("torchscript", "pt2"):
            out.append("the artifact's signature is not known: modelpilot's TorchServe handler takes inputs in "
                       "order and names outputs output0, output1, ...; spec.model.exportRef gives the real names")
        if md.runtime.preferred_batch_sizes:
            out.append(f"spec.runtime.dynamicBatching.preferredBatchSizes {list(md.runtime.preferred_batch_sizes)} is "
                       f"ignored: TorchServe has no preferred sizes, it batches up to batchSize={batch_size(md)} "
                       f"requests within maxBatchDelay={max_batch_delay_ms(md)} ms; remove the field")
        return out
