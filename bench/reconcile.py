"""Reconcile throughput of the operator against a floor, on the local control plane.

    python bench/reconcile.py [--n 200] [--replicas 1] [--workers 8]

1. Floor: with no operator running, a bare Python client (the official `kubernetes` client, the
   same thread count as the operator's workers) creates N ModelDeployments, server-side-applies the
   same children the operator would (rendered by the same builders), watches the Deployments, and
   writes each status once its Deployment is complete by the operator's own rule, so that every
   status says Ready as the operator's do. Nothing else.
2. Operator: the real `modelpilot-operator` process; the same N ModelDeployments are created and
   timed until every one has status.phase Ready.
3. Idle: after one periodic resync, count the operator's writes in the apiserver's audit log.
4. RSS: the operator's peak resident memory (VmHWM, `rss_mb`) and, after the idle resync, its
   resident memory then (VmRSS, `rss_settled_mb`).

Prints one JSON line last: {"n", "seconds", "floor_seconds", "ratio", "idle_writes", "rss_mb",
"rss_settled_mb", "requests_per_object": [floor, operator], "cpu_ms_per_object": [floor, operator],
"reconciles_per_object", "control_plane_cpu_s": {"floor", "operator"}}.
Needs the local control plane (hack/local-up.sh) and stops any operator that local-up started.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import kubernetes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "hack" / "testbed"))

from local_operator import stop_local_up_operator  # noqa: E402

from modelpilot.clock import now_rfc3339  # noqa: E402
from modelpilot.config import load_config  # noqa: E402
from modelpilot.kube import KubeClient  # noqa: E402
from modelpilot.rollout import Observed, plan_model_deployment  # noqa: E402
from modelpilot.rollout.model import rollout_complete  # noqa: E402

LOCAL = REPO / ".local"
# The operator's metrics and health ports: next to the e2e tests' (MODELPILOT_E2E_PORT_BASE), so
# that benches of several checkouts on one machine do not collide.
PORT = int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090")) + 100
CONFIG_PATH = REPO / "hack/testbed/operator-config.yaml"
# The operator's metrics and health ports: 18190/18191, or 100 above a helper's port base.
METRICS_PORT = int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090")) + 100
HEALTH_PORT = METRICS_PORT + 1
MD_PATH = "/apis/modelpilot.io/v1alpha1/namespaces/{ns}/modeldeployments"
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/{ns}/deployments"


def md_body(name: str, replicas: int) -> dict:
    return {
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
        "spec": {"model": {"uri": f"pvc://models/{name}/model.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
                 "replicas": replicas, "placement": {"nodePool": "cpu", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}},
    }


def kube(kubeconfig: Path) -> KubeClient:
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return KubeClient(kubernetes.client.ApiClient(cfg))


def namespace(k: KubeClient, name: str) -> None:
    k._call("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def delete_namespace(k: KubeClient, name: str) -> None:
    try:
        k._call("DELETE", f"/api/v1/namespaces/{name}")
    except kubernetes.client.exceptions.ApiException:
        pass


def delete_namespace_and_wait(k: KubeClient, name: str, timeout: float = 600) -> None:
    delete_namespace(k, name)
    deadline = time.monotonic() + timeout
    while k.get("Namespace", None, name) is not None and time.monotonic() < deadline:
        time.sleep(1)


def create(k: KubeClient, ns: str, body: dict, path: str = MD_PATH) -> dict:
    return k._call("POST", path.format(ns=ns), body=body)


def md_ready(obj: dict) -> bool:
    return (obj.get("status") or {}).get("phase") == "Ready"


def watch_until(k: KubeClient, path: str, ns: str, seen, deadline_s: float = 1800) -> bool:
    """List, then watch, the objects at `path` in `ns`, calling `seen(obj, deleted)` for each until it
    returns True (then True); False after `deadline_s`. Any group works, apps/v1 too: the objects stay
    plain dicts (the typed APIs would build a model object per event)."""
    group_version, plural = path.split("/namespaces/")[0].removeprefix("/apis/"), path.rsplit("/", 1)[1]
    group, version = group_version.split("/")
    api = kubernetes.client.CustomObjectsApi(k.api)
    t = time.monotonic()
    while time.monotonic() - t < deadline_s:
        listed = api.list_namespaced_custom_object(group, version, ns, plural)
        if any([seen(i, False) for i in listed["items"]]):
            return True
        stream = kubernetes.watch.Watch().stream(api.list_namespaced_custom_object, group, version, ns, plural,
                                                 resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=60)
        for ev in stream:
            if ev["type"] == "ERROR":  # e.g. 410 Gone: list again
                break
            if seen(ev["object"], ev["type"] == "DELETED"):
                return True
    return False


def time_to_ready(k: KubeClient, ns: str, bodies: list[dict], workers: int, path: str = MD_PATH,
                  ready=md_ready, log: Path | None = None) -> float:
    """Create `bodies` with `workers` threads; seconds until every object in `ns` at `path` is ready.
    Watched, not polled: re-listing 1,000 objects four times a second took the CPU the operator
    needs (on 2 cores, the bench's own JSON parsing and the apiserver's encoding of each LIST)."""
    t = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda b: create(k, ns, b, path), bodies))
    state: dict[str, bool] = {}

    def seen(obj: dict, deleted: bool) -> bool:
        state[obj["metadata"]["name"]] = not deleted and ready(obj)
        return sum(state.values()) == len(bodies)

    if not watch_until(k, path, ns, seen):
        raise SystemExit(f"only {sum(state.values())}/{len(bodies)} ready after 30 minutes; see {log}")
    return time.monotonic() - t


def floor(k: KubeClient, ns: str, n: int, replicas: int, workers: int) -> float:
    """What a bare client must do to bring N ModelDeployments to Ready, and nothing more: create
    each and apply its children (`workers` threads), watch the Deployments, and write each status
    once its Deployment is complete by the operator's own rule (`rollout_complete`: the Deployment
    controller has observed it and the replicas are ready). The status written must say Ready."""
    config = load_config(str(CONFIG_PATH))
    lives: dict[str, dict] = {}

    def start(i: int) -> None:
        live = create(k, ns, md_body(f"m{i}", replicas))
        for obj in plan_model_deployment(live, config, Observed(deployments={}, nodes=None, now=now_rfc3339())).apply:
            k.apply(obj, None)
        lives[f"m{i}"] = live

    def finish(name: str, dep: dict) -> None:
        final = plan_model_deployment(lives[name], config, Observed(deployments={1: dep}, nodes=None, now=now_rfc3339()))
        if final.status.get("phase") != "Ready":
            raise SystemExit(f"floor: {name} is {final.status.get('phase')} with a complete Deployment; the bench is wrong")
        k.patch_status("ModelDeployment", ns, name, {}, final.status, None)

    t = time.monotonic()
    with cf.ThreadPoolExecutor(workers) as pool:
        starts = {f"m{i}": pool.submit(start, i) for i in range(n)}
        finishes: dict[str, cf.Future] = {}

        def seen(dep: dict, deleted: bool) -> bool:
            name = dep["metadata"]["name"].removesuffix("-r1")
            if not deleted and name not in finishes and rollout_complete(dep, replicas):
                starts[name].result()  # the watch can see a Deployment before its apply returned
                finishes[name] = pool.submit(finish, name, dep)
            return len(finishes) == n

        if not watch_until(k, DEPLOYMENT_PATH, ns, seen):
            raise SystemExit(f"floor: only {len(finishes)}/{n} Deployments complete after 30 minutes")
        for f in finishes.values():
            f.result()
    return time.monotonic() - t


def start_operator(workers: int, resync: float, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("modelpilot-operator")
    env = dict(os.environ, KUBECONFIG=str(LOCAL / "operator.kubeconfig"), MODELPILOT_CONFIG=str(CONFIG_PATH))
    proc = subprocess.Popen([str(exe), f"--metrics-port={METRICS_PORT}", f"--health-port={HEALTH_PORT}", "--no-leader-elect", f"--workers={workers}",
                             f"--resync-seconds={resync}"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/healthz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"operator did not become healthy; see {log}")


def metric(name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name) and not line.startswith("#"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager")


def control_plane_cpu() -> dict[str, float]:
    """CPU seconds so far of each control-plane process on this machine (local-up runs them here)."""
    out = dict.fromkeys(CONTROL_PLANE, 0.0)
    for proc in Path("/proc").iterdir():
        try:
            name = Path((proc / "cmdline").read_bytes().split(b"\0")[0].decode()).name
            if name in out:
                out[name] += cpu_seconds(int(proc.name))
        except (OSError, ValueError):  # not a process, or gone meanwhile
            continue
    return out


def cpu_spent(before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before[k], 1) for k, v in control_plane_cpu().items()}


def requests_sent() -> float:
    """The requests this process's KubeClient sent (the floor's), from the operator's own counter."""
    from modelpilot import metrics as m
    return sum(s.value for metric in m.API_REQUESTS.collect() for s in metric.samples if s.name.endswith("_total"))


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """VmHWM: the peak resident set; VmRSS: the resident set now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def audit_events(since: datetime, user: str = "modelpilot-operator") -> list[dict]:
    """The audited write requests (create, update, patch, delete) of `user` since `since`."""
    out = []
    for line in (LOCAL / "logs/audit.log").read_text().splitlines():
        ev = json.loads(line)
        if (ev.get("user", {}).get("username") == user and ev.get("verb") in ("create", "update", "patch", "delete")
                and datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00")) >= since):
            out.append(ev)
    return out


def audit_writes(since: datetime, ns: str, user: str = "modelpilot-operator") -> int:
    return sum(1 for ev in audit_events(since, user) if f"/namespaces/{ns}/" in ev.get("requestURI", ""))


def audit_write_uris(since: datetime, ns: str) -> list[str]:
    """The URI of every write the operator sent into namespace `ns` since `since` (audit log)."""
    return [ev["requestURI"] for ev in audit_events(since) if f"/namespaces/{ns}/" in ev.get("requestURI", "")]


def bench_arguments(doc: str, n: int, replicas: int) -> argparse.ArgumentParser:
    """The options every operator bench has: how many objects, their replicas, the operator's workers."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=n)
    ap.add_argument("--replicas", type=int, default=replicas)
    ap.add_argument("--workers", type=int, default=8)
    return ap


