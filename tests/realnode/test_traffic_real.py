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

from modelpilot.traffic.base import PREVIEW_HEADER, PREVIEW_HEADER_VALUE

from ..conftest import LOCAL, Kubectl
from .conftest import POOL, Gateway, InCluster, get, host_volume, wait_for

X = [[0.5, -1.0, 2.0, 0.25]]
X_NEG = [[-0.5, 1.0, 2.0, 0.25]]  # the failing model's bad input: a negative first feature
CANARY_20 = {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]}}
PLUGIN = str(Path(sys.executable).with_name("kubectl-modelpilot"))


def plugin(*args: str) -> None:
    """`kubectl modelpilot ...` against the local cluster, as a user would run it."""
    r = subprocess.run([PLUGIN, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "KUBECONFIG": str(LOCAL / "kubeconfig")})
    assert r.returncode == 0, f"kubectl modelpilot {' '.join(args)}: {r.stderr}{r.stdout}"


def save_versions(root: Path, seeds: dict[str, int], failing: str = "") -> dict[str, list[float]]:
    """TorchScript Linear(4, 3) models, one per version; returns each one's answer to X. The
    `failing` version raises on X_NEG (a scripted check before its Linear), like a model with a bug
    on some inputs."""
    import torch

    class FailsOnNegative(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool((x[:, 0] < 0).any()):
                raise RuntimeError("fails on purpose: a negative first feature")
            return self.inner(x)

    answers = {}
    for version, seed in seeds.items():
        torch.manual_seed(seed)
        model = torch.nn.Linear(4, 3).eval()
        (root / version).mkdir(parents=True, exist_ok=True)
        saved = torch.jit.script(FailsOnNegative(model)) if version == failing else torch.jit.trace(model, torch.zeros(1, 4))
        torch.jit.save(saved, str(root / version / "model.pt"))
        with torch.no_grad():
            answers[version] = model(torch.tensor(X)).tolist()[0]
    return answers


def deployment(version: str, rollout: dict = CANARY_20) -> dict:
    return {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "lin"},
        "spec": {
            "model": {"uri": f"pvc://served-models/{version}/model.pt", "format": "torchscript", "name": "lin"},
            "runtime": {"kind": "torchserve"}, "replicas": 1, "placement": {"nodePool": POOL},
            "traffic": {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "web", "sectionName": "http"}]}},
            "rollout": rollout,
        },
    }


class Client:
    """Requests through the gateway; each answer classified by the model version that gave it."""

    def __init__(self, url: str, answers: dict[str, list[float]]):
        self.url, self.answers = f"{url}/predictions/lin", answers

    def one(self, x: list = X, headers: dict | None = None) -> str:
        req = urllib.request.Request(self.url, data=json.dumps(x).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                out = json.loads(r.read())["outputs"]["output0"][0]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
            return f"error: {e}"
        if x is not X:
            return "answered"
        for version, ref in self.answers.items():
            if np.allclose(out, ref, rtol=1e-5, atol=1e-5):
                return version
        return f"unknown answer {out}"

    def many(self, n: int, workers: int = 8) -> Counter:
        with ThreadPoolExecutor(workers) as pool:
            return Counter(pool.map(lambda _: self.one(), range(n)))


def status(kubectl: Kubectl, ns: str) -> dict:
    return get(kubectl, "-n", ns, "get", "mdep", "lin").get("status") or {}


class Load:
    """`clients` threads sending requests through the gateway (cycling through `inputs`) until the
    block ends; every answer is recorded as (start, end, answer), times from time.monotonic()."""

    def __init__(self, client: Client, clients: int = 4, inputs: tuple = (X,)):
        self.client, self.inputs, self.stop = client, inputs, threading.Event()
        self.records: list[tuple[float, float, str]] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            answer = self.client.one(self.inputs[i % len(self.inputs)])
            self.records.append((start, time.monotonic(), answer))
            time.sleep(0.01)

    def counts(self) -> Counter:
        return Counter(a for _, _, a in self.records)

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def replicas(kubectl: Kubectl, ns: str, deployment_name: str) -> int:
    r = kubectl("-n", ns, "get", "deployment", deployment_name, "-o", "jsonpath={.spec.replicas}", check=False)
    return int(r.stdout or 0) if r.returncode == 0 else 0


def weights(kubectl: Kubectl, ns: str) -> dict:
    return status(kubectl, ns).get("weights") or {}


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
    answers = save_versions(root, {"v1": 1, "v2": 2, "v3": 3, "v4": 5, "bad": 4}, failing="bad")
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


def test_traefik_answers_500_to_a_route_with_request_mirror(served, gateway: Gateway, incluster: InCluster,
                                                            kubectl: Kubectl) -> None:
    """Why shadow is not measured through Traefik (docs/traffic.md): it declares no
    HTTPRouteRequestMirror among its supported features, and a rule carrying the filter answers
    every client 500 (its provider's "unsupported filter" path), while the route's status still
    says Accepted and ResolvedRefs. Fails, as a reminder, once a Traefik upgrade changes that."""
    client, _ = served
    ns = incluster.namespace
    gw = get(kubectl, "-n", ns, "get", "gateway", gateway.name)
    features = (get(kubectl, "get", "gatewayclass", gw["spec"]["gatewayClassName"]).get("status") or {}).get("supportedFeatures") or []
    names = {f["name"] if isinstance(f, dict) else f for f in features}
    assert "HTTPRoute" in names and "HTTPRouteRequestMirror" not in names, sorted(names)
    ref = get(kubectl, "-n", ns, "get", "httproute", "lin")["spec"]["rules"][-1]["backendRefs"][0]  # the stable Service
    backend = {"name": ref["name"], "port": ref["port"]}
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": backend, "percent": 10}}
    routes = {"plain": [], "mirrored": [mirror]}
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": f"evidence-{name}"},
         "spec": {"parentRefs": [{"name": gateway.name, "sectionName": "http"}], "hostnames": [f"{name}.evidence.test"],
                  "rules": [{"filters": filters, "backendRefs": [backend]}]}} for name, filters in routes.items()]}))
    try:
        # Until Traefik has loaded the route, the request falls through to the route `lin`, which has no hostname.
        wait_for("the mirrored route loaded", lambda: client.one(headers={"Host": "mirrored.evidence.test"}) not in client.answers, timeout=60)
        mirrored = Counter(client.one(headers={"Host": "mirrored.evidence.test"}) for _ in range(20))
        plain = Counter(client.one(headers={"Host": "plain.evidence.test"}) for _ in range(20))
        print(f"through Traefik: the route with RequestMirror {dict(mirrored)}; the same route without it {dict(plain)}")
        assert set(mirrored) == {"error: HTTP Error 500: Internal Server Error"}, mirrored
        assert len(plain) == 1 and set(plain) <= set(client.answers), plain
        conds = wait_for("the mirrored route's status", lambda: {
            c["type"]: c["status"] for p in (get(kubectl, "-n", ns, "get", "httproute", "evidence-mirrored").get("status") or {})
            .get("parents", []) for c in p["conditions"]}, timeout=30)
        assert conds.get("Accepted") == "True" and conds.get("ResolvedRefs") == "True", conds
    finally:
        kubectl("-n", ns, "delete", "httproute", "evidence-plain", "evidence-mirrored", check=False)


