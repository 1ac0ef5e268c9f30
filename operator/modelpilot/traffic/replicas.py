"""The replica-ratio router: no mesh, no gateway. The entry Service `<name>` selects the pods of
both revisions and the weight is realised by how many pods each runs.

The split is as coarse as the replica count: with N pods the canary's share moves in steps of
100/N %, kube-proxy balances connections (not requests) at random across endpoints, and only
ready pods count. So the weight reported is the one the ready pods realise, never the one asked
for. At 0 and 100 % the entry Service selects one revision, which makes a blue-green switch atomic
and a rollback instant whatever pods are still running. Shadow and A/B header routing need a proxy
and are refused by `check`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from .. import constants as c
from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..config import RoutePolicy
from .base import Achieved, ReplicaPlan, RouteHealth, TrafficState
from .common import entry_service, preview_service, serving_revision
from .live import find_object, share_percent

_NEEDS_PROXY = {"shadow": "mirrors requests", "abTest": "routes by header or cookie"}


def approximate_replica_counts(total: int, weight: int, max_surge: int = 0) -> ReplicaPlan:
    """Pods for stable and canary so that canary/(stable+canary) is nearest to `weight` %.

    Argo Rollouts' `approximateWeightedCanaryStableReplicaCounts`: the nearer of the rounded-up and
    rounded-down canary count, ties up, at least one pod on each side for weights 1..99; with
    `max_surge` > 0 it may also use one pod more than `total` when that comes nearer (ties prefer
    fewer pods). Where no count keeps a pod on each side (one pod, no surge) it rounds to the
    nearer of 0 and 1 as Argo does. Where Argo finds no option at all (for example 2 pods at 75 %
    without surge, for which it returns no canary) this keeps one pod on each side.
    """
    if total <= 0:
        return ReplicaPlan(stable=0, canary=0)
    if weight <= 0:
        return ReplicaPlan(stable=total, canary=0)
    if weight >= 100:
        return ReplicaPlan(stable=0, canary=total)
    target = Fraction(weight, 100)
    best: tuple[Fraction, int, int] | None = None  # (distance, canary, pods)
    for pods in (total, total + 1) if max_surge > 0 else (total,):
        exact = pods * target
        ceil, floor = -(-exact.numerator // exact.denominator), exact.numerator // exact.denominator
        for canary in (ceil, floor):  # ceil first: on a tie the strict < keeps it ("ties up")
            if 1 <= canary <= pods - 1:
                distance = abs(Fraction(canary, pods) - target)
                if best is None or distance < best[0]:
                    best = (distance, canary, pods)
    if best is None:  # a single pod and no surge: all or nothing, whichever is nearer
        canary = 1 if 2 * weight >= 100 else 0
        return ReplicaPlan(stable=1 - canary, canary=canary)
    return ReplicaPlan(stable=best[2] - best[1], canary=best[1])


class ReplicaRouter:
    kind = "replicas"
    weights_by_pods = True

    def check(self, md: ModelDeployment, policy: RoutePolicy = RoutePolicy()) -> SpecError | None:
        if md.strategy in _NEEDS_PROXY:
            return SpecError(
                "spec.traffic.router",
                f"router replicas cannot carry strategy {md.strategy} (spec.rollout.strategy): it {_NEEDS_PROXY[md.strategy]}, "
                "which needs a proxy in the request path",
                "set spec.traffic.router to gatewayAPI (with spec.traffic.gateway.parentRefs) or istio")
        return None

    def route_objects(self, md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
        if state.mirror_percent or state.has_match:
            raise ValueError("the replica router cannot mirror or match headers; check() refuses such specs")
        objs = [entry_service(md, state, split_by_pods=True), preview_service(md, state)]
        return [o for o in objs if o is not None]

    def replicas(self, md: ModelDeployment, state: TrafficState, total: int) -> ReplicaPlan:
        """Argo's rule for a weight of 1..99, surging one pod only when a single replica is asked
        for (the one way to run a pod on each side). At 0 and 100 % the entry Service selects one
        revision, so the other may keep running (a scale-down delay) without serving."""
        if state.canary_revision is None:
            return ReplicaPlan(stable=max(total, 0), canary=0)
        if state.preview and state.canary_weight == 0:
            preview = md.rollout.blue_green.preview_replicas
            return ReplicaPlan(stable=max(total, 0), canary=(preview or total) if total > 0 else 0)
        return approximate_replica_counts(total, state.canary_weight, max_surge=1 if total == 1 else 0)

    def observe(self, md: ModelDeployment, live: Sequence[Mapping[str, Any]]) -> RouteHealth:
        return RouteHealth()  # Services have no carrier that could refuse them

    def achieved(self, md: ModelDeployment, state: TrafficState, ready: ReplicaPlan,
                 observed: Sequence[Mapping[str, Any]]) -> Achieved | None:
        svc = find_object(observed, "Service", md.name)
        if svc is None:
            return None
        selected = ((svc.get("spec") or {}).get("selector") or {}).get(c.LABEL_REVISION)
        wanted = serving_revision(state, split_by_pods=True)
        if selected is not None:
            canary_weight = 100 if state.canary_revision is not None and selected == str(state.canary_revision) else 0
            serving = ready.canary if canary_weight else ready.stable
            notes = []
            if wanted is None or selected != str(wanted):
                notes.append(f"Service {md.name} still selects only revision {selected}")
            if serving == 0:
                notes.append(f"revision {selected} has no ready pod: Service {md.name} has no endpoints")
            return Achieved(100 - canary_weight, canary_weight, exact=not notes, note="; ".join(notes))
        pods = ready.stable + ready.canary
        if pods == 0:
            return None
        canary_weight = share_percent(ready.canary, pods)
        exact = wanted is None and ready.canary * 100 == state.canary_weight * pods
        note = "" if exact else (
            f"{ready.canary} of {pods} ready pods run the canary: about {canary_weight}% of connections "
            f"for a desired {state.canary_weight}%")
        if wanted is not None:
            note = f"Service {md.name} still selects every revision; " + note
        return Achieved(100 - canary_weight, canary_weight, exact=exact, note=note)
