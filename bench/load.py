"""The operator under load, on the local control plane (kwok nodes): N ModelDeployments taken to
Ready and then each through a canary (so that N canaries are in flight at once), with E ModelExports
running at the same time, their Jobs completed by the test bed.

    python bench/load.py [--n 1000] [--exports 100] [--replicas 0]

An export's pod cannot run here (kwok plays the kubelet): the first export's Job runs for real, as
tests/e2e/test_modelexport.py does it (hack/testbed/kubelet_run.py), and its real termination
message (exit code 0, the exporter's result) is handed to kwok for every other export's pod.

Reports (one JSON line last): seconds until every object was Ready (exports Succeeded), seconds
until every canary was promoted, p50/p99 reconcile latency (the operator's histogram), the peak
work-queue depth and the operator's resident memory (sampled every second; VmHWM at the end), the
operator's API requests per second, and its writes per object (apiserver audit log: mean and max).
Needs hack/local-up.sh; stops any operator that local-up started.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from reconcile import (
    LOCAL,
    METRICS_PORT,
    REPO,
    audit_write_uris,
    bench_arguments,
    create,
    delete_namespace_and_wait,
    kube,
    metric,
    namespace,
    rss_mb,
    start_operator,
)

sys.path.insert(0, str(REPO))
import kubelet_run  # noqa: E402  (hack/testbed, on the path through reconcile)
from local_operator import stop_local_up_operator  # noqa: E402

from tests.e2e.test_modelexport import export_body, tiny_onnx  # noqa: E402

STEPS = [{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 60}, {"pause": {"duration": "10s"}}]


def md(i: int, version: int, replicas: int) -> dict:
    return {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": f"m{i}"},
            "spec": {"model": {"uri": f"pvc://models/m{i}/v{version}/model.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
                     "replicas": replicas, "placement": {"nodePool": "cpu", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}},
                     "rollout": {"strategy": "canary", "canary": {"steps": STEPS}}}}


def models_claim(k, ns: str, host: Path) -> None:
    k._call("POST", "/api/v1/persistentvolumes", body={
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{ns}-models"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "", "hostPath": {"path": str(host)},
                 "claimRef": {"namespace": ns, "name": "models"}}})
    k._call("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": f"{ns}-models",
                 "resources": {"requests": {"storage": "1Gi"}}}})


def real_export_message(k, ns: str, pvc_root: Path, work: Path) -> str:
    """Run export e0's Job for real; its termination message (the exporter's result)."""
    tiny_onnx(pvc_root / "models" / "tiny" / "model.onnx")
    k._call("POST", f"/apis/modelpilot.io/v1alpha1/namespaces/{ns}/modelexports", body=export_body("e0", [{"format": "onnx"}]))
    kubectl = kubelet_run.kubectl_for(str(LOCAL / "kubeconfig"))
    code, message = kubelet_run.run_job(kubectl, ns, kubelet_run.get_job(kubectl, ns, "e0-export-g1"), pvc_root, work, stream=None)
    if code != 0:
        raise SystemExit(f"the real export failed ({code}): {message}")
    complete(k, ns, "e0-export-g1", message)
    return message


def complete(k, ns: str, job: str | None, message: str) -> set[str]:
    """Hand exit code 0 and `message` to kwok for the running export pods (of `job`, or of every
    export: one LIST); the Jobs whose pod got it."""
    selector = f"batch.kubernetes.io/job-name={job}" if job else "modelpilot.io/model-export"
    pods = k._call("GET", f"/api/v1/namespaces/{ns}/pods", query=[("labelSelector", selector)])["items"]
    done = set()
    for p in pods:
        annotations = p["metadata"].get("annotations") or {}
        if (p.get("status") or {}).get("phase") != "Running" or kubelet_run.ANNOTATION_EXIT_CODE in annotations:
            continue
        k._call("PATCH", f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}", content_type="application/merge-patch+json",
                body={"metadata": {"annotations": {kubelet_run.ANNOTATION_EXIT_CODE: "0", kubelet_run.ANNOTATION_MESSAGE: message}}})
        done.add(p["metadata"]["labels"].get("batch.kubernetes.io/job-name", ""))
    return done


def histogram_quantiles(prefix: str, qs: tuple[float, ...]) -> dict[float, float]:
    """Quantiles (bucket upper bounds) of the operator's reconcile histogram, all kinds together."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    buckets: Counter[float] = Counter()
    for line in text.splitlines():
        if line.startswith(prefix + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            buckets[float(le)] += float(line.rsplit(" ", 1)[1])
    total = buckets[float("inf")]
    return {q: next(le for le in sorted(buckets) if buckets[le] >= q * total) for q in qs}


class Sampler(threading.Thread):
    """Every second: the operator's resident memory and its work-queue depth."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.rss, self.depth, self.running = pid, [], [], True

    def run(self) -> None:
        while self.running:
            self.rss.append(rss_mb(self.pid, "VmRSS"))
            self.depth.append(metric("modelpilot_workqueue_depth"))
            time.sleep(1)


def phases(k, ns: str, plural: str) -> list[dict]:
    return k._call("GET", f"/apis/modelpilot.io/v1alpha1/namespaces/{ns}/{plural}")["items"]


def wait_all(k, ns: str, what: str, done, timeout: float = 3600, tick=None) -> float:
    t = time.monotonic()
    while not done():
        if tick:
            tick()
        if time.monotonic() - t > timeout:
            raise SystemExit(f"{what}: not done after {timeout:.0f}s")
        time.sleep(2)  # each check LISTs every object: the bench must not be the load
    return time.monotonic() - t


def main() -> int:
    ap = bench_arguments(__doc__, n=1000, replicas=0)
    ap.add_argument("--exports", type=int, default=100)
    args = ap.parse_args()
    stop_local_up_operator(LOCAL)
    k = kube(LOCAL / "kubeconfig")
    ns = f"bench-load-{int(time.time())}"
    namespace(k, ns)
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    models_claim(k, ns, tmp / "pvc" / "models")
    proc = start_operator(args.workers, 300.0, LOCAL / "logs/operator-load.log")
    sampler = Sampler(proc.pid)
    sampler.start()
    since = datetime.now(UTC)
    requests0 = metric("modelpilot_kube_requests_total")
    try:
        message = real_export_message(k, ns, tmp / "pvc", tmp / "run")
        t0 = time.monotonic()
        with cf.ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda i: create(k, ns, md(i, 1, args.replicas)), range(args.n)))
            list(pool.map(lambda i: k._call("POST", f"/apis/modelpilot.io/v1alpha1/namespaces/{ns}/modelexports",
                                            body=export_body(f"e{i}", [{"format": "onnx"}])), range(1, args.exports + 1)))

        def complete_running() -> None:
            complete(k, ns, None, message)

        def all_ready() -> bool:
            mds = phases(k, ns, "modeldeployments")
            exports = phases(k, ns, "modelexports")
            return (sum((m.get("status") or {}).get("phase") == "Ready" for m in mds) == args.n
                    and sum((e.get("status") or {}).get("phase") == "Succeeded" for e in exports) == args.exports + 1)

        ready_s = wait_all(k, ns, "all Ready", all_ready, tick=complete_running)
        print(f"all Ready in {ready_s:.1f}s", file=sys.stderr)
        with cf.ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda i: k._call("PATCH", f"/apis/modelpilot.io/v1alpha1/namespaces/{ns}/modeldeployments/m{i}",
                                            content_type="application/merge-patch+json",
                                            body={"spec": {"model": {"uri": f"pvc://models/m{i}/v2/model.onnx"}}}), range(args.n)))
        promoted_s = wait_all(k, ns, "all promoted", lambda: sum(
            (m.get("status") or {}).get("stableRevision") == 2 and (m.get("status") or {}).get("phase") == "Ready"
            for m in phases(k, ns, "modeldeployments")) == args.n)
        print(f"all canaries promoted in {promoted_s:.1f}s", file=sys.stderr)
        total_s = time.monotonic() - t0
        q = histogram_quantiles("modelpilot_reconcile_duration_seconds", (0.5, 0.99))
        requests = metric("modelpilot_kube_requests_total") - requests0
        sampler.running = False
        peak = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        uris = audit_write_uris(since, ns)
        delete_namespace_and_wait(k, ns)  # the next run must not meet (and cache) this one's objects
        k._call("DELETE", f"/api/v1/persistentvolumes/{ns}-models")
    writes, objects = len(uris), args.n + args.exports + 1
    # Writes to the objects themselves (their status): the most any one object got.
    per_object = Counter(u.split("?")[0].removesuffix("/status") for u in uris if "/modeldeployments/" in u or "/modelexports/" in u)
    print(json.dumps({"n": args.n, "exports": args.exports + 1, "ready_seconds": round(ready_s, 1), "promoted_seconds": round(promoted_s, 1),
                      "reconcile_p50_s": q[0.5], "reconcile_p99_s": q[0.99], "queue_depth_max": max(sampler.depth, default=0),
                      "rss_peak_mb": round(peak, 1), "rss_median_mb": round(sorted(sampler.rss)[len(sampler.rss) // 2], 1),
                      "api_requests_per_s": round(requests / total_s, 1), "writes": writes,
                      "writes_per_object": round(writes / objects, 1),
                      "status_writes_per_object_max": max(per_object.values(), default=0)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
