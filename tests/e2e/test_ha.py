"""High availability: two operator replicas with leader election on a coordination.k8s.io Lease.

Only the lease holder reconciles; the standby keeps a warm cache. The leader is SIGKILLed in the
middle of a canary (so it cannot release the Lease): the standby must take over within 30 s, the
traffic weights must only ever move forward through the steps, and the export Job must not be
created twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from ..conftest import LOCAL, REPO, Kubectl
from .conftest import Operator, wait_for
from .rollout_helpers import RouteWatch, apply, model_deployment, new_version, wait_status

pytestmark = pytest.mark.e2e
TAKEOVER_LIMIT_S = 30.0


class Candidate(Operator):
    """An operator process with --leader-elect."""

    def __init__(self, identity: str, kubeconfig: str, port: int, namespace: str, lease: tuple[str, str]):
        super().__init__(kubeconfig, metrics_port=port, health_port=port + 1, resync=4.0)
        self.identity, self.namespace, self.lease = identity, namespace, lease
        self.log_path = LOCAL / "logs" / f"operator-ha-{identity}.log"

    def start(self) -> None:
        exe = Path(sys.executable).with_name("modelpilot-operator")
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, MODELPILOT_CONFIG=str(REPO / "hack/testbed/operator-config.yaml"))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [str(exe), f"--metrics-port={self.metrics_port}", f"--health-port={self.health_port}", f"--resync-seconds={self.resync}",
             *self.scope(), "--leader-elect", f"--leader-elect-namespace={self.lease[0]}",
             f"--leader-elect-lease={self.lease[1]}", f"--leader-elect-identity={self.identity}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self._healthy(), 60, 0.3, f"operator {self.identity} healthy")

    def scope(self) -> list[str]:
        """Only the test's namespace, unless run as the Helm chart's ServiceAccount: its cluster-wide
        install grants no namespace listing, which Kopf needs with --namespace."""
        return [] if os.environ.get("MODELPILOT_E2E_LEASE") else [f"--namespace={self.namespace}"]

    def _healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator {self.identity} exited; see {self.log_path}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1)
            return True
        except OSError:
            return False

    def is_leader(self) -> bool:
        try:
            return self.metric("modelpilot_leader") == 1
        except OSError:
            return False


def lease_of(namespace: str) -> tuple[str, str]:
    """The Lease to compete for: the Helm chart's when run as its ServiceAccount (tests/chart sets
    MODELPILOT_E2E_LEASE=ns/name: the chart's Role allows only that one), else one in the test's namespace."""
    ref = os.environ.get("MODELPILOT_E2E_LEASE")
    if ref:
        ns, name = ref.split("/", 1)
        return ns, name
    return namespace, "modelpilot-ha-e2e"


def holder(kubectl: Kubectl, lease: tuple[str, str]) -> str:
    r = kubectl("-n", lease[0], "get", "lease", lease[1], "-o", "json", check=False)
    return json.loads(r.stdout)["spec"].get("holderIdentity") or "" if r.returncode == 0 else ""


@pytest.fixture
def no_other_operator(operator: Operator) -> Iterator[None]:
    """The session's operator runs without leader election and would act too: pause it."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


def test_leader_killed_mid_rollout_standby_takes_over(kubectl: Kubectl, kubeconfig: str, namespace: str,
                                                      no_other_operator: None) -> None:
    kc = os.environ.get("MODELPILOT_E2E_OPERATOR_KUBECONFIG") or str(LOCAL / "operator.kubeconfig")
    port = int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090")) + 10
    lease = lease_of(namespace)
    a = Candidate("ha-a", kc, port, namespace, lease)
    b = Candidate("ha-b", kc, port + 2, namespace, lease)
    try:
        a.start()
        wait_for(a.is_leader, 40, 0.3, "ha-a to acquire the lease")
        b.start()
        assert holder(kubectl, lease) == "ha-a"

        # Work for the leader: an export (one Job per generation) and a canary ModelDeployment.
        kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport", "metadata": {"name": "ha"},
            "spec": {"source": {"uri": "pvc://models/ha/model.onnx", "format": "onnx"},
                     "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}], "targets": [{"format": "onnx"}],
                     "output": {"uri": "pvc://models/out/ha"}, "nodePool": "cpu"}}))
        steps = [{"setWeight": 20}, {"pause": {"duration": "5s"}}, {"setWeight": 60}, {"pause": {"duration": "5s"}}]
        body = model_deployment("ha", {"strategy": "canary", "canary": {"steps": steps}})
        apply(kubectl, namespace, body)
        wait_status(kubectl, namespace, "ha", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
        job = wait_for(lambda: (r := kubectl("-n", namespace, "get", "job", "ha-export-g1", "-o", "json", check=False)).returncode == 0
                       and json.loads(r.stdout), 60, what="the export Job")

        # Only the leader acts.
        assert a.metric("modelpilot_reconcile_total") > 0
        assert b.metric("modelpilot_reconcile_total") == 0 and not b.is_leader(), "the standby reconciled"
        assert b.metric("modelpilot_kube_requests_total") == 0, "the standby sent API requests (writes or reads)"

        watch = RouteWatch(kubeconfig, namespace, "ha", "ha-r2")
        new_version(kubectl, namespace, body, 2)
        wait_status(kubectl, namespace, "ha", lambda s: (s.get("weights") or {}).get("canary") == 20, what="canary at 20%")

        killed = time.monotonic()
        a.stop(signal.SIGKILL)  # no graceful release: the standby must wait the lease out
        wait_for(b.is_leader, TAKEOVER_LIMIT_S + 5, 0.1, "ha-b to take the lease")
        takeover = time.monotonic() - killed
        wait_for(lambda: b.metric("modelpilot_reconcile_total") > 0, 15, 0.1, "ha-b to reconcile")
        acting = time.monotonic() - killed
        print(f"\nfailover: lease taken {takeover:.1f}s after SIGKILL, first reconcile at {acting:.1f}s")
        assert takeover < TAKEOVER_LIMIT_S, f"takeover took {takeover:.1f}s"
        assert holder(kubectl, lease) == "ha-b"

        st = wait_status(kubectl, namespace, "ha", lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready",
                         timeout=90, what="promotion by the new leader")
        weights = watch.stop()
        assert weights == sorted(weights) or weights[:-1] == sorted(weights[:-1]) and weights[-1] == 0, f"a weight jumped back: {weights}"
        assert [w for w in weights if w not in (0, 100)] == [20, 60], f"weights applied: {weights}"
        assert [r["revision"] for r in st["revisions"]] == [1, 2]

        jobs = json.loads(kubectl("-n", namespace, "get", "jobs", "-l", "modelpilot.io/model-export=ha", "-o", "json").stdout)["items"]
        assert [j["metadata"]["uid"] for j in jobs] == [job["metadata"]["uid"]], "the export Job was duplicated or recreated"

        # A graceful stop hands the Lease over at once (released, not waited out).
        a.start()
        stopped = time.monotonic()
        b.stop(signal.SIGTERM)
        wait_for(a.is_leader, 15, 0.1, "ha-a to take the released lease")
        print(f"graceful handover: {time.monotonic() - stopped:.1f}s")
    finally:
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)
