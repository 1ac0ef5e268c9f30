"""Shadow with comparison end to end: the real control plane and operator, a real Prometheus, and
the comparator as the operator renders it (its args from the same builder; kwok runs no
containers, so the process runs here with the revision URLs moved to real TorchServe servers on
loopback). Prometheus scrapes the comparator; the rollout's analysis reads the comparator's
agreement: the shadow that agrees is promoted, the one that does not is aborted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.comparator.objects import build_comparator_deployment

from ..conftest import Kubectl
from ..runtimes.conftest import two_versions  # noqa: F401  (a fixture)
from ..runtimes.test_comparator_torchserve import SIG, _md
from ..runtimes.test_torchserve import _http, serve  # noqa: F401  (a fixture)
from ..unit.helpers import CONFIG
from .conftest import Operator, wait_for
from .rollout_helpers import GATEWAY, apply, wait_status
from .test_rollouts import route, scraped

pytestmark = pytest.mark.e2e
AGREEMENT = ('max(modelpilot_shadow_agreement_ratio{namespace="{{namespace}}",model_deployment="{{name}}",'
             'shadow_revision="{{canaryRevision}}"})')


def body(name: str, version: int, duration: str) -> dict:
    return {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"uri": f"pvc://models/{name}/v{version}/model.mar", "format": "mar", "name": "twoheads"},
                     "runtime": {"kind": "torchserve"}, "replicas": 1, "placement": {"nodePool": "cpu"}, "traffic": GATEWAY,
                     "rollout": {"strategy": "shadow", "shadow": {"percent": 50, "duration": duration, "compare": True},
                                 "analysis": {"interval": "1s", "metrics": [
                                     {"name": "top1-agreement", "query": AGREEMENT, "successCondition": "result >= 0.99"}]}}}}


class Comparator:
    """The comparator process with the arguments the operator renders for `md` (revision 1 vs 2),
    the revision Services replaced by loopback servers and the metrics on Prometheus's target."""

    def __init__(self, md_body: dict, namespace: str, stable: str, shadow: str, metrics_port: int):
        md = parse_model_deployment({**md_body, "metadata": {**md_body["metadata"], "namespace": namespace, "uid": "u"}})
        args = build_comparator_deployment(md, 1, 2, 50, CONFIG)["spec"]["template"]["spec"]["containers"][0]["args"]
        self.rendered = list(args)
        moved = {"--stable-url": stable, "--shadow-url": shadow, "--port": "0", "--metrics-port": str(metrics_port)}
        args = [moved.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args[args.index("--port") + 1] = str(port)
        self.url, self.admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "modelpilot.comparator", *args, "--host", "127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: _http(f"{self.admin}/healthz")[0] == 200, 30, 0.2, "the comparator")

    def mirror(self, ref, rows: int = 16) -> None:
        for i in range(rows):
            s, b = _http(f"{self.url}/predictions/twoheads", {"inputs": {"x": ref["x"][i:i + 1].tolist(), "ids": ref["ids"][i:i + 1].tolist()}})
            assert s == 200 and json.loads(b)["outcome"] == "compared", b

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=10)


def in_cluster_comparator(kubectl: Kubectl, ns: str, name: str) -> dict | None:
    r = kubectl("-n", ns, "get", "deployment", f"{name}-comparator", "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def run_case(kubectl, namespace, prometheus_url, port, ref, name, stable, shadow, duration, expect_abort=False) -> dict:
    md = body(name, 1, duration)
    apply(kubectl, namespace, md)
    wait_status(kubectl, namespace, name, lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    cmp = Comparator(md, namespace, stable, shadow, port)
    try:
        cmp.mirror(ref)
        scraped(prometheus_url, f'modelpilot_shadow_agreement_ratio{{namespace="{namespace}",model_deployment="{name}"}}')
        apply(kubectl, namespace, body(name, 2, duration))
        st = wait_status(kubectl, namespace, name, lambda s: s.get("canaryRevision") == 2 or s.get("phase") == "Degraded",
                         what="the shadow rollout")
        if not expect_abort:  # an analysis that fails at once may abort before the mirror is ever applied
            live = wait_for(lambda: in_cluster_comparator(kubectl, namespace, name), 30, 0.3, "the comparator Deployment")
            assert live["spec"]["template"]["spec"]["containers"][0]["args"] == cmp.rendered, "the process runs what the cluster has"
            mirrors = [f["requestMirror"]["backendRef"]["name"] for r in route(kubectl, namespace, name)["spec"]["rules"]
                       for f in r.get("filters", []) if f["type"] == "RequestMirror"]
            assert mirrors == [f"{name}-comparator"], st
        return wait_status(kubectl, namespace, name, lambda s: s.get("phase") in ("Degraded", "Ready") and s.get("stableRevision"),
                           timeout=120, what="promotion or abort")
    finally:
        cmp.stop()


def test_analysis_on_the_comparator_promotes_the_agreeing_shadow_and_aborts_the_other(
        kubectl: Kubectl, namespace: str, operator: Operator, prometheus_url: str, comparator_metrics_port: int,
        serve, two_versions) -> None:  # noqa: F811
    ref = np.load(two_versions["reference"])
    v1, _, _ = serve(_md(f"file://{two_versions['v1']}"), SIG, two_versions["v1"])
    v1b, _, _ = serve(_md(f"file://{two_versions['v1']}"), SIG, two_versions["v1"])
    v2, _, _ = serve(_md(f"file://{two_versions['v2']}"), SIG, two_versions["v2"])
    expected_bad = float(np.mean(ref["v1_logits"].argmax(1) == ref["v2_logits"].argmax(1)))
    assert expected_bad < 0.99

    st = run_case(kubectl, namespace, prometheus_url, comparator_metrics_port, ref, "cmp-ok", v1, v1b, "8s")
    assert (st["phase"], st["stableRevision"]) == ("Ready", 2), st.get("message")
    assert [(r["revision"], r["outcome"]) for r in st["revisions"]] == [(1, "Superseded"), (2, "Stable")]
    wait_for(lambda: in_cluster_comparator(kubectl, namespace, "cmp-ok") is None, 30, 0.3, "the comparator to be deleted")

    st = run_case(kubectl, namespace, prometheus_url, comparator_metrics_port, ref, "cmp-bad", v1, v2, "60s", expect_abort=True)
    assert (st["phase"], st["stableRevision"]) == ("Degraded", 1)
    assert "background analysis failed" in st["message"]
    measured = st["analysis"]["runs"]["background"]["latest"][-1]
    assert measured["verdict"] == "Failed" and float(measured["value"]) == pytest.approx(expected_bad)
    wait_for(lambda: in_cluster_comparator(kubectl, namespace, "cmp-bad") is None, 30, 0.3, "the comparator to be deleted")
