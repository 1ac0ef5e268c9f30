"""The ServingRuntime protocol: what a model server contributes to a revision's pod.

A runtime knows its ports, its probes, its command line, the configuration files of its model
repository, where the artifact goes in that repository, and what it cannot do with a given spec
(warnings). Everything else (placement, volumes, the storage initializer, labels) is common and
lives in render.py. Keep this protocol small: a runtime full of no-op methods means it is too wide.

`Signature` is the artifact's IO signature as the exporter's manifest writes it
(`{"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}`, -1 for a dynamic dimension). It is
optional everywhere: None means "not known", and each runtime then falls back to what the server
can find out by itself (Triton's auto-complete, TorchServe's handler defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..api.modeldeployment import ModelDeployment

MODEL_REPOSITORY = "/models"


@dataclass(frozen=True)
class Ports:
    """The server's container ports; None where it has no such port."""

    http: int
    grpc: int | None
    metrics: int | None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy-style name: float32, int64, bool, ...
    shape: tuple[int, ...]  # -1 = dynamic


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Parse the manifest's `signature` object; raises ValueError naming what is wrong."""
        def tensors(key: str) -> tuple[TensorSpec, ...]:
            out = []
            for i, t in enumerate(data.get(key) or ()):
                try:
                    out.append(TensorSpec(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t.get("shape") or ())))
                except (KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"signature.{key}[{i}]: expected name, dtype and shape ({e})") from None
            return tuple(out)

        return cls(tensors("inputs"), tensors("outputs"))

    def to_dict(self) -> dict[str, Any]:
        def one(t: TensorSpec) -> dict[str, Any]:
            return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
        return {"inputs": [one(t) for t in self.inputs], "outputs": [one(t) for t in self.outputs]}


class ServingRuntime(Protocol):
    kind: str
    ports: Ports

    def container(self, md: ModelDeployment, image: str) -> dict[str, Any]:
        """The serving container: image, command, args, ports, probes, env. No resources or volumes."""

    def config_files(self, md: ModelDeployment, signature: Signature | None = None) -> dict[str, str]:
        """Files for the model repository, keyed by path relative to it (e.g. `m/config.pbtxt`)."""

    def artifact_path(self, md: ModelDeployment) -> str:
        """Where the storage initializer puts the artifact, relative to the model repository."""

    def warnings(self, md: ModelDeployment, signature: Signature | None = None) -> list[str]:
        """What will work worse than the spec asks (deprecated backends, batching turned off), one line each."""


def http_probe(path: str, port: int | str, *, period: int, failure: int, initial: int = 0, timeout: int = 2) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failure,
        "timeoutSeconds": timeout,
    }
    if initial:
        probe["initialDelaySeconds"] = initial
    return probe


# Large models take minutes to load (download is done by then: the storage initializer ran first).
# The startup probe allows 30 minutes before liveness starts counting.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURES = 180


def container_ports(ports: Ports) -> list[dict[str, Any]]:
    out = [{"name": "http", "containerPort": ports.http, "protocol": "TCP"}]
    if ports.grpc:
        out.append({"name": "grpc", "containerPort": ports.grpc, "protocol": "TCP"})
    if ports.metrics:
        out.append({"name": "metrics", "containerPort": ports.metrics, "protocol": "TCP"})
    return out


def env_list(md: ModelDeployment, defaults: tuple[tuple[str, str], ...] = ()) -> list[dict[str, str]]:
    """The runtime's own env defaults, overridden by spec.runtime.env of the same name."""
    user = dict(md.runtime.env)
    out = [{"name": k, "value": v} for k, v in defaults if k not in user]
    return out + [{"name": k, "value": v} for k, v in md.runtime.env]
