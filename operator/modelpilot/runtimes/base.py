"""The ServingRuntime protocol: what a model server contributes to a revision's pod.

A runtime knows its ports, its probes, its command line and the configuration files of its model
repository. Everything else (placement, volumes, the storage initializer, labels) is common and
lives in render.py. Keep this protocol small: a runtime full of no-op methods means it is too wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..api.modeldeployment import ModelDeployment

MODEL_REPOSITORY = "/models"


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int | None
    metrics: int | None


class ServingRuntime(Protocol):
    kind: str
    ports: Ports

    def container(self, md: ModelDeployment, image: str) -> dict[str, Any]:
        """The serving container: image, command, args, ports, probes, env. No resources or volumes."""

    def config_files(self, md: ModelDeployment) -> dict[str, str]:
        """Files for the model repository, keyed by path relative to it (e.g. `m/config.pbtxt`)."""

    def artifact_path(self, md: ModelDeployment) -> str:
        """Where the storage initializer puts the artifact, relative to the model repository."""


def http_probe(path: str, port: int, *, period: int, failure: int, initial: int = 0, timeout: int = 2) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failure,
        "timeoutSeconds": timeout,
    }
    if initial:
        probe["initialDelaySeconds"] = initial
    return probe


def container_ports(ports: Ports) -> list[dict[str, Any]]:
    out = [{"name": "http", "containerPort": ports.http, "protocol": "TCP"}]
    if ports.grpc:
        out.append({"name": "grpc", "containerPort": ports.grpc, "protocol": "TCP"})
    if ports.metrics:
        out.append({"name": "metrics", "containerPort": ports.metrics, "protocol": "TCP"})
    return out


def env_list(md: ModelDeployment) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in md.runtime.env]
