"""From a ModelExport to a served model, with served-model parity before traffic, end to end: the
real control plane and operator; real exports (the exporter runs here, as a kubelet would run its
Job); the export's artifact served through spec.model.exportRef, and a new artifact rolled out with
no edit to the ModelDeployment; and the parity check Job the operator renders, its command run here
too, against real TorchServe servers on loopback (kwok runs no containers: only the Job's --url
moves to the server). The revision whose server answers differently from the export's record is
aborted before any traffic, with the input and the difference in its condition; the one that
answers like the export takes its canary weight and is promoted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import Kubectl
from ..runtimes.conftest import deployment
from ..runtimes.test_torchserve import serve  # noqa: F401  (a fixture)
from .conftest import Operator, wait_for
from .rollout_helpers import GATEWAY, apply, route_weights, wait_status
from .test_modelexport import complete_pod, mex_status, provide_pvc, run_job_like_a_kubelet

pytestmark = pytest.mark.e2e


def save_linear(path: Path, noise: float = 0.0) -> None:
    """A TorchScript Linear(4, 3); `noise` perturbs its weights (a wrong artifact)."""
    import torch

    torch.manual_seed(1)
    model = torch.nn.Linear(4, 3).eval()
    with torch.no_grad():
        model.weight += noise
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 4)), str(path))


def run_check(kubectl: Kubectl, ns: str, name: str, url: str, pvc_root: Path, tmp: Path) -> tuple[int, dict]:
    """Play the kubelet for the parity Job: its command as rendered, only --url moved to `url`."""
    job = wait_for(lambda: (r := kubectl("-n", ns, "get", "job", name, "-o", "json", check=False)).returncode == 0
                   and json.loads(r.stdout), 90, what=f"Job {name}")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["modelpilot-parity"] and f"--url=http://{name.rsplit('-', 1)[0]}.{ns}.svc:80" in container["args"]
    container["args"] = [f"--url={url}" if a.startswith("--url=") else a for a in container["args"]]
    code, message = run_job_like_a_kubelet(kubectl, ns, job, pvc_root, tmp)
    complete_pod(kubectl, ns, name, code, message)
    return code, json.loads(message)


def run_export(kubectl: Kubectl, ns: str, job_name: str, pvc_root: Path, tmp: Path) -> None:
    job = wait_for(lambda: (r := kubectl("-n", ns, "get", "job", job_name, "-o", "json", check=False)).returncode == 0
                   and json.loads(r.stdout), 60, what=f"Job {job_name}")
    code, message = run_job_like_a_kubelet(kubectl, ns, job, pvc_root, tmp)
    assert code == 0, message
    complete_pod(kubectl, ns, job_name, code, message)


def export_spec(source: str) -> dict:
    return {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport", "metadata": {"name": "lin"},
            "spec": {"source": {"uri": f"pvc://models/{source}/model.pt", "format": "pytorch", "pytorch": {"loader": "torchscript"}},
                     "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
                     "targets": [{"name": "ts", "format": "torchscript"}], "validation": {"samples": 4},
                     "output": {"uri": "pvc://models/out/lin"}, "nodePool": "cpu"}}


def test_export_served_then_each_new_revision_checked_before_traffic(
        kubectl: Kubectl, namespace: str, operator: Operator, tmp_path: Path, serve) -> None:  # noqa: F811
    ns, pvc_root = namespace, tmp_path / "pvc"
    provide_pvc(kubectl, ns, "models", pvc_root / "models")
    save_linear(pvc_root / "models" / "v1" / "model.pt")
    save_linear(pvc_root / "models" / "v2" / "model.pt", noise=0.1)  # retrained: the second export's source
    save_linear(tmp_path / "wrong" / "model.pt", noise=0.5)
    apply(kubectl, ns, export_spec("v1"))
    body = {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "lin"},
            "spec": {"model": {"exportRef": {"name": "lin", "target": "ts"}, "name": "lin"}, "runtime": {"kind": "torchserve"},
                     "replicas": 1, "placement": {"nodePool": "cpu"}, "traffic": GATEWAY,
                     "rollout": {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}}}}
    apply(kubectl, ns, body)
    st = wait_status(kubectl, ns, "lin", lambda s: s.get("phase") == "Pending", what="waiting for the export")
    assert "ModelExport lin has no artifact yet" in st["message"]

    def exported(generation: int) -> dict:
        run_export(kubectl, ns, f"lin-export-g{generation}", pvc_root, tmp_path / f"export{generation}")
        wait_for(lambda: (s := mex_status(kubectl, ns, "lin")).get("jobName") == f"lin-export-g{generation}"
                 and s.get("phase") == "Succeeded", 90, what=f"export {generation}")
        manifest = json.loads((pvc_root / "models" / "out" / "lin" / "manifest.json").read_text())
        (target,) = manifest["targets"]
        assert target["parity"]["samples"] == 4
        return target

    target = exported(1)
    st = wait_status(kubectl, ns, "lin", lambda s: s.get("phase") == "Ready", what="revision 1 Ready (no check: nothing to protect)")
    assert st["revisions"][0]["modelDigest"] == f"sha256:{target['sha256']}"
    init_args = get_json(kubectl, ns, "deployment", "lin-r1")["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert "--uri=export://lin/ts" in init_args and any(a.startswith("--manifest=pvc://models/out/lin/") for a in init_args)

    def server(model: Path) -> str:
        md = deployment(model={"uri": f"file://{model}", "format": "torchscript", "name": "lin"},
                        runtime={"kind": "torchserve"}, placement={"nodePool": "cpu"}, replicas=1)
        # The export's signature names the outputs; TorchServe's config wants their dtype and shape too.
        sig = target["signature"]
        outputs = [{"dtype": "float32", "shape": [-1, 3], **o} for o in sig["outputs"]]
        return serve(md, {"inputs": sig["inputs"], "outputs": outputs}, model)[0]

    # Revision 2 (a serving change): its server holds a wrong artifact, so its answers differ.
    body["spec"]["runtime"]["env"] = [{"name": "MODEL_REVISION", "value": "2"}]
    apply(kubectl, ns, body)
    code, verdict = run_check(kubectl, ns, "lin-r2-parity", server(tmp_path / "wrong" / "model.pt"), pvc_root, tmp_path / "r2")
    assert (code, verdict["passed"], verdict["sample"]) == (1, False, 0), verdict
    st = wait_status(kubectl, ns, "lin", lambda s: (s.get("rollout") or {}).get("aborted"), what="revision 2 aborted")
    assert st["rollout"]["aborted"]["reason"] == "ParityCheckFailed" and st["stableRevision"] == 1
    ready = next(x for x in st["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False" and "recorded input 0 (x[1, 4]: " in ready["message"]
    assert f"differs by up to {verdict['maxAbsDiff']:.6g}" in ready["message"]
    assert route_weights(get_json(kubectl, ns, "httproute", "lin")).get("lin-r2", 0) == 0  # it never got a request

    # A new export (a retrained model) is revision 3 with no edit here; served right, it passes and is promoted.
    apply(kubectl, ns, export_spec("v2"))
    target = exported(2)
    artifact = pvc_root / "models" / target["uri"].removeprefix("pvc://models/")
    code, verdict = run_check(kubectl, ns, "lin-r3-parity", server(artifact), pvc_root, tmp_path / "r3")
    assert (code, verdict["passed"], verdict["samples"]) == (0, True, 4), verdict
    st = wait_status(kubectl, ns, "lin", lambda s: s.get("stableRevision") == 3 and s.get("phase") == "Ready",
                     what="revision 3 promoted")
    assert st["revisions"][-1]["outcome"] == "Stable" and st["revisions"][-1]["modelDigest"] == f"sha256:{target['sha256']}"
    assert route_weights(get_json(kubectl, ns, "httproute", "lin")) == {"lin-r3": 100}
    events = kubectl("-n", ns, "get", "events", "--field-selector", "reason=ParityCheckPassed", "-o", "json").stdout
    assert [e["message"] for e in json.loads(events)["items"]] == [f"revision 3: {verdict['message']}"]


def get_json(kubectl: Kubectl, ns: str, kind: str, name: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", kind, name, "-o", "json").stdout)
