"""Served-model parity: before a new revision gets traffic, send it the inputs its ModelExport
validated on and compare the answers with the artifact's own outputs at export time, within the
export's tolerances. This catches "the model loads but answers wrong" (a wrong artifact, a runtime
that mis-parses the config, a broken handler), which a readiness probe cannot see.

The record is `parity.json`, written by the exporter beside each target (modelpilot_exporters.
pipeline): `{"atol", "rtol", "inputs": [{"<name>": {"dtype", "data"}}], "outputs": [{"<name>":
nested}]}`, one entry per sample. `check_parity` is pure (the HTTP call comes in as `send`);
`modelpilot-parity` (modelpilot_exporters.parity_check), the check Job's command, runs it against a
revision's Service (rollout/parity.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .compare import PROTOCOLS, FormatError, Tensor, parse_answer, tensor_from_nested

Send = Callable[[str, Mapping[str, Any]], Any]  # (path, JSON body) -> decoded answer; raises ParityError
V2_DATATYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
                "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}
PREVIEW_VALUES = 4


class ParityError(Exception):
    """The revision did not answer (HTTP error, timeout, not JSON)."""


@dataclass(frozen=True)
class ParityResult:
    passed: bool
    samples: int  # samples checked (up to and including a failing one)
    message: str
    sample: int | None = None
    output: str | None = None
    max_abs_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in {"passed": self.passed, "samples": self.samples, "message": self.message,
                                  "sample": self.sample, "output": self.output,
                                  "maxAbsDiff": self.max_abs_diff}.items() if v is not None}


def build_request(protocol: str, model: str, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """(path, body) of one inference request in the runtime's own protocol."""
    if protocol == "v2":
        body = {"inputs": [{"name": n, "datatype": V2_DATATYPES[v["dtype"]],
                            "shape": list(tensor_from_nested(v["data"], n).shape), "data": v["data"]}
                           for n, v in inputs.items()]}
        return f"/v2/models/{model}/infer", body
    if protocol == "torchserve":
        return f"/predictions/{model}", {"inputs": {n: v["data"] for n, v in inputs.items()}}
    if protocol == "tfserving":
        return f"/v1/models/{model}:predict", {"inputs": {n: v["data"] for n, v in inputs.items()}}
    raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def check_parity(record: Mapping[str, Any], send: Send, protocol: str, model: str) -> ParityResult:
    """Send every recorded input; the first answer outside the tolerances fails the check."""
    atol, rtol = float(record["atol"]), float(record["rtol"])
    samples = list(zip(record["inputs"], record["outputs"], strict=True))
    for i, (inputs, outputs) in enumerate(samples):
        path, body = build_request(protocol, model, inputs)
        where = f"recorded input {i} ({_preview(inputs)})"
        try:
            served = parse_answer(protocol, send(path, body))
        except (ParityError, FormatError) as e:
            return ParityResult(False, i + 1, f"{where}: the revision did not answer with tensors: {e}", sample=i)
        expected = {n: tensor_from_nested(v, f"outputs.{n}") for n, v in outputs.items()}
        if set(served) == {"output"} and len(expected) == 1:
            served = {next(iter(expected)): served["output"]}  # an unnamed single output
        problem = _difference(expected, served, atol, rtol)
        if problem:
            output, diff, text = problem
            return ParityResult(False, i + 1, f"{where}: {text} (tolerance atol={atol:g}, rtol={rtol:g})",
                                sample=i, output=output, max_abs_diff=diff)
    return ParityResult(True, len(samples), f"{len(samples)} recorded inputs answered within atol={atol:g}, rtol={rtol:g}")


def _difference(expected: Mapping[str, Tensor], served: Mapping[str, Tensor], atol: float,
                rtol: float) -> tuple[str, float | None, str] | None:
    for name in sorted(expected):
        want = expected[name]
        got = served.get(name)
        if got is None:
            return name, None, f"output {name!r} is missing (served: {sorted(served)})"
        if got.shape != want.shape:
            return name, None, f"output {name!r} has shape {list(got.shape)}, exported {list(want.shape)}"
        diffs = [abs(a - b) for a, b in zip(got.values, want.values, strict=True)]
        bad = [k for k, (d, w) in enumerate(zip(diffs, want.values, strict=True)) if not d <= atol + rtol * abs(w)]
        if bad:
            k = max(bad, key=diffs.__getitem__)
            return name, max(diffs), (f"output {name!r} differs by up to {max(diffs):.6g} at index {k} "
                                      f"(served {got.values[k]:.6g}, exported {want.values[k]:.6g}); "
                                      f"{len(bad)} of {len(diffs)} values outside")
    return None


def _preview(inputs: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for n, v in inputs.items():
        t = tensor_from_nested(v["data"], n)
        head = ", ".join(f"{x:g}" for x in t.values[:PREVIEW_VALUES])
        parts.append(f"{n}{list(t.shape)}: {head}{', ...' if len(t.values) > PREVIEW_VALUES else ''}")
    return "; ".join(parts)


def http_sender(base_url: str, timeout: float) -> Send:
    def send(path: str, body: Mapping[str, Any]) -> Any:
        req = urllib.request.Request(base_url.rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise ParityError(f"HTTP {e.code}: {e.read()[:200].decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ParityError(f"{type(e).__name__}: {e}") from None
    return send
