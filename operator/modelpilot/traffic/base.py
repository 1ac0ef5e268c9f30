"""The TrafficRouter protocol: how a rollout's weights reach users' requests.

A router turns the rollout's desired traffic split (`TrafficState`, decided by the pure state
machines in rollout/) into objects to apply (an HTTPRoute, a VirtualService, or nothing), into
replica counts (the replica-ratio router realises weights with pods), and reports the weight it
actually achieved. One module per router; `get_router` in __init__ is the factory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from ..api.modeldeployment import ModelDeployment


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    value: str
    type: str = "Exact"  # Exact | RegularExpression


@dataclass(frozen=True)
class TrafficState:
    """What the rollout wants now. Revision numbers index the per-revision Services `<name>-r<N>`."""

    stable_revision: int
    canary_revision: int | None = None
    canary_weight: int = 0  # 0..100 of user traffic to the canary
    mirror_percent: int = 0  # shadow: % of requests copied to the canary; responses discarded
    header_matches: tuple[HeaderMatch, ...] = ()  # A/B: requests matching go to the canary
    cookie_match: tuple[str, str] | None = None  # A/B: (cookie name, value)
    preview: bool = False  # blue-green: canary reachable only through the preview Service/route


@dataclass(frozen=True)
class Achieved:
    """The split actually in force. `exact` is False when the router can only approximate it."""

    stable_weight: int
    canary_weight: int
    mirror_percent: int = 0
    exact: bool = True
    note: str = ""


@dataclass(frozen=True)
class ReplicaPlan:
    stable: int
    canary: int


class TrafficRouter(Protocol):
    kind: str

    def check(self, md: ModelDeployment) -> str | None:
        """None, or why this router cannot carry md's strategy (a message naming the field)."""

    def route_objects(self, md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
        """Routing objects to apply (HTTPRoute, VirtualService); [] when the router needs none."""

    def replicas(self, md: ModelDeployment, state: TrafficState, total: int) -> ReplicaPlan:
        """Replica counts for stable and canary out of `total` desired replicas."""

    def achieved(self, md: ModelDeployment, state: TrafficState, ready: ReplicaPlan,
                 observed_routes: list[Mapping[str, Any]]) -> Achieved:
        """The split in force, from the observed route objects or ready replica counts."""
