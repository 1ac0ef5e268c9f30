"""Fixtures for the runtime checks: tiny torch models built in-process, ModelDeployment views."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import subprocess
import sys

import pytest

from modelpilot.api.modeldeployment import ModelDeployment, parse_model_deployment

from ..unit.helpers import md

REPO = Path(__file__).resolve().parents[2]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def deployment(**spec: Any) -> ModelDeployment:
    return parse_model_deployment(md(**spec))


class TwoHeads:
    """Builds a small torch model with two inputs and two outputs (one of them 1-D per batch)."""

    @staticmethod
    def module():
        import torch

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                torch.manual_seed(0)
                self.lin = torch.nn.Linear(4, 3)
                self.emb = torch.nn.Embedding(10, 3)

            def forward(self, x, ids):
                h = self.lin(x) + self.emb(ids).sum(dim=1)
                return h, h.sum(dim=1)

        return Net().eval()

    @staticmethod
    def inputs(batch: int = 2):
        import torch

        g = torch.Generator().manual_seed(1)
        return torch.randn(batch, 4, generator=g), torch.randint(0, 10, (batch, 5), generator=g)


def build_two_heads(out: Path) -> None:
    """Write the TwoHeads model as ONNX (dynamic batch), TorchScript and torch.export .pt2 files."""
    import torch

    model = TwoHeads.module()
    x, ids = TwoHeads.inputs()
    batch = torch.export.Dim("batch", min=1, max=64)
    dyn = {"x": {0: batch}, "ids": {0: batch}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (x, ids), None, dynamo=True, input_names=["x", "ids"],
                                 output_names=["logits", "score"], dynamic_shapes=dyn, verbose=False, report=False)
        prog.save(str(out / "model.onnx"))
        torch.jit.save(torch.jit.trace(model, (x, ids)), str(out / "model.pt"))
        torch.export.save(torch.export.export(model, (x, ids), dynamic_shapes=dyn), str(out / "model.pt2"))
    # Reference outputs of the source model, for checks in processes that must not import torch.
    x3, ids3 = TwoHeads.inputs(batch=3)
    with torch.no_grad():
        logits, score = model(x3, ids3)
    import numpy as np

    np.savez(out / "reference.npz", x=x3.numpy(), ids=ids3.numpy(), logits=logits.numpy(), score=score.numpy())


@pytest.fixture(scope="session")
def two_heads(tmp_path_factory) -> dict[str, Path]:
    """The TwoHeads model files and reference outputs (reference.npz). Built in a child process: torch.onnx.export aborts a process that
    has imported tensorflow (the TF Serving checks do)."""
    out = tmp_path_factory.mktemp("models")
    code = f"from tests.runtimes.conftest import build_two_heads; from pathlib import Path; build_two_heads(Path({str(out)!r}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return {"onnx": out / "model.onnx", "torchscript": out / "model.pt", "pt2": out / "model.pt2",
            "reference": out / "reference.npz"}


def build_two_versions(out: Path, noise: float) -> None:
    """TwoHeads as TorchScript twice: v1, and v2 with `noise`-scaled Gaussian noise on the linear
    layer's weights (a retrained model that should mostly agree). reference.npz holds 16 input rows
    and both versions' outputs on them."""
    import numpy as np
    import torch

    v1 = TwoHeads.module()
    v2 = TwoHeads.module()
    with torch.no_grad():
        g = torch.Generator().manual_seed(2)
        v2.lin.weight += noise * torch.randn(v2.lin.weight.shape, generator=g)
    x, ids = TwoHeads.inputs(batch=16)
    ref = {"x": x.numpy(), "ids": ids.numpy()}
    for tag, model in (("v1", v1), ("v2", v2)):
        torch.jit.save(torch.jit.trace(model, (x[:2], ids[:2])), str(out / f"{tag}.pt"))
        with torch.no_grad():
            logits, score = model(x, ids)
        ref[f"{tag}_logits"], ref[f"{tag}_score"] = logits.numpy(), score.numpy()
    np.savez(out / "reference.npz", **ref)


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory) -> dict[str, Path]:
    """v1.pt, v2.pt (v1 slightly perturbed) and reference.npz; built in a child process like two_heads."""
    out = tmp_path_factory.mktemp("versions")
    code = ("from tests.runtimes.conftest import build_two_versions; from pathlib import Path; "
            f"build_two_versions(Path({str(out)!r}), 0.3)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return {"v1": out / "v1.pt", "v2": out / "v2.pt", "reference": out / "reference.npz"}
