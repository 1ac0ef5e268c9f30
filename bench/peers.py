"""modelpilot side by side with its peers, on the same local control plane, kwok nodes and workload.

    python bench/peers.py [--n 200 1000] [--aborts 5] [--only SCENARIO...]
    python bench/peers.py --smoke        # CI: builds nothing, reconcile at N=10, peers only if built

The peers are built by `hack/build-testbed.sh peers` (hack/versions.env pins them) and run as
processes on the host, each with its own client certificate (hack/local-up.sh), so that the
apiserver's audit log tells their writes apart. Each installs its CRDs from its own module.

Scenarios (see docs/benchmarks.md for what each peer can and cannot do here):

- steps: a canary of 30 setWeight steps (1..30 %); a watch on the route timestamps every weight
  change; a step is the time from one weight persisted to the next. modelpilot through the Gateway
  API (HTTPRoute) and Istio (VirtualService); Argo Rollouts through Istio (its Gateway API plugin
  is not served by the Go module proxy); Flagger through the Gateway API at its smallest interval
  (10 s), with its total time to promotion. Drift: the controller's writes, during the rollout, to
  the objects the bench applied (what a GitOps tool owns), status subresources excepted. Idle: its
  writes in the 30 s after the rollout settled.
- aborts: a canary paused at 50 %; the abort (our status.control, Argo's status.abort) from
  accepted to the route at 100 % stable. Flagger has no abort: it rolls back on failed checks only.
- reconcile: N ModelDeployments and N KServe InferenceServices (RawDeployment, ONNX on Triton)
  timed to Ready, each divided by the bare-client floor of bench/reconcile.py measured in the same
  run; the controller's peak RSS (VmHWM) and its writes while idle (modelpilot: one periodic
  resync; KServe has none in 10 h, so a 30 s window).

Prints a table, then one JSON line. Needs hack/local-up.sh; stops an operator that local-up started.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import reconcile as rc
import rollout as ro
import yaml

REPO, LOCAL, CACHE, VERSIONS, kubectl = ro.REPO, ro.LOCAL, ro.CACHE, ro.VERSIONS, ro.kubectl
PORT = rc.METRICS_PORT + 10  # the peers' metrics, health and webhook ports: 10 above the operator's
PER = 30  # setWeight steps of a canary
IDLE_S = 30.0
SETTLE = True  # wait for each system's namespace to be gone before the next (not in --smoke)
SCALE_DOWN_S = 35.0  # the old revision is scaled down 30 s after promotion (ours and Argo's default)
ISTIO = {"router": "istio"}
BIN = {"argo-rollouts": CACHE / "bin" / f"argo-rollouts-{VERSIONS['ARGO_ROLLOUTS_VERSION']}",
       "flagger": CACHE / "bin" / f"flagger-{VERSIONS['FLAGGER_VERSION']}",
       "kserve": CACHE / "bin" / f"kserve-{VERSIONS['KSERVE_VERSION']}"}
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"


def built(peer: str) -> bool:
    return (BIN[peer] / "crds").is_dir()


def apply(ns: str | None, *objs: dict) -> None:
    kubectl(*(["-n", ns] if ns else []), "apply", "--server-side", "--force-conflicts", "-f", "-",
            input=yaml.safe_dump_all(objs))


def install_crds(peer: str) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(BIN[peer] / "crds"))
    kubectl("wait", "--for", "condition=established", "--timeout=60s", "-f", str(BIN[peer] / "crds"))


def fresh_namespace(prefix: str) -> str:
    ns = f"{prefix}-{int(time.time() * 1000) % 10**9}"
    kubectl("create", "namespace", ns)
    return ns


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- controller processes


class Controller:
    """A controller process: modelpilot's operator or a peer's binary, with its audit-log user."""

    def __init__(self, name: str, user: str, proc: subprocess.Popen):
        self.name, self.user, self.proc = name, user, proc

    @classmethod
    def start(cls, name: str, user: str, cmd: list[str], health: str, env: dict | None = None) -> Controller:
        log = LOCAL / "logs" / f"peers-{name}.log"
        proc = subprocess.Popen(cmd, env=dict(os.environ, **(env or {})), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(health, timeout=1)
                return cls(name, user, proc)
            except OSError:
                time.sleep(0.3)
        proc.kill()
        raise RuntimeError(f"{name} not healthy at {health} in 120 s; see {log}")

    def rss_mb(self) -> float:
        return rc.rss_mb(self.proc.pid)

    def stop(self) -> float:
        """Stop it; its peak RSS in MB."""
        peak = self.rss_mb()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return peak


def start_modelpilot(resync: float = 15.0) -> Controller:
    proc = rc.start_operator(8, resync, LOCAL / "logs" / "peers-modelpilot.log")
    return Controller("modelpilot", "modelpilot-operator", proc)


def start_argo() -> Controller:
    exe = BIN["argo-rollouts"] / "rollouts-controller"
    return Controller.start("argo-rollouts", "argo-rollouts", [
        str(exe), f"--kubeconfig={LOCAL / 'argo-rollouts.kubeconfig'}", f"--metricsport={PORT}", f"--healthzPort={PORT + 1}",
        "--leader-elect=false", "--rollout-resync=15", "--loglevel=warn"], f"http://127.0.0.1:{PORT + 1}/healthz")


def start_flagger(ns: str) -> Controller:
    exe = BIN["flagger"] / "flagger"
    return Controller.start("flagger", "flagger", [
        str(exe), f"-kubeconfig={LOCAL / 'flagger.kubeconfig'}", "-mesh-provider=gatewayapi:v1", f"-namespace={ns}",
        f"-port={PORT + 2}", "-log-level=info", "-metrics-server=http://127.0.0.1:1"], f"http://127.0.0.1:{PORT + 2}/healthz")


# ---------------------------------------------------------------- workloads of the peers


def pod_template(app: str, version: int) -> dict:
    """The same pod as a ModelDeployment's on the kwok CPU pool; `version` changes the template."""
    return {"metadata": {"labels": {"app": app}},
            "spec": {"nodeSelector": {"modelpilot.io/pool": "cpu"},
                     "containers": [{"name": "triton", "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
                                     "env": [{"name": "MODEL_VERSION", "value": str(version)}],
                                     "ports": [{"containerPort": 8000}],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def service(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8000}]}}


def vs_weight(vs: dict, canary: str) -> int:
    """The weight of Service `canary` (short name or FQDN) in a VirtualService's last HTTP route."""
    return sum(int(d.get("weight", 0)) for d in vs["spec"]["http"][-1]["route"]
               if d["destination"]["host"].split(".", 1)[0] == canary)


def argo_objects(name: str, steps: list, version: int) -> list[dict]:
    """What a GitOps repo holds for Argo Rollouts: two Services, a VirtualService, the Rollout."""
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": name},
          "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
              {"destination": {"host": f"{name}-stable"}, "weight": 100}, {"destination": {"host": f"{name}-canary"}, "weight": 0}]}]}}
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name},
               "spec": {"replicas": 1, "revisionHistoryLimit": 2, "selector": {"matchLabels": {"app": name}},
                        "template": pod_template(name, version),
                        "strategy": {"canary": {"canaryService": f"{name}-canary", "stableService": f"{name}-stable", "steps": steps,
                                                "trafficRouting": {"istio": {"virtualService": {"name": name, "routes": ["primary"]}}}}}}}
    return [service(f"{name}-stable", name), service(f"{name}-canary", name), vs, rollout]


