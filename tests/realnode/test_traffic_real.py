"""Real serving and real traffic: TorchServe pods on the real node (storage initializer as a real
init container, readiness only once the model answers), and a canary split by a real Gateway API
implementation (Traefik), measured by the answers clients get.

Each model version answers differently, so every response says which revision served it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ..conftest import LOCAL, Kubectl
from .conftest import POOL, Gateway, InCluster, get, host_volume, wait_for

X = [[0.5, -1.0, 2.0, 0.25]]
PLUGIN = str(Path(sys.executable).with_name("kubectl-modelpilot"))


def plugin(*args: str) -> None:
    """`kubectl modelpilot ...` against the local cluster, as a user would run it."""
    r = subprocess.run([PLUGIN, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "KUBECONFIG": str(LOCAL / "kubeconfig")})
    assert r.returncode == 0, f"kubectl modelpilot {' '.join(args)}: {r.stderr}{r.stdout}"


def save_versions(root: Path, seeds: dict[str, int]) -> dict[str, list[float]]:
    """TorchScript Linear(4, 3) models, one per version; returns each one's answer to X."""
    import torch

    answers = {}
    for version, seed in seeds.items():
        torch.manual_seed(seed)
        model = torch.nn.Linear(4, 3).eval()
        (root / version).mkdir(parents=True, exist_ok=True)
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 4)), str(root / version / "model.pt"))
        with torch.no_grad():
            answers[version] = model(torch.tensor(X)).tolist()[0]
    return answers


def deployment(version: str) -> dict:
    return {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "lin"},
        "spec": {
            "model": {"uri": f"pvc://served-models/{version}/model.pt", "format": "torchscript", "name": "lin"},
            "runtime": {"kind": "torchserve"}, "replicas": 1, "placement": {"nodePool": POOL},
            "traffic": {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "web", "sectionName": "http"}]}},
            "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]}},
        },
    }


class Client:
    """Requests through the gateway; each answer classified by the model version that gave it."""

    def __init__(self, url: str, answers: dict[str, list[float]]):
        self.url, self.answers = f"{url}/predictions/lin", answers

    def one(self) -> str:
        req = urllib.request.Request(self.url, data=json.dumps(X).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                out = json.loads(r.read())["outputs"]["output0"][0]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
            return f"error: {e}"
        for version, ref in self.answers.items():
            if np.allclose(out, ref, rtol=1e-5, atol=1e-5):
                return version
        return f"unknown answer {out}"

    def many(self, n: int, workers: int = 8) -> Counter:
        with ThreadPoolExecutor(workers) as pool:
            return Counter(pool.map(lambda _: self.one(), range(n)))


def weights(kubectl: Kubectl, ns: str) -> dict:
    return (get(kubectl, "-n", ns, "get", "mdep", "lin").get("status") or {}).get("weights") or {}


def route_weights(kubectl: Kubectl, ns: str) -> list[int]:
    routes = get(kubectl, "-n", ns, "get", "httproute")["items"]
    return [b.get("weight", 1) for r in routes for rule in r["spec"]["rules"] for b in rule.get("backendRefs", [])]


def binomial_interval(p: float, n: int, z: float = 3.2905) -> tuple[float, float]:
    """The 99.9 % normal-approximation interval of a share p over n trials."""
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


@pytest.fixture(scope="module")
def served(incluster: InCluster, gateway: Gateway, kubectl: Kubectl, tmp_path_factory) -> tuple[Client, dict]:
    ns = incluster.namespace
    root = tmp_path_factory.mktemp("models")
    host_volume(kubectl, ns, "served-models", root)  # test_export_real's "models" claim is another volume
    answers = save_versions(root, {"v1": 1, "v2": 2, "v3": 3})
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment("v1")))
    wait_for("revision 1 Ready", lambda: (get(kubectl, "-n", ns, "get", "mdep", "lin").get("status") or {}).get("phase") == "Ready",
             timeout=300, interval=1)
    client = Client(gateway.url, answers)
    wait_for("the gateway to route to revision 1", lambda: client.one() == "v1", timeout=60)
    return client, answers


