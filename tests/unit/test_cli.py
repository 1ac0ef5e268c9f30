"""`kubectl modelpilot render` prints what the operator applies, and refuses bad input clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "hack/testbed/operator-config.yaml"
pytestmark = pytest.mark.unit


def render(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelpilot.cli", "render", *args], capture_output=True, text=True, input=input)


def test_render_sample_matches_operator_objects() -> None:
    r = render("-f", str(REPO / "docs/samples/modeldeployment-triton-gpu.yaml"), "--config", str(CONFIG), "-n", "ml")
    assert r.returncode == 0, r.stderr
    objs = list(yaml.safe_load_all(r.stdout))
    assert sorted(o["kind"] for o in objs) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Service"]
    assert all(o["metadata"]["namespace"] == "ml" for o in objs)
    pod = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["modelpilot.io/pool"] == "gpu-a100"


def test_render_invalid_spec_names_the_field() -> None:
    doc = yaml.safe_dump({"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "x"},
                          "spec": {"model": {"uri": "file:///m.onnx", "format": "onnx"}, "runtime": {"kind": "tfserving"}}})
    r = render("-f", "-", "--config", str(CONFIG), input=doc)
    assert r.returncode == 2
    assert "spec.model.format" in r.stderr and "tfserving cannot serve" in r.stderr
    assert "Traceback" not in r.stderr


def test_render_without_pools_says_where_to_configure_them() -> None:
    r = render("-f", str(REPO / "docs/samples/modeldeployment-triton-gpu.yaml"))
    assert r.returncode == 2 and "nodePools" in r.stderr


def test_render_rejects_other_kinds_and_bad_yaml() -> None:
    assert "only ModelDeployment" in render("-f", "-", input="kind: Pod\napiVersion: v1\n").stderr
    bad = render("-f", "-", input="a: [\n")
    assert bad.returncode != 0 and "not valid YAML" in bad.stderr


def test_status_shows_the_latest_comparison_of_a_compared_shadow() -> None:
    from modelpilot.cli import format_status
    from modelpilot.comparator.compare import Comparison
    from modelpilot.comparator.metrics import ComparatorMetrics
    from modelpilot.comparator.server import Settings

    m = ComparatorMetrics(Settings("", "", "torchserve", "ml", "fraud", "1", "2"))
    m.latency(0.010, 0.012)
    m.compared(Comparison(rows=4, agreed_rows=3, values=40, max_abs_diff=0.25, sum_abs_diff=2.0))
    m.outcome("compared")
    m.outcome("shadow_error")
    latest = {"outcome": "compared", "rows": 4, "agreedRows": 3, "maxAbsDiff": 0.25, "at": "2026-11-30T12:00:00Z",
              "path": "/predictions/fraud"}
    body = {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": {"rollout": {"strategy": "shadow", "shadow": {"compare": True}}},
            "status": {"phase": "Progressing", "canaryRevision": 2, "weights": {"mirror": 20}}}
    text = format_status(body, {"summary": m.summary(), "latest": latest})
    assert ("  comparison: 1 compared, agreement 75.00%, max |diff| 0.25, mean |diff| 0.05, latency x1.20, "
            "shadow errors 50.00%") in text.splitlines()
    assert "    latest 2026-11-30T12:00:00Z /predictions/fraud: compared - 3/4 rows agree, max |diff| 0.25" in text.splitlines()
    assert "comparison: not available (services \"fraud-comparator\" not found)" in format_status(
        body, {"error": 'services "fraud-comparator" not found'})
    assert "comparison" not in format_status(body)


def test_status_shows_the_canarys_passed_parity_check() -> None:
    from modelpilot.cli import format_status

    body = {"metadata": {"name": "lin", "namespace": "ml"}, "spec": {"rollout": {"strategy": "canary"}},
            "status": {"phase": "Progressing", "canaryRevision": 3, "rollout": {"parity": {
                "revision": 3, "passed": True, "message": "4 recorded inputs answered within atol=0.0001, rtol=0.001"}}}}
    assert "  parity:    revision 3 passed: 4 recorded inputs answered within atol=0.0001, rtol=0.001" in format_status(body).splitlines()
    body["status"]["canaryRevision"] = 4  # a newer revision: that check is not its own
    assert "parity:" not in format_status(body)
    promoted = {**body, "status": {"phase": "Ready", "stableRevision": 4, "rollout": {}}}  # no canary, no check
    assert "parity:" not in format_status(promoted)
