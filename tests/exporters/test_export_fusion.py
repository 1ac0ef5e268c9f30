"""Transformer fusion, the int4 target and autotune, run for real on tiny transformers exported with
``torch.onnx.export(dynamo=True)``: what was fused is read back from the written model, and
autotune's choice is checked against its own measured table."""

from __future__ import annotations

import collections
import json
import math

import onnx
import pytest

from conftest import MLP_INPUTS
from modelpilot_exporters import autotune as at
from modelpilot_exporters.errors import SpecError
from modelpilot_exporters.spec import parse

IDS = [{"name": "ids", "dtype": "int64", "shape": [-1, 8]}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """pt2 files of the tiny encoder: separate Q/K/V projections, and one packed projection."""
    import torch

    import mp_export_models as mm

    d = tmp_path_factory.mktemp("tiny")
    ex = (torch.randint(0, 32, (2, 8)),)
    return {"sep": mm.save_pt2(mm.make_tiny_transformer(), ex, d / "sep.pt2"),
            "packed": mm.save_pt2(mm.make_tiny_transformer(packed=True), ex, d / "packed.pt2")}


def ops(run, name) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(run.out / name / "model.onnx")).graph.node)


def weight_bytes(run, name) -> int:
    m = onnx.load(str(run.out / name / "model.onnx"))
    return sum(len(t.raw_data) or 4 * len(t.float_data) for t in m.graph.initializer)


def pt(path):
    return {"uri": f"file://{path}", "format": "pytorch"}


@pytest.mark.parametrize("variant, split", [("sep", 0), ("packed", 2)])
def test_int8_fuses_attention_into_qattention(export, tiny, variant, split):
    r = export({"source": pt(tiny[variant]), "inputs": IDS,
                "targets": [{"name": "q", "format": "onnx", "quantization": {"mode": "dynamic"},
                             "optimization": {"fusion": "transformer"}}]})
    assert r.rc == 0, r.stderr
    t = r.target("q")
    f = t["fusion"]
    assert f["mode"] == "transformer" and f["reason"] == "spec"
    # two blocks: one Attention each, LayerNorm+residual fused twice per block, one BiasGelu each
    assert f["fused"] == {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2}, f
    assert "Softmax" not in f["left"] and "Transpose" not in f["left"], f["left"]
    assert f["rules"].get("split_packed_qkv", 0) == split
    o = ops(r, "q")
    assert o["QAttention"] == 2 and o["Attention"] == 0 and o["MatMulInteger"] >= 6, o
    assert t["validation"]["passed"] and t["validation"]["outputs"][0]["top1Agreement"] == 1.0


def test_fusion_auto_leaves_fixed_targets_alone_and_autotune_skips_graphs_without_attention(export, models, tiny):
    r = export({"source": pt(tiny["sep"]), "inputs": IDS,
                "targets": [{"name": "q", "format": "onnx", "quantization": {"mode": "dynamic"}},
                            {"name": "fused", "format": "onnx", "optimization": {"fusion": "transformer"}}]})
    assert r.rc == 0, r.stderr
    assert r.target("q")["fusion"] == {"mode": "none", "reason": "auto: fusion is only tried by autotune"}
    assert ops(r, "q")["QAttention"] == 0 and ops(r, "q")["MatMulInteger"] >= 12
    fused = r.target("fused")
    assert fused["fusion"]["fused"]["Attention"] == 2 and ops(r, "fused")["Attention"] == 2
    assert fused["validation"]["passed"] and fused["validation"]["maxAbsError"] < 1e-4
    r = export({"source": pt(models["mlp_pt2"]), "inputs": MLP_INPUTS,
                "targets": [{"name": "a", "format": "onnx", "optimization": {"autotune": {"modes": ["dynamic"]}}}]},
               name="mlp")
    assert r.rc == 0, r.stderr
    assert [c["name"] for c in r.target("a")["autotune"]["candidates"]] == ["none+dynamic"]  # no attention


