"""`kubectl modelpilot` manual actions against the real apiserver, with no operator consuming them:
a second action never silently replaces one the operator has not seen (an abort above all)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ..conftest import KUBECTL, REPO

pytestmark = pytest.mark.integration


def plugin(kubeconfig: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECTL=KUBECTL, KUBECONFIG=kubeconfig)
    return subprocess.run([sys.executable, "-m", "modelpilot.cli", *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_pending_abort_is_never_replaced(kubectl, kubeconfig: str, namespace: str) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl("wait", "--for", "condition=established", "--timeout=60s", "-f", str(REPO / "crds"))
    doc = yaml.safe_load((REPO / "docs/samples/modeldeployment-canary.yaml").read_text())
    doc["metadata"]["name"] = "pending"
    kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(doc))

    first = plugin(kubeconfig, "abort", "pending", "-n", namespace, "--wait=2")
    assert first.returncode == 0, first.stderr
    second = plugin(kubeconfig, "promote", "pending", "-n", namespace, "--wait=2")
    assert second.returncode != 0, "promote replaced a pending abort"
    assert "abort requested by" in second.stderr and "not consumed" in second.stderr, second.stderr
    body = json.loads(kubectl("-n", namespace, "get", "modeldeployment", "pending", "-o", "json").stdout)
    assert body["status"]["control"]["action"] == "abort"

    # The operator consumed it (status.rollout.lastAction records it): the next action goes through.
    consumed = {"status": {"control": None, "rollout": {"lastAction": body["status"]["control"]["requestedAt"]}}}
    kubectl("-n", namespace, "patch", "modeldeployment", "pending", "--subresource=status", "--type=merge", "-p", json.dumps(consumed))
    third = plugin(kubeconfig, "promote", "pending", "-n", namespace, "--wait=2")
    assert third.returncode == 0, third.stderr