def argo_status(ns: str, name: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", "rollout", name, "-o", "json"))


def wait_argo(ns: str, name: str, pred, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ro_ = argo_status(ns, name)
        st = ro_.get("status") or {}
        if st.get("observedGeneration") == str(ro_["metadata"]["generation"]) and pred(st):
            return st
        time.sleep(0.1)
    raise SystemExit(f"rollout {name}: timed out; status {st}")


def argo_promoted(st: dict) -> bool:
    return st.get("phase") == "Healthy" and st.get("stableRS") == st.get("currentPodHash")


def flagger_objects(ns: str, name: str, version: int) -> list[dict]:
    """What a GitOps repo holds for Flagger: the Deployment and the Canary (Flagger makes the rest)."""
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": pod_template(name, version)}}
    canary = {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name},
              "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, "progressDeadlineSeconds": 600,
                       "service": {"port": 80, "targetPort": 8000, "gatewayRefs": [{"name": "gw", "namespace": ns}]},
                       "analysis": {"interval": "10s", "threshold": 1, "stepWeights": list(range(1, PER + 1)), "metrics": []}}}
    return [dep, canary]


def flagger_phase(ns: str, name: str, phases: set[str], timeout: float = 900) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = kubectl("-n", ns, "get", "canary", name, "-o", "jsonpath={.status.phase}")
        if phase in phases:
            return time.monotonic()
        time.sleep(0.2)
    raise SystemExit(f"canary {name}: not {phases} in {timeout} s (phase {phase!r}); see {LOCAL / 'logs/peers-flagger.log'}")


