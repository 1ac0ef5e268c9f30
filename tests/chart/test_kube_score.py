"""kube-score (built by hack/build-testbed.sh) over every pod template modelpilot ships: the
ModelDeployment samples as the operator renders them, the ModelExport samples' Jobs, and the chart.
Issue 11, scenario 10: none may lack ephemeral-storage requests and limits, and, with the
NetworkPolicy options on, none may be left without a NetworkPolicy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from modelpilot.config import parse_config
from modelpilot.export import ExportObserved, plan_model_export
from modelpilot.rollout import Observed, plan_model_deployment

from ..conftest import KUBE_SCORE, REPO
from .conftest import template

pytestmark = pytest.mark.integration
SAMPLES = REPO / "docs" / "samples"
CHECKS = ("container-ephemeral-storage-request-and-limit", "pod-networkpolicy")
PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}
SCRAPER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def _config(network_policy: bool):
    data = yaml.safe_load((REPO / "hack/testbed/operator-config.yaml").read_text())
    data["networkPolicy"] = {"enabled": network_policy, "ingressFrom": [PEER], "metricsFrom": [SCRAPER]}
    data["istio"] = {"allowedHosts": ["*.example.com"], "allowedGateways": ["istio-system/*"]}  # the A/B sample's
    return parse_config(data)


def _export_of(md: dict) -> dict | None:
    """The succeeded ModelExport an exportRef sample serves (its artifact in the format the runtime serves)."""
    ref = md["spec"]["model"].get("exportRef")
    if not ref:
        return None
    fmt = {"triton": "onnx", "torchserve": "torchscript", "tfserving": "savedmodel"}[md["spec"]["runtime"]["kind"]]
    return {"metadata": {"name": ref["name"]}, "status": {
        "phase": "Succeeded", "manifestUri": f"pvc://models/{ref['name']}/exported/manifest.json",
        "artifacts": [{"name": ref.get("target") or fmt, "format": fmt, "sha256": "0" * 64,
                       "uri": f"pvc://models/{ref['name']}/exported/{fmt}/model"}]}}


def _rendered(network_policy: bool) -> list[dict]:
    """Every object the operator would apply for the samples, and the chart's objects."""
    config = _config(network_policy)
    objs: list[dict] = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            doc.setdefault("metadata", {}).setdefault("namespace", "ml")
            doc["metadata"].setdefault("uid", "uid-1")
            if doc["kind"] == "ModelDeployment":
                plan = plan_model_deployment(doc, config, Observed(deployments={}, nodes=None, now="2026-01-01T00:00:00Z",
                                                                   export=_export_of(doc)))
                assert plan.apply, f"{path.name}: {plan.status.get('message')}"
                objs += plan.apply
            else:
                doc["metadata"].setdefault("generation", 1)
                plan = plan_model_export(doc, config, ExportObserved(jobs={}, pods=[], now="2026-01-01T00:00:00Z"))
                assert plan.apply, f"{path.name}: {plan.status.get('message')}"
                objs += plan.apply
    chart = template(f"networkPolicy.enabled={str(network_policy).lower()}",
                     "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring")
    return objs + [o for o in chart if o["kind"] != "CustomResourceDefinition"]


def _findings(objs: list[dict], tmp: Path) -> tuple[int, list[str]]:
    """(pod templates scored, failed checks of CHECKS as 'kind/name: check: comment')."""
    path = tmp / "all.yaml"
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    r = subprocess.run([KUBE_SCORE, "score", "--output-format", "json", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr  # 1: some check (outside this test's concern) is critical
    pods, bad = 0, []
    for obj in json.loads(r.stdout):
        kind, name = obj["type_meta"]["kind"], obj["object_meta"]["name"]
        pods += kind in ("Deployment", "Job")
        for check in obj["checks"]:
            if check["check"]["id"] in CHECKS and not check["skipped"] and check["grade"] < 10:
                comments = "; ".join(c.get("summary", "") for c in check.get("comments") or [])
                bad.append(f"{kind}/{name}: {check['check']['id']}: {comments}")
    return pods, bad


def test_every_pod_template_bounds_ephemeral_storage_and_has_a_network_policy(tmp_path: Path) -> None:
    n_md = sum(1 for p in SAMPLES.glob("modeldeployment-*.yaml"))
    n_export = sum(1 for p in SAMPLES.glob("modelexport-*.yaml"))
    pods, bad = _findings(_rendered(network_policy=True), tmp_path)
    assert pods == n_md + n_export + 1, "every sample's pod template and the operator's own were scored"
    assert bad == [], "\n".join(bad)


def test_the_check_sees_a_missing_network_policy(tmp_path: Path) -> None:
    """The same run with the NetworkPolicy options off must be flagged: the test above can fail."""
    pods, bad = _findings(_rendered(network_policy=False), tmp_path)
    flagged = {b.split(":")[0] for b in bad if "pod-networkpolicy" in b}
    assert len(flagged) == pods, bad