def test_served_model_answers_like_the_source(served, incluster: InCluster, kubectl: Kubectl, real_node: str) -> None:
    client, _ = served
    assert client.many(50) == Counter({"v1": 50})
    pods = get(kubectl, "-n", incluster.namespace, "get", "pods", "-l", "modelpilot.io/model-deployment=lin")["items"]
    assert pods and all(p["spec"]["nodeName"] == real_node for p in pods)
    init = pods[0]["status"]["initContainerStatuses"][0]
    assert init["name"] == "storage-initializer" and init["state"]["terminated"]["exitCode"] == 0


def test_canary_share_promote_and_abort_through_the_gateway(served, incluster: InCluster, kubectl: Kubectl,
                                                            record_property) -> None:
    client, _ = served
    ns = incluster.namespace
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment("v2")))
    wait_for("the canary at 20 %", lambda: weights(kubectl, ns).get("canary") == 20 and sorted(route_weights(kubectl, ns)) == [20, 80],
             timeout=300, interval=1)
    wait_for("both revisions answering", lambda: {"v1", "v2"} <= set(client.many(40)), timeout=60)
    n = 2000
    counts = client.many(n)
    share = counts["v2"] / n
    low, high = binomial_interval(0.2, n)
    record_property("canary_share_at_20", share)
    print(f"canary at 20 %: {counts['v2']}/{n} = {share:.3f} answered by the canary (99.9 % interval {low:.3f}-{high:.3f}); {dict(counts)}")
    assert set(counts) == {"v1", "v2"}, counts
    assert low <= share <= high

    t0 = time.monotonic()
    plugin("promote", "--full", "lin", "-n", ns)
    wait_for("the route at 100 % canary", lambda: route_weights(kubectl, ns) in ([100], [0, 100], [100, 0]), timeout=60, interval=0.1)
    t_route = time.monotonic()
    wait_for("10 answers in a row from the canary", lambda: client.many(10, workers=1) == Counter({"v2": 10}), timeout=60, interval=0)
    record_property("promote_route_to_traffic_s", round(time.monotonic() - t_route, 3))
    print(f"promote: route at 100 % after {t_route - t0:.2f}s; served only by the canary {time.monotonic() - t_route:.2f}s later")
    assert client.many(200) == Counter({"v2": 200})

    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment("v3")))
    wait_for("the next canary at 20 %", lambda: weights(kubectl, ns).get("canary") == 20, timeout=300, interval=1)
    wait_for("the v3 canary answering", lambda: "v3" in client.many(40), timeout=60)
    plugin("abort", "lin", "-n", ns)
    t_abort = time.monotonic()
    wait_for("only the stable revision answering", lambda: client.many(10, workers=1) == Counter({"v2": 10}), timeout=60, interval=0)
    record_property("abort_to_traffic_s", round(time.monotonic() - t_abort, 3))
    assert client.many(200) == Counter({"v2": 200})


def test_no_failed_request_across_a_whole_rollout(served, incluster: InCluster, kubectl: Kubectl, record_property) -> None:
    client, _ = served
    ns = incluster.namespace
    stable = (get(kubectl, "-n", ns, "get", "mdep", "lin").get("status") or {}).get("stableRevision")
    target = "v1"
    results: Counter = Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            results[client.one()] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment(target)))
        wait_for("the canary at 20 %", lambda: weights(kubectl, ns).get("canary") == 20, timeout=300, interval=1)
        time.sleep(3)
        plugin("promote", "--full", "lin", "-n", ns)
        wait_for("the new revision stable", lambda: (st := get(kubectl, "-n", ns, "get", "mdep", "lin").get("status") or {})
                 .get("stableRevision") != stable and st.get("phase") == "Ready", timeout=300, interval=1)
        time.sleep(5)  # the old revision scales down under load
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = {k: v for k, v in results.items() if k not in ("v1", "v2", "v3")}
    record_property("rollout_requests", sum(results.values()))
    record_property("rollout_failed_requests", sum(failed.values()))
    print(f"rollout under load: {sum(results.values())} requests, answers {dict(results)}")
    assert not failed, failed
    assert results[target] > 0
