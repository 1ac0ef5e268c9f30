"""Session fixtures for the real test bed: the local control plane (hack/local-up.sh) and kubectl.

Integration and e2e tests run against real etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok. If no local cluster is up, the first test that needs one starts it and
the session stops it at the end; a cluster that was already up is reused and left running.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCAL = Path(os.environ.get("MODELPILOT_LOCAL_DIR", REPO / ".local"))
CACHE = Path(os.environ.get("MODELPILOT_CACHE", Path.home() / ".cache" / "modelpilot"))


def _versions() -> dict[str, str]:
    out = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


VERSIONS = _versions()
K8S_BIN = CACHE / "bin" / f"kubernetes-{VERSIONS['KUBERNETES_VERSION']}"
KUBECTL = str(K8S_BIN / "kubectl")
HELM = str(CACHE / "bin" / f"helm-{VERSIONS['HELM_VERSION']}-release" / "helm")
KUBE_SCORE = str(CACHE / "bin" / f"kube-score-{VERSIONS['KUBE_SCORE_VERSION']}" / "kube-score")

Kubectl = Callable[..., subprocess.CompletedProcess]


def _cluster_up(kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    r = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
                       capture_output=True, text=True, timeout=20)
    return r.returncode == 0


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[str]:
    path = LOCAL / "kubeconfig"
    started = False
    if not _cluster_up(path):
        subprocess.run([str(REPO / "hack" / "local-up.sh")], check=True, timeout=1800)
        started = True
    else:
        # Reused cluster: make sure it has this checkout's CRDs.
        subprocess.run([KUBECTL, "--kubeconfig", str(path), "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")],
                       check=True, capture_output=True, timeout=120)
    yield str(path)
    if started and not os.environ.get("MODELPILOT_KEEP_CLUSTER"):
        subprocess.run([str(REPO / "hack" / "local-down.sh")], check=False, timeout=120)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Kubectl:
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
        return r
    return run


def kubectl_json(kubectl: Kubectl, *args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    base = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")[:40]
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over real HTTP on 127.0.0.1: (directory, base URL). For http(s):// sources."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a, **k):  # the server's access log is not the code under test's output
            pass

    handler = functools.partial(Quiet, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's) on 127.0.0.1: its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    yield f"http://127.0.0.1:{port}"
    srv.stop()
