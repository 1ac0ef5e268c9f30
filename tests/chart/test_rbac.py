"""Least-privilege RBAC: JSON logs of a real run as the Helm chart's ServiceAccount never carry a
credential. (The whole e2e suite runs as that ServiceAccount, with no 403 allowed:
tests/e2e/conftest.py's `chart_identity`; test_chart.py runs a short rollout as it on every run.)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO, Kubectl
from .conftest import Release, forbidden_in_log, sa_kubeconfig

pytestmark = pytest.mark.integration


def test_json_logs_never_hold_credentials(release: Release, kubectl: Kubectl, tmp_path: Path) -> None:
    """Debug-level JSON logs of a real run as the ServiceAccount: every line is JSON, and neither the
    bearer token nor a Secret that an export references appears anywhere."""
    kc = sa_kubeconfig(kubectl, release.namespace, release.service_account, tmp_path / "sa.kubeconfig")
    token = yaml.safe_load(kc.read_text())["users"][0]["user"]["token"]
    secret_value = "s3cr3t-" + base64.b32encode(os.urandom(10)).decode()
    kubectl("-n", release.namespace, "create", "secret", "generic", "bucket-creds",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={secret_value}")
    kubectl("-n", release.namespace, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport", "metadata": {"name": "secretive"},
        "spec": {"source": {"uri": "s3://bucket/model.onnx", "format": "onnx", "secretRef": {"name": "bucket-creds"}},
                 "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}], "targets": [{"format": "onnx"}],
                 "output": {"uri": "s3://bucket/out"}, "nodePool": "cpu"}}))
    port = int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090")) + 60
    log_path = tmp_path / "operator.log"
    exe = Path(sys.executable).with_name("modelpilot-operator")
    with log_path.open("w") as log:
        # All namespaces (the chart's cluster-wide install grants no namespace listing, which
        # --namespace would need).
        proc = subprocess.Popen([str(exe), "--log-format=json", "--verbose",
                                 f"--metrics-port={port}", f"--health-port={port + 1}", "--resync-seconds=2",
                                 "--leader-elect", f"--leader-elect-namespace={release.namespace}",
                                 f"--leader-elect-lease={release.lease}"],
                                env=dict(os.environ, KUBECONFIG=str(kc), MODELPILOT_CONFIG=str(REPO / "hack/testbed/operator-config.yaml")),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            r = kubectl("-n", release.namespace, "get", "job", "secretive-export-g1", check=False)
            if r.returncode == 0:
                break
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
        else:
            raise AssertionError(f"no export Job in 90s:\n{log_path.read_text()[-3000:]}")
        time.sleep(4)  # two resyncs more of debug logging
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "modelpilot_leader 1.0" in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) > 10
    for line in lines:
        json.loads(line)  # every line is one JSON object
    assert token not in text and token[-40:] not in text, "the bearer token leaked into the logs"
    assert secret_value not in text, "a Secret's value leaked into the logs"
    assert forbidden_in_log(kubectl, text, f"system:serviceaccount:{release.namespace}:{release.service_account}") == []
    job = json.loads(kubectl("-n", release.namespace, "get", "job", "secretive-export-g1", "-o", "json").stdout)
    assert secret_value not in json.dumps(job), "the Job references the Secret, never copies it"
