"""The traffic routers without a cluster: the weight math (table-driven and against a port of Argo
Rollouts' function), and every router's objects, replica counts and achieved split for the
canary, shadow, A/B and blue-green states, compared as whole objects.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import pytest

from modelpilot.api.errors import SpecError
from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.render import build_entry_service
from modelpilot.traffic import (ROUTE_COMPONENTS, ROUTE_KINDS, Achieved, HeaderMatch, ReplicaPlan, TrafficState, approximate_replica_counts,
                                get_router, header_matches_from_spec)
from modelpilot.traffic.common import cookie_regex, re2_escape, share_percent
from modelpilot.traffic.gateway_api import GatewayAPIRouter
from modelpilot.traffic.istio import IstioRouter
from modelpilot.traffic.replicas import ReplicaRouter

from .helpers import md

pytestmark = pytest.mark.unit

GATEWAY = {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
                                               "hostnames": ["resnet.models.example.com"]}}
ISTIO = {"router": "istio"}
AB = {"strategy": "abTest", "abTest": {"match": {"headers": [{"name": "X-Model-Variant", "value": "b"},
                                                             {"name": "x-tenant", "value": "acme-.*", "type": "RegularExpression"}],
                                                 "cookie": {"name": "exp", "value": "b.1"}},
                                       "weight": 10}}


def spec(traffic: dict[str, Any] | None = None, rollout: dict[str, Any] | None = None, **more: Any):
    return parse_model_deployment(md(traffic=traffic or {"router": "replicas"}, rollout=rollout or {"strategy": "canary"}, **more))


def ab_state(weight: int = 10) -> TrafficState:
    headers, cookie = header_matches_from_spec(spec(GATEWAY, AB))
    return TrafficState(1, 2, weight, header_matches=headers, cookie_match=cookie)


CANARY = TrafficState(stable_revision=1, canary_revision=2, canary_weight=10)
SHADOW = TrafficState(stable_revision=1, canary_revision=2, mirror_percent=30)
PREVIEW = TrafficState(stable_revision=1, canary_revision=2, preview=True)
SWITCHED = TrafficState(stable_revision=1, canary_revision=2, canary_weight=100)
STABLE_ONLY = TrafficState(stable_revision=1)

# --- expected objects, spelled out (not built with the code under test) ---

OWNER = [{"apiVersion": "modelpilot.io/v1alpha1", "kind": "ModelDeployment", "name": "resnet", "uid": "uid-1",
          "controller": True, "blockOwnerDeletion": True}]
# The Services' ports are the runtime's (render.py owns them); the routers only choose selectors.
PORTS = build_entry_service(spec())["spec"]["ports"]


def meta(name: str, component: str, revision: int | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "resnet", "app.kubernetes.io/instance": "resnet", "app.kubernetes.io/component": component,
              "app.kubernetes.io/managed-by": "modelpilot", "app.kubernetes.io/part-of": "modelpilot",
              "modelpilot.io/model-deployment": "resnet"}
    if revision is not None:
        labels["modelpilot.io/revision"] = str(revision)
    return {"name": name, "namespace": "ml", "labels": labels, "ownerReferences": OWNER}


def entry(revision: int | None) -> dict[str, Any]:
    selector = {"modelpilot.io/model-deployment": "resnet", "app.kubernetes.io/component": "predictor"}
    if revision is not None:
        selector["modelpilot.io/revision"] = str(revision)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta("resnet", "entrypoint"),
            "spec": {"type": "ClusterIP", "selector": selector, "ports": PORTS}}


PREVIEW_SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": meta("resnet-preview", "preview", 2),
    "spec": {"type": "ClusterIP", "ports": PORTS, "selector": {
        "modelpilot.io/model-deployment": "resnet", "app.kubernetes.io/component": "predictor", "modelpilot.io/revision": "2"}},
}
COOKIE_RE = r"(^|.*;\s*)exp=b\.1(;.*|$)"


def http_route(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta("resnet", "router"), "spec": {
        "parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
        "hostnames": ["resnet.models.example.com"],
        "rules": rules,
    }}


def ref(revision: int, weight: int) -> dict[str, Any]:
    return {"name": f"resnet-r{revision}", "port": 80, "weight": weight}


def virtual_service(http: list[dict[str, Any]], hosts: list[str] | None = None, gateways: list[str] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"hosts": hosts or ["resnet.ml.svc.cluster.local"], "exportTo": ["."]}
    if gateways:
        s["gateways"] = gateways
    s["http"] = http
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": meta("resnet", "router"), "spec": s}


def dest(revision: int, weight: int) -> dict[str, Any]:
    return {"destination": {"host": f"resnet-r{revision}.ml.svc.cluster.local", "port": {"number": 80}}, "weight": weight}


def assert_objects(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want), [f"{o['kind']}/{o['metadata']['name']}" for o in got]
    for g, w in zip(got, want):
        assert g == w


# ============================== weight math ==============================

@pytest.mark.parametrize("total,weight,surge,stable,canary", [
    (0, 0, 0, 0, 0), (0, 50, 0, 0, 0), (0, 100, 1, 0, 0),     # nothing to split
    (10, 0, 0, 10, 0), (10, 100, 0, 0, 10), (1, 0, 1, 1, 0), (1, 100, 1, 0, 1),
    (10, 10, 0, 9, 1), (10, 50, 0, 5, 5), (100, 33, 0, 67, 33),  # exact
    (10, 14, 0, 9, 1), (10, 16, 0, 8, 2),                     # nearer ratio
    (10, 15, 0, 8, 2), (10, 25, 0, 7, 3), (3, 50, 0, 1, 2), (7, 50, 0, 3, 4),  # ties round the canary up
    (5, 1, 0, 4, 1), (100, 1, 0, 99, 1), (2, 1, 0, 1, 1),     # never 0 canary pods for 1..99
    (5, 99, 0, 1, 4), (100, 99, 0, 1, 99), (2, 99, 0, 1, 1),  # never 0 stable pods for 1..99
    (2, 75, 0, 1, 1), (5, 90, 0, 1, 4),                       # Argo finds no option here and drops the canary
    (1, 30, 0, 1, 0), (1, 50, 0, 0, 1), (1, 70, 0, 0, 1),     # one pod, no surge: all or nothing, nearer, ties up
    (1, 30, 1, 1, 1), (1, 99, 1, 1, 1),                       # one pod with surge: one each side
    (3, 50, 1, 2, 2), (10, 25, 1, 8, 3),                      # surge when one more pod comes nearer
    (10, 10, 1, 9, 1),                                        # ... and not when it does not
])
def test_approximate_replica_counts(total, weight, surge, stable, canary):
    assert approximate_replica_counts(total, weight, max_surge=surge) == ReplicaPlan(stable=stable, canary=canary)


def _argo(spec_replicas: int, weight: int, max_surge: int) -> tuple[int, int]:
    """A line-by-line port of argo-rollouts utils/replicaset/canary.go
    approximateWeightedCanaryStableReplicaCounts (float math as in Go): (canary, stable)."""
    if spec_replicas == 0:
        return 0, 0
    ceil_c = math.ceil(spec_replicas * weight / 100.0)
    floor_c = math.floor(spec_replicas * weight / 100.0)

    def tied(total: int) -> bool:
        return math.modf(total * (weight / 100))[0] == 0.5

    zero_allowed = weight in (0, 100) or (spec_replicas == 1 and max_surge == 0)
    options = []
    if ceil_c < spec_replicas or zero_allowed:
        options.append((ceil_c, spec_replicas))
    if not tied(spec_replicas) and (floor_c != 0 or zero_allowed):
        options.append((floor_c, spec_replicas))
    if max_surge > 0:
        options.append((ceil_c, spec_replicas + 1))
        if not tied(spec_replicas + 1) and (floor_c != 0 or zero_allowed):
            options.append((floor_c, spec_replicas + 1))
    if not options:
        return 0, spec_replicas  # "should not get here"

    def delta(o: tuple[int, int]) -> float:
        return abs(o[0] * 100 / o[1] - weight)

    best = options[0]
    for o in options[1:]:
        if delta(o) < delta(best):
            best = o
    return best[0], best[1] - best[0]


def test_matches_argo_everywhere_argo_keeps_a_pod_on_each_side():
    differ = []
    for surge in (0, 1):
        for total in range(0, 101):
            for weight in range(0, 101):
                got = approximate_replica_counts(total, weight, max_surge=surge)
                if (got.canary, got.stable) != _argo(total, weight, surge):
                    differ.append((total, weight, surge, _argo(total, weight, surge), got))
    # The only differences: Argo's empty option list, which returns no canary pod for a weight of 1..99.
    assert differ and all(a == (0, t) and 1 <= w <= 99 and s == 0 and g.canary >= 1 and g.stable >= 1
                          for t, w, s, a, g in differ), differ


def test_weights_1_to_99_keep_a_pod_on_each_side_and_the_total():
    for total in range(2, 60):
        for weight in range(1, 100):
            got = approximate_replica_counts(total, weight)
            assert got.canary >= 1 and got.stable >= 1 and got.canary + got.stable == total, (total, weight, got)
            # nearest: no other count with a pod on each side comes strictly nearer
            best = min(abs(c * 100 - weight * total) for c in range(1, total))
            assert abs(got.canary * 100 - weight * total) == best, (total, weight, got)


@pytest.mark.parametrize("part,whole,pct", [
    (0, 0, 0), (0, 10, 0), (10, 10, 100), (12, 10, 100), (1, 2, 50), (1, 3, 33), (2, 3, 67), (1, 8, 13),
    (1, 1000, 1), (999, 1000, 99), (1, 201, 1), (3, 7, 43), (90, 100, 90),
])
def test_share_percent(part, whole, pct):
    assert share_percent(part, whole) == pct


# ============================== TrafficState ==============================

@pytest.mark.parametrize("kwargs,message", [
    ({"canary_revision": 2, "canary_weight": 101}, "canary_weight must be 0..100"),
    ({"canary_revision": 2, "canary_weight": -1}, "canary_weight must be 0..100"),
    ({"canary_revision": 2, "mirror_percent": 101}, "mirror_percent must be 0..100"),
    ({"canary_weight": 10}, "needs canary_revision"),
    ({"mirror_percent": 10}, "needs canary_revision"),
    ({"preview": True}, "needs canary_revision"),
    ({"cookie_match": ("a", "b")}, "needs canary_revision"),
    ({"canary_revision": 1}, "both 1"),
])
def test_traffic_state_rejects_nonsense(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrafficState(stable_revision=1, **kwargs)


def test_header_match_type_is_checked():
    with pytest.raises(ValueError, match="Exact or RegularExpression"):
        HeaderMatch("x", "y", "Prefix")


def test_header_matches_from_spec():
    assert header_matches_from_spec(spec(GATEWAY, AB)) == (
        (HeaderMatch("X-Model-Variant", "b", "Exact"), HeaderMatch("x-tenant", "acme-.*", "RegularExpression")), ("exp", "b.1"))
    assert header_matches_from_spec(spec(GATEWAY, {"strategy": "canary"})) == ((), None)


# ============================== cookie regex ==============================

@pytest.mark.parametrize("header,hit", [
    ("exp=b.1", True), ("a=1; exp=b.1", True), ("exp=b.1; a=2", True), ("a=1;exp=b.1;c=3", True),
    ("xexp=b.1", False), ("exp=b.10", False), ("exp=bx1", False), ("a=exp=b.1", False), ("", False),
])
def test_cookie_regex_under_full_match_and_search(header, hit):
    pattern = cookie_regex("exp", "b.1")
    assert bool(re.fullmatch(pattern, header)) is hit  # Envoy / Istio: RE2 full match
    assert bool(re.search(pattern, header)) is hit     # implementations that search


def test_re2_escape_keeps_cookie_characters_literal():
    assert re2_escape("a.b*c+d?(e)|[f]{g}^h$i\\j-k!#%&'~") == r"a\.b\*c\+d\?\(e\)\|\[f\]\{g\}\^h\$i\\j-k!#%&'~"
    assert re.fullmatch(cookie_regex("s$id", "a+b"), "s$id=a+b")


# ============================== factory and check ==============================

def test_get_router():
    assert isinstance(get_router("gatewayAPI"), GatewayAPIRouter)
    assert isinstance(get_router("istio"), IstioRouter)
    assert isinstance(get_router("replicas"), ReplicaRouter)
    assert [get_router(k).kind for k in ("gatewayAPI", "istio", "replicas")] == ["gatewayAPI", "istio", "replicas"]


def test_unknown_router_names_the_field():
    with pytest.raises(SpecError) as err:
        get_router("linkerd")
    assert err.value.field == "spec.traffic.router"
    assert str(err.value) == "spec.traffic.router: unknown router 'linkerd'; use one of gatewayAPI, istio, replicas"


@pytest.mark.parametrize("strategy,block,verb", [
    ("shadow", {"shadow": {"percent": 20}}, "mirrors requests"),
    ("abTest", AB["abTest"], "routes by header or cookie"),
])
def test_replica_router_refuses_shadow_and_ab(strategy, block, verb):
    err = get_router("replicas").check(spec(rollout={"strategy": strategy, **block}))
    assert isinstance(err, SpecError) and err.field == "spec.traffic.router"
    assert str(err) == (f"spec.traffic.router: router replicas cannot carry strategy {strategy} (spec.rollout.strategy): it {verb}, "
                        "which needs a proxy in the request path; set spec.traffic.router to gatewayAPI (with "
                        "spec.traffic.gateway.parentRefs) or istio")


@pytest.mark.parametrize("strategy", ["direct", "canary", "blueGreen"])
def test_replica_router_carries_the_rest(strategy):
    assert get_router("replicas").check(spec(rollout={"strategy": strategy})) is None


@pytest.mark.parametrize("kind,traffic", [("gatewayAPI", GATEWAY), ("istio", ISTIO)])
@pytest.mark.parametrize("rollout", [{"strategy": "canary"}, {"strategy": "shadow", "shadow": {"percent": 50}}, AB, {"strategy": "blueGreen"}])
def test_proxy_routers_carry_every_strategy(kind, traffic, rollout):
    assert get_router(kind).check(spec(traffic, rollout)) is None


def test_gateway_router_needs_parent_refs():
    err = get_router("gatewayAPI").check(spec({"router": "gatewayAPI", "gateway": {"hostnames": ["a.example.com"]}}))
    assert err is not None and err.field == "spec.traffic.gateway.parentRefs"
    assert "add spec.traffic.gateway.parentRefs" in str(err)


def test_gateway_router_refuses_a_cookie_too_long_for_a_header_match():
    rollout = copy.deepcopy(AB)
    rollout["abTest"]["match"]["cookie"]["value"] = "v" * 4080
    err = get_router("gatewayAPI").check(spec(GATEWAY, rollout))
    assert err is not None and err.field == "spec.rollout.abTest.match.cookie"
    rollout["abTest"]["match"]["cookie"]["value"] = "v" * 4000
    assert get_router("gatewayAPI").check(spec(GATEWAY, rollout)) is None
    assert get_router("istio").check(spec(ISTIO, rollout)) is None


@pytest.mark.parametrize("kind,traffic", [("gatewayAPI", GATEWAY), ("istio", ISTIO)])
def test_header_names_differing_in_case_are_one_header(kind, traffic):
    rollout = copy.deepcopy(AB)
    rollout["abTest"]["match"]["headers"].append({"name": "x-model-variant", "value": "c"})
    err = get_router(kind).check(spec(traffic, rollout))
    assert err is not None and err.field == "spec.rollout.abTest.match.headers"
    assert "'X-Model-Variant' and 'x-model-variant' name the same header" in str(err)


def test_route_kinds_and_components_cover_everything_rendered():
    objs = [o for r, m in ((GatewayAPIRouter(), spec(GATEWAY)), (IstioRouter(), spec(ISTIO)), (ReplicaRouter(), spec()))
            for st in (CANARY, PREVIEW) for o in r.route_objects(m, st)]
    assert {(o["apiVersion"], o["kind"]) for o in objs} == set(ROUTE_KINDS)
    assert {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objs} == set(ROUTE_COMPONENTS)


# ============================== Gateway API ==============================

SPLIT_10 = {"name": "split", "backendRefs": [ref(1, 90), ref(2, 10)]}


@pytest.mark.parametrize("state,want", [
    (STABLE_ONLY, [entry(1), http_route([{"name": "split", "backendRefs": [ref(1, 100)]}])]),
    (CANARY, [entry(1), http_route([SPLIT_10])]),
    (SHADOW, [entry(1), http_route([{"name": "split", "backendRefs": [ref(1, 100), ref(2, 0)], "filters": [{
        "type": "RequestMirror", "requestMirror": {"backendRef": {"name": "resnet-r2", "port": 80}, "percent": 30}}]}])]),
    (ab_state(), [entry(1), http_route([
        {"name": "ab-test", "matches": [
            {"headers": [{"type": "Exact", "name": "x-model-variant", "value": "b"},
                         {"type": "RegularExpression", "name": "x-tenant", "value": "acme-.*"}]},
            {"headers": [{"type": "RegularExpression", "name": "cookie", "value": COOKIE_RE}]}],
         "backendRefs": [ref(2, 100)]},
        SPLIT_10])]),
    (ab_state(0), [entry(1), http_route([
        {"name": "ab-test", "matches": [
            {"headers": [{"type": "Exact", "name": "x-model-variant", "value": "b"},
                         {"type": "RegularExpression", "name": "x-tenant", "value": "acme-.*"}]},
            {"headers": [{"type": "RegularExpression", "name": "cookie", "value": COOKIE_RE}]}],
         "backendRefs": [ref(2, 100)]},
        {"name": "split", "backendRefs": [ref(1, 100), ref(2, 0)]}])]),
    (PREVIEW, [entry(1), PREVIEW_SERVICE, http_route([
        {"name": "preview", "matches": [{"headers": [{"type": "Exact", "name": "x-modelpilot-preview", "value": "true"}]}],
         "backendRefs": [ref(2, 100)]},
        {"name": "split", "backendRefs": [ref(1, 100), ref(2, 0)]}])]),
    (SWITCHED, [entry(2), http_route([{"name": "split", "backendRefs": [ref(1, 0), ref(2, 100)]}])]),
], ids=["stable-only", "canary", "shadow", "ab-test", "ab-test-no-weight", "blue-green-preview", "blue-green-switched"])
def test_gateway_api_objects(state, want):
    assert_objects(GatewayAPIRouter().route_objects(spec(GATEWAY), state), want)


def test_gateway_api_without_hostnames_and_with_bare_parent_ref():
    md_ = spec({"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "public"}]}, "port": 8080})
    route = GatewayAPIRouter().route_objects(md_, CANARY)[-1]
    assert route["spec"] == {"parentRefs": [{"name": "public"}], "rules": [
        {"name": "split", "backendRefs": [{"name": "resnet-r1", "port": 8080, "weight": 90},
                                          {"name": "resnet-r2", "port": 8080, "weight": 10}]}]}


def _as_apiserver_returns(route: dict[str, Any]) -> dict[str, Any]:
    """What a GET returns: the defaults the HTTPRoute CRD fills in, and a status."""
    live = copy.deepcopy(route)
    for rule in live["spec"]["rules"]:
        rule.setdefault("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])
        for m in rule["matches"]:
            m.setdefault("path", {"type": "PathPrefix", "value": "/"})
        for r in rule["backendRefs"]:
            r.update({"group": "", "kind": "Service"})
        for f in rule.get("filters", []):
            f["requestMirror"]["backendRef"].update({"group": "", "kind": "Service"})
    for p in live["spec"]["parentRefs"]:
        p.update({"group": "gateway.networking.k8s.io", "kind": "Gateway"})
    live["metadata"]["resourceVersion"] = "42"
    return live


@pytest.mark.parametrize("state,want", [
    (CANARY, Achieved(90, 10)),
    (SHADOW, Achieved(100, 0, 30)),
    (ab_state(), Achieved(90, 10)),
    (PREVIEW, Achieved(100, 0)),
    (SWITCHED, Achieved(0, 100)),
    (STABLE_ONLY, Achieved(100, 0)),
])
def test_gateway_api_achieved_from_the_live_route(state, want):
    r, md_ = GatewayAPIRouter(), spec(GATEWAY)
    live = [_as_apiserver_returns(o) if o["kind"] == "HTTPRoute" else o for o in r.route_objects(md_, state)]
    assert r.achieved(md_, state, ReplicaPlan(2, 1), live) == want


def test_gateway_api_achieved_reports_the_old_weights_until_the_route_changes():
    r, md_ = GatewayAPIRouter(), spec(GATEWAY)
    live = _as_apiserver_returns(r.route_objects(md_, CANARY)[-1])
    want = TrafficState(1, 2, 25)
    assert r.achieved(md_, want, ReplicaPlan(2, 1), [live]) == Achieved(
        90, 10, exact=False,
        note="HTTPRoute resnet is not updated yet: it carries resnet-r1 weight 90, resnet-r2 weight 10; wanted stable 75% / canary 25%")


def test_gateway_api_achieved_mirror_fraction_and_missing_route():
    r, md_ = GatewayAPIRouter(), spec(GATEWAY)
    route = r.route_objects(md_, SHADOW)[-1]
    mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    del mirror["percent"]
    mirror["fraction"] = {"numerator": 1, "denominator": 3}
    got = r.achieved(md_, SHADOW, ReplicaPlan(2, 1), [route])
    assert (got.mirror_percent, got.exact) == (33, False)
    assert r.achieved(md_, SHADOW, ReplicaPlan(2, 1), []) is None
    assert r.achieved(md_, SHADOW, ReplicaPlan(2, 1), [entry(1)]) is None


def test_gateway_api_achieved_is_not_exact_when_a_gateway_refuses_the_route():
    r, md_ = GatewayAPIRouter(), spec(GATEWAY)
    live = _as_apiserver_returns(r.route_objects(md_, CANARY)[-1])
    live["status"] = {"parents": [{"parentRef": {"name": "public", "namespace": "infra"}, "controllerName": "example.com/gw",
                                   "conditions": [
                                       {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""},
                                       {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
                                        "message": "service resnet-r2 not found"}]}]}
    assert r.achieved(md_, CANARY, ReplicaPlan(2, 1), [live]) == Achieved(
        90, 10, exact=False, note="Gateway infra/public: ResolvedRefs=False (BackendNotFound: service resnet-r2 not found)")


def test_gateway_api_achieved_with_no_weighted_backend():
    r, md_ = GatewayAPIRouter(), spec(GATEWAY)
    route = r.route_objects(md_, CANARY)[-1]
    for b in route["spec"]["rules"][0]["backendRefs"]:
        b["weight"] = 0
    got = r.achieved(md_, CANARY, ReplicaPlan(2, 1), [route])
    assert (got.canary_weight, got.exact) == (0, False)
    assert got.note.endswith("HTTPRoute resnet has no backend with a weight: the gateway answers 500")


# ============================== Istio ==============================

ISTIO_SPLIT_10 = {"name": "split", "route": [dest(1, 90), dest(2, 10)]}
ISTIO_AB_MATCH = [{"headers": {"x-model-variant": {"exact": "b"}, "x-tenant": {"regex": "acme-.*"}}},
                  {"headers": {"cookie": {"regex": COOKIE_RE}}}]


@pytest.mark.parametrize("state,want", [
    (STABLE_ONLY, [entry(1), virtual_service([{"name": "split", "route": [dest(1, 100)]}])]),
    (CANARY, [entry(1), virtual_service([ISTIO_SPLIT_10])]),
    (SHADOW, [entry(1), virtual_service([{
        "name": "split", "route": [dest(1, 100), dest(2, 0)],
        "mirror": {"host": "resnet-r2.ml.svc.cluster.local", "port": {"number": 80}}, "mirrorPercentage": {"value": 30.0}}])]),
    (ab_state(), [entry(1), virtual_service([
        {"name": "ab-test", "match": ISTIO_AB_MATCH, "route": [dest(2, 100)]}, ISTIO_SPLIT_10])]),
    (PREVIEW, [entry(1), PREVIEW_SERVICE, virtual_service([
        {"name": "preview", "match": [{"headers": {"x-modelpilot-preview": {"exact": "true"}}}], "route": [dest(2, 100)]},
        {"name": "split", "route": [dest(1, 100), dest(2, 0)]}])]),
    (SWITCHED, [entry(2), virtual_service([{"name": "split", "route": [dest(1, 0), dest(2, 100)]}])]),
], ids=["stable-only", "canary", "shadow", "ab-test", "blue-green-preview", "blue-green-switched"])
def test_istio_objects(state, want):
    assert_objects(IstioRouter().route_objects(spec(ISTIO), state), want)


def test_istio_hosts_and_gateways_from_spec():
    md_ = spec({"router": "istio", "istio": {"hosts": ["resnet.models.example.com"], "gateways": ["infra/public", "mesh"]}})
    want = virtual_service([ISTIO_SPLIT_10], hosts=["resnet.models.example.com"], gateways=["infra/public", "mesh"])
    want["spec"]["exportTo"] = [".", "infra"]  # the ingress gateway's namespace must see the routes
    assert IstioRouter().route_objects(md_, CANARY)[-1] == want


@pytest.mark.parametrize("state,want", [
    (CANARY, Achieved(90, 10)), (SHADOW, Achieved(100, 0, 30)), (ab_state(), Achieved(90, 10)),
    (PREVIEW, Achieved(100, 0)), (SWITCHED, Achieved(0, 100)), (STABLE_ONLY, Achieved(100, 0)),
])
def test_istio_achieved_from_its_own_objects(state, want):
    r, md_ = IstioRouter(), spec(ISTIO)
    assert r.achieved(md_, state, ReplicaPlan(2, 1), r.route_objects(md_, state)) == want


def test_istio_achieved_reads_short_hosts_and_a_lone_destination():
    r, md_ = IstioRouter(), spec(ISTIO)
    vs = virtual_service([{"name": "split", "route": [{"destination": {"host": "resnet-r1"}}]}])
    assert r.achieved(md_, STABLE_ONLY, ReplicaPlan(2, 0), [vs]) == Achieved(100, 0)


def test_istio_achieved_reports_the_old_split_until_the_virtual_service_changes():
    r, md_ = IstioRouter(), spec(ISTIO)
    old = r.route_objects(md_, SHADOW)
    assert r.achieved(md_, CANARY, ReplicaPlan(2, 1), old) == Achieved(
        100, 0, 30, exact=False, note="VirtualService resnet is not updated yet: it carries resnet-r1 weight 100, resnet-r2 weight 0, "
                                      "mirror 30%; wanted stable 90% / canary 10%")
    assert r.achieved(md_, CANARY, ReplicaPlan(2, 1), [entry(1)]) is None


# ============================== replica ratio ==============================

@pytest.mark.parametrize("state,want", [
    (STABLE_ONLY, [entry(1)]),
    (TrafficState(1, 2, 0), [entry(1)]),            # canary pods may run (scale-down delay) but serve nothing
    (CANARY, [entry(None)]),                         # both revisions' pods behind one Service
    (TrafficState(1, 2, 99), [entry(None)]),
    (SWITCHED, [entry(2)]),                          # atomic switch
    (PREVIEW, [entry(1), PREVIEW_SERVICE]),          # blue-green on plain Services
])
def test_replica_router_objects(state, want):
    assert_objects(ReplicaRouter().route_objects(spec(), state), want)


@pytest.mark.parametrize("state", [SHADOW, ab_state()])
def test_replica_router_refuses_to_render_what_it_cannot_carry(state):
    with pytest.raises(ValueError, match="cannot mirror or match headers"):
        ReplicaRouter().route_objects(spec(), state)


@pytest.mark.parametrize("state,total,want", [
    (STABLE_ONLY, 4, ReplicaPlan(4, 0)),
    (TrafficState(1, 2, 0), 4, ReplicaPlan(4, 0)),
    (CANARY, 10, ReplicaPlan(9, 1)),
    (CANARY, 4, ReplicaPlan(3, 1)),                  # 25 % is the nearest to 10 % with a pod on each side
    (TrafficState(1, 2, 25), 10, ReplicaPlan(7, 3)),  # tie: 2.5 pods rounds up
    (TrafficState(1, 2, 50), 3, ReplicaPlan(1, 2)),
    (CANARY, 1, ReplicaPlan(1, 1)),                  # one replica: surge one pod to have a canary at all
    (TrafficState(1, 2, 90), 1, ReplicaPlan(1, 1)),
    (SWITCHED, 4, ReplicaPlan(0, 4)),
    (CANARY, 0, ReplicaPlan(0, 0)),
    (PREVIEW, 4, ReplicaPlan(4, 4)),
])
def test_replica_router_replicas(state, total, want):
    assert ReplicaRouter().replicas(spec(), state, total) == want


def test_replica_router_preview_replicas():
    md_ = spec(rollout={"strategy": "blueGreen", "blueGreen": {"previewReplicas": 1}})
    assert ReplicaRouter().replicas(md_, PREVIEW, 4) == ReplicaPlan(4, 1)
    assert ReplicaRouter().replicas(md_, PREVIEW, 0) == ReplicaPlan(0, 0)


@pytest.mark.parametrize("state,ready,want", [
    (CANARY, ReplicaPlan(9, 1), Achieved(90, 10)),
    (CANARY, ReplicaPlan(3, 1), Achieved(75, 25, exact=False,
                                          note="1 of 4 ready pods run the canary: about 25% of connections for a desired 10%")),
    (CANARY, ReplicaPlan(9, 0), Achieved(100, 0, exact=False,
                                          note="0 of 9 ready pods run the canary: about 0% of connections for a desired 10%")),
    (TrafficState(1, 2, 33), ReplicaPlan(2, 1), Achieved(67, 33, exact=False,
                                                          note="1 of 3 ready pods run the canary: about 33% of connections for a desired 33%")),
    (CANARY, ReplicaPlan(0, 0), None),
])
def test_replica_router_achieved_from_ready_pods(state, ready, want):
    r, md_ = ReplicaRouter(), spec()
    assert r.achieved(md_, state, ready, r.route_objects(md_, state)) == want


@pytest.mark.parametrize("state,ready,want", [
    (TrafficState(1, 2, 0), ReplicaPlan(4, 4), Achieved(100, 0)),
    (SWITCHED, ReplicaPlan(4, 4), Achieved(0, 100)),
    (PREVIEW, ReplicaPlan(4, 4), Achieved(100, 0)),
    (SWITCHED, ReplicaPlan(4, 0), Achieved(0, 100, exact=False, note="revision 2 has no ready pod: Service resnet has no endpoints")),
])
def test_replica_router_achieved_when_one_revision_is_selected(state, ready, want):
    r, md_ = ReplicaRouter(), spec()
    assert r.achieved(md_, state, ready, r.route_objects(md_, state)) == want


def test_replica_router_achieved_while_the_service_selector_lags():
    r, md_ = ReplicaRouter(), spec()
    assert r.achieved(md_, CANARY, ReplicaPlan(9, 1), [entry(1)]) == Achieved(
        100, 0, exact=False, note="Service resnet still selects only revision 1")
    assert r.achieved(md_, SWITCHED, ReplicaPlan(9, 1), [entry(None)]) == Achieved(
        90, 10, exact=False, note="Service resnet still selects every revision; 1 of 10 ready pods run the canary: "
                                  "about 10% of connections for a desired 100%")
    assert r.achieved(md_, CANARY, ReplicaPlan(9, 1), []) is None


# ============================== routed replica sizing ==============================

@pytest.mark.parametrize("kind", ["gatewayAPI", "istio"])
@pytest.mark.parametrize("state,total,want", [
    (STABLE_ONLY, 4, ReplicaPlan(4, 0)),
    (TrafficState(1, 2, 0), 4, ReplicaPlan(4, 0)),
    (CANARY, 10, ReplicaPlan(10, 1)),                # stable stays full: an abort never waits for pods
    (CANARY, 4, ReplicaPlan(4, 1)),                  # ceil(0.4)
    (TrafficState(1, 2, 25), 10, ReplicaPlan(10, 3)),
    (SWITCHED, 4, ReplicaPlan(4, 4)),
    (SHADOW, 10, ReplicaPlan(10, 3)),                # mirrored load needs pods too
    (TrafficState(1, 2, 0, mirror_percent=100), 3, ReplicaPlan(3, 3)),
    (ab_state(0), 10, ReplicaPlan(10, 1)),           # matched share unknown: at least one pod
    (ab_state(30), 10, ReplicaPlan(10, 3)),
    (PREVIEW, 4, ReplicaPlan(4, 4)),
    (CANARY, 0, ReplicaPlan(0, 0)),
])
def test_routed_replicas(kind, state, total, want):
    traffic = GATEWAY if kind == "gatewayAPI" else ISTIO
    assert get_router(kind).replicas(spec(traffic), state, total) == want


@pytest.mark.parametrize("kind,traffic", [("gatewayAPI", GATEWAY), ("istio", ISTIO)])
def test_routed_preview_replicas(kind, traffic):
    md_ = spec(traffic, {"strategy": "blueGreen", "blueGreen": {"previewReplicas": 2}})
    assert get_router(kind).replicas(md_, PREVIEW, 6) == ReplicaPlan(6, 2)


def test_rendering_is_deterministic():
    for kind, traffic in (("gatewayAPI", GATEWAY), ("istio", ISTIO), ("replicas", None)):
        md_ = spec(traffic)
        for st in (CANARY, PREVIEW, SWITCHED):
            assert get_router(kind).route_objects(md_, st) == get_router(kind).route_objects(spec(traffic), st)


# ============================== least authority (issue 11, scenario 6) ==============================

def test_istio_virtual_service_is_visible_in_its_own_namespace_only():
    vs = IstioRouter().route_objects(spec(ISTIO), CANARY)[-1]
    assert vs["spec"]["exportTo"] == ["."]


@pytest.mark.parametrize("hosts", [["resnet"], ["resnet.ml"], ["resnet.ml.svc"], ["resnet.ml.svc.cluster.local"],
                                   ["*.ml.svc.cluster.local"], ["other-svc.ml.svc.cluster.local", "resnet"]])
def test_istio_hosts_in_the_objects_namespace_are_admitted(hosts):
    assert get_router("istio").check(spec({"router": "istio", "istio": {"hosts": hosts}})) is None


@pytest.mark.parametrize("hosts, bad", [
    (["payments.payments.svc.cluster.local"], 0),   # another team's Service: a mesh takeover
    (["resnet", "payments.payments.svc"], 1),
    (["*"], 0), (["*.svc.cluster.local"], 0), (["resnet.models.example.com"], 0), (["*.example.com"], 0),
])
def test_istio_hosts_outside_the_namespace_are_refused_naming_the_field(hosts, bad):
    err = get_router("istio").check(spec({"router": "istio", "istio": {"hosts": hosts}}))
    assert err is not None and err.field == f"spec.traffic.istio.hosts[{bad}]"
    assert hosts[bad] in str(err) and "istio.allowedHosts" in str(err)


def test_istio_hosts_allowlisted_in_the_operator_config_are_admitted():
    from modelpilot.config import parse_config
    policy = parse_config({"istio": {"allowedHosts": ["*.models.example.com", "{namespace}.apps.example.com"]}}).route_policy
    ok = spec({"router": "istio", "istio": {"hosts": ["resnet.models.example.com", "ml.apps.example.com"]}})
    assert get_router("istio").check(ok, policy) is None
    other_ns = spec({"router": "istio", "istio": {"hosts": ["team-a.apps.example.com"]}})
    assert get_router("istio").check(other_ns, policy).field == "spec.traffic.istio.hosts[0]"


@pytest.mark.parametrize("gateways, bad", [(["mesh", "infra/public"], 1), (["istio-system/ingress"], 0)])
def test_istio_gateways_in_other_namespaces_need_the_allowlist(gateways, bad):
    from modelpilot.config import parse_config
    md_ = spec({"router": "istio", "istio": {"gateways": gateways}})
    err = get_router("istio").check(md_)
    assert err is not None and err.field == f"spec.traffic.istio.gateways[{bad}]" and "istio.allowedGateways" in str(err)
    policy = parse_config({"istio": {"allowedGateways": ["infra/public", "istio-system/*"]}}).route_policy
    assert get_router("istio").check(md_, policy) is None
    assert get_router("istio").check(spec({"router": "istio", "istio": {"gateways": ["mesh", "local-gw", "ml/gw"]}})) is None


def test_gateway_api_parent_refs_are_never_widened():
    """A parentRef into another namespace is copied as given; whether the route may attach is the
    Gateway's allowedRoutes' decision: the operator renders no ReferenceGrant or Gateway."""
    objs = GatewayAPIRouter().route_objects(spec(GATEWAY), CANARY)
    assert sorted(o["kind"] for o in objs) == ["HTTPRoute", "Service"]
    assert objs[-1]["spec"]["parentRefs"] == [{"name": "public", "namespace": "infra", "sectionName": "https"}]
