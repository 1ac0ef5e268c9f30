"""The Istio router: one VirtualService `<name>` (networking.istio.io/v1) per ModelDeployment.

`hosts` come from spec.traffic.istio.hosts (default: the entry Service's FQDN, so in-mesh callers
of `<name>` are routed), `gateways` from spec.traffic.istio.gateways (default: the mesh only).
HTTP routes, first match wins, so the order matters:
- `ab-test` (A/B): all header matches (exact or regex), or the cookie (a regex on the `cookie`
  header), go to the canary;
- `preview` (blue-green before the switch): `x-modelpilot-preview: true` goes to the canary;
- `split`: the rest, by `route[].weight`; shadow adds `mirror` and `mirrorPercentage`.
Destinations are the per-revision Services by FQDN, with the port, so no DestinationRule is needed.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from .base import PREVIEW_HEADER, PREVIEW_HEADER_VALUE, Achieved, ReplicaPlan, TrafficState
from .common import (check_ab_headers, cookie_regex, describe, entry_service, find_object, preview_service,
                     route_metadata, routed_replicas, service_host, service_name, share_percent)

API_VERSION = "networking.istio.io/v1"
ROUTE_AB = "ab-test"
ROUTE_PREVIEW = "preview"
ROUTE_SPLIT = "split"
_MATCH_TYPES = {"Exact": "exact", "RegularExpression": "regex"}


class IstioRouter:
    kind = "istio"

    def check(self, md: ModelDeployment) -> SpecError | None:
        return check_ab_headers(md)

    def route_objects(self, md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
        objs = [entry_service(md, state, split_by_pods=False), preview_service(md, state), build_virtual_service(md, state)]
        return [o for o in objs if o is not None]

    def replicas(self, md: ModelDeployment, state: TrafficState, total: int) -> ReplicaPlan:
        return routed_replicas(md, state, total)

    def achieved(self, md: ModelDeployment, state: TrafficState, ready: ReplicaPlan,
                 observed: Sequence[Mapping[str, Any]]) -> Achieved | None:
        vs = find_object(observed, "VirtualService", md.name)
        if vs is None:
            return None
        routes = (vs.get("spec") or {}).get("http") or []
        split = next((r for r in routes if r.get("name") == ROUTE_SPLIT), routes[-1] if routes else {})
        weights: dict[str, int] = {}
        dests = split.get("route") or []
        for d in dests:
            name = _service_of((d.get("destination") or {}).get("host", ""))
            # Istio: a lone destination without a weight takes everything.
            weights[name] = weights.get(name, 0) + int(d.get("weight", 100 if len(dests) == 1 else 0))
        total = sum(weights.values())
        canary_svc = service_name(md, state.canary_revision) if state.canary_revision is not None else None
        canary_weight = share_percent(weights.get(canary_svc, 0), total) if canary_svc else 0
        mirror = 0
        if canary_svc and split.get("mirror") and _service_of(split["mirror"].get("host", "")) == canary_svc:
            mirror = round(float((split.get("mirrorPercentage") or {}).get("value", 100.0)))

        notes = []
        if _signature(vs) != _signature(build_virtual_service(md, state)):
            notes.append(f"VirtualService {md.name} is not updated yet: it carries "
                         + (", ".join(f"{n} weight {w}" for n, w in sorted(weights.items())) or "no destinations")
                         + (f", mirror {mirror}%" if mirror else "") + f"; wanted {describe(state)}")
        if total == 0:
            notes.append(f"VirtualService {md.name} has no destination with a weight")
        return Achieved(100 - canary_weight, canary_weight, mirror, exact=not notes, note="; ".join(notes))


def build_virtual_service(md: ModelDeployment, state: TrafficState) -> dict[str, Any]:
    istio = md.traffic.get("istio") or {}
    spec: dict[str, Any] = {"hosts": list(istio.get("hosts") or [service_host(md, md.name)])}
    if istio.get("gateways"):
        spec["gateways"] = list(istio["gateways"])
    http: list[dict[str, Any]] = []
    if state.canary_revision is not None and state.has_match:
        http.append({"name": ROUTE_AB, "match": _ab_matches(state), "route": [_destination(md, state.canary_revision, 100)]})
    if state.canary_revision is not None and state.preview:
        http.append({
            "name": ROUTE_PREVIEW,
            "match": [{"headers": {PREVIEW_HEADER: {"exact": PREVIEW_HEADER_VALUE}}}],
            "route": [_destination(md, state.canary_revision, 100)],
        })
    split: dict[str, Any] = {"name": ROUTE_SPLIT, "route": [_destination(md, state.stable_revision, state.stable_weight)]}
    if state.canary_revision is not None:
        split["route"].append(_destination(md, state.canary_revision, state.canary_weight))
        if state.mirror_percent:
            split["mirror"] = {"host": service_host(md, service_name(md, state.canary_revision)), "port": {"number": md.port}}
            split["mirrorPercentage"] = {"value": float(state.mirror_percent)}
    http.append(split)
    spec["http"] = http
    return {"apiVersion": API_VERSION, "kind": "VirtualService", "metadata": route_metadata(md), "spec": spec}


def _destination(md: ModelDeployment, revision: int, weight: int) -> dict[str, Any]:
    return {"destination": {"host": service_host(md, service_name(md, revision)), "port": {"number": md.port}}, "weight": weight}


def _ab_matches(state: TrafficState) -> list[dict[str, Any]]:
    """Header conditions in one match (ANDed); the cookie in another (matches are ORed).

    Istio wants lower-case header names, and its regexes must match the whole value (RE2 full match).
    """
    matches: list[dict[str, Any]] = []
    if state.header_matches:
        matches.append({"headers": {h.name.lower(): {_MATCH_TYPES[h.type]: h.value} for h in state.header_matches}})
    if state.cookie_match:
        matches.append({"headers": {"cookie": {"regex": cookie_regex(*state.cookie_match)}}})
    return matches


def _service_of(host: str) -> str:
    """`name`, `name.ns`, `name.ns.svc` and `name.ns.svc.cluster.local` all name the Service `name`."""
    return host.split(".", 1)[0]


def _signature(vs: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    out = []
    for r in (vs.get("spec") or {}).get("http") or ():
        dests = r.get("route") or []
        route = tuple(sorted((_service_of((d.get("destination") or {}).get("host", "")),
                              int(d.get("weight", 100 if len(dests) == 1 else 0))) for d in dests))
        match = tuple(tuple(sorted((k.lower(), tuple(sorted(v.items()))) for k, v in (m.get("headers") or {}).items()))
                      for m in r.get("match") or ())
        mirror = None
        if r.get("mirror"):
            mirror = (_service_of(r["mirror"].get("host", "")), float((r.get("mirrorPercentage") or {}).get("value", 100.0)))
        out.append((r.get("name"), route, match, mirror))
    return out
