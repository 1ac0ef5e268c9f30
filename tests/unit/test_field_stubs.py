"""Fields that used to promise more than they did (issue 14 §3), each made true or refused."""

from __future__ import annotations

import pytest

from modelpilot.conditions import get_condition

from .helpers import md
from .sim import Sim
from .test_strategies import GATEWAY, export_body, rollout

pytestmark = pytest.mark.unit


def cond(s: Sim, t: str) -> dict:
    return get_condition(s.status["conditions"], t)


def _export(*arts: tuple[str, str, bool | None], warn_only: bool = False) -> dict:
    body = export_body("a" * 64)
    body["spec"] = {"validation": {"warnOnly": warn_only}}
    body["status"]["artifacts"] = [{"name": n, "format": f, "sha256": n[0] * 64,
                                    **({"validated": v} if v is not None else {})} for n, f, v in arts]
    return body


def test_export_ref_without_target_serves_the_first_artifact_the_runtime_can_serve() -> None:
    s = Sim(md(model={"exportRef": {"name": "resnet-export"}}, runtime={"kind": "torchserve"}, placement={"nodePool": "cpu"}))
    s.export = _export(("onnx", "onnx", True), ("ts", "torchscript", True), ("pt2", "pt2", True))
    s.settle()
    assert s.status["revisions"][0]["modelDigest"] == "sha256:" + "t" * 64  # not artifacts[0], an onnx TorchServe cannot load


def test_export_ref_without_target_and_nothing_servable_names_what_there_is() -> None:
    s = Sim(md(model={"exportRef": {"name": "resnet-export"}}, runtime={"kind": "tfserving"}))
    s.export = _export(("onnx", "onnx", True), ("lite", "tflite", True))
    s.reconcile()
    assert cond(s, "ExportReady")["message"] == ("ModelExport resnet-export has no artifact runtime tfserving can serve "
                                                 "(savedmodel); it has: onnx (onnx), lite (tflite)")
    assert s.deps == {}


def test_an_artifact_that_failed_validation_is_never_rolled_out_unless_warn_only_says_so() -> None:
    s = Sim(md(model={"exportRef": {"name": "resnet-export", "target": "onnx"}}))
    s.export = _export(("onnx", "onnx", False), warn_only=False)
    s.reconcile()
    c = cond(s, "ExportReady")
    assert (c["status"], c["reason"]) == ("False", "ExportNotReady") and "failed validation" in c["message"]
    assert s.deps == {} and s.status["phase"] == "Pending"
    s.export = _export(("onnx", "onnx", False), warn_only=True)
    s.settle()
    assert s.status["phase"] == "Ready" and cond(s, "ExportReady")["status"] == "True"


@pytest.mark.parametrize("strategy, fix", [
    ({"strategy": "direct"}, "spec.rollout.analysis: strategy direct has no steps for an analysis to gate"),
    ({"strategy": "abTest", "abTest": {"match": {"headers": [{"name": "x", "value": "y"}]}}},
     "spec.rollout.analysis: strategy abTest is judged by spec.rollout.abTest.analysis; move the block"),
])
def test_analysis_a_strategy_would_ignore_is_refused(strategy, fix) -> None:
    analysis = {"metrics": [{"name": "err", "query": "up", "successCondition": "result > 0"}]}
    p = Sim(rollout({**strategy, "analysis": analysis}, GATEWAY)).reconcile()
    assert p.status["phase"] == "Failed" and p.apply == []
    assert cond_of(p, "SpecValid")["message"].startswith(fix)


def cond_of(p, t: str) -> dict:
    return get_condition(p.status["conditions"], t)


def test_a_strategy_this_operator_does_not_know_is_strategy_not_supported() -> None:
    p = Sim(rollout({"strategy": "progressive"})).reconcile()
    c = cond_of(p, "SpecValid")
    assert (c["status"], c["reason"]) == ("False", "StrategyNotSupported")
    assert c["message"].startswith("spec.rollout.strategy: strategy 'progressive' is not supported by this operator version")
    assert ("Warning", "StrategyNotSupported", c["message"]) in p.events
