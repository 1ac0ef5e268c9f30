"""Given/when/then helpers for rollout e2e tests: apply a ModelDeployment, change its model, watch
the weights the HTTPRoute really carries, and drive `kubectl modelpilot` actions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from ..conftest import KUBECTL, Kubectl
from .conftest import wait_for

GATEWAY = {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "inference-gateway"}], "hostnames": ["m.example.com"]}}


def model_deployment(name: str, rollout: dict, traffic: dict | None = GATEWAY, version: int = 1, replicas: int = 2) -> dict:
    body: dict[str, Any] = {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
        "spec": {"model": {"uri": f"pvc://models/{name}/v{version}/model.onnx", "format": "onnx"},
                 "runtime": {"kind": "triton"}, "replicas": replicas, "placement": {"nodePool": "cpu"},
                 "rollout": rollout},
    }
    if traffic:
        body["spec"]["traffic"] = traffic
    return body


def apply(kubectl: Kubectl, ns: str, body: dict) -> None:
    kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(body))


def status(kubectl: Kubectl, ns: str, name: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", "modeldeployment", name, "-o", "json").stdout).get("status") or {}


def wait_status(kubectl: Kubectl, ns: str, name: str, pred, timeout: float = 90, what: str = "status") -> dict:
    return wait_for(lambda: (s := status(kubectl, ns, name)) and pred(s) and s, timeout, 0.3, what)


def new_version(kubectl: Kubectl, ns: str, body: dict, version: int) -> None:
    body["spec"]["model"]["uri"] = f"pvc://models/{body['metadata']['name']}/v{version}/model.onnx"
    apply(kubectl, ns, body)


def plugin(kubeconfig: str, *args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("kubectl-modelpilot"))
    env = dict(os.environ, KUBECONFIG=kubeconfig, KUBECTL=KUBECTL)
    r = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, f"kubectl modelpilot {' '.join(args)}: {r.stderr}"
    return r


def route_weights(route: dict) -> dict[str, int]:
    """{backend Service: weight} of the HTTPRoute's catch-all split rule."""
    split = route["spec"]["rules"][-1]
    return {b["name"]: b.get("weight", 1) for b in split["backendRefs"]}


class ObjectWatch:
    """Every distinct value `extract(object)` of one object took, with when it was seen, from a real
    `kubectl get -w`."""

    def __init__(self, kubeconfig: str, ns: str, resource: str, name: str, extract: Callable[[dict], Any]):
        self.extract = extract
        self.values: list[Any] = []
        self.times: list[float] = []
        self.argv = [KUBECTL, "--kubeconfig", kubeconfig, "-n", ns, "get", resource, name, "-w", "-o", "json"]
        self.stopping = False
        self.proc = self._watch()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _watch(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def _follow(self) -> None:
        # `kubectl get -w` ends when its stream breaks (an apiserver or etcd restart): watch again,
        # starting with the object as it is then, so that no value in between goes unseen.
        while True:
            self._read()
            if self.stopping:
                return
            time.sleep(0.5)
            self.proc = self._watch()

    def _read(self) -> None:
        buf = ""
        decoder = json.JSONDecoder()
        for line in self.proc.stdout:  # type: ignore[union-attr]
            buf += line
            while buf.strip():
                try:
                    obj, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                v = self.extract(obj)
                if not self.values or self.values[-1] != v:
                    self.values.append(v)
                    self.times.append(time.time())

    def stop(self) -> list[Any]:
        time.sleep(1.0)
        self.stopping = True
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return self.values


class RouteWatch(ObjectWatch):
    """Records every distinct canary weight the HTTPRoute carried."""

    def __init__(self, kubeconfig: str, ns: str, name: str, canary_service: str):
        super().__init__(kubeconfig, ns, "httproute", name, lambda route: route_weights(route).get(canary_service, 0))
