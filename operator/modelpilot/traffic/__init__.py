"""Traffic routers, one module each behind the TrafficRouter protocol; `get_router` is the factory."""

from ..api.errors import SpecError
from .base import (
    PREVIEW_HEADER,
    PREVIEW_HEADER_VALUE,
    ROUTE_COMPONENTS,
    ROUTE_KINDS,
    Achieved,
    HeaderMatch,
    ReplicaPlan,
    RouteHealth,
    TrafficRouter,
    TrafficState,
)
from .common import header_matches_from_spec, routed_replicas
from .gateway_api import GatewayAPIRouter
from .istio import IstioRouter
from .replicas import ReplicaRouter, approximate_replica_counts

_ROUTERS: dict[str, TrafficRouter] = {"gatewayAPI": GatewayAPIRouter(), "istio": IstioRouter(), "replicas": ReplicaRouter()}


def get_router(kind: str) -> TrafficRouter:
    """The router for spec.traffic.router; an unknown kind is a SpecError naming the field."""
    try:
        return _ROUTERS[kind]
    except KeyError:
        raise SpecError("spec.traffic.router", f"unknown router {kind!r}", f"use one of {', '.join(_ROUTERS)}") from None


__all__ = [
    "PREVIEW_HEADER", "PREVIEW_HEADER_VALUE", "ROUTE_COMPONENTS", "ROUTE_KINDS", "Achieved", "HeaderMatch", "ReplicaPlan", "RouteHealth", "TrafficRouter",
    "TrafficState", "approximate_replica_counts", "get_router", "header_matches_from_spec", "routed_replicas",
]
