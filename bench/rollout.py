"""Rollout step and rollback latency, on the local control plane with the operator running.

    python bench/rollout.py [--steps 50] [--rollbacks 10]

Step latency: a canary with `--steps` setWeight steps (1, 2, 3, ... %) over the Gateway API
router. Its single canary pod is ready from the first step on, so each step's condition is met the
moment the previous weight is in force (the apiserver persisted the HTTPRoute). A watch on the
HTTPRoute timestamps every change; step latency is the time from one weight being persisted to
the next one being persisted: the operator seeing its own write, deciding, and applying.

Rollback latency: a canary paused at 50 %; `kubectl modelpilot abort` writes status.control; the
time from that write being accepted to the HTTPRoute carrying 100 % stable, `--rollbacks` times.

Prints one JSON line last. Needs hack/local-up.sh; stops an operator that local-up started and
runs its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack" / "testbed"))
from local_operator import stop_local_up_operator  # noqa: E402

LOCAL = REPO / ".local"
CACHE = Path(os.environ.get("MODELPILOT_CACHE", Path.home() / ".cache" / "modelpilot"))
VERSIONS = dict(line.split("=", 1) for line in (REPO / "hack/versions.env").read_text().splitlines() if "=" in line and not line.startswith("#"))
KUBECTL = str(CACHE / "bin" / f"kubernetes-{VERSIONS['KUBERNETES_VERSION']}" / "kubectl")
GATEWAY = {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}}


def kubectl(*args: str, input: str | None = None) -> str:
    r = subprocess.run([KUBECTL, "--kubeconfig", str(LOCAL / "kubeconfig"), *args], input=input, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)}: {r.stderr}")
    return r.stdout


def md(name: str, steps: list, version: int, traffic: dict = GATEWAY) -> dict:
    return {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"uri": f"pvc://models/{name}/v{version}.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
                     "replicas": 1, "placement": {"nodePool": "cpu"}, "traffic": traffic,
                     "rollout": {"strategy": "canary", "canary": {"steps": steps}}}}


def httproute_weight(route: dict, canary: str) -> int:
    """The weight of backend `canary` in an HTTPRoute's last rule."""
    return {b["name"]: b.get("weight", 1) for b in route["spec"]["rules"][-1]["backendRefs"]}.get(canary, 0)


