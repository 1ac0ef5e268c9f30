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
from typing import Any, Mapping, Sequence

from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..config import RoutePolicy
from .base import PREVIEW_HEADER, PREVIEW_HEADER_VALUE, Achieved, ReplicaPlan, RouteHealth, TrafficState
from .common import (check_ab_headers, condition_reason, cookie_regex, describe, entry_service, find_object, preview_service,
                     route_metadata, routed_replicas, service_host, service_name, share_percent)

API_VERSION = "networking.istio.io/v1"
ROUTE_AB = "ab-test"
ROUTE_PREVIEW = "preview"
ROUTE_SPLIT = "split"
_MATCH_TYPES = {"Exact": "exact", "RegularExpression": "regex"}


class IstioRouter:
    kind = "istio"
    weights_by_pods = False

    def check(self, md: ModelDeployment, policy: RoutePolicy = RoutePolicy()) -> SpecError | None:
        return check_ab_headers(md) or check_hosts(md, policy) or check_gateways(md, policy)

    def route_objects(self, md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
        objs = [entry_service(md, state, split_by_pods=False), preview_service(md, state), build_virtual_service(md, state)]
        return [o for o in objs if o is not None]

    def replicas(self, md: ModelDeployment, state: TrafficState, total: int) -> ReplicaPlan:
        return routed_replicas(md, state, total)

    def observe(self, md: ModelDeployment, live: Sequence[Mapping[str, Any]]) -> RouteHealth:
        """Istio's analysis writes status.validationMessages where it runs (istiod with
        PILOT_ENABLE_STATUS / istioctl analyze); an ERROR there means the mesh will not route."""
        vs = find_object(live, "VirtualService", md.name)
        errors = [m for m in (((vs or {}).get("status") or {}).get("validationMessages") or ()) if m.get("level") == "ERROR"]
        if not errors:
            return RouteHealth()
        kind = errors[0].get("type") or {}
        return RouteHealth(False, condition_reason(kind.get("name") or kind.get("code"), "ValidationError"),
                           f"VirtualService {md.name} is invalid: " + "; ".join(
                               f"{(m.get('type') or {}).get('code', '')} {m.get('description', '')}".strip() for m in errors))

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


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def _in_namespace(host: str, namespace: str) -> bool:
    if re.fullmatch(_LABEL, host):
        return True  # a short name: Istio resolves it in the VirtualService's namespace
    return re.fullmatch(rf"({_LABEL}|\*)\.{re.escape(namespace)}(\.svc(\.cluster\.local)?)?", host) is not None


def _allowed(name: str, patterns: Sequence[str], namespace: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p.replace("{namespace}", namespace).lower()) for p in patterns)


def check_hosts(md: ModelDeployment, policy: RoutePolicy) -> SpecError | None:
    for i, host in enumerate((md.traffic.get("istio") or {}).get("hosts") or ()):
        h = str(host).lower()
        if not (_in_namespace(h, md.namespace) or _allowed(h, policy.allowed_hosts, md.namespace)):
            return SpecError(f"spec.traffic.istio.hosts[{i}]",
                             f"host {host!r} is outside namespace {md.namespace} and not allowed by the operator config",
                             f"use a Service of this namespace (<service> or <service>.{md.namespace}.svc.cluster.local), "
                             "or ask the cluster admin to add it to the operator config's istio.allowedHosts")
    return None


def check_gateways(md: ModelDeployment, policy: RoutePolicy) -> SpecError | None:
    for i, gw in enumerate((md.traffic.get("istio") or {}).get("gateways") or ()):
        g = str(gw).lower()
        ns = g.split("/", 1)[0] if "/" in g else md.namespace
        if not (g == "mesh" or ns == md.namespace or _allowed(g, policy.allowed_gateways, md.namespace)):
            return SpecError(f"spec.traffic.istio.gateways[{i}]",
                             f"gateway {gw!r} is in another namespace and not allowed by the operator config",
                             f"use mesh or a Gateway of namespace {md.namespace}, or ask the cluster admin to add "
                             "it to the operator config's istio.allowedGateways")
    return None


def build_virtual_service(md: ModelDeployment, state: TrafficState) -> dict[str, Any]:
    istio = md.traffic.get("istio") or {}
    # exportTo: only this namespace's proxies, and the namespaces of the (admitted) gateways it binds
    # to, see the routes. Istio's default is every namespace.
    gateways = [str(g) for g in istio.get("gateways") or ()]
    gateway_namespaces = {g.split("/", 1)[0] for g in gateways if "/" in g} - {md.namespace}
    spec: dict[str, Any] = {"hosts": list(istio.get("hosts") or [service_host(md, md.name)]),
                            "exportTo": [".", *sorted(gateway_namespaces)]}
    if gateways:
        spec["gateways"] = gateways
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
