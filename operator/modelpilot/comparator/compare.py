"""Pure comparison of two inference answers to the same request. No I/O, no numpy (the operator
image has none): answers are parsed into named tensors (shape + flat float values) for each wire
format our runtimes speak, then compared row by row.

Formats (`protocol`):
- `v2`: the Open Inference Protocol (Triton, KServe): `{"outputs": [{"name", "shape", "data"}]}`;
- `torchserve`: modelpilot's TorchServe handler, `{"outputs": {"<name>": nested lists}}`, or any
  other JSON a handler returns (one tensor named `output`);
- `tfserving`: TF Serving's REST predict, `{"predictions": [...]}` (row format, rows may be objects
  of named outputs) or `{"outputs": ...}` (columnar format).

A row (the first dimension) *agrees* when the top-1 class is the same in every output whose rows
hold more than one value (a classifier's scores). A model with no such output (a regressor, a
single score) agrees on a row when each value is within `atol + rtol * |stable|`. The differences
are measured over every value of every output either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("v2", "torchserve", "tfserving")
#: spec.runtime.kind -> the protocol its HTTP inference API speaks.
RUNTIME_PROTOCOLS = {"triton": "v2", "torchserve": "torchserve", "tfserving": "tfserving"}


class FormatError(ValueError):
    """An answer that is not a tensor payload of the protocol; the message says what was found."""


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    def row(self, i: int) -> tuple[float, ...]:
        width = len(self.values) // self.rows if self.rows else 0
        return self.values[i * width:(i + 1) * width]


@dataclass(frozen=True)
class Comparison:
    """One request's verdict. `mismatch` names a structural difference (then nothing is compared)."""

    rows: int
    agreed_rows: int
    values: int = 0
    max_abs_diff: float = 0.0
    sum_abs_diff: float = 0.0
    mismatch: str = ""

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_abs_diff / self.values if self.values else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {"rows": self.rows, "agreedRows": self.agreed_rows, "values": self.values,
               "maxAbsDiff": self.max_abs_diff, "meanAbsDiff": self.mean_abs_diff}
        return {**out, "mismatch": self.mismatch} if self.mismatch else out


def tensor_from_nested(value: Any, where: str) -> Tensor:
    """A tensor from nested JSON lists (or a scalar); ragged lists are a FormatError naming `where`."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat: list[float] = []
    _flatten(value, tuple(shape), where, flat)
    return Tensor(tuple(shape), tuple(flat))


def _flatten(value: Any, shape: tuple[int, ...], where: str, out: list[float]) -> None:
    if not shape:
        out.append(_number(value, where))
        return
    if not isinstance(value, list) or len(value) != shape[0]:
        raise FormatError(f"{where}: ragged tensor (expected a list of {shape[0]})")
    for v in value:
        _flatten(v, shape[1:], where, out)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{where}: expected a number, got {type(value).__name__}")
    return float(value)


def parse_answer(protocol: str, body: Any) -> dict[str, Tensor]:
    """Named tensors of one answer (already JSON-decoded)."""
    if protocol == "v2":
        return _parse_v2(body)
    if protocol == "torchserve":
        if isinstance(body, dict) and isinstance(body.get("outputs"), dict):
            return {str(k): tensor_from_nested(v, f"outputs.{k}") for k, v in body["outputs"].items()}
        return {"output": tensor_from_nested(body, "answer")}
    if protocol == "tfserving":
        return _parse_tfserving(body)
    raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def _parse_v2(body: Any) -> dict[str, Tensor]:
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list):
        raise FormatError("v2 answer: expected an object with an outputs list")
    out = {}
    for i, o in enumerate(outputs):
        where = f"outputs[{i}]"
        if not isinstance(o, dict) or "name" not in o or "data" not in o:
            raise FormatError(f"{where}: expected name, shape and data")
        shape = tuple(int(d) for d in o.get("shape") or ())
        values = tensor_from_nested(o["data"], f"{where}.data").values
        if math.prod(shape) != len(values):
            raise FormatError(f"{where}: shape {list(shape)} holds {math.prod(shape)} values, data has {len(values)}")
        out[str(o["name"])] = Tensor(shape, values)
    return out


def _parse_tfserving(body: Any) -> dict[str, Tensor]:
    if not isinstance(body, dict) or not ({"predictions", "outputs"} & set(body)):
        raise FormatError("tfserving answer: expected an object with predictions or outputs")
    if "outputs" in body:
        cols = body["outputs"]
        if isinstance(cols, dict):
            return {str(k): tensor_from_nested(v, f"outputs.{k}") for k, v in cols.items()}
        return {"output": tensor_from_nested(cols, "outputs")}
    rows = body["predictions"]
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        names = sorted(rows[0])
        return {n: tensor_from_nested([r.get(n) for r in rows], f"predictions[].{n}") for n in names}
    return {"output": tensor_from_nested(rows, "predictions")}


def compare_answers(stable: Mapping[str, Tensor], shadow: Mapping[str, Tensor], *,
                    atol: float = 1e-3, rtol: float = 1e-3) -> Comparison:
    """Compare the shadow's tensors with the stable's."""
    mismatch = _structure_mismatch(stable, shadow)
    rows = max((t.rows for t in stable.values()), default=0)
    if mismatch:
        return Comparison(rows=rows, agreed_rows=0, mismatch=mismatch)
    agree = [True] * rows
    values, max_diff, sum_diff = 0, 0.0, 0.0
    by_top1 = any(len(t.values) > t.rows for t in stable.values())  # some output holds class scores
    for name in sorted(stable):
        a, b = stable[name], shadow[name]
        for i in range(a.rows):
            ra, rb = a.row(i), b.row(i)
            diffs = [abs(x - y) for x, y in zip(ra, rb, strict=True)]
            values += len(diffs)
            sum_diff += sum(diffs)
            max_diff = max([max_diff, *diffs])
            if not by_top1:
                agree[i] = agree[i] and all(d <= atol + rtol * abs(x) for d, x in zip(diffs, ra, strict=True))
            elif len(ra) > 1:
                agree[i] = agree[i] and _argmax(ra) == _argmax(rb)
    return Comparison(rows=rows, agreed_rows=sum(agree), values=values, max_abs_diff=max_diff, sum_abs_diff=sum_diff)


def _structure_mismatch(stable: Mapping[str, Tensor], shadow: Mapping[str, Tensor]) -> str:
    if set(stable) != set(shadow):
        return f"outputs differ: stable has {sorted(stable)}, shadow has {sorted(shadow)}"
    for name in sorted(stable):
        if stable[name].shape != shadow[name].shape:
            return f"output {name}: stable shape {list(stable[name].shape)}, shadow shape {list(shadow[name].shape)}"
    return ""


def _argmax(values: tuple[float, ...]) -> int:
    return max(range(len(values)), key=values.__getitem__)
