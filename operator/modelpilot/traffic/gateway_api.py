"""The Gateway API router: one HTTPRoute `<name>` (gateway.networking.k8s.io/v1) per ModelDeployment.

Rules, in the order they are rendered (Gateway API picks the rule with the most header matches
first, so the order is for readers only):
- `ab-test` (A/B): all header matches, or the cookie (a RegularExpression on the Cookie header),
  send the request to the canary Service;
- `preview` (blue-green before the switch): requests with `x-modelpilot-preview: true` go to the
  canary Service;
- `split`: everything else, split between the stable and canary Services by `backendRefs[].weight`;
  for shadow it carries a `RequestMirror` filter with `percent` towards the canary Service
  (standard channel since Gateway API v1.3), whose responses the gateway discards.

The route attaches to `spec.traffic.gateway.parentRefs` and matches `hostnames`. Traffic through
the Gateway follows the weights; in-cluster callers of the entry Service reach the stable revision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..api.errors import SpecError
from ..api.modeldeployment import ModelDeployment
from ..config import RoutePolicy
from .base import PREVIEW_HEADER, PREVIEW_HEADER_VALUE, RouteHealth, TrafficState
from .common import ProxyRouter, check_ab_headers, cookie_regex, mirror_service_name, route_metadata, service_name
from .live import condition_reason, find_object, named_rule, share_percent

API_VERSION = "gateway.networking.k8s.io/v1"
RULE_AB = "ab-test"
RULE_PREVIEW = "preview"
RULE_SPLIT = "split"
MAX_HEADER_VALUE = 4096  # HTTPRoute header match value


def build_http_route(md: ModelDeployment, state: TrafficState) -> dict[str, Any]:
    parent_refs = [{k: ref[k] for k in ("name", "namespace", "sectionName") if ref.get(k)} for ref in md.traffic.parent_refs]
    spec: dict[str, Any] = {"parentRefs": parent_refs, "rules": _rules(md, state)}
    if md.traffic.hostnames:
        spec["hostnames"] = list(md.traffic.hostnames)
    return {"apiVersion": API_VERSION, "kind": "HTTPRoute", "metadata": route_metadata(md), "spec": spec}


def _rules(md: ModelDeployment, state: TrafficState) -> list[dict[str, Any]]:
    split: dict[str, Any] = {"name": RULE_SPLIT, "backendRefs": [_backend(md, state.stable_revision, state.stable_weight)]}
    canary = state.canary_revision
    if canary is None:
        return [split]
    split["backendRefs"].append(_backend(md, canary, state.canary_weight))
    if state.mirror_percent:
        split["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": mirror_service_name(md, canary), "port": md.port}, "percent": state.mirror_percent}}]
    preview = [{"headers": [{"type": "Exact", "name": PREVIEW_HEADER, "value": PREVIEW_HEADER_VALUE}]}]
    first = [(RULE_AB, _ab_matches(state))] if state.has_match else []
    first += [(RULE_PREVIEW, preview)] if state.preview else []
    return [{"name": name, "matches": matches, "backendRefs": [_backend(md, canary, 100)]} for name, matches in first] + [split]


def _backend(md: ModelDeployment, revision: int, weight: int) -> dict[str, Any]:
    return {"name": service_name(md, revision), "port": md.port, "weight": weight}


def _ab_matches(state: TrafficState) -> list[dict[str, Any]]:
    """All header matches in one entry (ANDed), the cookie in another (entries are ORed)."""
    matches: list[dict[str, Any]] = []
    if state.header_matches:
        matches.append({"headers": [{"type": h.type, "name": h.name.lower(), "value": h.value} for h in state.header_matches]})
    if state.cookie_match:
        matches.append({"headers": [{"type": "RegularExpression", "name": "cookie", "value": cookie_regex(*state.cookie_match)}]})
    return matches


def _mirror_percent(rule: Mapping[str, Any], mirror_service: str) -> int:
    for f in rule.get("filters") or ():
        mirror = f.get("requestMirror") or {}
        if f.get("type") != "RequestMirror" or (mirror.get("backendRef") or {}).get("name") != mirror_service:
            continue
        if "percent" in mirror:
            return int(mirror["percent"])
        if "fraction" in mirror:
            frac = mirror["fraction"]
            return share_percent(int(frac.get("numerator", 0)), int(frac.get("denominator", 100)))
        return 100
    return 0


def _signature(route: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """What decides where a request goes, in a form where the apiserver's defaults do not differ."""
    out = []
    for rule in (route.get("spec") or {}).get("rules") or ():
        refs = tuple(sorted((r.get("name"), int(r.get("port", 0)), int(r.get("weight", 1))) for r in rule.get("backendRefs") or ()))
        headers = tuple(tuple(sorted((h.get("type", "Exact"), h.get("name", "").lower(), h.get("value"))
                                     for h in m.get("headers") or ()))
                        for m in rule.get("matches") or [{}])  # no matches: the defaulted match-all
        mirrors = tuple(sorted(((f.get("requestMirror") or {}).get("backendRef", {}).get("name"),
                                (f.get("requestMirror") or {}).get("percent", 100))
                               for f in rule.get("filters") or () if f.get("type") == "RequestMirror"))
        out.append((rule.get("name"), refs, headers, mirrors))
    return out


