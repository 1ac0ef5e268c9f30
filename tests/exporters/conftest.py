"""Fixtures for the exporter tests: tiny models built in-process, and a helper that runs
``modelpilot-export`` (in-process through ``cli.main``) and returns exit code, manifest and
termination message."""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MODELPILOT_THREADS", "2")


@dataclass
class Run:
    rc: int
    manifest: dict | None
    term: dict | None
    stderr: str
    out: Path

    def target(self, name: str) -> dict:
        for t in (self.manifest or {}).get("targets", []):
            if t["name"] == name:
                return t
        raise KeyError(name)


@pytest.fixture
def export(tmp_path, capsys, monkeypatch):
    """``export(spec_dict, name=...)`` -> Run. Output defaults to file://<tmp>/out."""
    from modelpilot_exporters import cli

    def _run(spec: dict, name: str = "test", out: Path | None = None, extra_args=()) -> Run:
        out = out or tmp_path / "out"
        spec = dict(spec)
        spec.setdefault("output", {"uri": f"file://{out}"})
        doc = {"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelExport",
               "metadata": {"name": name}, "spec": spec}
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump(doc))
        term = tmp_path / f"{name}.term"
        if term.exists():
            term.unlink()
        monkeypatch.setenv("MODELPILOT_TERMINATION_LOG", str(term))
        capsys.readouterr()
        rc = cli.main(["-f", str(f), *extra_args])
        err = capsys.readouterr().err
        man = None
        mpath = out / "manifest.json"
        if mpath.exists():
            man = json.loads(mpath.read_text())
        t = json.loads(term.read_text()) if term.exists() else None
        return Run(rc, man, t, err, out)

    return _run


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of the tiny source models, built once per session."""
    import torch

    import mp_export_models as mm

    d = tmp_path_factory.mktemp("models")
    mlp = mm.make_mlp()
    paths = {}
    paths["mlp_pt2"] = mm.save_pt2(mlp, (torch.randn(2, 16),), d / "mlp.pt2")
    torch.save(mlp.state_dict(), d / "mlp_state.pt")
    paths["mlp_state"] = d / "mlp_state.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.jit.trace(mlp, (torch.randn(2, 16),))
        torch.jit.save(ts, str(d / "mlp.ts"))
    paths["mlp_ts"] = d / "mlp.ts"
    paths["cnn_pt2"] = mm.save_pt2(mm.make_cnn(), (torch.randn(2, 1, 8, 8),), d / "cnn.pt2")
    paths["reg_pt2"] = mm.save_pt2(mm.make_regressor(), (torch.randn(2, 8),), d / "reg.pt2")
    paths["two_pt2"] = mm.save_pt2(
        mm.make_two_input(), (torch.randint(0, 10, (2, 6)), torch.ones(2, 6)), d / "two.pt2",
        dynamic_dims=({0: "b", 1: "s"}, {0: "b", 1: "s"}))
    # an fp32 ONNX source, from the MLP
    prog = torch.onnx.export(mlp, (torch.randn(2, 16),), None, dynamo=True, input_names=["x"],
                             output_names=["logits"],
                             dynamic_shapes=({0: torch.export.Dim.DYNAMIC},), external_data=False)
    prog.save(str(d / "mlp.onnx"), external_data=False)
    paths["mlp_onnx"] = d / "mlp.onnx"
    paths["dir"] = d
    return paths


@pytest.fixture(scope="session")
def tf_savedmodel(tmp_path_factory):
    import mp_export_models as mm

    d = tmp_path_factory.mktemp("tf")
    return mm.make_tf_savedmodel(d / "sm")


MLP_INPUTS = [{"name": "x", "dtype": "float32", "shape": [-1, 16]}]


from tests.conftest import free_port, s3_server  # noqa: E402,F401  (shared with tests/images)
