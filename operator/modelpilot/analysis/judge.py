"""Statistical judge: is the canary different from the baseline? (Mann-Whitney U, as in Kayenta.)

The judge compares two samples of the same metric, one from the revision under test and one from
the stable revision, with the Mann-Whitney U test. It makes no
assumption about the distribution (latencies are rarely normal) and only ranks the values, so a
few outliers do not swing it.

- NaN samples are dropped. If either side then has fewer than `minSamples`, the verdict is
  Inconclusive: too little data never passes.
- `direction` says which change is bad: `increase` (canary higher, e.g. latency, errors) tests the
  one-sided alternative "canary > baseline", `decrease` tests "canary < baseline", `either` is
  two-sided.
- The canary fails when the p-value is below `1 - confidence`.

Reported with the verdict: U (for the canary sample), the p-value, the median ratio
(canary median / baseline median) and the common-language effect size U / (n_canary * n_baseline),
the probability that a random canary sample exceeds a random baseline sample (ties count half).

The test itself (`mann_whitney_u`) is the textbook one and matches `scipy.stats.mannwhitneyu`
(method "auto", continuity correction, tie correction) to 1e-9 (tests/analysis/test_judge.py compares
them on thousands of samples). It is written out here rather than imported because scipy and numpy
are 210 MB of the operator image for this one function (docs/design.md, "The operator image").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .expressions import FAILED, INCONCLUSIVE, SUCCESSFUL

INCREASE: Final = "increase"
DECREASE: Final = "decrease"
EITHER: Final = "either"
DEFAULT_MIN_SAMPLES: Final = 20
DEFAULT_CONFIDENCE: Final = 0.95

_ALTERNATIVE: Final = {INCREASE: "greater", DECREASE: "less", EITHER: "two-sided"}


@dataclass(frozen=True)
class JudgeResult:
    verdict: str
    reason: str
    canary_samples: int
    baseline_samples: int
    direction: str
    alpha: float
    u: float | None = None
    p_value: float | None = None
    canary_median: float | None = None
    baseline_median: float | None = None
    median_ratio: float | None = None
    cles: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN and infinities as the strings Prometheus uses), None fields left out."""
        out = {
            "u": self.u, "pValue": self.p_value, "alpha": self.alpha, "direction": self.direction,
            "canarySamples": self.canary_samples, "baselineSamples": self.baseline_samples,
            "canaryMedian": self.canary_median, "baselineMedian": self.baseline_median,
            "medianRatio": self.median_ratio, "cles": self.cles,
        }
        return {k: json_number(v) for k, v in out.items() if v is not None}


def json_number(v: Any) -> Any:
    """A float as JSON can carry it: NaN and ±Inf become "NaN", "+Inf", "-Inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
    return v


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 else math.copysign(math.inf, a)
    return a / b


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based; tied values share the mean of their ranks) and the tie group sizes."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks, ties = [0.0] * len(values), []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _exact_sf(u: float, n1: int, n2: int) -> float:
    """P(U >= u) under H0 without ties: counts of rank arrangements, by the usual recurrence."""
    # counts[k][m] = number of ways for k canary values among k+m positions to give U = index
    table = {(0, m): [1] for m in range(n2 + 1)} | {(k, 0): [1] for k in range(n1 + 1)}
    for k in range(1, n1 + 1):
        for m in range(1, n2 + 1):
            a, b = table[(k - 1, m)], table[(k, m - 1)]  # largest value is canary (adds m) or baseline
            size = k * m + 1
            row = [0] * size
            for i, v in enumerate(a):
                row[i + m] += v
            for i, v in enumerate(b):
                row[i] += v
            table[(k, m)] = row
    dist = table[(n1, n2)]
    return sum(dist[math.ceil(u - 1e-9):]) / math.comb(n1 + n2, n1)


def mann_whitney_u(x: Sequence[float], y: Sequence[float], alternative: str) -> tuple[float, float]:
    """U of `x` and the p-value for `alternative` ("greater": x tends higher, "less", "two-sided"),
    as scipy.stats.mannwhitneyu(method="auto") computes them: exact when a sample has at most 8
    values and there are no ties, else the normal approximation with tie and continuity correction."""
    n1, n2 = len(x), len(y)
    ranks, ties = _ranks([*x, *y])
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    u = {"greater": u1, "less": u2}.get(alternative, max(u1, u2))
    if min(n1, n2) <= 8 and all(t == 1 for t in ties):
        p = _exact_sf(u, n1, n2)
    else:
        n = n1 + n2
        tie_term = sum(t ** 3 - t for t in ties) / (n * (n - 1))
        sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
        z = (u - n1 * n2 / 2 - 0.5) / sigma
        p = 0.5 * math.erfc(z / math.sqrt(2))
    if alternative == "two-sided":
        p *= 2
    return u1, min(max(p, 0.0), 1.0)


def mann_whitney(canary: Sequence[float], baseline: Sequence[float], *, min_samples: int = DEFAULT_MIN_SAMPLES,
                 confidence: float = DEFAULT_CONFIDENCE, direction: str = EITHER) -> JudgeResult:
    """Judge canary against baseline samples; see the module docstring for the rules."""
    if direction not in _ALTERNATIVE:
        raise ValueError(f"judge.direction must be one of {', '.join(_ALTERNATIVE)}, not {direction!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"judge.confidence must be between 0 and 1 (exclusive), not {confidence}")
    alpha = round(1 - confidence, 12)
    c = [float(x) for x in canary if not math.isnan(x)]
    b = [float(x) for x in baseline if not math.isnan(x)]
    dropped_c, dropped_b = len(canary) - len(c), len(baseline) - len(b)
    base = {"canary_samples": len(c), "baseline_samples": len(b), "direction": direction, "alpha": alpha}
    if len(c) < min_samples or len(b) < min_samples:
        nan = f" ({dropped_c} canary and {dropped_b} baseline NaN samples dropped)" if dropped_c or dropped_b else ""
        return JudgeResult(INCONCLUSIVE, f"too few samples: canary {len(c)}, baseline {len(b)}, "
                           f"minSamples {min_samples}{nan}", **base)
    cm, bm = statistics.median(c), statistics.median(b)
    stats = {"canary_median": cm, "baseline_median": bm, "median_ratio": _ratio(cm, bm)}
    if len(set(c) | set(b)) == 1:
        # Every sample equal: the test statistic has no variance; the samples are identical.
        n = len(c) * len(b)
        return JudgeResult(SUCCESSFUL, f"canary and baseline samples are all equal ({cm:g})",
                           u=n / 2, p_value=1.0, cles=0.5, **stats, **base)
    u, p = mann_whitney_u(c, b, _ALTERNATIVE[direction])
    cles = u / (len(c) * len(b))
    moved = "higher" if cles > 0.5 else "lower"
    summary = (f"canary median {cm:.6g} vs baseline {bm:.6g} (x{stats['median_ratio']:.3f}), "
               f"U={u:g}, p={p:.3g}, n={len(c)}/{len(b)}")
    if p < alpha:
        return JudgeResult(FAILED, f"canary is significantly {moved} ({direction}): {summary} < alpha {alpha:g}",
                           u=u, p_value=p, cles=cles, **stats, **base)
    return JudgeResult(SUCCESSFUL, f"no significant {'change' if direction == EITHER else direction}: "
                       f"{summary} >= alpha {alpha:g}", u=u, p_value=p, cles=cles, **stats, **base)
