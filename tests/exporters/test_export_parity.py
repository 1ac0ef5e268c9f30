"""What an export records for the serving side, and which inputs it validates on:

- parity/<target>.json: validation inputs and the artifact's own outputs on them (the pre-traffic
  parity check of a ModelDeployment sends them to the new revision);
- a quantized target with real calibration data and no spec.validation.samplesUri is validated on
  a held-back part of the calibration data, not on random inputs, and the result says so.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory):
    """A small MLP trained on scikit-learn's digits (64 features 0..16, 10 classes), as ONNX, and
    300 real rows for calibration."""
    import torch
    from sklearn.datasets import load_digits

    d = tmp_path_factory.mktemp("digits")
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x[:1200]), torch.from_numpy(y[:1200])
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    prog = torch.onnx.export(model, (xt[:2],), None, dynamo=True, input_names=["x"], output_names=["logits"],
                             dynamic_shapes=({0: torch.export.Dim.DYNAMIC},), external_data=False)
    prog.save(str(d / "mlp.onnx"), external_data=False)
    np.savez(d / "calibration.npz", x=x[1200:1500])
    return d


def _spec(d, **validation):
    return {"source": {"uri": f"file://{d / 'mlp.onnx'}", "format": "onnx"},
            "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 64]}],
            "validation": validation,
            "targets": [{"name": "int8", "format": "onnx",
                         "quantization": {"mode": "int8", "calibration": {"uri": f"file://{d / 'calibration.npz'}",
                                                                          "samples": 300}}}]}


def test_int8_with_real_calibration_data_is_validated_on_held_back_rows(export, digits_mlp) -> None:
    r = export(_spec(digits_mlp))
    assert r.rc == 0, r.stderr
    source = r.manifest["validation"]["samplesSource"]
    assert source == (f"held back from file://{digits_mlp / 'calibration.npz'} "
                      "(spec.targets[0].quantization.calibration.uri): the last 8 of 300 rows; "
                      "calibration used the other 292")
    assert r.manifest["validation"]["samples"] == 8
    assert r.target("int8")["validation"]["passed"]
    assert r.target("int8")["validation"]["outputs"][0]["top1Agreement"] >= 0.85
    assert r.term["validation"] == {"samplesSource": source, "samples": 8}


def test_parity_record_holds_the_inputs_and_the_artifacts_own_outputs(export, digits_mlp) -> None:
    r = export(_spec(digits_mlp))
    assert r.rc == 0, r.stderr
    entry = r.target("int8")["parity"]
    assert entry == {"uri": f"file://{r.out}/parity/int8.json", "samples": 8}
    record = json.loads((r.out / "parity" / "int8.json").read_text())
    assert (record["atol"], record["rtol"], len(record["inputs"]), len(record["outputs"])) == (1e-4, 1e-3, 8, 8)
    held = np.load(digits_mlp / "calibration.npz")["x"][-8:]
    session = ort.InferenceSession(str(r.out / "int8" / "model.onnx"), providers=["CPUExecutionProvider"])
    for i in range(8):
        assert record["inputs"][i]["x"]["dtype"] == "float32"
        np.testing.assert_array_equal(record["inputs"][i]["x"]["data"], held[i:i + 1])
        np.testing.assert_allclose(record["outputs"][i]["logits"], session.run(None, {"x": held[i:i + 1]})[0], rtol=1e-5, atol=1e-5)
    # The artifact's digest is over its own directory only: the record is outside it.
    assert not (r.out / "int8" / "parity.json").exists()