# ---------------------------------------------------------------- audit log


def object_writes(since: datetime, user: str, ns: str, objects: list[dict]) -> int:
    """`user`'s writes since `since` to `objects` themselves (not their status): drift in a GitOps tool."""
    plural = {"Service": "services", "VirtualService": "virtualservices", "Rollout": "rollouts", "Deployment": "deployments",
              "Canary": "canaries", "ModelDeployment": "modeldeployments", "HTTPRoute": "httproutes"}
    paths = {f"/namespaces/{ns}/{plural[o['kind']]}/{o['metadata']['name']}" for o in objects}
    return sum(1 for ev in rc.audit_events(since, user) if ev["requestURI"].split("?")[0].endswith(tuple(paths)))


def quiet_writes(user: str, ns: str, window: float | None = None, settle: float = 0.0) -> int:
    """`user`'s writes in `ns` during `window` seconds (IDLE_S), after `settle` seconds (the old
    revision's scale-down delay: 30 s for us and for Argo) and then 5 s without a write."""
    time.sleep(settle)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and rc.audit_writes(utcnow() - timedelta(seconds=5), ns, user):
        time.sleep(1)
    since = utcnow()
    time.sleep(IDLE_S if window is None else window)
    return rc.audit_writes(since, ns, user)


def summary(lat: list[float]) -> dict:
    return {"steps": len(lat), "median_s": round(statistics.median(lat), 3), "p99_s": round(ro.pct(lat, 0.99), 3)} if lat else {}


# ---------------------------------------------------------------- scenarios


def steps_modelpilot(router: str) -> dict:
    traffic, kind, weight = (ro.GATEWAY, "httproute", ro.httproute_weight) if router == "gatewayAPI" else (ISTIO, "virtualservice", vs_weight)
    ns = fresh_namespace("peers-mp")
    op = start_modelpilot()
    try:
        since = utcnow()
        lat = ro.md_step_latencies(ns, "steps", PER, 1, traffic, kind, weight)
        drift = object_writes(since, op.user, ns, [ro.md("steps", [], 1)])
        idle = quiet_writes(op.user, ns, settle=SCALE_DOWN_S)
    finally:
        rss = op.stop()
        kubectl("delete", "namespace", ns, "--wait=false")
    return {"system": "modelpilot", "router": router, **summary(lat), "drift_writes": drift, "idle_writes": idle, "rss_mb": round(rss, 1)}