class Watch:
    """(monotonic time, canary weight) for every change of a route (`kind`: an HTTPRoute unless told),
    from `kubectl get -w`; `weight(route, canary)` reads the canary's weight."""

    def __init__(self, ns: str, name: str, canary: str, kind: str = "httproute", weight=httproute_weight):
        self.changes: list[tuple[float, int]] = []
        self.canary = canary
        self.weight = weight
        self.proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(LOCAL / "kubeconfig"), "-n", ns, "get", kind, name,
                                      "-w", "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        dec, buf = json.JSONDecoder(), ""
        for line in self.proc.stdout:  # type: ignore[union-attr]
            buf += line
            while buf.strip():
                try:
                    obj, end = dec.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                try:
                    w = self.weight(obj, self.canary)
                except (KeyError, IndexError, TypeError):  # a route without its rules yet
                    continue
                if not self.changes or self.changes[-1][1] != w:
                    self.changes.append((time.monotonic(), w))

    def wait_weight(self, w: int, after: float = 0.0, timeout: float = 120) -> float:
        """When the route first carried canary weight `w` after time `after`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, x in list(self.changes):
                if x == w and t >= after:
                    return t
            time.sleep(0.005)
        raise SystemExit(f"weight {w} never applied; seen {[x for _, x in self.changes]}")

    def stop(self) -> None:
        self.proc.terminate()


def wait_phase(ns: str, name: str, pred, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = json.loads(kubectl("-n", ns, "get", "modeldeployment", name, "-o", "json")).get("status") or {}
        if pred(st):
            return st
        time.sleep(0.1)
    raise SystemExit(f"{name}: timed out; status {st}")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def step_gaps(changes: list[tuple[float, int]], per: int) -> list[float]:
    """Seconds from canary weight w-1 to w, for w = 2..per (weight 1 waits for the canary pod)."""
    times = {w: t for t, w in changes if w > 0}
    return [times[w] - times[w - 1] for w in range(2, per + 1) if w in times and w - 1 in times]


def timed_abort(watch: Watch, *kubectl_args: str) -> tuple[float, float]:
    """Run the abort (`kubectl *kubectl_args`); seconds from the abort accepted, and from kubectl's start,
    to the route carrying 0 % canary. t0..accepted is kubectl's own start-up and round trip: the abort
    is in the apiserver somewhere in that window, so the first figure is the fairest bound."""
    t0 = time.monotonic()
    kubectl(*kubectl_args)
    t_accepted = time.monotonic()
    t1 = watch.wait_weight(0, after=t0)
    return max(0.0, t1 - t_accepted), t1 - t0


def md_step_latencies(ns: str, name: str, per: int, rollouts: int, traffic: dict = GATEWAY, kind: str = "httproute",
                      weight=httproute_weight) -> list[float]:
    """Step latencies of `rollouts` canaries of `per` setWeight steps (1..per %) of ModelDeployment `name`."""
    steps = [{"setWeight": i} for i in range(1, per + 1)]
    kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(md(name, steps, 1, traffic)))
    wait_phase(ns, name, lambda s: s.get("phase") == "Ready")
    out: list[float] = []
    for version in range(2, rollouts + 2):
        watch = Watch(ns, name, f"{name}-r{version}", kind, weight)
        time.sleep(0.5)
        kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(md(name, steps, version, traffic)))
        wait_phase(ns, name, lambda s, v=version: s.get("stableRevision") == v, timeout=600)
        time.sleep(1)
        watch.stop()
        out += step_gaps(watch.changes, per)
    return out


def md_abort_latencies(ns: str, name: str, n: int, traffic: dict = GATEWAY, kind: str = "httproute",
                       weight=httproute_weight) -> tuple[list[float], list[float]]:
    """`n` aborts of a canary of ModelDeployment `name` paused at 50 %: timed_abort's two figures each."""
    steps = [{"setWeight": 50}, {"pause": {}}]
    kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(md(name, steps, 1, traffic)))
    wait_phase(ns, name, lambda s: s.get("phase") == "Ready")
    accepted: list[float] = []
    requested: list[float] = []
    for version in range(2, n + 2):
        watch = Watch(ns, name, f"{name}-r{version}", kind, weight)
        kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(md(name, steps, version, traffic)))
        wait_phase(ns, name, lambda s, v=version: s.get("canaryRevision") == v and s.get("phase") == "Paused")
        watch.wait_weight(50)
        control = {"status": {"control": {"action": "abort", "requestedAt": f"bench-{time.time()}", "requestedBy": "bench"}}}
        a, r = timed_abort(watch, "-n", ns, "patch", "modeldeployment", name, "--subresource=status", "--type=merge",
                           "-p", json.dumps(control))
        accepted.append(a)
        requested.append(r)
        watch.stop()
        wait_phase(ns, name, lambda s: s.get("phase") == "Degraded")
    return accepted, requested


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="total steps measured, over rollouts of up to 30 steps (the CRD allows 32)")
    ap.add_argument("--rollbacks", type=int, default=10)
    args = ap.parse_args()
    if not (LOCAL / "kubeconfig").exists():
        raise SystemExit("no local control plane: run hack/local-up.sh first")
    stop_local_up_operator(LOCAL)
    exe = Path(sys.executable).with_name("modelpilot-operator")
    env = dict(os.environ, KUBECONFIG=str(LOCAL / "operator.kubeconfig"), MODELPILOT_CONFIG=str(REPO / "hack/testbed/operator-config.yaml"))
    op = subprocess.Popen([str(exe), "--metrics-port=18290", "--health-port=18291", "--no-leader-elect"], env=env,
                          stdout=open(LOCAL / "logs/operator-bench-rollout.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(300):
        try:
            urllib.request.urlopen("http://127.0.0.1:18291/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    ns = f"bench-rollout-{int(time.time())}"
    kubectl("create", "namespace", ns)
    try:
        # --- step latency: rollouts of 30 setWeight steps (1..30 %), 29 measured steps each ---
        step_lat = md_step_latencies(ns, "steps", 30, -(-args.steps // 29))
        # --- rollback latency ---
        rb, rb_from_request = md_abort_latencies(ns, "rollback", args.rollbacks)
    finally:
        op.terminate()
        op.wait(timeout=30)
        subprocess.run([KUBECTL, "--kubeconfig", str(LOCAL / "kubeconfig"), "delete", "namespace", ns, "--wait=false"], capture_output=True)
    result = {"steps": len(step_lat), "step_median_s": round(statistics.median(step_lat), 3), "step_p99_s": round(pct(step_lat, 0.99), 3),
              "rollbacks": len(rb), "rollback_median_s": round(statistics.median(rb), 3), "rollback_max_s": round(max(rb), 3),
              "rollback_from_kubectl_start_median_s": round(statistics.median(rb_from_request), 3)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