IDLE_POLL_S = 3.0  # how long the request counter must stand still to call the operator idle


def idle_resync_writes(ns: str) -> int:
    """The operator's writes in `ns` during one periodic resync, once it is idle."""
    # Idle means: the queue is drained and the operator has stopped sending requests.
    requests = -1.0
    while True:
        now_requests = metric("modelpilot_kube_requests_total")
        if now_requests == requests and metric("modelpilot_workqueue_depth") == 0:
            break
        requests = now_requests
        time.sleep(IDLE_POLL_S)
    since = datetime.now(UTC)
    resyncs = metric("modelpilot_resyncs_total")
    while metric("modelpilot_resyncs_total") < resyncs + 1:
        time.sleep(0.5)
    while metric("modelpilot_workqueue_depth") > 0:
        time.sleep(0.5)
    time.sleep(2)
    return audit_writes(since, ns)


def main() -> int:
    ap = bench_arguments(__doc__, n=200, replicas=1)
    ap.add_argument("--resync", type=float, default=15.0)
    args = ap.parse_args()
    kubeconfig = LOCAL / "kubeconfig"
    if not kubeconfig.exists():
        raise SystemExit("no local control plane: run hack/local-up.sh first")
    stop_local_up_operator(LOCAL)
    k = kube(kubeconfig)
    for left in k.list("Namespace"):  # an interrupted run's objects: deleted before anything is timed
        if left["metadata"]["name"].startswith(("bench-floor-", "bench-op-")):
            delete_namespace_and_wait(k, left["metadata"]["name"])
    stamp = str(int(time.time()))

    ns_floor = f"bench-floor-{stamp}"
    namespace(k, ns_floor)
    print(f"floor: {args.n} ModelDeployments by a bare client ...", file=sys.stderr)
    cpu0, req0, cp0 = time.process_time(), requests_sent(), control_plane_cpu()
    floor_s = floor(k, ns_floor, args.n, args.replicas, args.workers)
    floor_cpu, floor_req, floor_cp = time.process_time() - cpu0, requests_sent() - req0, cpu_spent(cp0)
    print(f"floor: {floor_s:.1f}s", file=sys.stderr)
    # The operator must not start while the floor's objects still exist: it would reconcile them.
    delete_namespace_and_wait(k, ns_floor)

    log = LOCAL / "logs/operator-bench.log"
    proc = start_operator(args.workers, args.resync, log)
    try:
        ns = f"bench-op-{stamp}"
        namespace(k, ns)
        print(f"operator: {args.n} ModelDeployments ...", file=sys.stderr)
        cpu0, req0, rec0 = cpu_seconds(proc.pid), metric("modelpilot_kube_requests_total"), metric("modelpilot_reconcile_total")
        cp0 = control_plane_cpu()
        op_s = time_to_ready(k, ns, [md_body(f"m{i}", args.replicas) for i in range(args.n)], args.workers, log=log)
        op_cpu, op_req, op_cp = cpu_seconds(proc.pid) - cpu0, metric("modelpilot_kube_requests_total") - req0, cpu_spent(cp0)
        op_rec = metric("modelpilot_reconcile_total") - rec0
        print(f"operator: {op_s:.1f}s", file=sys.stderr)
        idle = idle_resync_writes(ns)
        rss = rss_mb(proc.pid)
        rss_settled = rss_mb(proc.pid, "VmRSS")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    delete_namespace_and_wait(k, ns)  # the next run's floor must not share the apiserver with this deletion
    print(json.dumps({"n": args.n, "seconds": round(op_s, 2), "floor_seconds": round(floor_s, 2),
                      "ratio": round(op_s / floor_s, 3), "idle_writes": idle, "rss_mb": round(rss, 1),
                      "rss_settled_mb": round(rss_settled, 1),
                      # per object: requests sent (the floor's creates included, the operator's watches not)
                      # and CPU seconds of the client (the floor's process, the operator's)
                      "requests_per_object": [round(floor_req / args.n, 2), round(op_req / args.n, 2)],
                      "cpu_ms_per_object": [round(1000 * floor_cpu / args.n, 2), round(1000 * op_cpu / args.n, 2)],
                      "reconciles_per_object": round(op_rec / args.n, 2),
                      # CPU seconds of each control-plane process during each timed phase
                      "control_plane_cpu_s": {"floor": floor_cp, "operator": op_cp}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
