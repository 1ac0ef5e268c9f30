"""The TrafficRouter protocol: how a rollout's weights reach users' requests.

A router turns the rollout's desired traffic split (`TrafficState`, decided by the pure state
machines in rollout/) into objects to apply (the entry Service, plus an HTTPRoute or a
VirtualService), into replica counts (the replica-ratio router realises weights with pods), and
reports the split it actually achieved. One module per router; `get_router` in __init__ is the
factory. Every function here is pure: no API calls, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..config import RoutePolicy

# Blue-green: requests carrying this header reach the preview (new) revision through the route.
PREVIEW_HEADER: Final = "x-modelpilot-preview"
PREVIEW_HEADER_VALUE: Final = "true"

# Every kind a router may render, and the `app.kubernetes.io/component` labels it puts on them: an
# owned object of these kinds and components that route_objects no longer returns is to be deleted
# (the preview Service after the switch, an HTTPRoute after a change of spec.traffic.router). The
# revision Services `<name>-r<N>` have component `predictor` and are not the routers' business.
ROUTE_KINDS: Final = (
    ("v1", "Service"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.istio.io/v1", "VirtualService"),
)
ROUTE_COMPONENTS: Final = ("entrypoint", "preview", "router")


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    value: str
    type: str = "Exact"  # Exact | RegularExpression

    def __post_init__(self) -> None:
        if self.type not in ("Exact", "RegularExpression"):
            raise ValueError(f"header match type must be Exact or RegularExpression, got {self.type!r}")


@dataclass(frozen=True)
class TrafficState:
    """What the rollout wants now. Revision numbers index the per-revision Services `<name>-r<N>`.

    `canary_weight` is the share of user traffic (that matches no A/B rule) served by the canary.
    A/B: requests matching all `header_matches`, or the cookie, go to the canary. Shadow: the
    canary gets a copy of `mirror_percent` % of requests and its responses are discarded.
    Blue-green: with `preview`, the canary is reachable only through the preview Service and the
    preview header; the switch is `canary_weight=100`.
    """

    stable_revision: int
    canary_revision: int | None = None
    canary_weight: int = 0
    mirror_percent: int = 0
    header_matches: tuple[HeaderMatch, ...] = ()
    cookie_match: tuple[str, str] | None = None  # (cookie name, value)
    preview: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.canary_weight <= 100:
            raise ValueError(f"canary_weight must be 0..100, got {self.canary_weight}")
        if not 0 <= self.mirror_percent <= 100:
            raise ValueError(f"mirror_percent must be 0..100, got {self.mirror_percent}")
        if self.canary_revision is None and (self.canary_weight or self.mirror_percent or self.has_match or self.preview):
            raise ValueError("a canary weight, mirror, A/B match or preview needs canary_revision")
        if self.canary_revision == self.stable_revision:
            raise ValueError(f"canary_revision and stable_revision are both {self.stable_revision}")

    @property
    def stable_weight(self) -> int:
        return 100 - self.canary_weight

    @property
    def has_match(self) -> bool:
        return bool(self.header_matches or self.cookie_match)


@dataclass(frozen=True)
class Achieved:
    """The split actually in force. `exact` is False when it differs from the one asked for."""

    stable_weight: int
    canary_weight: int
    mirror_percent: int = 0
    exact: bool = True
    note: str = ""


@dataclass(frozen=True)
class RouteHealth:
    """What the carrier of the routes (a Gateway, the mesh) says of them: RoutingReady."""

    ready: bool = True
    reason: str = ""
    message: str = ""
    # Why the carrier cannot mirror requests, when it says so (a GatewayClass whose
    # status.supportedFeatures lacks HTTPRouteRequestMirror); "" when it can or does not say.
    cannot_mirror: str = ""


@dataclass(frozen=True)
class ReplicaPlan:
    stable: int
    canary: int


class TrafficRouter(Protocol):
    kind: str
    # True when the split is made of pods (the replica router): a step's weight is in force only
    # once stable has shrunk to its share; False when a proxy splits requests.
    weights_by_pods: bool

    def check(self, md: ModelDeployment, policy: RoutePolicy = RoutePolicy()) -> SpecError | None:
        """None, or why this router cannot carry md (a SpecError naming the field and the fix),
        including names outside md's namespace that `policy` does not admit."""

    def route_objects(self, md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
        """Every routing object that should exist now: the entry Service `<name>` (its selector is
        part of the routing), the preview Service `<name>-preview` while previewing, and the
        HTTPRoute or VirtualService `<name>`. Owned objects of ROUTE_KINDS labelled with one of
        ROUTE_COMPONENTS that are not listed should be deleted."""

    def replicas(self, md: ModelDeployment, state: TrafficState, total: int) -> ReplicaPlan:
        """Replica counts for stable and canary given `total` desired replicas (steady state for
        `state`; scale-down delays are the rollout's business)."""

    def achieved(self, md: ModelDeployment, state: TrafficState, ready: ReplicaPlan,
                 observed: Sequence[Mapping[str, Any]]) -> Achieved | None:
        """The split in force, from the observed routing objects (live bodies of what
        route_objects rendered) and ready replica counts; None when nothing can be said yet (the
        route or Service is not observed, or no pod is ready to serve)."""

    def observe(self, md: ModelDeployment, live: Sequence[Mapping[str, Any]]) -> RouteHealth:
        """Whether whoever carries the live routing objects accepts them (a Gateway's
        status.parents conditions, the mesh's validation messages); not ready names the reason."""
