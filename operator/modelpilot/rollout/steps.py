"""Every strategy compiled to one list of steps, run by one interpreter (plan.py).

    direct     []                                   the new revision takes all traffic once ready
    canary     spec.rollout.canary.steps            setWeight / pause / analysis, in order
    blueGreen  preview, [prePromotionAnalysis], [pause until promoted | autoPromotionSeconds]
    shadow     mirror percent, pause(duration)       then promote
    abTest     match(+weight), pause(duration)       then promote

After the last step the canary is promoted: it becomes stable with 100 % of traffic. A
background analysis (spec.rollout.analysis; abTest.analysis) runs from the first step until the
promotion, and its failure aborts like a failed step analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import clock
from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..api.rollout import RolloutSpec


def parse_duration(text: str | None, field: str) -> float | None:
    """Seconds in an optional duration field; None when unset."""
    if text is None or text == "":
        return None
    try:
        return clock.parse_duration(str(text))
    except ValueError as e:
        raise SpecError(field, str(e), "use e.g. 30s, 5m, 1h30m") from None


@dataclass(frozen=True)
class Step:
    kind: str  # weight | pause | analysis | preview | mirror | match
    label: str
    weight: int | None = None  # weight/match: canary share of (unmatched) traffic
    mirror: int = 0
    duration: float | None = None  # pause: seconds; None = until promoted
    analysis: Mapping[str, Any] | None = None
    field: str = ""  # spec path, for messages


def compile_steps(md: ModelDeployment) -> list[Step]:
    compile_strategy = _COMPILERS.get(md.strategy)
    if compile_strategy is None:
        raise SpecError("spec.rollout.strategy", f"unknown strategy {md.strategy!r}")
    return compile_strategy(md.rollout)


def _canary(r: RolloutSpec) -> list[Step]:
    out = []
    for i, s in enumerate(r.canary_steps):
        f = f"spec.rollout.canary.steps[{i}]"
        if "setWeight" in s:
            out.append(Step("weight", f"setWeight {s['setWeight']}", weight=int(s["setWeight"]), field=f))
        elif "pause" in s:
            d = parse_duration((s["pause"] or {}).get("duration"), f + ".pause.duration")
            out.append(Step("pause", f"pause {(s['pause'] or {}).get('duration') or 'until promoted'}", duration=d, field=f))
        elif "analysis" in s:
            out.append(Step("analysis", "analysis", analysis=s["analysis"], field=f + ".analysis"))
    return out


def _blue_green(r: RolloutSpec) -> list[Step]:
    bg = r.blue_green
    out = [Step("preview", "preview", weight=0, field="spec.rollout.blueGreen")]
    if bg.pre_promotion_analysis:
        out.append(Step("analysis", "prePromotionAnalysis", analysis=bg.pre_promotion_analysis,
                        field="spec.rollout.blueGreen.prePromotionAnalysis"))
    if not bg.auto_promotion_enabled:
        out.append(Step("pause", "pause until promoted", field="spec.rollout.blueGreen.autoPromotionEnabled"))
    elif bg.auto_promotion_seconds:
        out.append(Step("pause", f"pause {bg.auto_promotion_seconds}s", duration=float(bg.auto_promotion_seconds),
                        field="spec.rollout.blueGreen.autoPromotionSeconds"))
    return out


def _shadow(r: RolloutSpec) -> list[Step]:
    sh = r.shadow
    d = parse_duration(sh.duration, "spec.rollout.shadow.duration")
    return [Step("mirror", f"mirror {sh.percent}%", weight=0, mirror=sh.percent, field="spec.rollout.shadow"),
            Step("pause", f"mirror for {sh.duration or 'until promoted'}", duration=d, field="spec.rollout.shadow.duration")]


def _ab_test(r: RolloutSpec) -> list[Step]:
    ab = r.ab_test
    d = parse_duration(ab.duration, "spec.rollout.abTest.duration")
    return [Step("match", "route matching requests", weight=ab.weight, field="spec.rollout.abTest"),
            Step("pause", f"test for {ab.duration or 'until promoted'}", duration=d, field="spec.rollout.abTest.duration")]


_COMPILERS: dict[str, Callable[[RolloutSpec], list[Step]]] = {
    "direct": lambda r: [], "canary": _canary, "blueGreen": _blue_green, "shadow": _shadow, "abTest": _ab_test}


def background_analysis(md: ModelDeployment) -> tuple[Mapping[str, Any] | None, str]:
    if md.strategy == "abTest" and md.rollout.ab_test.analysis:
        return md.rollout.ab_test.analysis, "spec.rollout.abTest.analysis"
    if md.strategy in ("canary", "shadow", "blueGreen") and md.rollout.analysis:
        return md.rollout.analysis, "spec.rollout.analysis"
    return None, ""


def analysis_blocks(md: ModelDeployment) -> list[tuple[str, Mapping[str, Any]]]:
    """Every analysis block of the spec with its field path, for validation before a rollout starts."""
    out = [(s.field, s.analysis) for s in compile_steps(md) if s.kind == "analysis" and s.analysis is not None]
    bg, field = background_analysis(md)
    if bg is not None:
        out.append((field, bg))
    return out