def _rejections(route: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) of every Gateway that refused the route (Accepted=False or
    ResolvedRefs=False); silence is not refusal."""
    out = []
    for parent in ((route.get("status") or {}).get("parents") or ()):
        ref = parent.get("parentRef") or {}
        where = "/".join(x for x in (ref.get("namespace"), ref.get("name")) if x)
        for cond in parent.get("conditions") or ():
            if cond.get("type") in ("Accepted", "ResolvedRefs") and cond.get("status") == "False":
                out.append((condition_reason(cond.get("reason"), "RouteRejected"),
                            f"Gateway {where}: {cond['type']}=False ({cond.get('reason', '')}: {cond.get('message', '')})"))
    return out


MIRROR_FEATURE = "HTTPRouteRequestMirror"  # Gateway API's conformance feature name


def _cannot_mirror(md: ModelDeployment, live: Sequence[Mapping[str, Any]]) -> str:
    """Which parent Gateway's class declares features (GatewayClass status.supportedFeatures, Gateway
    API v1.2+) without HTTPRouteRequestMirror; "" when all can, or when nothing says (a Gateway or
    class not observed, a class that lists no features)."""
    for ref in md.traffic.parent_refs:
        gateway = find_object(live, "Gateway", ref["name"], ref.get("namespace") or md.namespace)
        cls_name = ((gateway or {}).get("spec") or {}).get("gatewayClassName")
        gateway_class = find_object(live, "GatewayClass", cls_name) if cls_name else None
        features = ((gateway_class or {}).get("status") or {}).get("supportedFeatures") or []
        names = {f.get("name") if isinstance(f, Mapping) else f for f in features}
        if names and MIRROR_FEATURE not in names:
            return (f"Gateway {ref.get('namespace') or md.namespace}/{ref['name']} is of GatewayClass {cls_name}, whose "
                    f"status.supportedFeatures does not list {MIRROR_FEATURE}")
    return ""


class GatewayAPIRouter(ProxyRouter):
    """An HTTPRoute `<name>` attached to spec.traffic.gateway.parentRefs; the Gateway accepts it or not."""

    kind = "gatewayAPI"
    route_kind = "HTTPRoute"
    no_weight_note = "has no backend with a weight: the gateway answers 500"

    def check(self, md: ModelDeployment, policy: RoutePolicy = RoutePolicy()) -> SpecError | None:
        if not md.traffic.parent_refs:
            return SpecError("spec.traffic.gateway.parentRefs", "router gatewayAPI needs the Gateway the HTTPRoute attaches to",
                             "add spec.traffic.gateway.parentRefs: [{name: <gateway>, namespace: <its namespace>}]")
        cookie = md.rollout.ab_test.cookie
        if cookie and len(cookie_regex(*cookie)) > MAX_HEADER_VALUE:
            return SpecError("spec.rollout.abTest.match.cookie", f"the cookie match becomes a regex longer than the "
                             f"{MAX_HEADER_VALUE} characters an HTTPRoute header match may hold", "use a shorter cookie value")
        return check_ab_headers(md)

    build_route = staticmethod(build_http_route)
    signature = staticmethod(_signature)


    def split_of(self, md: ModelDeployment, route: Mapping[str, Any], mirror_service: str | None) -> tuple[dict[str, int], int]:
        split = named_rule((route.get("spec") or {}).get("rules") or [], RULE_SPLIT)
        weights: dict[str, int] = {}
        for ref in split.get("backendRefs") or ():
            weights[ref.get("name", "")] = weights.get(ref.get("name", ""), 0) + int(ref.get("weight", 1))
        return weights, _mirror_percent(split, mirror_service) if mirror_service else 0

    def refusals(self, route: Mapping[str, Any]) -> list[str]:
        return [message for _, message in _rejections(route)]

    def observe(self, md: ModelDeployment, live: Sequence[Mapping[str, Any]]) -> RouteHealth:
        route = find_object(live, "HTTPRoute", md.name)
        rejected = _rejections(route) if route is not None else []
        cannot_mirror = _cannot_mirror(md, live)
        if not rejected:
            return RouteHealth(cannot_mirror=cannot_mirror)
        return RouteHealth(False, rejected[0][0], f"HTTPRoute {md.name} is refused: " + "; ".join(m for _, m in rejected),
                           cannot_mirror=cannot_mirror)
