"""``optimization.autotune``: build every candidate the spec allows, measure, keep the fastest one
within the accuracy budget.

A candidate is a (fusion, precision) pair, e.g. ``transformer+dynamic``. Defaults when the spec
lists none: precisions ``none``, ``dynamic`` and ``int4`` (plus ``int8`` when the target has
calibration data; ``fp16`` only when listed, since CPUs lack fp16 kernels); fusions ``none`` and
``transformer`` when the graph has attention (else ``none``). ``int4`` is only tried without
fusion (MatMulNBits needs the Q/K/V MatMuls that fusion packs).

Measured for each candidate, on the validation samples:

* accuracy against the source: top-1 agreement for classifier-shaped outputs (``accuracyDrop`` is
  ``1 - agreement``), relative L2 error for the others; within budget when every classifier output
  has ``accuracyDrop <= maxAccuracyDrop`` and every other output ``relL2Error <= maxRelL2Error``;
* latency at each of ``batchSizes`` (the samples repeated to fill the batch), in interleaved rounds
  (every candidate once per round), medians. The source is not timed here (its batch-1 latency is
  in the target's validation): it does not take part in the choice and was the slowest runner.

The choice: the smallest geometric mean of the latencies over the batch sizes (each batch size
weighs the same whatever its absolute latency), among the candidates within budget.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_MODES = ("none", "dynamic", "int4")
ROUNDS = 3
MIN_ROUND_SECONDS = 0.02


@dataclass
class Candidate:
    fusion: str
    mode: str
    size_bytes: int = 0
    latency_ms: dict[int, float] = field(default_factory=dict)
    accuracy_drop: float | None = None
    rel_l2_error: float | None = None
    within_budget: bool = False
    error: str | None = None
    build_seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.fusion}+{self.mode}"

    def score(self) -> float:
        """Geometric mean of the latencies (ms) over the batch sizes."""
        v = list(self.latency_ms.values())
        return math.exp(sum(math.log(max(x, 1e-9)) for x in v) / len(v)) if v else math.inf

    def to_json(self, batch_sizes: Sequence[int]) -> dict:
        d: dict = {"name": self.name, "fusion": self.fusion, "mode": self.mode}
        if self.error:
            d["error"] = self.error
            return d
        d.update({"sizeBytes": self.size_bytes,
                  "latencyMs": [round(self.latency_ms[b], 4) for b in batch_sizes],
                  "withinBudget": self.within_budget, "buildSeconds": round(self.build_seconds, 3)})
        if self.accuracy_drop is not None:
            d["accuracyDrop"] = round(self.accuracy_drop, 6)
        if self.rel_l2_error is not None:
            d["relL2Error"] = round(self.rel_l2_error, 6)
        return d


def candidates(modes: Sequence[str], fusions: Sequence[str], has_attention: bool,
               has_calibration: bool) -> list[Candidate]:
    """The (fusion, precision) pairs to try, in a stable order."""
    modes = tuple(modes) or DEFAULT_MODES + (("int8",) if has_calibration else ())
    fusions = tuple(fusions) or (("none", "transformer") if has_attention else ("none",))
    out = []
    for f in fusions:
        for m in modes:
            if f == "transformer" and m == "int4":
                continue
            out.append(Candidate(f, m))
    return out


def judge(c: Candidate, reports, max_accuracy_drop: float, max_rel_l2: float) -> None:
    """Fill accuracy figures and ``within_budget`` from validate's per-output reports."""
    drops = [1.0 - o.top1_agreement for o in reports if o.top1_agreement is not None]
    rels = [o.rel_l2_error for o in reports if o.top1_agreement is None]
    c.accuracy_drop = max(drops) if drops else None
    c.rel_l2_error = max(rels) if rels else None
    c.within_budget = all(d <= max_accuracy_drop + 1e-12 for d in drops) and \
        all(r <= max_rel_l2 for r in rels)


def choose(cands: Sequence[Candidate]) -> Candidate | None:
    ok = [c for c in cands if c.error is None and c.within_budget]
    return min(ok, key=Candidate.score) if ok else None


def batch_of(samples: Sequence[dict], b: int) -> dict:
    """The samples repeated (in order) to fill a batch of ``b`` along axis 0."""
    rows = [samples[k % len(samples)] for k in range(b)]
    return {name: np.concatenate([r[name] for r in rows], axis=0) for name in samples[0]}


def interleaved_latency(runners: dict[str, Callable], feeds: dict[int, dict],
                        rounds: int = ROUNDS) -> dict[str, dict[int, float]]:
    """Median ms per call of every runner at every batch size, in interleaved rounds. Each round
    calls a runner enough times to last ``MIN_ROUND_SECONDS`` (sized on a warm-up call)."""
    iters: dict[tuple[str, int], int] = {}
    for name, run in runners.items():
        for b, feed in feeds.items():
            run(feed)
            t = time.perf_counter()
            run(feed)
            one = time.perf_counter() - t
            iters[name, b] = max(1, min(50, int(MIN_ROUND_SECONDS / max(one, 1e-6))))
    times: dict[tuple[str, int], list[float]] = {k: [] for k in iters}
    for _ in range(rounds):
        for (name, b), n in iters.items():
            run, feed = runners[name], feeds[b]
            t = time.perf_counter()
            for _ in range(n):
                run(feed)
            times[name, b].append((time.perf_counter() - t) * 1000.0 / n)
    out: dict[str, dict[int, float]] = {name: {} for name in runners}
    for (name, b), v in times.items():
        out[name][b] = statistics.median(v)
    return out