def steps_argo() -> dict:
    ns = fresh_namespace("peers-argo")
    argo = start_argo()
    steps = [{"setWeight": i} for i in range(1, PER + 1)]
    try:
        apply(ns, *argo_objects("steps", steps, 1))
        wait_argo(ns, "steps", argo_promoted)
        watch = ro.Watch(ns, "steps", "steps-canary", "virtualservice", vs_weight)
        time.sleep(0.5)
        since, t0 = utcnow(), time.monotonic()
        apply(ns, *argo_objects("steps", steps, 2))
        wait_argo(ns, "steps", argo_promoted)
        total = time.monotonic() - t0
        time.sleep(1)
        watch.stop()
        drift = object_writes(since, argo.user, ns, argo_objects("steps", steps, 2))
        idle = quiet_writes(argo.user, ns, settle=SCALE_DOWN_S)
    finally:
        rss = argo.stop()
        kubectl("delete", "namespace", ns, "--wait=false")
    return {"system": "argo-rollouts", "router": "istio", **summary(ro.step_gaps(watch.changes, PER)), "total_s": round(total, 1),
            "drift_writes": drift, "idle_writes": idle, "rss_mb": round(rss, 1)}


def steps_flagger() -> dict:
    ns = fresh_namespace("peers-flagger")
    try:
        flagger = start_flagger(ns)
    except RuntimeError:
        kubectl("delete", "namespace", ns, "--wait=false")
        raise
    try:
        apply(ns, *flagger_objects(ns, "steps", 1))
        flagger_phase(ns, "steps", {"Initialized", "Succeeded"})
        watch = ro.Watch(ns, "steps", "steps-canary")
        since, t0 = utcnow(), time.monotonic()
        apply(ns, *flagger_objects(ns, "steps", 2))
        flagger_phase(ns, "steps", {"Progressing"}, timeout=120)
        total = flagger_phase(ns, "steps", {"Succeeded"}) - t0
        watch.stop()
        drift = object_writes(since, flagger.user, ns, flagger_objects(ns, "steps", 2))
        idle = quiet_writes(flagger.user, ns, settle=SCALE_DOWN_S)
    finally:
        rss = flagger.stop()
        kubectl("delete", "namespace", ns, "--wait=false")
    return {"system": "flagger", "router": "gatewayAPI", "interval_s": 10, **summary(ro.step_gaps(watch.changes, PER)),
            "total_s": round(total, 1), "drift_writes": drift, "idle_writes": idle, "rss_mb": round(rss, 1)}


def aborts_modelpilot(router: str, n: int) -> dict:
    traffic, kind, weight = (ro.GATEWAY, "httproute", ro.httproute_weight) if router == "gatewayAPI" else (ISTIO, "virtualservice", vs_weight)
    ns = fresh_namespace("peers-mp-abort")
    op = start_modelpilot()
    try:
        accepted, _ = ro.md_abort_latencies(ns, "abort", n, traffic, kind, weight)
    finally:
        op.stop()
        kubectl("delete", "namespace", ns, "--wait=false")
    return {"system": "modelpilot", "router": router, "aborts": n, "median_s": round(statistics.median(accepted), 3),
            "max_s": round(max(accepted), 3)}


def aborts_argo(n: int) -> dict:
    ns = fresh_namespace("peers-argo-abort")
    argo = start_argo()
    steps = [{"setWeight": 50}, {"pause": {}}]
    accepted = []
    try:
        apply(ns, *argo_objects("abort", steps, 1))
        wait_argo(ns, "abort", argo_promoted)
        for version in range(2, n + 2):
            watch = ro.Watch(ns, "abort", "abort-canary", "virtualservice", vs_weight)
            apply(ns, *argo_objects("abort", steps, version))
            watch.wait_weight(50, timeout=300)
            wait_argo(ns, "abort", lambda s: s.get("phase") == "Paused")
            a, _ = ro.timed_abort(watch, "-n", ns, "patch", "rollout", "abort", "--subresource=status", "--type=merge",
                                  "-p", '{"status":{"abort":true}}')
            accepted.append(a)
            watch.stop()
            wait_argo(ns, "abort", lambda s: s.get("phase") == "Degraded")
    finally:
        argo.stop()
        kubectl("delete", "namespace", ns, "--wait=false")
    return {"system": "argo-rollouts", "router": "istio", "aborts": n, "median_s": round(statistics.median(accepted), 3),
            "max_s": round(max(accepted), 3)}