def test_int4_weight_only(export, tiny):
    r = export({"source": pt(tiny["sep"]), "inputs": IDS,
                "targets": [{"name": "fp32", "format": "onnx"},
                            {"name": "int4", "format": "onnx", "quantization": {"mode": "int4"}}]})
    assert r.rc == 0, r.stderr
    t = r.target("int4")
    assert t["quantization"] == {"mode": "int4"} and t["fusion"]["mode"] == "none"
    assert t["validation"]["outputs"][0]["top1Agreement"] == 1.0
    o = ops(r, "int4")
    # 2 blocks x (q, k, v, out, ffn1, ffn2) + the head (a Gemm, rewritten to MatMul first); the
    # embedding as a block-quantized Gather; left: the two activation x activation MatMuls of
    # each attention (Q.K^T, weights.V)
    assert o["MatMulNBits"] == 13 and o["GatherBlockQuantized"] == 1 and o["MatMul"] == 4, o
    assert o["Gemm"] == 0
    assert t["validation"]["passed"] and t["validation"]["criterion"].startswith("lossy (int4)")
    assert t["sizeBytes"] < r.target("fp32")["sizeBytes"]
    # the weights themselves: 4 bits plus one fp32 scale per block of 32 -> 6.4x smaller
    assert weight_bytes(r, "fp32") / weight_bytes(r, "int4") > 4.5


def test_int4_without_weights_to_quantize_fails_clearly(export, tmp_path):
    import torch

    import mp_export_models as mm

    torch.manual_seed(5)
    convs = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten()).eval()
    src = mm.save_pt2(convs, (torch.randn(2, 1, 8, 8),), tmp_path / "convs.pt2")
    r = export({"source": pt(src),
                "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 1, 8, 8]}],
                "targets": [{"name": "i4", "format": "onnx", "quantization": {"mode": "int4"}}]})
    assert r.rc == 1
    assert "int4 quantization found no MatMul or Gemm with a constant weight" in r.target("i4")["error"]
    assert r.target("i4")["error"].startswith("spec.targets[0] (i4): int4 quantization")


def test_autotune_keeps_the_fastest_candidate_within_budget(export, tiny):
    r = export({"source": pt(tiny["sep"]), "inputs": IDS,
                "targets": [{"name": "best", "format": "onnx",
                             "quantization": {"calibration": {"synthetic": True, "samples": 16}},
                             "optimization": {"autotune": {"batchSizes": [1, 4]}}}]})
    assert r.rc == 0, r.stderr
    t = r.target("best")
    a = t["autotune"]
    names = [c["name"] for c in a["candidates"]]
    assert names == ["none+none", "none+dynamic", "none+int4", "none+int8",
                     "transformer+none", "transformer+dynamic", "transformer+int8"]
    ok = [c for c in a["candidates"] if c["withinBudget"]]
    assert ok and all(len(c["latencyMs"]) == 2 for c in a["candidates"])
    best = min(ok, key=lambda c: math.prod(c["latencyMs"]))
    assert a["chosen"] == best["name"]
    assert t["quantization"]["mode"] == best["mode"] and t["sizeBytes"] == best["sizeBytes"]
    assert t["fusion"]["mode"] == best["fusion"]
    assert t["validation"]["passed"]
    art = r.term["artifacts"][0]["autotune"]
    assert art["chosen"] == best["name"] and len(art["candidates"]) == 7


def test_autotune_budget_excludes_lossy_candidates(export, models):
    """The regressor has one non-classifier output: judged by relative L2 error. A budget of 1e-4
    leaves only the fp32 candidate; a budget of 0 on int8 only leaves nothing."""
    inputs = [{"name": "x", "dtype": "float32", "shape": [-1, 8]}]
    r = export({"source": pt(models["reg_pt2"]), "inputs": inputs,
                "targets": [{"name": "a", "format": "onnx",
                             "optimization": {"autotune": {"modes": ["dynamic", "none"],
                                                           "maxRelL2Error": 1e-4}}}]})
    assert r.rc == 0, r.stderr
    a = r.target("a")["autotune"]
    by = {c["name"]: c for c in a["candidates"]}
    assert set(by) == {"none+dynamic", "none+none"}
    assert by["none+dynamic"]["relL2Error"] > 1e-4 and not by["none+dynamic"]["withinBudget"]
    assert a["chosen"] == "none+none" and r.target("a")["quantization"] == {"mode": "none"}
    r = export({"source": pt(models["reg_pt2"]), "inputs": inputs,
                "targets": [{"name": "a", "format": "onnx",
                             "optimization": {"autotune": {"modes": ["dynamic"], "maxRelL2Error": 0}}}]},
               name="none-left")
    assert r.rc == 1
    err = r.target("a")["error"]
    assert err.startswith("spec.targets[0].optimization.autotune: no candidate within the accuracy budget"), err
    assert r.manifest["targets"][0]["autotune"]["candidates"][0]["withinBudget"] is False