def test_a_shadow_through_traefik_is_held_and_clients_keep_their_answers(served, incluster: InCluster, kubectl: Kubectl) -> None:
    """The operator reads the Gateway's class before it writes a RequestMirror filter: Traefik does
    not list HTTPRouteRequestMirror, so the shadow rollout is held with Ready=False
    MirrorUnsupported, the route never carries the filter, and clients never see the 500s above."""
    client, _ = served
    ns = incluster.namespace
    before = status(kubectl, ns)
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment("v2", {"strategy": "shadow", "shadow": {"percent": 50}})))
    try:
        ready = wait_for("Ready=False MirrorUnsupported", lambda: next(
            (c for c in status(kubectl, ns).get("conditions", []) if c["type"] == "Ready" and c["reason"] == "MirrorUnsupported"), None),
            timeout=60)
        print(f"shadow through Traefik: {ready['message']}")
        assert "HTTPRouteRequestMirror" in ready["message"] and "spec.traffic.router" in ready["message"], ready
        route = get(kubectl, "-n", ns, "get", "httproute", "lin")
        assert not [f for rule in route["spec"]["rules"] for f in rule.get("filters", []) if f["type"] == "RequestMirror"], route["spec"]
        answers = client.many(50)
        assert answers == Counter({"v1": 50}), answers
        assert status(kubectl, ns).get("stableRevision") == before.get("stableRevision")
    finally:
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment("v1")))
        wait_for("back to Ready on v1", lambda: status(kubectl, ns).get("phase") == "Ready", timeout=120, interval=1)


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
    stable = status(kubectl, ns).get("stableRevision")
    target = "v1"
    with Load(client) as load:
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment(target)))
        wait_for("the canary at 20 %", lambda: weights(kubectl, ns).get("canary") == 20, timeout=300, interval=1)
        time.sleep(3)
        plugin("promote", "--full", "lin", "-n", ns)
        wait_for("the new revision stable", lambda: (st := status(kubectl, ns)).get("stableRevision") != stable
                 and st.get("phase") == "Ready", timeout=300, interval=1)
        time.sleep(5)  # the old revision scales down under load
    results = load.counts()
    failed = {k: v for k, v in results.items() if k not in ("v1", "v2", "v3")}
    record_property("rollout_requests", sum(results.values()))
    record_property("rollout_failed_requests", sum(failed.values()))
    print(f"rollout under load: {sum(results.values())} requests, answers {dict(results)}")
    assert not failed, failed
    assert results[target] > 0


