"""PyTorch sources and targets.

Loaders (``spec.source.pytorch.loader``):

* ``exportedProgram`` - a ``.pt2`` file written by ``torch.export.save`` (default). Refused before
  loading when it holds pickled entries or native code, unless ``spec.source.allowPickle`` (see
  pt2_archive.py).
* ``torchscript`` - a TorchScript archive written by ``torch.jit.save``.
* ``stateDict`` - ``spec.source.pytorch.factory`` (``"package.module:callable"``, importable in
  the exporter image or through ``PYTHONPATH``) builds the ``nn.Module``; the source file is its
  ``state_dict`` (``torch.save``; a checkpoint dict holding ``state_dict`` or ``model`` works too),
  loaded with ``weights_only=True``.

Targets:

* ONNX through ``torch.onnx.export(..., dynamo=True)``; every -1 in ``spec.inputs`` becomes a
  dynamic dimension (``torch.export.Dim.DYNAMIC``); weights go to external data when the model is
  over 2 GB. A TorchScript source cannot go through ``torch.export``, so it uses the TorchScript
  exporter (``dynamo=False``, ``dynamic_axes``) instead.
* ``pt2`` through ``torch.export.export`` + ``torch.export.save`` (not from a TorchScript source).
* TorchScript through ``torch.jit.trace`` + ``torch.jit.save`` (deprecated upstream, but Triton's
  libtorch backend needs it).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import pt2_archive
from .errors import ExportError, InputError
from .spec import InputSpec, Source
from .validate import SEED, random_array


def _torch():
    import torch

    return torch


@dataclass
class TorchModel:
    """A loaded PyTorch model: ``obj`` is an ExportedProgram, a ScriptModule or an nn.Module."""

    kind: str
    obj: Any
    output_names: list[str]

    def module(self):
        """Something callable in eager mode."""
        if self.kind == "exportedProgram":
            return self.obj.module()
        return self.obj

    def param_bytes(self) -> int:
        if self.kind == "exportedProgram":
            return sum(t.numel() * t.element_size() for t in self.obj.state_dict.values())
        return sum(p.numel() * p.element_size() for p in self.obj.parameters())


def flatten_outputs(out: Any) -> tuple[list[Any], list[str]]:
    """Flatten a model's outputs (tensor, tuple/list, dict) to a list, with names."""
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return [out], ["output"]
    if isinstance(out, dict):
        leaves, names = [], []
        for k, v in out.items():
            sub, subn = flatten_outputs(v)
            leaves += sub
            names += [str(k) if n == "output" and len(sub) == 1 else f"{k}.{n}" for n in subn]
        return leaves, names
    if isinstance(out, (list, tuple)):
        leaves, names = [], []
        for i, v in enumerate(out):
            sub, subn = flatten_outputs(v)
            leaves += sub
            names += [f"output_{i}" if n == "output" and len(sub) == 1 else f"output_{i}.{n}" for n in subn]
        return leaves, names
    return [torch.as_tensor(out)], ["output"]


def _import_factory(factory: str):
    mod_name, _, attr = factory.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - anything the user's module raises on import
        raise InputError(f"spec.source.pytorch.factory: cannot import {mod_name!r}: "
                         f"{type(e).__name__}: {e} (is it in the image or on PYTHONPATH?)") from e
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"spec.source.pytorch.factory: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"spec.source.pytorch.factory: {factory!r} is not callable")
    return obj


def example_inputs(inputs: Sequence[InputSpec], batch: int = 2) -> tuple:
    """Seeded example tensors for tracing; dynamic batch dims get 2 (1 would be specialized)."""
    torch = _torch()
    rng = np.random.default_rng(SEED + 1)
    return tuple(torch.from_numpy(random_array(i, rng, batch=batch)) for i in inputs)


