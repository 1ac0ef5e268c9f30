"""A real pod on the real node: non-root, read-only root filesystem, a pod IP from the CNI bridge,
a readiness probe the kubelet really calls, `kubectl logs` through the kubelet, and a Service whose
ClusterIP kube-proxy really forwards."""

from __future__ import annotations

import ipaddress

from ..conftest import Kubectl
from .conftest import TOLERATION, get, http_get, image_ref, ready, wait_for

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "nodeSelector": {"modelpilot.io/pool": "real-cpu"}, "tolerations": [TOLERATION],
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "web", "image": image_ref("operator"), "imagePullPolicy": "Never",
            "command": ["python3", "-m", "http.server", "8000", "--directory", "/tmp"],
            "ports": [{"containerPort": 8000}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1},
            "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
    },
}


def test_a_real_pod_runs_and_is_reachable(real_node: str, kubectl: Kubectl, namespace: str) -> None:
    import json

    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(POD))
    kubectl("-n", namespace, "expose", "pod", "web", "--port=80", "--target-port=8000")
    pod = wait_for("the pod Ready", lambda: next((p for p in [get(kubectl, "-n", namespace, "get", "pod", "web")] if ready(p)), None))
    assert pod["spec"]["nodeName"] == real_node
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("10.212.0.0/24")
    status, _ = http_get(f"http://{pod['status']['podIP']}:8000/")
    assert status == 200
    svc = get(kubectl, "-n", namespace, "get", "service", "web")
    wait_for("the ClusterIP to answer", lambda: http_get(f"http://{svc['spec']['clusterIP']}/")[0] == 200)
    logs = kubectl("-n", namespace, "logs", "web").stderr + kubectl("-n", namespace, "logs", "web").stdout
    assert "GET / HTTP" in logs, logs
    # The process really runs as the pod's user, in a read-only root filesystem.
    out = kubectl("-n", namespace, "exec", "web", "--", "python3", "-c",
                  "import os; print(os.getuid()); open('/x', 'w')", check=False)
    assert out.stdout.strip().splitlines()[0] == "1000" and "Read-only file system" in out.stderr, out