def test_blue_green_switch_under_load(served, incluster: InCluster, kubectl: Kubectl, record_property) -> None:
    """The preview answers only with the preview header; `promote` switches every client at once,
    with no failed request and no answer from the old revision after the first from the new one."""
    client, _ = served
    ns = incluster.namespace
    old, old_revision = client.one(), status(kubectl, ns)["stableRevision"]
    new = "v4"  # a version no earlier test rolled out: a new revision, whatever they left behind
    rollout = {"strategy": "blueGreen", "blueGreen": {"scaleDownDelaySeconds": 5}}
    with Load(client) as load:
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment(new, rollout)))
        wait_for("the preview answering with the preview header",
                 lambda: client.one(headers={PREVIEW_HEADER: PREVIEW_HEADER_VALUE}) == new, timeout=300, interval=1)
        assert client.many(100) == Counter({old: 100}), "before the switch, clients get only the old revision"
        t_cmd = time.monotonic()
        plugin("promote", "lin", "-n", ns)
        wait_for("the route switched", lambda: route_weights(kubectl, ns) in ([100], [0, 100], [100, 0]) and client.one() == new,
                 timeout=60, interval=0.05)
        wait_for("the old revision scaled down", lambda: not replicas(kubectl, ns, f"lin-r{old_revision}"), timeout=120, interval=1)
        time.sleep(2)
    records = load.records
    failed = [a for _, _, a in records if a not in (old, new)]
    first_new = min(end for _, end, a in records if a == new)
    old_after = [(start, end) for start, end, a in records if a == old and start > first_new]
    last_old = max(end for _, end, a in records if a == old)
    record_property("bluegreen_requests", len(records))
    record_property("bluegreen_failed_requests", len(failed))
    record_property("bluegreen_promote_to_first_new_s", round(first_new - t_cmd, 3))
    record_property("bluegreen_overlap_s", round(last_old - first_new, 3))
    print(f"blue-green under load: {len(records)} requests, {len(failed)} failed; first answer from the new revision "
          f"{first_new - t_cmd:.2f}s after promote; last old answer {last_old - first_new:+.3f}s from it; {load.counts()}")
    assert not failed, Counter(failed)
    assert not old_after, f"{len(old_after)} requests sent after the switch got the old revision"


def error_ratio_analysis() -> dict:
    """The canary's share of 5xx answers over 10 s, from TorchServe's own counters as Prometheus
    scraped them; 0 (passing) before the first scrape, never a missing value."""
    sel = 'namespace="{{namespace}}",pod=~"{{name}}-r{{canaryRevision}}-.*"'
    errors = f'(sum(increase({{__name__=~"Requests5XX(_total)?",{sel}}}[10s])) or vector(0))'
    ok = f'(sum(increase({{__name__=~"Requests2XX(_total)?",{sel}}}[10s])) or vector(0))'
    return {"interval": "2s", "metrics": [{"name": "error-ratio", "query": f"{errors} / clamp_min({ok} + {errors}, 1)",
                                           "successCondition": "result < 0.05"}]}


def test_analysis_aborts_on_real_torchserve_errors(served, incluster: InCluster, kubectl: Kubectl, record_property) -> None:
    """A canary whose model fails on some inputs: TorchServe answers them 5xx, Prometheus scrapes its
    counters, the background analysis fails and the rollout aborts back to 100 % stable."""
    client, _ = served
    ns = incluster.namespace
    stable = client.one()
    rollout = {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}, "analysis": error_ratio_analysis()}
    with Load(client, inputs=(X, X_NEG)) as load:
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(deployment("bad", rollout)))
        wait_for("the rollout aborted", lambda: status(kubectl, ns).get("phase") == "Degraded", timeout=300, interval=0.2)
        t_aborted = time.monotonic()
        wait_for("the route back at 100 % stable", lambda: sorted(route_weights(kubectl, ns)) in ([100], [0, 100]), timeout=60, interval=0.1)
        t_route = time.monotonic()
        time.sleep(3)
    records = load.records
    errors = [(start, end) for start, end, a in records if a.startswith("error")]
    assert errors, f"the failing canary never answered an error: {load.counts()}"
    first_error = min(end for _, end in errors)
    last_bad = max(end for start, end, a in records if a == "bad" or a.startswith("error"))
    st = status(kubectl, ns)
    record_property("analysis_first_error_to_abort_s", round(t_aborted - first_error, 3))
    record_property("analysis_first_error_to_route_stable_s", round(t_route - first_error, 3))
    print(f"analysis abort: first 5xx at t0; phase Degraded {t_aborted - first_error:.2f}s, route at 100 % stable "
          f"{t_route - first_error:.2f}s, last canary answer {last_bad - first_error:.2f}s after it; {load.counts()}; "
          f"message: {st.get('message')}")
    assert "analysis failed" in st.get("message", ""), st
    assert st["weights"]["canary"] == 0
    assert client.many(100) == Counter({stable: 100}), "after the abort, only the stable revision answers"
