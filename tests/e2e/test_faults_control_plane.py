"""Faults of the control plane itself and of the operator's process, with the operator running, on
the local control plane: etcd SIGKILLed and restarted mid-rollout; the kube-apiserver SIGKILLed in
the middle of the operator's start-up LISTs, then restarted; the operator OOM-killed by the kernel
(a memory cgroup of its own) in the middle of an export, then restarted. After each: the rollout
is promoted with the weights only moving forward and no revision lost, one Job per export
generation, the export's artifacts written once and recorded, and no traceback in the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from ..conftest import LOCAL, REPO, Kubectl
from .conftest import Operator, audited_writes, operator_kubeconfig, operator_writes_by_agent, utcnow, wait_for
from .rollout_helpers import RouteWatch, new_version, wait_status
from .test_faults import PORT_BASE, Toxiproxy, apiserver_upstream, assert_operator_survived, canary, finish, kubeconfig_via
from .test_faults import toxiproxy  # noqa: F401  (fixture)
from .test_ha import no_other_operator  # noqa: F401  (fixture)
from .test_modelexport import complete_pod, export_body, provide_pvc, run_job_like_a_kubelet, tiny_onnx

pytestmark = pytest.mark.e2e
PORTS = PORT_BASE + 40  # test_faults uses PORT_BASE .. PORT_BASE + 31
ETCD_PORT = int(os.environ.get("MODELPILOT_ETCD_PORT", "12379"))


class ControlPlaneProcess:
    """One process hack/local-up.sh started (its pid in .local/pids/<name>.pid): SIGKILLed, then
    started again with the exact same command line, as its supervisor (systemd, the kubelet) would."""

    def __init__(self, name: str, ready: Callable[[], bool]) -> None:
        self.name, self.ready = name, ready
        self.pid_file = LOCAL / "pids" / f"{name}.pid"
        self.pid = int(self.pid_file.read_text())
        self.argv = [a.decode() for a in Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[:-1]]
        self.exe = os.readlink(f"/proc/{self.pid}/exe")

    def running(self) -> bool:
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
        except OSError:
            return False

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: not self.running(), 10, 0.1, f"{self.name} gone")

    def start(self, timeout: float = 90) -> None:
        log = open(LOCAL / "logs" / f"{self.name}.log", "a")
        proc = subprocess.Popen([self.exe, *self.argv[1:]], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.pid = proc.pid
        self.pid_file.write_text(f"{proc.pid}\n")  # hack/local-down.sh stops this one
        wait_for(self.ready, timeout, 0.5, f"{self.name} ready again")


def etcd_ready() -> bool:
    try:
        return b'"health":"true"' in urllib.request.urlopen(f"http://127.0.0.1:{ETCD_PORT}/health", timeout=2).read()
    except OSError:
        return False


def apiserver_ready(kubectl: Kubectl) -> Callable[[], bool]:
    return lambda: kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


@pytest.fixture
def control_plane(kubectl: Kubectl) -> Iterator[None]:
    """After the test, every component hack/local-up.sh runs is up again (the next tests need them)."""
    yield
    down = [n for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
            if not ControlPlaneProcess(n, lambda: True).running()]
    if down:
        print(f"\nrestarting {down} after the fault")
        subprocess.run([str(REPO / "hack/local-up.sh")], check=True, capture_output=True, timeout=300)


def own_operator(name: str, kubeconfig: str, port: int) -> tuple[Operator, int]:
    """An operator of this test's own (a log of its own, resync 4 s), and the log offset to check from."""
    op = Operator(kubeconfig, metrics_port=port, health_port=port + 1, resync=4.0)
    op.log_path = LOCAL / "logs" / f"operator-fault-{name}.log"
    return op, op.log_path.stat().st_size if op.log_path.exists() else 0


def export_jobs(kubectl: Kubectl, ns: str, export: str, since) -> tuple[list[str], set[str]]:
    """The export's Jobs as they are now, and every Job name the operator wrote since `since` (audit log)."""
    items = json.loads(kubectl("-n", ns, "get", "jobs", "-l", f"modelpilot.io/model-export={export}", "-o", "json").stdout)["items"]
    written = {w["uri"].split("/jobs/")[1].split("?")[0] for w in audited_writes(since)
               if f"/namespaces/{ns}/jobs/" in w["uri"] and w["verb"] in ("create", "patch", "update") and w["code"] < 300}
    return sorted(j["metadata"]["name"] for j in items), {n for n in written if n.startswith(f"{export}-export-")}


