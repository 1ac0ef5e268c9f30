"""Transformer fusion of ONNX graphs, before quantization.

Two passes, both Microsoft's own:

1. ``onnxscript.rewriter.ort_fusions.optimize_for_ort``: pattern rewrites written for the graphs
   that ``torch.onnx.export(dynamo=True)`` emits. It turns the decomposed scaled-dot-product
   attention into ``MultiHeadAttention`` and, when Q, K and V come from projections of the same
   input (separate ``nn.Linear`` layers as in Hugging Face BERT, or a packed projection sliced on
   the last axis), into the packed ``Attention`` op that onnxruntime's quantizer turns into
   ``QAttention``. It also fuses SkipLayerNormalization, BiasGelu, Gelu and rotary embeddings.
   The graph is then constant-folded without onnxscript's default size limits, so the packed QKV
   weight (a ``Concat`` of the three projections) becomes one initializer the quantizers can see.
2. ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` for what pass 1 left
   (it rarely finds anything after pass 1). On dynamo graphs alone it fuses SkipLayerNormalization
   and BiasGelu but never attention: its attention patterns are those of the TorchScript exporter
   (one ``Div``/``Mul`` after Q·Kᵀ), while the dynamo exporter scales Q and K separately.

Before pass 1, a packed QKV projection written the common PyTorch way (one ``Linear`` to 3·D,
``reshape(b, s, 3, heads, head_dim).permute(2, 0, 3, 1, 4)``, then ``q, k, v = ...`` unbound) is
split into three projections (:func:`split_packed_qkv`): in that form onnxscript's patterns find
neither the per-head Q/K/V of ``MultiHeadAttention`` with bias nor the packed ``Attention``, and
only fuse the bare ``MultiHeadAttention`` surrounded by transposes.

``Attention`` nodes get their ``qkv_hidden_sizes`` attribute dropped when the three sizes are equal
(it is the default then): onnxruntime's dynamic quantizer skips any Attention that carries it.
An Attention node with an additive attention bias (input 5) keeps it, because QAttention has no
such input and quantizing it would silently drop the mask.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

# contrib ops the fusions produce (counted in the manifest), and the plain ops they replace
FUSED_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "SkipLayerNormalization",
             "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
             "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "GemmFastGelu",
             "RotaryEmbedding", "BiasSplitGelu", "QuickGelu")
LEFT_OPS = ("Softmax", "LayerNormalization", "Gelu", "Erf", "Tanh", "Transpose", "MatMul")
_MS = "com.microsoft"


def op_counts(model) -> dict[tuple[str, str], int]:
    """(domain, op_type) -> count over the main graph of an ``onnx.ModelProto``."""
    return dict(collections.Counter(((n.domain or "").replace("ai.onnx", ""), n.op_type)
                                    for n in model.graph.node))


def has_attention(model) -> bool:
    """True when the graph holds an attention op, or a Softmax fed (through at most four
    element-wise ops) by a MatMul of two activations, i.e. Q·Kᵀ."""
    inits = {t.name for t in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("Attention", "MultiHeadAttention", "GroupQueryAttention"):
            return True
        if n.op_type != "Softmax":
            continue
        frontier = [n.input[0]]
        for _ in range(5):
            nxt = []
            for name in frontier:
                p = producer.get(name)
                if p is None:
                    continue
                if p.op_type == "MatMul" and not any(i in inits or i in consts for i in p.input):
                    return True
                if p.op_type in ("Add", "Mul", "Div", "Where", "Cast", "Sub"):
                    nxt += [i for i in p.input if i and i not in inits and i not in consts]
            frontier = nxt
    return False


def fuse_transformer(src: Path, dst: Path) -> dict[str, Any]:
    """Fuse ``src`` into ``dst``; returns the manifest's ``fusion`` record (counts per fused op,
    the rewrite rules that fired, and the plain ops left).

    Packing Q, K and V into ``Attention`` pays only when the quantizer can turn it into
    ``QAttention``; an Attention with an additive attention bias (any model that computes a mask)
    would keep its QKV projection in fp32 under int8, so then the graph is fused again with
    ``MultiHeadAttention`` and the projections left as MatMuls that quantize."""
    from .onnx_ops import save

    proto, rules = _onnxscript_pass(src, pack_attention=True)
    note = None
    if any(n.op_type == "Attention" and len(n.input) > 5 and n.input[5] for n in proto.graph.node):
        proto, rules = _onnxscript_pass(src, pack_attention=False)
        note = ("Q/K/V not packed into Attention: its attention-bias input (the mask) has no "
                "QAttention equivalent, so int8 would keep the QKV projection in fp32")
    ort_stats = _ort_transformer_pass(proto)
    save(ort_stats.pop("_model"), dst)
    import onnx

    counts = op_counts(onnx.load(str(dst), load_external_data=False))
    fused = {op: counts[(_MS, op)] for op in FUSED_OPS if counts.get((_MS, op))}
    left = {op: counts[("", op)] for op in LEFT_OPS if counts.get(("", op))}
    rec = {"mode": "transformer", "fused": fused, "left": left,
           "rules": {k: v for k, v in rules.items() if v},
           "ortOptimizer": {k: v for k, v in ort_stats.items() if v},
           "tools": "onnxscript.rewriter.ort_fusions + onnxruntime.transformers.optimizer (bert)"}
    if note:
        rec["note"] = note
    return rec


def _onnxscript_pass(src: Path, pack_attention: bool):
    import onnx
    import onnx_ir as ir
    import onnxscript
    from onnxscript.rewriter.ort_fusions import _core, optimize_for_ort

    proto = onnx.load(str(src))
    split = split_packed_qkv(proto)
    model = ir.from_proto(proto)
    saved = _core.fuse_attention
    if not pack_attention:
        _core.fuse_attention = lambda model, debug=False: 0
    try:
        model, rules = optimize_for_ort(model)
    finally:
        _core.fuse_attention = saved
    # fold the Concat of the Q, K and V weights (and other constant subgraphs) of any size
    onnxscript.optimizer.optimize(model, input_size_limit=1 << 40, output_size_limit=1 << 40)
    proto = ir.to_proto(model)
    _strip_default_qkv_sizes(proto)
    if split:
        rules = {"split_packed_qkv": split, **rules}
    return proto, rules


def split_packed_qkv(model) -> int:
    """Rewrite ``Transpose(Reshape(MatMul(h, W) + b, [B, S, 3, H, Dh]), perm=[2, 0, 3, 1, 4])``
    unbound by three ``Squeeze(Slice(., i, i + 1, axis 0))`` into three projections
    ``Transpose(Reshape(MatMul(h, W_i) + b_i, [B, S, H, Dh]), perm=[0, 2, 1, 3])``. In place;
    returns how many packed projections were split."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    done = 0
    for tr in list(g.node):
        perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
        if tr.op_type != "Transpose" or perm != [2, 0, 3, 1, 4]:
            continue
        rs = producer.get(tr.input[0])
        shape = const(rs.input[1]) if rs is not None and rs.op_type == "Reshape" else None
        add = producer.get(rs.input[0]) if shape is not None else None
        if shape is None or shape.shape != (5,) or shape[2] != 3 or add is None or add.op_type != "Add":
            continue
        mm = producer.get(add.input[0])
        w, b = (const(mm.input[1]) if mm is not None and mm.op_type == "MatMul" else None), const(add.input[1])
        if w is None or b is None or w.ndim != 2 or b.shape != (w.shape[1],) or w.shape[1] % 3:
            continue
        unbind = _unbind_of(tr.output[0], consumers, const)
        if unbind is None or len(consumers[rs.output[0]]) != 1 or len(consumers[add.output[0]]) != 1 \
                or len(consumers[mm.output[0]]) != 1:
            continue
        d = w.shape[1] // 3
        new_shape = f"{rs.input[1]}_split"
        g.initializer.append(numpy_helper.from_array(np.array([shape[0], shape[1], shape[3], shape[4]],
                                                              dtype=np.int64), new_shape))
        allow = [a for a in rs.attribute if a.name == "allowzero"]
        vinfo = {v.name: v for v in g.value_info}
        nodes = []
        for i, out in enumerate(unbind):
            tag = f"{tr.output[0]}_{'qkv'[i]}"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[:, i * d:(i + 1) * d]), f"{tag}_w"))
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(b[i * d:(i + 1) * d]), f"{tag}_b"))
            nodes += [helper.make_node("MatMul", [mm.input[0], f"{tag}_w"], [f"{tag}_mm"]),
                      helper.make_node("Add", [f"{tag}_mm", f"{tag}_b"], [f"{tag}_lin"]),
                      helper.make_node("Reshape", [f"{tag}_lin", new_shape], [f"{tag}_bshd"]),
                      helper.make_node("Transpose", [f"{tag}_bshd"], [out], perm=[0, 2, 1, 3])]
            nodes[-2].attribute.extend(allow)
            _annotate(g, vinfo.get(out), f"{tag}_bshd", (0, 2, 1, 3))  # the batch symbol, for the
            _annotate(g, vinfo.get(add.output[0]), f"{tag}_lin", None, d)  # shape checks of the
            _annotate(g, vinfo.get(add.output[0]), f"{tag}_mm", None, d)  # fusion patterns
        dead = {n.output[0] for n in [mm, add, rs, tr] + [producer[o] for o in unbind]
                + [producer[producer[o].input[0]] for o in unbind]}
        at = min(k for k, n in enumerate(g.node) if n.output[0] in dead)
        keep = [n for n in g.node if n.output[0] not in dead]
        del g.node[:]
        g.node.extend(keep[:at] + nodes + keep[at:])
        done += 1
    if done:
        used = {i for n in g.node for i in n.input}
        for t in [t for t in g.initializer if t.name not in used]:
            g.initializer.remove(t)
    return done


