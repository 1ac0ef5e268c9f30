"""Magnitude pruning of a PyTorch source, made permanent before export.

What is pruned: every parameter whose name ends in ``weight`` and that has 2 or more dimensions
(Linear, Conv, Embedding, attention projections); biases and norm scales are left alone. The
masks come from ``torch.nn.utils.prune``:

* ``unstructured``: ``L1Unstructured(amount)`` per tensor: the ``amount`` fraction of weights
  with the smallest magnitude becomes 0.
* ``structured``: ``LnStructured(amount, n=2, dim=0)`` per tensor: the ``amount`` fraction of
  output channels / rows with the smallest L2 norm becomes 0. The LAST such tensor (the output
  layer) is skipped, otherwise whole classes or output features would be zeroed.

The mask is multiplied into the tensor in place (``prune.remove`` semantics: no ``weight_orig``,
no hooks), so every exporter sees a plain dense tensor. This works the same for an ``nn.Module``,
a TorchScript module and an ExportedProgram (whose weights live in ``ep.state_dict``).

Honest accounting: the shapes do not change, so dense formats (ONNX, pt2, TorchScript) store the
zeros: the file size stays the same and dense kernels run at the same speed. What does change is
how well the file compresses (reported as ``zlibSizeBytes`` in the manifest) and, for structured
pruning, what a later channel-removal step could cut.
"""

from __future__ import annotations

from typing import Any

from .errors import ExportError


def _named_weights(tm) -> list[tuple[str, Any]]:
    if tm.kind == "exportedProgram":
        ep = tm.obj
        params = set(ep.graph_signature.parameters)
        items = [(k, v) for k, v in ep.state_dict.items() if k in params]
    else:
        items = list(tm.obj.named_parameters())
    return [(k, v) for k, v in items if k.split(".")[-1].endswith("weight") and v.dim() >= 2
            and v.is_floating_point()]


def prune(tm, method: str, amount: float) -> dict:
    """Prune ``tm`` in place; return the sparsity report."""
    import torch
    from torch.nn.utils import prune as tprune

    weights = _named_weights(tm)
    if not weights:
        raise ExportError("pruning found no weight tensors (parameters named *weight with >= 2 dims)")
    if method == "structured":
        targets = weights[:-1] if len(weights) > 1 else weights
    else:
        targets = weights
    zeros = total = 0
    with torch.no_grad():
        for _, w in targets:
            if method == "unstructured":
                mask = tprune.L1Unstructured(amount).compute_mask(w, torch.ones_like(w))
            else:
                mask = tprune.LnStructured(amount, n=2, dim=0).compute_mask(w, torch.ones_like(w))
            w.mul_(mask.to(w.dtype))
            zeros += int((w == 0).sum())
            total += w.numel()
        all_zero = all_total = 0
        for _, w in weights:
            all_zero += int((w == 0).sum())
            all_total += w.numel()
    if tm.kind != "exportedProgram":
        params = list(tm.obj.parameters())
    else:
        params = list(tm.obj.state_dict.values())
    pz = sum(int((p == 0).sum()) for p in params)
    pt = sum(p.numel() for p in params)
    return {
        "method": method,
        "amount": amount,
        "prunedTensors": [k for k, _ in targets],
        "sparsityPrunedTensors": round(zeros / max(total, 1), 4),
        "sparsityAllWeights": round(all_zero / max(all_total, 1), 4),
        "sparsityAllParameters": round(pz / max(pt, 1), 4),
        "note": "dense formats store the zeros: file size and dense-kernel latency do not shrink; "
                "compare zlibSizeBytes and latencyMs with an unpruned target",
    }