def test_etcd_killed_and_restarted_mid_rollout(kubectl: Kubectl, kubeconfig: str, namespace: str, no_other_operator: None,
                                               control_plane: None) -> None:
    op, offset = own_operator("etcd", operator_kubeconfig(), PORTS)
    try:
        op.start()
        body = canary(kubectl, namespace, "etcd-kill")
        watch = RouteWatch(kubeconfig, namespace, "etcd-kill", "etcd-kill-r2")
        new_version(kubectl, namespace, body, 2)
        wait_status(kubectl, namespace, "etcd-kill", lambda s: (s.get("weights") or {}).get("canary") == 10, what="canary at 10%")
        etcd = ControlPlaneProcess("etcd", etcd_ready)
        etcd.kill()
        killed = utcnow()
        time.sleep(6)  # longer than a pause step: the operator's next step meets the outage
        etcd.start()
        finish(kubectl, namespace, "etcd-kill", watch)
        # The apiserver held the operator's write until etcd was back (no error reaches the client
        # within its 30 s request timeout): that write is the one that met the outage.
        held = [w for w in operator_writes_by_agent(killed) if (w["done"] - w["ts"]).total_seconds() > 2 and w["ts"] < killed + timedelta(seconds=6)]
        assert held, "no write of the operator met the outage"
        assert_operator_survived(op, offset)
    finally:
        op.stop()


def test_apiserver_killed_mid_startup_list_operator_recovers(kubectl: Kubectl, kubeconfig: str, namespace: str, toxiproxy: Toxiproxy,
                                                             no_other_operator: None, control_plane: None, tmp_path: Path) -> None:
    first, _ = own_operator("list-first", operator_kubeconfig(), PORTS + 2)
    since = utcnow()
    try:
        # A rollout and an export in flight, left by an operator that then dies.
        first.start()
        body = canary(kubectl, namespace, "list-kill")
        kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(export_body("list-kill", [{"format": "onnx"}])))
        wait_for(lambda: kubectl("-n", namespace, "get", "job", "list-kill-export-g1", check=False).returncode == 0, 60, what="the Job")
        watch = RouteWatch(kubeconfig, namespace, "list-kill", "list-kill-r2")
        new_version(kubectl, namespace, body, 2)
        wait_status(kubectl, namespace, "list-kill", lambda s: (s.get("weights") or {}).get("canary") == 10, what="canary at 10%")
    finally:
        first.stop(signal.SIGKILL)
    # Its successor starts through a proxy that holds each request 1 s, so that its start-up cache
    # fill (a dozen LISTs, one after another) is still running when the apiserver dies.
    toxiproxy.proxy("apiserver-list", PORTS + 4, apiserver_upstream())
    toxiproxy.toxic("apiserver-list", "slow", "latency", "upstream", latency=1000)
    op, offset = own_operator("list-kill", kubeconfig_via(f"127.0.0.1:{PORTS + 4}", tmp_path), PORTS + 6)
    try:
        op.start(wait=False)
        wait_for(lambda: _answers(op), 30, 0.1, "the operator's metrics")
        time.sleep(2.5)
        assert op.metric("modelpilot_cache_synced") == 0, "the cache fill ended before the apiserver died"
        apiserver = ControlPlaneProcess("kube-apiserver", apiserver_ready(kubectl))
        apiserver.kill()
        time.sleep(3)
        toxiproxy.clear("apiserver-list", "slow")
        apiserver.start()
        op.wait_healthy()
        assert op.metric("modelpilot_cache_sync_failures_total") >= 1 and op.metric("modelpilot_cache_synced") == 1
        finish(kubectl, namespace, "list-kill", watch)
        assert export_jobs(kubectl, namespace, "list-kill", since) == (["list-kill-export-g1"], {"list-kill-export-g1"})
        assert_operator_survived(op, offset)
    finally:
        op.stop()
        toxiproxy.call("POST", "/reset")


def _answers(op: Operator) -> bool:
    try:
        op.metrics()
        return True
    except OSError:
        return False


class MemoryCgroup:
    """A memory cgroup of the test's own (v1 or v2): the operator in it is OOM-killed by the kernel,
    as in a pod over its memory limit."""

    LAYOUTS = (("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.oom_control"),
               ("/sys/fs/cgroup", "memory.max", "memory.current", "memory.events"))

    def __init__(self) -> None:
        for root, limit, usage, events in self.LAYOUTS:
            if (Path(root) / "cgroup.procs").exists() and os.access(root, os.W_OK) and _has_memory(Path(root), limit):
                self.path = Path(root) / f"modelpilot-e2e-{uuid.uuid4().hex[:8]}"
                self.path.mkdir()
                self.files = (limit, usage, events)
                return
        raise OSError("no writable memory cgroup")

    def prefix(self) -> tuple[str, ...]:
        return ("sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh")

    def limit(self, nbytes: int) -> None:
        (self.path / self.files[0]).write_text(str(nbytes))

    def usage(self) -> int:
        return int((self.path / self.files[1]).read_text())

    def oom_kills(self) -> int:
        fields = dict(line.split() for line in (self.path / self.files[2]).read_text().splitlines())
        return int(fields.get("oom_kill", 0))

    def remove(self) -> None:
        self.path.rmdir()


