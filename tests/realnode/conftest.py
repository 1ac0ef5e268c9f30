"""The real node (hack/real-node.sh): containerd, a kubelet and kube-proxy beside the kwok nodes.

`real_node` starts it once per session (`hack/local-up.sh --real-node`, root needed) with the
images it needs loaded into its containerd. Pods land there only with the node's toleration and
the `real-cpu` pool's selector; everything else in the suite keeps running on kwok nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..conftest import REPO, Kubectl, free_port
from ..e2e.conftest import wait_for as e2e_wait_for

sys.path.insert(0, str(REPO / "hack" / "testbed"))
from podman_run import image_ref  # noqa: E402

NODE = "mp-real-0"
NODE_IP = "10.211.0.1"  # hack/real-node.sh's node address: pods reach the host there
POOL = "real-cpu"
TOLERATION = {"key": "modelpilot.io/real-node", "operator": "Exists", "effect": "NoSchedule"}
NODE_POOLS = {POOL: {"nodeSelector": {"modelpilot.io/pool": POOL}, "tolerations": [TOLERATION]}}
IMAGES = ("operator", "storage-init", "exporter-onnx", "torchserve")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/realnode/" in str(item.fspath):
            item.add_marker(pytest.mark.realnode)


@pytest.fixture(scope="session")
def real_node(kubeconfig: str) -> Iterator[str]:
    r = subprocess.run([str(REPO / "hack" / "build-images.sh"), *IMAGES], capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, f"hack/build-images.sh failed:\n{r.stderr[-3000:]}"
    r = subprocess.run([str(REPO / "hack" / "local-up.sh"), "--real-node"], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"hack/local-up.sh --real-node failed:\n{r.stderr[-4000:]}"
    r = subprocess.run([str(REPO / "hack" / "real-node.sh"), "load", *(image_ref(i) for i in IMAGES)],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"loading the images into the node failed:\n{r.stderr[-3000:]}"
    yield NODE


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, interval: float = 0.5) -> Any:
    """The e2e suite's wait_for, with the description first (it reads better in these tests)."""
    return e2e_wait_for(check, timeout=timeout, interval=interval, what=what)


def get(kubectl: Kubectl, *args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):  # not answering (yet): kube-proxy may still program the rules
        return 0, b""


class PodTargets:
    """Prometheus file-based discovery of the real node's pods: every pod there with a container port
    named `metrics`, labelled `namespace`, `pod` and its own labels, rewritten once a second.

    Debian's Prometheus is built without `kubernetes_sd_configs` ("field kubernetes_sd_configs not
    found in type config.ScrapeConfig"), so the test lists the pods and Prometheus reads the file
    (`file_sd_configs`, re-read on change); scraping and queries are Prometheus's own."""

    def __init__(self, kubectl: Kubectl, path: Any):
        import threading

        self.kubectl, self.path, self.stop = kubectl, path, threading.Event()
        self.path.write_text("[]")
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(1):
            r = self.kubectl("get", "pods", "-A", "--field-selector", f"spec.nodeName={NODE}", "-o", "json", check=False)
            if r.returncode == 0:
                text = json.dumps(self.targets(json.loads(r.stdout)["items"]), sort_keys=True)
                if text != self.path.read_text():
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(text)
                    tmp.replace(self.path)  # Prometheus never reads half a file

    @staticmethod
    def targets(pods: list[dict]) -> list[dict]:
        import re

        out = []
        for pod in pods:
            ip = pod["status"].get("podIP")
            ports = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or () if p.get("name") == "metrics"]
            if ip and ports:
                labels = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in (pod["metadata"].get("labels") or {}).items()}
                out.append({"targets": [f"{ip}:{ports[0]}"],
                            "labels": {**labels, "namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"]}})
        return out


@pytest.fixture(scope="session")
def node_prometheus(real_node: str, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (hack/prometheus.sh) scraping the real node's pods (TorchServe's metrics
    port) every second, on the node's address so that the in-cluster operator reaches it."""
    import os

    local = tmp_path_factory.mktemp("prometheus-node")
    discovery = PodTargets(kubectl, local / "pods.json")
    env = {**os.environ, "MODELPILOT_LOCAL_DIR": str(local)}
    script = str(REPO / "hack" / "prometheus.sh")
    try:
        r = subprocess.run([script, "start", "--port", "0", "--listen", NODE_IP, "--scrape-interval", "1s",
                            "--file-sd", f"pods={discovery.path}"], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"hack/prometheus.sh start failed ({r.returncode}):\n{r.stderr}{r.stdout}"
        yield r.stdout.strip().splitlines()[-1]
    finally:
        discovery.stop.set()
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=30)