# ---------------------------------------------------------------- KServe (RawDeployment)


def kserve_setup(tmp: Path) -> list[dict]:
    """CRDs, the kserve namespace and config map (RawDeployment, no Ingress or VirtualService: the
    ModelDeployments compared have no router either), the Triton runtime, and a serving certificate
    for the manager's webhooks signed by the test bed's CA. Returns the webhook configurations."""
    install_crds("kserve")
    conf = BIN["kserve"] / "config"
    cm = yaml.safe_load((conf / "inferenceservice.yaml").read_text())
    ingress = json.loads(cm["data"]["ingress"])
    ingress.update(disableIngressCreation=True, disableIstioVirtualHost=True)
    cm["data"].update(ingress=json.dumps(ingress), deploy=json.dumps({"defaultDeploymentMode": "RawDeployment"}))
    apply(None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kserve"}}, cm)
    apply(None, yaml.safe_load((conf / "kserve-tritonserver.yaml").read_text()))
    certs = tmp / "k8s-webhook-server" / "serving-certs"
    certs.mkdir(parents=True)
    pki = LOCAL / "pki"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", certs / "tls.key", "-subj", "/CN=kserve-webhook",
                    "-out", certs / "tls.csr"], check=True, capture_output=True)
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", certs / "tls.csr", "-CA", pki / "ca.crt", "-CAkey", pki / "ca.key",
                    "-CAcreateserial", "-days", "2", "-extfile", certs / "san.ext", "-out", certs / "tls.crt"], check=True, capture_output=True)
    ca = base64.b64encode((pki / "ca.crt").read_bytes()).decode()
    hooks = [d for d in yaml.safe_load_all((conf / "manifests.yaml").read_text()) if d and d["metadata"]["name"].startswith("inferenceservice.")]
    for d in hooks:
        for w in d["webhooks"]:
            w["clientConfig"] = {"url": f"https://127.0.0.1:{PORT + 5}{w['clientConfig']['service']['path']}", "caBundle": ca}
    return hooks


def start_kserve(tmp: Path) -> Controller:
    exe = BIN["kserve"] / "kserve-manager"
    env = {"KUBECONFIG": str(LOCAL / "kserve.kubeconfig"), "POD_NAMESPACE": "kserve", "TMPDIR": str(tmp)}
    return Controller.start("kserve", "kserve", [str(exe), f"--metrics-addr=127.0.0.1:{PORT + 3}", f"--health-probe-addr=127.0.0.1:{PORT + 4}",
                                                 f"--webhook-port={PORT + 5}"], f"http://127.0.0.1:{PORT + 4}/healthz", env)