def _has_memory(root: Path, limit: str) -> bool:
    if limit == "memory.max":  # v2: the memory controller must be enabled for children
        return "memory" in (root / "cgroup.subtree_control").read_text().split()
    return True


def oom_kill(op: Operator, kubectl: Kubectl, ns: str, cgroup: MemoryCgroup | None) -> str:
    """OOM-kill the operator: a limit just above its usage, then its cache grows until the kernel
    kills it. The cache keeps only a ConfigMap's metadata (cache.slim), so the ballast is a 240 KiB
    annotation (the API's limit is 256 KiB) on ConfigMaps it watches. Without a memory cgroup: SIGKILL."""
    assert op.proc is not None
    if cgroup is None:
        op.proc.send_signal(signal.SIGKILL)
        op.proc.wait(timeout=10)
        return "SIGKILL (no writable memory cgroup here)"
    limit = cgroup.usage() + 8 * 2**20
    cgroup.limit(limit)
    ballast = {"modelpilot.io/e2e-ballast": "x" * (240 * 1024)}
    for i in range(150):
        if op.proc.poll() is not None:
            break
        kubectl("-n", ns, "create", "-f", "-", timeout=30, input=json.dumps({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": f"ballast-{i}", "annotations": ballast,
                "labels": {"app.kubernetes.io/managed-by": "modelpilot", "e2e": "ballast"}}}))
        time.sleep(0.2)
    op.proc.wait(timeout=30)
    assert op.proc.returncode == -signal.SIGKILL and cgroup.oom_kills() >= 1, (op.proc.returncode, cgroup.oom_kills())
    kubectl("-n", ns, "delete", "configmap", "-l", "e2e=ballast", "--wait=false")
    return f"OOM-killed by the kernel at its {limit // 2**20} MiB limit after {i} ConfigMaps of 240 KiB"


def test_operator_oom_killed_mid_export_completes_it_exactly_once(kubectl: Kubectl, namespace: str, no_other_operator: None,
                                                                  tmp_path: Path) -> None:
    pvc_root = tmp_path / "pvc"
    tiny_onnx(pvc_root / "models" / "tiny" / "model.onnx")
    provide_pvc(kubectl, namespace, "models", pvc_root / "models")
    try:
        cgroup: MemoryCgroup | None = MemoryCgroup()
    except OSError:
        cgroup = None
    op, offset = own_operator("oom", operator_kubeconfig(), PORTS + 8)
    since = utcnow()
    targets = [{"name": "optimized", "format": "onnx", "optimization": {"level": "extended"}}]
    try:
        op.start(prefix=cgroup.prefix() if cgroup else ())
        kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(export_body("oom", targets)))
        job = wait_for(lambda: (r := kubectl("-n", namespace, "get", "job", "oom-export-g1", "-o", "json", check=False)).returncode == 0
                       and json.loads(r.stdout), 60, what="the export Job")
        wait_for(lambda: _export_status(kubectl, namespace).get("phase") == "Running", 60, what="phase Running")
        how = oom_kill(op, kubectl, namespace, cgroup)
        print(f"\noperator {how}, export Running")
        # While it is down, the Job's pod runs and finishes (the exporter, for real).
        code, message = run_job_like_a_kubelet(kubectl, namespace, job, pvc_root, tmp_path / "run")
        assert code == 0, message
        complete_pod(kubectl, namespace, "oom-export-g1", code, message)
        op.start()
        st = wait_for(lambda: (s := _export_status(kubectl, namespace)).get("phase") in ("Succeeded", "Failed") and s, 90, what="a final phase")
        assert st["phase"] == "Succeeded" and st["jobName"] == "oom-export-g1", st
        assert [a["name"] for a in st["artifacts"]] == ["optimized"]
        out = pvc_root / "models" / "out" / "oom"
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        # One export's files, once: the manifest, each artifact and its served-model parity record.
        expected = ["manifest.json", *(a["uri"].removeprefix("pvc://models/out/oom/") for a in st["artifacts"]),
                    *(f"parity/{a['name']}.json" for a in st["artifacts"])]
        assert written == sorted(expected), written
        assert all(hashlib.sha256((out / a["uri"].removeprefix("pvc://models/out/oom/")).read_bytes()).hexdigest() == a["sha256"]
                   for a in st["artifacts"])
        assert export_jobs(kubectl, namespace, "oom", since) == (["oom-export-g1"], {"oom-export-g1"})
        events = json.loads(kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=oom,reason=ExportSucceeded",
                                    "-o", "json").stdout)["items"]
        assert sum(e.get("count", 1) for e in events) == 1, "the success was reported more than once"
        assert_operator_survived(op, offset)
    finally:
        op.stop()
        if cgroup:
            cgroup.remove()
        kubectl("delete", "pv", f"{namespace}-models", "--wait=false", check=False)


def _export_status(kubectl: Kubectl, ns: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", "modelexport", "oom", "-o", "json").stdout).get("status") or {}