# ------------------------------------------------------------------------------- pure parts

BASE = {"source": {"uri": "file:///m.pt2", "format": "pytorch"},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 16]}],
        "output": {"uri": "file:///tmp/out"}}


@pytest.mark.unit
@pytest.mark.parametrize("target, msg", [
    ({"format": "onnx", "quantization": {"mode": "dynamic"}, "optimization": {"autotune": {}}},
     "spec.targets[0].quantization.mode: is 'dynamic' but autotune chooses the precision"),
    ({"format": "onnx", "optimization": {"autotune": {"modes": ["int8"]}}},
     "spec.targets[0].quantization.calibration: spec.targets[0].optimization.autotune.modes lists int8"),
    ({"format": "onnx", "optimization": {"autotune": {"batchSizes": [0]}}},
     "spec.targets[0].optimization.autotune.batchSizes[0]: must be an int in 1..1024"),
    ({"format": "onnx", "optimization": {"autotune": {"fusions": ["attention"]}}},
     "spec.targets[0].optimization.autotune.fusions[0]: must be one of none, transformer"),
    ({"format": "onnx", "optimization": {"autotune": {"maxAccuracyDrop": 2}}},
     "spec.targets[0].optimization.autotune.maxAccuracyDrop"),
    ({"format": "pt2", "optimization": {"autotune": {}}},
     "spec.targets[0].optimization.autotune: autotune only applies to onnx targets"),
    ({"format": "pt2", "optimization": {"fusion": "transformer"}},
     "spec.targets[0].optimization.fusion: transformer fusion only applies to onnx targets"),
    ({"format": "onnx", "optimization": {"fusion": "bert"}}, "spec.targets[0].optimization.fusion: must be one of"),
])
def test_spec_errors_name_the_field(target, msg):
    with pytest.raises(SpecError) as ei:
        parse({**BASE, "targets": [target]})
    assert str(ei.value).startswith(msg), str(ei.value)


@pytest.mark.unit
def test_spec_int4_only_on_onnx():
    tf = {**BASE, "source": {"uri": "file:///sm", "format": "tensorflow"}}
    with pytest.raises(SpecError, match=r"^spec.targets\[0\].quantization.mode: int4 .* only possible on onnx"):
        parse({**tf, "targets": [{"format": "tflite", "quantization": {"mode": "int4"}}]})
    t = parse({**BASE, "targets": [{"format": "onnx", "optimization": {"autotune": {"batchSizes": [1, 32, 1]}}}]}).targets[0]
    assert t.autotune.batch_sizes == (1, 32) and t.autotune.max_accuracy_drop == 0.01 and t.fusion == "auto"


@pytest.mark.unit
def test_candidates_and_choice():
    names = [c.name for c in at.candidates((), (), has_attention=False, has_calibration=False)]
    assert names == ["none+none", "none+dynamic", "none+int4"]
    names = [c.name for c in at.candidates(("int4", "dynamic"), (), has_attention=True, has_calibration=False)]
    assert names == ["none+int4", "none+dynamic", "transformer+dynamic"]  # no fused int4
    a, b, c = at.Candidate("none", "none"), at.Candidate("none", "dynamic"), at.Candidate("transformer", "dynamic")
    a.latency_ms, b.latency_ms, c.latency_ms = {1: 1.0, 32: 40.0}, {1: 2.0, 32: 10.0}, {1: 0.5, 32: 8.0}
    a.within_budget = b.within_budget = True
    assert at.choose([a, b, c]) is b  # c is faster but outside the budget; b beats a on the geometric mean
    c.within_budget = True
    c.error = "boom"
    assert at.choose([a, b, c]) is b
    assert json.dumps(b.to_json((1, 32)))
    assert at.choose([c]) is None
