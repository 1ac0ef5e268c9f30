"""The comparator's Prometheus metrics, labelled by ModelDeployment and by the revision pair.

Counters (use `rate()` over a window, or the ratio gauges for "since this pair started"):
- `modelpilot_shadow_mirrored_requests_total{outcome}`: every mirrored request, by what became of
  it: compared, shadow_error, stable_error, sampled_out, rate_limited, busy;
- `modelpilot_shadow_requests_compared_total`, `..._rows_compared_total`, `..._rows_agreed_total`;
- `modelpilot_shadow_abs_difference_sum_total` / `..._values_compared_total`: the mean difference;
- `modelpilot_shadow_latency_seconds{side=stable|shadow}`: a histogram of both calls.
Gauges, cumulative over this revision pair: `modelpilot_shadow_agreement_ratio`,
`..._abs_difference_max`, `..._abs_difference_mean`, `..._latency_ratio` (shadow/stable, summed
latencies), `..._error_ratio` (shadow errors over requests both were asked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .compare import Comparison

if TYPE_CHECKING:
    from .server import Settings

LABELS = ("namespace", "model_deployment", "stable_revision", "shadow_revision")
P = "modelpilot_shadow_"


class ComparatorMetrics:
    def __init__(self, s: Settings) -> None:
        self.registry = CollectorRegistry()
        r, ids = self.registry, (s.namespace, s.name, s.stable_revision, s.shadow_revision)

        def counter(name: str, doc: str) -> Any:
            return Counter(P + name, doc, LABELS, registry=r).labels(*ids)

        def gauge(name: str, doc: str) -> Any:
            return Gauge(P + name, doc, LABELS, registry=r).labels(*ids)

        self._outcomes = Counter(P + "mirrored_requests", "Mirrored requests received, by outcome",
                                 (*LABELS, "outcome"), registry=r)
        self._ids = ids
        self.compared_c = counter("requests_compared", "Requests whose two answers were compared")
        self.rows_c = counter("rows_compared", "Rows (first dimension) compared")
        self.agreed_c = counter("rows_agreed", "Rows on which the shadow agreed (top-1, or within tolerance)")
        self.diff_c = counter("abs_difference_sum", "Sum of absolute differences of every compared value")
        self.values_c = counter("values_compared", "Values compared")
        lat = Histogram(P + "latency_seconds", "Latency of the calls to each revision", (*LABELS, "side"), registry=r,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self._lat = {side: lat.labels(*ids, side) for side in ("stable", "shadow")}
        self.agreement_g = gauge("agreement_ratio", "Rows agreed / rows compared, since this pair started")
        self.max_g = gauge("abs_difference_max", "Largest absolute difference seen, since this pair started")
        self.mean_g = gauge("abs_difference_mean", "Mean absolute difference, since this pair started")
        self.latency_g = gauge("latency_ratio", "Shadow latency / stable latency (sums), since this pair started")
        self.error_g = gauge("error_ratio", "Shadow errors / requests sent to both, since this pair started")
        self.n = {"rows": 0, "agreed": 0, "values": 0, "diff": 0.0, "max": 0.0, "stable_s": 0.0, "shadow_s": 0.0,
                  "sent": 0, "shadow_errors": 0, "compared": 0}

    def outcome(self, outcome: str) -> None:
        self._outcomes.labels(*self._ids, outcome).inc()
        if outcome in ("compared", "shadow_error"):
            self.n["sent"] += 1
            self.n["shadow_errors"] += outcome == "shadow_error"
            self.error_g.set(self.n["shadow_errors"] / self.n["sent"])

    def latency(self, stable_s: float, shadow_s: float) -> None:
        self._lat["stable"].observe(stable_s)
        self._lat["shadow"].observe(shadow_s)
        self.n["stable_s"] += stable_s
        self.n["shadow_s"] += shadow_s
        if self.n["stable_s"] > 0:
            self.latency_g.set(self.n["shadow_s"] / self.n["stable_s"])

    def compared(self, cmp: Comparison) -> None:
        n = self.n
        n["compared"] += 1
        n["rows"] += cmp.rows
        n["agreed"] += cmp.agreed_rows
        n["values"] += cmp.values
        n["diff"] += cmp.sum_abs_diff
        n["max"] = max(n["max"], cmp.max_abs_diff)
        self.compared_c.inc()
        self.rows_c.inc(cmp.rows)
        self.agreed_c.inc(cmp.agreed_rows)
        self.diff_c.inc(cmp.sum_abs_diff)
        self.values_c.inc(cmp.values)
        self.agreement_g.set(n["agreed"] / n["rows"] if n["rows"] else 0.0)
        self.max_g.set(n["max"])
        self.mean_g.set(n["diff"] / n["values"] if n["values"] else 0.0)

    def summary(self) -> dict[str, Any]:
        """What `kubectl modelpilot status` shows: the cumulative ratios and counts."""
        n = self.n
        return {"requestsCompared": n["compared"], "agreement": n["agreed"] / n["rows"] if n["rows"] else None,
                "maxAbsDiff": n["max"], "meanAbsDiff": n["diff"] / n["values"] if n["values"] else None,
                "latencyRatio": n["shadow_s"] / n["stable_s"] if n["stable_s"] else None,
                "shadowErrorRate": n["shadow_errors"] / n["sent"] if n["sent"] else None}
