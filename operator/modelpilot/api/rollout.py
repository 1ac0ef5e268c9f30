"""Typed views of spec.rollout, spec.traffic and spec.autoscaling of a ModelDeployment.

Analysis blocks stay mappings: the analysis package validates and runs them as written
(analysis/run.py), and their shape is Argo Rollouts' AnalysisTemplate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import spec_int, spec_int_or_none

Analysis = Mapping[str, Any]
BG = "spec.rollout.blueGreen"


@dataclass(frozen=True)
class BlueGreen:
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: int | None = None
    scale_down_delay_seconds: int = 30
    preview_replicas: int | None = None
    pre_promotion_analysis: Analysis | None = None


@dataclass(frozen=True)
class Shadow:
    percent: int = 100
    duration: str | None = None
    compare: bool = False
    max_comparisons_per_second: int = 20  # the comparator's rate limit (comparator/objects.py)
    comparison_timeout: str = "5s"


@dataclass(frozen=True)
class HeaderRule:
    name: str
    value: str
    type: str = "Exact"


@dataclass(frozen=True)
class ABTest:
    headers: tuple[HeaderRule, ...] = ()
    cookie: tuple[str, str] | None = None  # (name, value)
    weight: int = 0
    duration: str | None = None
    analysis: Analysis | None = None


@dataclass(frozen=True)
class ParityCheck:
    """spec.rollout.parityCheck: replay the export's recorded inputs against a new revision before
    it takes traffic (rollout/parity.py)."""

    enabled: bool = True
    timeout_seconds: int = 120


@dataclass(frozen=True)
class RolloutSpec:
    strategy: str = "direct"
    canary_steps: tuple[Mapping[str, Any], ...] = ()
    blue_green: BlueGreen = BlueGreen()
    shadow: Shadow = Shadow()
    ab_test: ABTest = ABTest()
    analysis: Analysis | None = None  # background analysis from the first step to promotion
    progress_deadline_seconds: int = 600
    parity_check: ParityCheck = ParityCheck()


@dataclass(frozen=True)
class TrafficSpec:
    router: str = "replicas"
    port: int = 80
    parent_refs: tuple[Mapping[str, Any], ...] = ()  # gateway.parentRefs
    hostnames: tuple[str, ...] = ()  # gateway.hostnames
    istio_gateways: tuple[str, ...] = ()
    istio_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScalingMetric:
    type: str  # cpu | memory | pods | external
    name: str | None = None
    target_average_utilization: int | None = None
    target_average_value: str | None = None
    target_value: str | None = None


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int = 1
    max_replicas: int = 1
    metrics: tuple[ScalingMetric, ...] = ()


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_rollout(r: Mapping[str, Any], strategy: str) -> RolloutSpec:
    bg, sh, ab = r.get("blueGreen") or {}, r.get("shadow") or {}, r.get("abTest") or {}
    pc = r.get("parityCheck") or {}
    match = ab.get("match") or {}
    cookie = match.get("cookie")
    return RolloutSpec(
        strategy=strategy,
        canary_steps=tuple((r.get("canary") or {}).get("steps") or ()),
        blue_green=BlueGreen(auto_promotion_enabled=bool(bg.get("autoPromotionEnabled", True)),
                             auto_promotion_seconds=spec_int_or_none(bg.get("autoPromotionSeconds"), f"{BG}.autoPromotionSeconds", 0),
                             scale_down_delay_seconds=spec_int(bg.get("scaleDownDelaySeconds"), f"{BG}.scaleDownDelaySeconds", 30, 0),
                             preview_replicas=spec_int_or_none(bg.get("previewReplicas"), f"{BG}.previewReplicas", 0),
                             pre_promotion_analysis=bg.get("prePromotionAnalysis") or None),
        shadow=Shadow(percent=spec_int(sh.get("percent"), "spec.rollout.shadow.percent", 100, 0),
                      duration=sh.get("duration") or None, compare=bool(sh.get("compare", False)),
                      max_comparisons_per_second=spec_int_or_none(sh.get("maxComparisonsPerSecond"), "spec.rollout.shadow.maxComparisonsPerSecond", 0) or 20,
                      comparison_timeout=str(sh.get("comparisonTimeout") or "5s")),
        ab_test=ABTest(headers=tuple(HeaderRule(h["name"], str(h["value"]), h.get("type") or "Exact") for h in match.get("headers") or ()),
                       cookie=(cookie["name"], str(cookie["value"])) if cookie else None,
                       weight=spec_int(ab.get("weight"), "spec.rollout.abTest.weight", 0, 0),
                       duration=ab.get("duration") or None, analysis=ab.get("analysis") or None),
        analysis=r.get("analysis") or None,
        progress_deadline_seconds=spec_int_or_none(r.get("progressDeadlineSeconds"), "spec.rollout.progressDeadlineSeconds", 0) or 600,
        parity_check=ParityCheck(enabled=bool(pc.get("enabled", True)),
                                 timeout_seconds=spec_int(pc.get("timeoutSeconds"), "spec.rollout.parityCheck.timeoutSeconds", 120, 1)),
    )


def parse_traffic(t: Mapping[str, Any]) -> TrafficSpec:
    gateway, istio = t.get("gateway") or {}, t.get("istio") or {}
    return TrafficSpec(router=str(t.get("router") or "replicas"), port=spec_int(t.get("port"), "spec.traffic.port", 80, 1),
                       parent_refs=tuple(gateway.get("parentRefs") or ()), hostnames=tuple(gateway.get("hostnames") or ()),
                       istio_gateways=tuple(istio.get("gateways") or ()), istio_hosts=tuple(istio.get("hosts") or ()))


def parse_autoscaling(a: Mapping[str, Any] | None) -> Autoscaling | None:
    if not a:
        return None
    low = spec_int(a.get("minReplicas"), "spec.autoscaling.minReplicas", 1, 0)
    metrics = tuple(ScalingMetric(type=m.get("type", ""), name=m.get("name"),
                                  target_average_utilization=m.get("targetAverageUtilization"),
                                  target_average_value=_opt_str(m.get("targetAverageValue")),
                                  target_value=_opt_str(m.get("targetValue"))) for m in a.get("metrics") or ())
    return Autoscaling(min_replicas=low, max_replicas=spec_int(a.get("maxReplicas"), "spec.autoscaling.maxReplicas", max(1, low), 1), metrics=metrics)
