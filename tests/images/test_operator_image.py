"""The operator image runs the chart's operator container against the local control plane.

The container comes from `helm template` (its args, env and securityContext: uid 65532, read-only
root filesystem, no capabilities, only the chart's /tmp emptyDir writable), on the host network with
a kubeconfig (certificates inline, as a Secret would hold them) and the chart's ConfigMap mounted
read-only. It must take the Lease and
reconcile a ModelDeployment to Ready.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import yaml

from tests.chart.conftest import template
from tests.conftest import LOCAL

from podman_run import engine, run_args, writable

MD = """
apiVersion: modelpilot.io/v1alpha1
kind: ModelDeployment
metadata: {name: imagetest, namespace: NS}
spec:
  model: {uri: "https://models.example.com/mlp/model.onnx", format: onnx}
  runtime: {kind: triton}
  replicas: 1
  placement: {nodePool: cpu}
"""


def chart_operator(namespace: str, port: int) -> tuple[dict, dict, str]:
    objs = template(f"watchNamespaces={{{namespace}}}", f"metrics.port={port}", f"health.port={port + 1}",
                    release="imagetest", namespace=namespace)
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    return dep["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]["containers"][0], cm["data"]["config.yaml"]


def test_operator_image_reconciles_a_model_deployment(images, kubectl, namespace: str, tmp_path: Path) -> None:
    port = int(os.environ.get("MODELPILOT_E2E_PORT_BASE", "18090")) + 80
    pod, container, config = chart_operator(namespace, port)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and "volumeMounts" in container
    # The ConfigMap and a kubeconfig Secret as the kubelet would mount them: readable by the pod's user.
    for d in ("config", "kube"):
        (tmp_path / d).mkdir(mode=0o755)
        (tmp_path / d).chmod(0o755)
    (tmp_path / "config" / "config.yaml").write_text(config)
    flat = kubectl("--kubeconfig", str(LOCAL / "operator.kubeconfig"), "config", "view", "--raw", "--flatten", "--minify").stdout
    (tmp_path / "kube" / "kubeconfig").write_text(flat)
    for f in (tmp_path / "config" / "config.yaml", tmp_path / "kube" / "kubeconfig"):
        f.chmod(0o644)
    container = {**container, "args": [*container["args"], "--kubeconfig=/etc/modelpilot-kube/kubeconfig"],
                 "volumeMounts": [*container["volumeMounts"],
                                  {"name": "kube", "mountPath": "/etc/modelpilot-kube", "readOnly": True}]}
    volumes = {"config": tmp_path / "config", "tmp": writable(tmp_path / "tmp", uid=65532), "kube": tmp_path / "kube"}
    name = f"mp-operator-{uuid.uuid4().hex[:8]}"
    args = run_args(pod, container, volumes, termination_log=tmp_path / "termination-log", image=images["operator"],
                    detach=True, name=name, field_refs={"metadata.name": name, "metadata.namespace": namespace})
    engine(*args)
    try:
        kubectl("apply", "-f", "-", input=MD.replace("NS", namespace))
        deadline, phase = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            md = json.loads(kubectl("-n", namespace, "get", "mdep", "imagetest", "-o", "json").stdout)
            phase = (md.get("status") or {}).get("phase")
            if phase == "Ready":
                break
            time.sleep(1)
        logs = engine("logs", name, check=False)
        assert phase == "Ready", f"phase {phase}; operator log:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
        lease = yaml.safe_load(kubectl("-n", namespace, "get", "lease", "imagetest-modelpilot-leader", "-o", "yaml").stdout)
        assert lease["spec"]["holderIdentity"].startswith(name), lease["spec"]
        state = json.loads(engine("inspect", name).stdout)[0]
        assert state["State"]["Running"] and state["Config"]["User"] == "65532:65532"
        assert "Traceback" not in logs.stdout + logs.stderr
    finally:
        engine("rm", "-f", "-t", "5", name, check=False)
