"""Pure tests of the exporter: spec parsing, comparison maths, sample handling, result formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelpilot_exporters import manifest as mf
from modelpilot_exporters import validate as v
from modelpilot_exporters.errors import SpecError
from modelpilot_exporters.sources import Limits
from modelpilot_exporters.spec import InputSpec, parse, parse_manifest

pytestmark = pytest.mark.unit

BASE = {
    "source": {"uri": "file:///m.pt2", "format": "pytorch"},
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 16]}],
    "targets": [{"format": "onnx"}],
    "output": {"uri": "file:///tmp/out/"},
}


def spec_with(**over):
    s = json.loads(json.dumps(BASE))
    for k, val in over.items():
        s[k] = val
    return s


def test_defaults():
    s = parse(BASE)
    assert s.source.loader == "exportedProgram"
    t = s.targets[0]
    assert t.name == "onnx" and t.quantization.mode == "none" and t.optimization == "none"
    assert t.quantization.keep_io_types is True
    assert s.validation.atol == 1e-4 and s.validation.rtol == 1e-3 and s.validation.samples == 8
    assert s.output_uri == "file:///tmp/out"
    assert s.inputs[0].dynamic_dims == (0,)
    assert s.source.limits == Limits(download_bytes=50 << 30, unpacked_bytes=50 << 30, files=10000,
                                     field="spec.source.limits")


def test_manifest_document_and_kind():
    s = parse_manifest({"kind": "ModelExport", "metadata": {"name": "a", "namespace": "ns"}, "spec": BASE})
    assert (s.name, s.namespace) == ("a", "ns")
    with pytest.raises(SpecError, match="^kind: expected ModelExport"):
        parse_manifest({"kind": "ModelDeployment", "spec": BASE})


@pytest.mark.parametrize("over, field", [
    ({"targets": [{"format": "onnx", "quantization": {"mode": "int8"}}]},
     "spec.targets[0].quantization.calibration: static int8 needs calibration data; set uri to an .npz or synthetic: true"),
    ({"targets": [{"format": "onnx"}, {"format": "pt2", "quantization": {"mode": "dynamic"}}]},
     "spec.targets[1].quantization.mode"),
    ({"targets": [{"format": "tflite"}]}, "spec.targets[0].format: a pytorch source cannot"),
    ({"targets": [{"format": "onnx"}, {"format": "onnx"}]}, "spec.targets[1].name: duplicate"),
    ({"targets": [{"format": "pt2", "optimization": {"level": "all"}}]}, "spec.targets[0].optimization.level"),
    ({"targets": [{"format": "onnx", "pruning": {"method": "unstructured", "amount": 1.5}}]},
     "spec.targets[0].pruning.amount"),
    ({"targets": [{"format": "onnx", "opset": 9}]}, "spec.targets[0].opset"),
    ({"targets": [{"format": "onnx", "quantization": {"mode": "int8", "calibration": {"uri": "s3://b/c.npz", "synthetic": True}}}]},
     "spec.targets[0].quantization.calibration: set either uri or synthetic"),
    ({"inputs": [{"name": "x", "dtype": "float32", "shape": [0, 3]}]}, "spec.inputs[0].shape[0]"),
    ({"inputs": [{"name": "x", "dtype": "complex", "shape": [1]}]}, "spec.inputs[0].dtype"),
    ({"source": {"uri": "ftp://x/y", "format": "pytorch"}}, "spec.source.uri: unsupported URI"),
    ({"source": {"uri": "file:///m", "format": "pytorch", "pytorch": {"loader": "stateDict"}}},
     "spec.source.pytorch.factory: is required"),
    ({"validation": {"samples": 0}}, "spec.validation.samples"),
    ({"validation": {"samplesUri": "file:///x.csv"}}, "spec.validation.samplesUri"),
    ({"output": {"uri": "http://x/y"}}, "spec.output.uri"),
    ({"source": {"uri": "file:///m.onnx", "format": "onnx", "allowPickle": True}},
     "spec.source.allowPickle: only applies to a pytorch source"),
    ({"source": {"uri": "file:///m.onnx", "format": "onnx", "limits": {"maxDownloadSize": "lots"}}},
     "spec.source.limits.maxDownloadSize: must be a size such as 20Gi"),
    ({"source": {"uri": "file:///m.onnx", "format": "onnx", "limits": {"maxFiles": 0}}},
     "spec.source.limits.maxFiles: must be >= 1"),
])
def test_errors_name_the_field(over, field):
    with pytest.raises(SpecError) as ei:
        parse(spec_with(**over))
    assert str(ei.value).startswith(field), str(ei.value)
    assert "\n" not in str(ei.value)


def test_pruning_needs_pytorch_source():
    s = spec_with(source={"uri": "file:///m.onnx", "format": "onnx"},
                  targets=[{"format": "onnx", "pruning": {"method": "structured", "amount": 0.3}}])
    with pytest.raises(SpecError, match=r"^spec.targets\[0\].pruning: pruning needs a pytorch source"):
        parse(s)


def test_compare_arrays_and_judge():
    ref = np.array([[1.0, 2.0, 0.5], [3.0, 0.0, 1.0]], np.float32)
    got = ref + np.array([[1e-5, 0, 0], [0, 2e-3, 0]], np.float32)
    r = v.compare_arrays("logits", ref, got, atol=1e-4, rtol=1e-3)
    assert r.max_abs_error == pytest.approx(2e-3, rel=1e-3)
    assert not r.allclose and r.top1_agreement == 1.0
    ok, msg = v.judge([r], "none", 1e-4, 1e-3)
    assert not ok and "output 'logits'" in msg and "exceeds atol" in msg
    # lossy: judged by top-1 agreement
    assert v.judge([r], "int8", 1e-4, 1e-3) == (True, "")
    flipped = ref.copy()
    flipped[:, [0, 1]] = flipped[:, [1, 0]]
    r2 = v.compare_arrays("logits", ref, flipped, 1e-4, 1e-3)
    assert r2.top1_agreement == 0.0
    ok, msg = v.judge([r2], "dynamic", 1e-4, 1e-3)
    assert not ok and "top-1 agreement 0.000" in msg
    # non-classifier lossy: relative L2
    reg = v.compare_arrays("y", np.ones((4, 1)), np.ones((4, 1)) * 1.5, 1e-4, 1e-3)
    assert reg.top1_agreement is None and reg.rel_l2_error == pytest.approx(0.5)
    assert not v.judge([reg], "int8", 1e-4, 1e-3)[0]


def test_compare_shape_mismatch_and_ints():
    with pytest.raises(ValueError, match="shape"):
        v.compare_arrays("o", np.zeros((2, 3)), np.zeros((3, 2)), 0, 0)
    r = v.compare_arrays("ids", np.array([1, 2, 3]), np.array([1, 2, 4]), 0, 0)
    assert not r.allclose and r.max_abs_error == 1.0


def test_make_samples_is_seeded_and_shaped():
    inputs = [InputSpec("ids", "int64", (-1, -1)), InputSpec("m", "float32", (-1, -1)),
              InputSpec("img", "uint8", (3, 4))]
    a = v.make_samples(inputs, 3)
    b = v.make_samples(inputs, 3)
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    assert a[0]["ids"].shape == (1, v.DYNAMIC_OTHER_DIM) and a[0]["ids"].dtype == np.int64
    assert a[0]["ids"].max() < 10 and a[0]["img"].shape == (3, 4) and a[0]["img"].dtype == np.uint8
    assert v.batch_dynamic(inputs[:2]) and not v.batch_dynamic(inputs)


def test_samples_from_npz(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, x=np.arange(20, dtype=np.float64).reshape(5, 4), y=np.zeros((5, 2, 2)))
    inputs = [InputSpec("x", "float32", (-1, 4)), InputSpec("y", "float32", (2, 2))]
    s = v.samples_from_npz(p, inputs, 3, "spec.validation.samplesUri")
    assert len(s) == 3 and s[1]["x"].shape == (1, 4) and s[1]["x"].dtype == np.float32
    assert s[2]["y"].shape == (2, 2)
    from modelpilot_exporters.errors import InputError

    with pytest.raises(InputError, match="^spec.validation.samplesUri: the .npz lacks arrays for input"):
        v.samples_from_npz(p, [InputSpec("z", "float32", (-1,))], 3, "spec.validation.samplesUri")


def test_validate_end_to_end_with_numpy_runners():
    inputs = [InputSpec("x", "float32", (-1, 4))]
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    src = lambda s: [s["x"] @ w]  # noqa: E731
    art = lambda s: [(s["x"] @ w) + 1e-6]  # noqa: E731
    rep = v.validate(src, art, v.make_samples(inputs, 5), ["logits"])
    assert rep.passed and rep.batched_run and rep.outputs[0].shape == [5, 3]
    assert rep.to_json()["outputs"][0]["top1Agreement"] == 1.0
    bad = v.validate(src, lambda s: [(s["x"] @ w) + 1.0], v.make_samples(inputs, 2), ["logits"])
    assert not bad.passed and "output 'logits'" in bad.message


def test_termination_message_is_compact():
    man = {"phase": "Succeeded", "message": "ok", "targets": [
        {"name": f"t{i}", "format": "onnx", "phase": "Succeeded", "uri": "s3://bucket/" + "x" * 200,
         "sha256": "a" * 64, "sizeBytes": 123, "validation": {
             "maxAbsError": 1e-6, "artifactLatencyMsP50": 0.5, "sourceLatencyMsP50": 2.0, "passed": True,
             "outputs": [{"top1Agreement": 0.98}, {"top1Agreement": 0.96}, {"maxAbsError": 1e-6}] if i else [{"maxAbsError": 1e-6}]}}
        for i in range(40)] + [{"name": "bad", "format": "onnx", "phase": "Failed", "error": "e" * 3000}]}
    s = mf.termination_message(man, "s3://bucket/manifest.json")
    assert len(s.encode()) <= 4096
    d = json.loads(s)
    assert d["phase"] == "Succeeded" and d["truncated"] is True and d["artifacts"][0]["sha256"] == "a" * 64
    first, second = d["artifacts"][:2]
    assert (second["sourceLatencyMs"], second["top1Agreement"], second["validated"]) == (2.0, 0.96, True), "the worst output's top-1"
    assert first["top1Agreement"] is None, "no classifier output: no top-1 agreement"
    small = json.loads(mf.termination_message({"phase": "Failed", "message": "boom", "targets": []}, None))
    assert small == {"phase": "Failed", "message": "boom", "artifacts": []}


def test_termination_log_written_only_where_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPILOT_TERMINATION_LOG", str(tmp_path / "term"))
    assert mf.write_termination_message("{}") == str(tmp_path / "term")
    monkeypatch.setenv("MODELPILOT_TERMINATION_LOG", "/nonexistent-dir/term")
    assert mf.write_termination_message("{}") is None


def test_digest_dir_is_stable(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"1")
    (tmp_path / "g").write_bytes(b"22")
    sha, size, files = mf.digest_dir(tmp_path)
    assert size == 3 and [f[0] for f in files] == ["a/f", "g"]
    assert sha == mf.digest_dir(tmp_path)[0]


def test_docs_samples_parse():
    """Every docs/samples/modelexport-*.yaml is a spec the exporter accepts."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "docs" / "samples"
    files = sorted(root.glob("modelexport-*.yaml"))
    assert files
    for f in files:
        s = parse_manifest(yaml.safe_load(f.read_text()))
        assert s.targets, f.name