def _annotate(g, like, name: str, perm: tuple[int, ...] | None, last: int | None = None) -> None:
    """Add a value_info for ``name`` with the dims of ``like`` (permuted, or last dim replaced)."""
    if like is None:
        return
    v = g.value_info.add()
    v.CopyFrom(like)
    v.name = name
    dims = [type(d)() for d in like.type.tensor_type.shape.dim]
    for k, d in enumerate(like.type.tensor_type.shape.dim):
        dims[k].CopyFrom(d)
    if perm is not None:
        dims = [dims[i] for i in perm]
    del v.type.tensor_type.shape.dim[:]
    for d in dims:
        v.type.tensor_type.shape.dim.add().CopyFrom(d)
    if last is not None:
        v.type.tensor_type.shape.dim[-1].Clear()
        v.type.tensor_type.shape.dim[-1].dim_value = last


def _unbind_of(packed: str, consumers, const) -> list[str] | None:
    """The outputs of ``Squeeze(Slice(packed, [i], [i + 1], axes [0]), [0])`` for i = 0, 1, 2, in
    order, when those are the only consumers of ``packed``; else None."""
    outs: dict[int, str] = {}
    for sl in consumers[packed]:
        args = [const(x) for x in sl.input[1:4]] if sl.op_type == "Slice" and len(sl.input) >= 4 else None
        if not args or any(a is None for a in args) or args[2].tolist() != [0]:
            return None
        i = int(args[0][0])
        sq = consumers[sl.output[0]]
        if args[1].tolist() != [i + 1] or len(sq) != 1 or sq[0].op_type != "Squeeze" \
                or const(sq[0].input[1]) is None or const(sq[0].input[1]).tolist() != [0]:
            return None
        outs[i] = sq[0].output[0]
    return [outs[i] for i in range(3)] if sorted(outs) == [0, 1, 2] else None