def isvc_body(name: str, replicas: int) -> dict:
    """The InferenceService equivalent of reconcile.md_body: ONNX on Triton, one replica, the CPU pool."""
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment",
                                                       "serving.kserve.io/autoscalerClass": "none"}},
            "spec": {"predictor": {"minReplicas": replicas, "maxReplicas": replicas, "nodeSelector": {"modelpilot.io/pool": "cpu"},
                                   "model": {"modelFormat": {"name": "onnx"}, "runtime": "kserve-tritonserver",
                                             "storageUri": f"s3://models/{name}/model.onnx",
                                             "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}}}}


def isvc_ready(obj: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or [])


def reconcile_kserve(k, n: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        hooks = kserve_setup(Path(tmp))
        kserve = start_kserve(Path(tmp))
        ns = fresh_namespace("peers-kserve")
        try:
            apply(None, *hooks)
            t = rc.time_to_ready(k, ns, [isvc_body(f"m{i}", 1) for i in range(n)], workers, ISVC_PATH, isvc_ready,
                                 LOCAL / "logs" / "peers-kserve.log")
            idle = quiet_writes(kserve.user, ns)
            rss = kserve.rss_mb()
        finally:
            for h in hooks:
                kubectl("delete", h["kind"].lower(), h["metadata"]["name"], "--ignore-not-found")
            # Its finalizers need it running while its InferenceServices go (--smoke: only those).
            if SETTLE:
                rc.delete_namespace_and_wait(k, ns)
            else:
                kubectl("-n", ns, "delete", "inferenceservices", "--all", "--timeout=60s")
                settle_namespace(k, ns)
            kserve.stop()
    return {"system": "kserve", "seconds": round(t, 2), "idle_writes": idle, "rss_mb": round(rss, 1)}


# ---------------------------------------------------------------- reconcile throughput


def extra_nodes(n: int) -> list[dict]:
    """kwok CPU nodes beyond the test bed's three (110 pods each), so that N pods fit."""
    template = next(d for d in yaml.safe_load_all((REPO / "hack/testbed/nodes.yaml").read_text()) if d["metadata"]["name"] == "kwok-cpu-0")
    nodes = []
    for i in range(max(0, -(-n // 100) + 1 - 3)):
        node = json.loads(json.dumps(template))
        node["metadata"]["name"] = node["metadata"]["labels"]["kubernetes.io/hostname"] = f"kwok-cpu-peers-{i}"
        nodes.append(node)
    return nodes


def reconcile_modelpilot(k, n: int, workers: int, resync: float) -> dict:
    op = start_modelpilot(resync)
    ns = fresh_namespace("peers-mp-reconcile")
    try:
        t = rc.time_to_ready(k, ns, [rc.md_body(f"m{i}", 1) for i in range(n)], workers, log=LOCAL / "logs" / "peers-modelpilot.log")
        idle = rc.idle_resync_writes(ns)
    finally:
        rss = op.stop()
        settle_namespace(k, ns)
    return {"system": "modelpilot", "seconds": round(t, 2), "idle_writes": idle, "rss_mb": round(rss, 1)}


def settle_namespace(k, ns: str) -> None:
    """Delete a finished system's namespace and wait until it is gone, so that the next system's
    time does not pay for its deletion; --smoke (N=10, no figure kept) does not wait."""
    if SETTLE:
        rc.delete_namespace_and_wait(k, ns)
    else:
        kubectl("delete", "namespace", ns, "--wait=false")


def reconcile(n: int, workers: int, with_kserve: bool, resync: float) -> list[dict]:
    """The floor, modelpilot and KServe at N, one after another; each time divided by the floor."""
    k = rc.kube(LOCAL / "kubeconfig")
    nodes = extra_nodes(n)
    if nodes:
        apply(None, *nodes)
        kubectl("wait", "--for=condition=Ready", "--timeout=60s", *[f"node/{d['metadata']['name']}" for d in nodes])
    try:
        ns = fresh_namespace("peers-floor")
        floor = rc.floor(k, ns, n, 1, workers)
        settle_namespace(k, ns)
        out = [reconcile_modelpilot(k, n, workers, resync)]
        if with_kserve:
            out.append(reconcile_kserve(k, n, workers))
    finally:
        for d in nodes:
            kubectl("delete", "node", d["metadata"]["name"], "--ignore-not-found")
    return [{**r, "n": n, "floor_seconds": round(floor, 2), "ratio": round(r["seconds"] / floor, 3)} for r in out]


# ---------------------------------------------------------------- report


def fmt(x) -> str:
    return "-" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))


def table(results: dict) -> str:
    rows = []
    if results.get("steps") or results.get("aborts"):
        rows += ["| scenario | system | router | median s | p99 / max s | total s | drift writes | idle writes | peak RSS MB |",
                 "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results.get("steps", []):
        rows.append(f"| {PER} steps | {r['system']} | {r['router']} | {fmt(r.get('median_s'))} | {fmt(r.get('p99_s'))} | "
                    f"{fmt(r.get('total_s'))} | {r['drift_writes']} | {r['idle_writes']} | {r['rss_mb']} |")
    for r in results.get("aborts", []):
        rows.append(f"| abort ({r['aborts']}x) | {r['system']} | {r['router']} | {r['median_s']} | {r['max_s']} | - | - | - | - |")
    if results.get("reconcile"):
        rows += ["", "| reconcile | system | seconds | floor s | ratio | idle writes | peak RSS MB |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in results.get("reconcile", []):
        rows.append(f"| N={r['n']} | {r['system']} | {r['seconds']} | {r['floor_seconds']} | **{r['ratio']}** | {r['idle_writes']} | {r['rss_mb']} |")
    if results.get("not_run"):
        rows += ["", *(f"not run: {k}: {v}" for k, v in results["not_run"].items())]
    return "\n".join(rows)


def run(scenario: str, results: dict, fn, *args) -> None:
    """Run one measurement; a peer that fails is recorded with its error and the others go on."""
    try:
        out = fn(*args)
        results.setdefault(scenario, []).extend(out if isinstance(out, list) else [out])
        print(f"{scenario}: {json.dumps(out)}", file=sys.stderr)  # as it comes: a long run can be cut short
    except (RuntimeError, SystemExit, subprocess.SubprocessError) as e:
        name = f"{scenario}/{fn.__name__}{'/' + '/'.join(map(str, args)) if args else ''}"
        results.setdefault("not_run", {})[name] = str(e).strip()[-600:]
        print(f"{name} FAILED: {e}", file=sys.stderr)


def main() -> int:
    global IDLE_S, SETTLE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[200, 1000], help="reconcile sizes")
    ap.add_argument("--aborts", type=int, default=5)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--only", nargs="+", choices=["steps", "aborts", "reconcile"], default=["steps", "aborts", "reconcile"])
    ap.add_argument("--smoke", action="store_true", help="CI: reconcile at N=10 only, peers only if built, short idle windows")
    args = ap.parse_args()
    resync = 15.0
    if args.smoke:
        SETTLE = False
        args.n, args.only, resync, IDLE_S = [10], ["reconcile"], 4.0, 5.0
        rc.IDLE_POLL_S = 1.0
    if not (LOCAL / "kubeconfig").exists():
        raise SystemExit("no local control plane: run hack/local-up.sh first")
    rc.stop_local_up_operator(LOCAL)
    results: dict = {"date": utcnow().isoformat(timespec="seconds"), "load": os.getloadavg(),
                     "versions": {p: VERSIONS[k] for p, k in [("argo-rollouts", "ARGO_ROLLOUTS_VERSION"), ("flagger", "FLAGGER_VERSION"),
                                                               ("kserve", "KSERVE_VERSION")] if built(p)},
                     "not_run": {p: "not built (hack/build-testbed.sh peers)" for p in BIN if not built(p)}}
    for p in ("argo-rollouts", "flagger"):
        if built(p) and {"steps", "aborts"} & set(args.only):
            install_crds(p)
    if "steps" in args.only:
        for router in ("gatewayAPI", "istio"):
            run("steps", results, steps_modelpilot, router)
        if built("argo-rollouts"):
            run("steps", results, steps_argo)
        if built("flagger"):
            run("steps", results, steps_flagger)
    if "aborts" in args.only:
        for router in ("gatewayAPI", "istio"):
            run("aborts", results, aborts_modelpilot, router, args.aborts)
        if built("argo-rollouts"):
            run("aborts", results, aborts_argo, args.aborts)
    for n in args.n if "reconcile" in args.only else []:
        run("reconcile", results, reconcile, n, args.workers, built("kserve"), resync)
    results["load_end"] = os.getloadavg()
    print(table(results))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
