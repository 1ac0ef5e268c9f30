"""The Istio router: one VirtualService `<name>` (networking.istio.io/v1) per ModelDeployment.

`hosts` come from spec.traffic.istio.hosts (default: the entry Service's FQDN, so in-mesh callers
of `<name>` are routed), `gateways` from spec.traffic.istio.gateways (default: the mesh only).
HTTP routes, first match wins, so the order matters:
- `ab-test` (A/B): all header matches (exact or regex), or the cookie (a regex on the `cookie`
  header), go to the canary;
- `preview` (blue-green before the switch): `x-modelpilot-preview: true` goes to the canary;
- `split`: the rest, by `route[].weight`; shadow adds `mirror` and `mirrorPercentage`.
Destinations are the per-revision Services by FQDN, with the port, so no DestinationRule is needed.

Least authority (issue 11): the VirtualService is rendered with `exportTo: ["."]` (plus the
namespaces of the gateways it binds to, which must see it), so it shapes only the traffic of its
own namespace's proxies, and `check` admits only hosts in the object's
namespace (a short name, `<svc>.<ns>[.svc[.cluster.local]]`, `*.<ns>.svc.cluster.local`) and
gateways in it (or `mesh`), plus what the operator config's `istio.allowedHosts` /
`istio.allowedGateways` allow. Otherwise a ModelDeployment in `team-b` could route
`payments.payments.svc.cluster.local` to its own pods with the operator's permissions.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..config import RoutePolicy
from .base import PREVIEW_HEADER, PREVIEW_HEADER_VALUE, RouteHealth, TrafficState
from .common import ProxyRouter, check_ab_headers, cookie_regex, mirror_service_name, route_metadata, service_host, service_name
from .live import condition_reason, find_object, named_rule

API_VERSION = "networking.istio.io/v1"
ROUTE_AB = "ab-test"
ROUTE_PREVIEW = "preview"
ROUTE_SPLIT = "split"
_MATCH_TYPES = {"Exact": "exact", "RegularExpression": "regex"}


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def _in_namespace(host: str, namespace: str) -> bool:
    if re.fullmatch(_LABEL, host):
        return True  # a short name: Istio resolves it in the VirtualService's namespace
    return re.fullmatch(rf"({_LABEL}|\*)\.{re.escape(namespace)}(\.svc(\.cluster\.local)?)?", host) is not None


def _allowed(name: str, patterns: Sequence[str], namespace: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p.replace("{namespace}", namespace).lower()) for p in patterns)


def check_hosts(md: ModelDeployment, policy: RoutePolicy) -> SpecError | None:
    for i, host in enumerate(md.traffic.istio_hosts):
        h = str(host).lower()
        if not (_in_namespace(h, md.namespace) or _allowed(h, policy.allowed_hosts, md.namespace)):
            return SpecError(f"spec.traffic.istio.hosts[{i}]",
                             f"host {host!r} is outside namespace {md.namespace} and not allowed by the operator config",
                             f"use a Service of this namespace (<service> or <service>.{md.namespace}.svc.cluster.local), "
                             "or ask the cluster admin to add it to the operator config's istio.allowedHosts")
    return None


def check_gateways(md: ModelDeployment, policy: RoutePolicy) -> SpecError | None:
    for i, gw in enumerate(md.traffic.istio_gateways):
        g = str(gw).lower()
        ns = g.split("/", 1)[0] if "/" in g else md.namespace
        if not (g == "mesh" or ns == md.namespace or _allowed(g, policy.allowed_gateways, md.namespace)):
            return SpecError(f"spec.traffic.istio.gateways[{i}]",
                             f"gateway {gw!r} is in another namespace and not allowed by the operator config",
                             f"use mesh or a Gateway of namespace {md.namespace}, or ask the cluster admin to add "
                             "it to the operator config's istio.allowedGateways")
    return None


def build_virtual_service(md: ModelDeployment, state: TrafficState) -> dict[str, Any]:
    # exportTo: only this namespace's proxies, and the namespaces of the (admitted) gateways it binds
    # to, see the routes. Istio's default is every namespace.
    gateways = [str(g) for g in md.traffic.istio_gateways]
    gateway_namespaces = {g.split("/", 1)[0] for g in gateways if "/" in g} - {md.namespace}
    spec: dict[str, Any] = {"hosts": list(md.traffic.istio_hosts or [service_host(md, md.name)]),
                            "exportTo": [".", *sorted(gateway_namespaces)]}
    if gateways:
        spec["gateways"] = gateways
    spec["http"] = _http_routes(md, state)
    return {"apiVersion": API_VERSION, "kind": "VirtualService", "metadata": route_metadata(md), "spec": spec}


def _http_routes(md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
    """The A/B and preview routes (to the canary), then the weighted split with its mirror."""
    canary = state.canary_revision
    split: dict[str, Any] = {"name": ROUTE_SPLIT, "route": [_destination(md, state.stable_revision, state.stable_weight)]}
    if canary is None:
        return [split]
    split["route"].append(_destination(md, canary, state.canary_weight))
    if state.mirror_percent:
        split["mirror"] = {"host": service_host(md, mirror_service_name(md, canary)), "port": {"number": md.port}}
        split["mirrorPercentage"] = {"value": float(state.mirror_percent)}
    matches = {ROUTE_AB: _ab_matches(state) if state.has_match else None,
               ROUTE_PREVIEW: [{"headers": {PREVIEW_HEADER: {"exact": PREVIEW_HEADER_VALUE}}}] if state.preview else None}
    return [{"name": n, "match": m, "route": [_destination(md, canary, 100)]} for n, m in matches.items() if m] + [split]


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


class IstioRouter(ProxyRouter):
    """A VirtualService `<name>` splits and mirrors in the mesh's sidecars (or an Istio ingress
    gateway, spec.traffic.istio.gateways); the mesh validates it."""

    kind = "istio"
    route_kind = "VirtualService"
    empty_refs = "no destinations"
    no_weight_note = "has no destination with a weight"
    build_route = staticmethod(build_virtual_service)
    signature = staticmethod(_signature)

    def check(self, md: ModelDeployment, policy: RoutePolicy = RoutePolicy()) -> SpecError | None:
        return check_ab_headers(md) or check_hosts(md, policy) or check_gateways(md, policy)

    def split_of(self, md: ModelDeployment, route: Mapping[str, Any], mirror_service: str | None) -> tuple[dict[str, int], int]:
        split = named_rule((route.get("spec") or {}).get("http") or [], ROUTE_SPLIT)
        weights: dict[str, int] = {}
        dests = split.get("route") or []
        for d in dests:
            name = _service_of((d.get("destination") or {}).get("host", ""))
            # Istio: a lone destination without a weight takes everything.
            weights[name] = weights.get(name, 0) + int(d.get("weight", 100 if len(dests) == 1 else 0))
        mirror = 0
        if mirror_service and split.get("mirror") and _service_of(split["mirror"].get("host", "")) == mirror_service:
            mirror = round(float((split.get("mirrorPercentage") or {}).get("value", 100.0)))
        return weights, mirror

    def refusals(self, route: Mapping[str, Any]) -> list[str]:
        health = self.observe_route(route)
        return [] if health.ready else [health.message]

    def observe(self, md: ModelDeployment, live: Sequence[Mapping[str, Any]]) -> RouteHealth:
        vs = find_object(live, "VirtualService", md.name)
        return self.observe_route(vs) if vs is not None else RouteHealth()

    def observe_route(self, vs: Mapping[str, Any]) -> RouteHealth:
        """Istio's analysis writes status.validationMessages where it runs (istiod with
        PILOT_ENABLE_STATUS / istioctl analyze); an ERROR there means the mesh will not route."""
        name = (vs.get("metadata") or {}).get("name", "")
        errors = [m for m in (((vs or {}).get("status") or {}).get("validationMessages") or ()) if m.get("level") == "ERROR"]
        if not errors:
            return RouteHealth()
        kind = errors[0].get("type") or {}
        return RouteHealth(False, condition_reason(kind.get("name") or kind.get("code"), "ValidationError"),
                           f"VirtualService {name} is invalid: " + "; ".join(
                               f"{(m.get('type') or {}).get('code', '')} {m.get('description', '')}".strip() for m in errors))