def _strip_default_qkv_sizes(model) -> int:
    n_stripped = 0
    for n in model.graph.node:
        if n.op_type != "Attention" or n.domain != _MS:
            continue
        if len(n.input) > 5 and n.input[5]:
            continue  # additive attention bias: QAttention cannot carry it
        for a in list(n.attribute):
            if a.name == "qkv_hidden_sizes" and len(set(a.ints)) == 1:
                n.attribute.remove(a)
                n_stripped += 1
    return n_stripped


def _ort_transformer_pass(model) -> dict[str, Any]:
    """onnxruntime's transformer optimizer at opt_level 0 (fusions only; the session-level graph
    optimizations stay with ``optimization.level``). Returns its fused-op statistics, with the
    resulting ModelProto under ``_model``."""
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.onnx_model_bert import BertOnnxModel

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    before = collections.Counter(n.op_type for n in model.graph.node if n.domain == _MS)
    opt = BertOnnxModel(model, num_heads=0, hidden_size=0)
    opt.optimize(FusionOptions("bert"), add_dynamic_axes=False)
    stats = dict(opt.get_fused_operator_statistics())
    # report what this pass added, not what pass 1 had already fused
    stats = {k: max(0, v - before.get(k, 0)) for k, v in stats.items() if k in FUSED_OPS}
    stats["_model"] = opt.model
    return stats
