"""The chart's ValidatingAdmissionPolicies on the real kube-apiserver (issue 11, scenarios 3 and 11).

operator-scope (on by default): the operator's ServiceAccount, whose ClusterRole may patch and
delete Deployments, Services and ConfigMaps everywhere, is refused every change to an object that
does not carry app.kubernetes.io/managed-by=modelpilot, kube-system's included. That the operator
still works under it is proven by test_chart.py's rollout and test_rbac.py's e2e run as that
ServiceAccount, with this policy installed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from ..conftest import Kubectl
from .conftest import Release, sa_kubeconfig, template

pytestmark = pytest.mark.integration
MANAGED = {"app.kubernetes.io/managed-by": "modelpilot"}


def _refused(run: Callable[[], object], what: str, timeout: float = 15) -> str:
    """The apiserver's refusal of `run` (retried until the policy is in force: its informer syncs
    within a second or two of its creation)."""
    deadline = time.monotonic() + timeout
    while True:
        r = run()
        if r.returncode != 0:
            return r.stderr
        assert time.monotonic() < deadline, f"{what} was admitted: {r.stdout}"
        time.sleep(0.5)


def _as(kubectl: Kubectl, kubeconfig: Path) -> Kubectl:
    return lambda *args, **kw: kubectl("--kubeconfig", str(kubeconfig), *args, **kw)


def test_the_operator_may_change_only_objects_it_manages(release: Release, kubectl: Kubectl, tmp_path: Path) -> None:
    ns = release.namespace
    op = _as(kubectl, sa_kubeconfig(kubectl, ns, release.service_account, tmp_path / "sa.kubeconfig"))
    kubectl("-n", ns, "create", "configmap", "foreign", "--from-literal=a=1")
    kubectl("-n", ns, "create", "deployment", "foreign", "--image=registry.k8s.io/pause:3.10")
    patch = json.dumps({"metadata": {"annotations": {"pwned": "yes"}}})

    # RBAC alone would allow each of these (the chart's ClusterRole); the policy refuses them.
    for resource in ("deployment/foreign", "configmap/foreign"):
        assert op("-n", ns, "auth", "can-i", "patch", resource.split("/")[0] + "s", check=False).stdout.strip() == "yes"
        msg = _refused(lambda: op("-n", ns, "patch", resource, "--type=merge", "-p", patch, check=False), f"patch {resource}")
        assert "managed-by=modelpilot" in msg and f"{ns}/foreign" in msg, msg
    assert "managed-by=modelpilot" in _refused(lambda: op("-n", ns, "delete", "configmap", "foreign", check=False), "delete")
    assert "managed-by=modelpilot" in _refused(
        lambda: op("-n", "kube-system", "patch", "configmap", "kube-root-ca.crt", "--type=merge", "-p", patch, check=False),
        "patch kube-system/kube-root-ca.crt")
    assert "pwned" not in kubectl("-n", "kube-system", "get", "configmap", "kube-root-ca.crt", "-o", "yaml").stdout
    assert "pwned" not in kubectl("-n", ns, "get", "deployment", "foreign", "-o", "yaml").stdout

    # It may not create an unlabelled object, nor take one over by adding the label, nor drop the label
    # of its own; what it manages it creates, changes and deletes as before.
    unlabelled = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": ns}})
    assert "managed-by" in _refused(lambda: op("create", "-f", "-", input=unlabelled, check=False), "create unlabelled")
    label = json.dumps({"metadata": {"labels": MANAGED}})
    assert "managed-by" in _refused(lambda: op("-n", ns, "patch", "configmap", "foreign", "--type=merge", "-p", label,
                                               check=False), "adopt by label")
    mine = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine", "namespace": ns, "labels": MANAGED}})
    op("create", "-f", "-", input=mine)
    op("-n", ns, "patch", "configmap", "mine", "--type=merge", "-p", patch)
    unlabel = json.dumps({"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}})
    assert "managed-by" in _refused(lambda: op("-n", ns, "patch", "configmap", "mine", "--type=merge", "-p", unlabel,
                                               check=False), "drop the label")
    op("-n", ns, "delete", "configmap", "mine")
    # Other users are not concerned.
    kubectl("-n", ns, "patch", "configmap", "foreign", "--type=merge", "-p", patch)