class InCluster:
    """The chart installed with the local images, its operator pods on the real node."""

    def __init__(self, release: str, system_ns: str, namespace: str):
        self.release, self.system_ns, self.namespace = release, system_ns, namespace
        self.lease = f"{release}-modelpilot-leader"

    def pods(self, kubectl: Kubectl) -> list[dict]:
        return get(kubectl, "-n", self.system_ns, "get", "pods", "-l",
                   f"app.kubernetes.io/instance={self.release}")["items"]

    def holder(self, kubectl: Kubectl) -> str:
        return get(kubectl, "-n", self.system_ns, "get", "lease", self.lease)["spec"].get("holderIdentity") or ""


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


@pytest.fixture(scope="session")
def incluster(real_node: str, node_prometheus: str, kubectl: Kubectl,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[InCluster]:
    """`helm install` of charts/modelpilot with the images hack/build-images.sh built: two operator
    replicas on the real node (leader election), watching one workload namespace, with the real
    pool and the kwok `cpu` pool, and analysis queries sent to `node_prometheus`."""
    import uuid

    import yaml

    from ..chart.conftest import CHART, helm

    suffix = uuid.uuid4().hex[:6]
    system_ns, namespace, release = f"rn-system-{suffix}", f"rn-work-{suffix}", f"rn{suffix}"
    for ns in (system_ns, namespace):
        kubectl("create", "namespace", ns)
    ref = image_ref("operator")
    registry, tag = ref.rsplit("/", 1)[0], ref.rsplit(":", 1)[1]
    values = tmp_path_factory.mktemp("incluster") / "values.yaml"
    values.write_text(yaml.safe_dump({
        "replicaCount": 2, "watchNamespaces": [namespace], "logFormat": "text",
        "image": {"registry": registry, "repository": "operator", "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": {"modelpilot.io/pool": POOL}, "tolerations": [TOLERATION],
        "config": {"nodePools": {**NODE_POOLS, "cpu": {"nodeSelector": {"modelpilot.io/pool": "cpu"}}},
                   "prometheusUrl": node_prometheus},
    }))
    kc = str(REPO / ".local" / "kubeconfig")
    op = InCluster(release, system_ns, namespace)
    try:
        helm("install", release, str(CHART), "-n", system_ns, "-f", str(values), "--wait", "--timeout", "240s",
             kubeconfig=kc, timeout=300)
        wait_for("a lease holder", lambda: op.holder(kubectl), timeout=120)
        yield op
    finally:
        helm("uninstall", release, "-n", system_ns, kubeconfig=kc, check=False)
        for ns in (namespace, system_ns):
            kubectl("delete", "namespace", ns, "--wait=false", check=False)


def host_volume(kubectl: Kubectl, namespace: str, claim: str, path: Any, uid: int = 1000) -> None:
    """A hostPath PersistentVolume bound to `claim` (no provisioner here), writable by the pods' user
    (hostPath volumes get no fsGroup ownership change)."""
    import os

    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    pv = f"{namespace}-{claim}"
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(path), "type": "Directory"},
                  "claimRef": {"namespace": namespace, "name": claim}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]}))


class Gateway:
    """Traefik (built from its Go module) on 127.0.0.1, implementing a Gateway in `namespace`."""

    def __init__(self, namespace: str, name: str, port: int):
        self.namespace, self.name, self.port = namespace, name, port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def gateway(incluster: "InCluster", kubectl: Kubectl) -> Iterator[Gateway]:
    """hack/gateway.sh (the demo's too): Traefik implementing the Gateway `web` in the workload namespace."""
    import uuid

    ns = incluster.namespace
    port = free_port()  # a fixed offset collided with the fault tests' operators (the gateway lives all session)
    gateway_class = f"traefik-{uuid.uuid4().hex[:6]}"
    script = str(REPO / "hack" / "gateway.sh")
    try:
        r = subprocess.run([script, "start", "--namespace", ns, "--port", str(port), "--class", gateway_class],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"hack/gateway.sh start failed ({r.returncode}):\n{r.stderr}{r.stdout}"
        yield Gateway(ns, "web", port)
    finally:
        subprocess.run([script, "stop"], capture_output=True, timeout=60)
        for kind in ("gatewayclass", "clusterrolebinding", "clusterrole"):
            kubectl("delete", kind, gateway_class, "--wait=false", check=False)
