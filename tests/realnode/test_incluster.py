"""The operator in-cluster: the chart's two replicas run as real pods on the real node under the
chart's ServiceAccount, one holds the Lease and reconciles; deleting the leader pod hands over."""

from __future__ import annotations

import json
import time

from ..conftest import Kubectl
from .conftest import InCluster, get, ready, wait_for

MD = {
    "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "kwok-served"},
    "spec": {"model": {"uri": "https://models.example.com/m.onnx", "format": "onnx"}, "runtime": {"kind": "triton"},
             "replicas": 1, "placement": {"nodePool": "cpu"}},
}


def phase(kubectl: Kubectl, ns: str, name: str) -> tuple[int, str]:
    md = get(kubectl, "-n", ns, "get", "mdep", name)
    st = md.get("status") or {}
    return st.get("observedGeneration", 0), st.get("phase", "")


def test_two_replicas_on_the_real_node_one_leads(incluster: InCluster, kubectl: Kubectl, real_node: str) -> None:
    pods = incluster.pods(kubectl)
    assert len(pods) == 2 and all(ready(p) for p in pods), [p["status"].get("phase") for p in pods]
    assert {p["spec"]["nodeName"] for p in pods} == {real_node}
    assert {p["spec"]["serviceAccountName"] for p in pods} == {f"{incluster.release}-modelpilot"}
    holder = incluster.holder(kubectl)
    assert holder.rsplit("_", 1)[0] in {p["metadata"]["name"] for p in pods}, holder
    ns = incluster.namespace
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(MD))
    wait_for("the ModelDeployment Ready", lambda: phase(kubectl, ns, "kwok-served")[1] == "Ready", timeout=120)


def test_leader_pod_deleted_the_standby_takes_over(incluster: InCluster, kubectl: Kubectl, record_property) -> None:
    ns = incluster.namespace
    kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(MD))
    wait_for("the ModelDeployment Ready", lambda: phase(kubectl, ns, "kwok-served")[1] == "Ready", timeout=120)
    leader_pod = incluster.holder(kubectl).rsplit("_", 1)[0]
    pods = [p["metadata"]["name"] for p in incluster.pods(kubectl)]
    assert leader_pod in pods, (leader_pod, pods)
    standby = next(p for p in pods if p != leader_pod)
    assert standby
    t0 = time.monotonic()
    kubectl("-n", incluster.system_ns, "delete", "pod", leader_pod, "--wait=false")
    try:
        # The standby, or the Deployment's replacement pod if it starts first: anyone but the old leader.
        wait_for("another pod to hold the lease", lambda: (h := incluster.holder(kubectl)) and not h.startswith(leader_pod),
                 timeout=60, interval=0.2)
    except AssertionError as e:
        logs = kubectl("-n", incluster.system_ns, "logs", standby, "--tail=30", check=False)
        lease = get(kubectl, "-n", incluster.system_ns, "get", "lease", incluster.lease)
        raise AssertionError(f"{e}\nlease: {lease['spec']}\npods: {[p['metadata']['name'] for p in incluster.pods(kubectl)]}"
                             f"\nstandby log:\n{logs.stdout}{logs.stderr}") from None
    took_lease = time.monotonic() - t0
    # The new leader reconciles: a spec change is observed and served.
    kubectl("-n", ns, "patch", "mdep", "kwok-served", "--type=merge", "-p", '{"spec":{"replicas":2}}')
    gen = get(kubectl, "-n", ns, "get", "mdep", "kwok-served")["metadata"]["generation"]
    wait_for("the new leader to reconcile", lambda: phase(kubectl, ns, "kwok-served") == (gen, "Ready"), timeout=120, interval=0.2)
    reconciled = time.monotonic() - t0
    record_property("failover_lease_s", round(took_lease, 2))
    record_property("failover_reconciled_s", round(reconciled, 2))
    print(f"failover (graceful delete of the leader pod): lease taken after {took_lease:.1f}s, "
          f"change reconciled after {reconciled:.1f}s")
    assert took_lease < 30