def load(path: Path, source: Source, inputs: Sequence[InputSpec]) -> TorchModel:
    torch = _torch()
    what = f"spec.source.uri: {source.uri}"
    if path.is_dir():
        cands = sorted(p for p in path.iterdir() if p.suffix in (".pt2", ".pt", ".pth", ".ts", ".bin"))
        if len(cands) != 1:
            raise InputError(f"{what}: is a directory; point the URI at the model file")
        path = cands[0]
    try:
        if source.loader == "exportedProgram":
            why = pt2_archive.refusal(path, source.allow_pickle, "spec.source.allowPickle")
            if why:
                raise InputError(f"{what}: {why}")
            obj = torch.export.load(str(path))
        elif source.loader == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.jit.load(str(path), map_location="cpu").eval()
        else:
            factory = _import_factory(source.factory or "")
            try:
                obj = factory()
            except Exception as e:  # noqa: BLE001
                raise InputError(f"spec.source.pytorch.factory: {source.factory}() raised "
                                 f"{type(e).__name__}: {e}") from e
            if not isinstance(obj, torch.nn.Module):
                raise InputError(f"spec.source.pytorch.factory: {source.factory}() returned "
                                 f"{type(obj).__name__}, not a torch.nn.Module")
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
            elif isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
                sd = sd["model"]
            try:
                obj.load_state_dict(sd, strict=True)
            except RuntimeError as e:
                raise InputError(f"{what}: the state_dict does not fit {source.factory}(): "
                                 f"{str(e).splitlines()[0]} ...") from e
            obj.eval()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise InputError(f"{what}: cannot load as {source.loader}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from e
    tm = TorchModel(source.loader, obj, [])
    with torch.no_grad():
        try:
            out = tm.module()(*example_inputs(inputs))
        except Exception as e:  # noqa: BLE001
            raise InputError(f"spec.inputs: the model does not run on inputs shaped like spec.inputs "
                             f"({', '.join(f'{i.name}{list(i.shape)}:{i.dtype}' for i in inputs)}): "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    tm.output_names = flatten_outputs(out)[1]
    return tm


class TorchRunner:
    """Validation runner: numpy inputs in spec order -> flattened numpy outputs."""

    def __init__(self, fn, inputs: Sequence[InputSpec]):
        self.fn = fn
        self.names = [i.name for i in inputs]

    def __call__(self, sample: dict) -> list[np.ndarray]:
        torch = _torch()
        with torch.no_grad():
            out = self.fn(*[torch.from_numpy(np.ascontiguousarray(sample[n])) for n in self.names])
        leaves, _ = flatten_outputs(out)
        return [t.detach().cpu().numpy() for t in leaves]


def dynamic_shapes(inputs: Sequence[InputSpec]) -> tuple:
    torch = _torch()
    return tuple({d: torch.export.Dim.DYNAMIC for d in i.dynamic_dims} or None for i in inputs)


def torch_export(tm: TorchModel, inputs: Sequence[InputSpec]):
    """An ExportedProgram for ``tm`` (itself when it already is one)."""
    torch = _torch()
    if tm.kind == "exportedProgram":
        return tm.obj
    if tm.kind == "torchscript":
        raise ExportError("torch.export cannot trace a TorchScript module; load the source as "
                          "exportedProgram or stateDict to produce pt2")
    return torch.export.export(tm.obj, example_inputs(inputs), dynamic_shapes=dynamic_shapes(inputs))


def to_onnx(tm: TorchModel, inputs: Sequence[InputSpec], path: Path, opset: int | None = None) -> None:
    """torch.onnx.export with dynamo=True (TorchScript exporter for a TorchScript source)."""
    import logging

    torch = _torch()
    # "torchvision is not installed. Skipping torchvision::nms" x4 per export: noise in Job logs
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [i.name for i in inputs]
    from .onnx_ops import external_threshold

    big = tm.param_bytes() > external_threshold()
    args = example_inputs(inputs)
    if tm.kind == "torchscript":
        dyn = {i.name: {d: f"{i.name}_dim{d}" for d in i.dynamic_dims} for i in inputs if i.dynamic_dims}
        dyn.update({n: {0: f"{n}_dim0"} for n in tm.output_names if all(i.shape[:1] == (-1,) for i in inputs)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "legacy TorchScript-based ONNX export" notice
            torch.onnx.export(tm.obj, args, str(path), dynamo=False, input_names=names,
                              output_names=tm.output_names, dynamic_axes=dyn,
                              opset_version=opset or 17)
        return
    model = tm.obj
    kwargs: dict[str, Any] = {}
    if tm.kind != "exportedProgram":
        kwargs["dynamic_shapes"] = dynamic_shapes(inputs)
    prog = torch.onnx.export(model, args, None, dynamo=True, input_names=names,
                             output_names=tm.output_names, opset_version=opset,
                             external_data=big, verbose=False, report=False, **kwargs)
    prog.save(str(path), external_data=big)


def to_pt2(tm: TorchModel, inputs: Sequence[InputSpec], path: Path) -> None:
    torch = _torch()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(torch_export(tm, inputs), str(path))


def to_torchscript(tm: TorchModel, inputs: Sequence[InputSpec], path: Path) -> None:
    torch = _torch()
    path.parent.mkdir(parents=True, exist_ok=True)
    if tm.kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(tm.obj, str(path))
        return
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
        ts = torch.jit.trace(tm.module(), example_inputs(inputs), check_trace=False, strict=False)
        torch.jit.save(ts, str(path))


def pt2_runner(path: Path, inputs: Sequence[InputSpec]) -> TorchRunner:
    return TorchRunner(_torch().export.load(str(path)).module(), inputs)


def torchscript_runner(path: Path, inputs: Sequence[InputSpec]) -> TorchRunner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TorchRunner(_torch().jit.load(str(path), map_location="cpu").eval(), inputs)
