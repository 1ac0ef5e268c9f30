"""The routers' objects against a real kube-apiserver with the Gateway API and Istio CRDs.

Every object each router renders, for every strategy state, goes through
`kubectl apply --server-side --dry-run=server` (the operator's own apply path: OpenAPI schema,
CEL rules, strict field validation; nothing stored). Then the routes are applied for real and read
back, and `achieved()` must read the apiserver's defaulted objects as the split that was asked for.
A misspelt field is rejected, so the dry run has teeth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelpilot.api.modeldeployment import parse_model_deployment
from modelpilot.traffic import ReplicaPlan, TrafficState, get_router, header_matches_from_spec

from ..unit.helpers import md

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MODELPILOT_CACHE", Path.home() / ".cache" / "modelpilot"))
VERSIONS = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
CRD_DIRS = [CACHE / "crds" / f"gateway-api-{VERSIONS['GATEWAY_API_VERSION']}", CACHE / "crds" / f"istio-api-{VERSIONS['ISTIO_API_VERSION']}"]

TRAFFIC = {
    "gatewayAPI": {"router": "gatewayAPI", "gateway": {"parentRefs": [{"name": "public", "namespace": "infra", "sectionName": "https"}],
                                                       "hostnames": ["resnet.models.example.com"]}},
    "istio": {"router": "istio", "istio": {"hosts": ["resnet.models.example.com", "resnet"], "gateways": ["infra/public", "mesh"]}},
    "replicas": {"router": "replicas"},
}
AB = {"strategy": "abTest", "abTest": {"match": {"headers": [{"name": "X-Model-Variant", "value": "b"},
                                                             {"name": "x-tenant", "value": "acme-.*", "type": "RegularExpression"}],
                                                 "cookie": {"name": "exp", "value": "b.1"}}, "weight": 10}}


def states() -> dict[str, TrafficState]:
    headers, cookie = header_matches_from_spec(parse_model_deployment(md(traffic=TRAFFIC["istio"], rollout=AB)))
    return {
        "stable-only": TrafficState(1),
        "canary": TrafficState(1, 2, 10),
        "shadow": TrafficState(1, 2, mirror_percent=30),
        "ab-test": TrafficState(1, 2, 10, header_matches=headers, cookie_match=cookie),
        "blue-green-preview": TrafficState(1, 2, preview=True),
        "blue-green-switched": TrafficState(1, 2, 100),
    }


CASES = [(kind, name) for kind in ("gatewayAPI", "istio", "replicas") for name in states()
         if kind != "replicas" or name not in ("shadow", "ab-test")]


@pytest.fixture(scope="module")
def traffic_crds(kubectl) -> None:
    """The Gateway API and Istio CRDs (hack/local-up.sh applies them; a cluster started before may lack Istio's)."""
    for d in CRD_DIRS:
        assert d.is_dir(), f"{d} is missing: run hack/build-testbed.sh gateway-api istio"
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(d))
        kubectl("wait", "--for", "condition=established", "--timeout=60s", "-f", str(d))


def rendered(kind: str, namespace: str, state: TrafficState) -> tuple[Any, list[dict[str, Any]]]:
    body = md(traffic=TRAFFIC[kind], rollout={"strategy": "canary"})
    body["metadata"]["namespace"] = namespace
    spec = parse_model_deployment(body)
    return spec, get_router(kind).route_objects(spec, state)


def apply(kubectl, objs: list[dict[str, Any]], *extra: str, check: bool = True):
    return kubectl("apply", "--server-side", "--field-manager=modelpilot", *extra, "-f", "-",
                   input=yaml.safe_dump_all(objs), check=check)


@pytest.mark.parametrize("kind,state", CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_apiserver_accepts_every_rendered_object(kubectl, namespace, traffic_crds, kind, state):
    _, objs = rendered(kind, namespace, states()[state])
    out = apply(kubectl, objs, "--dry-run=server").stdout
    assert out.count("serverside-applied (server dry run)") == len(objs), out


@pytest.mark.parametrize("kind,field", [("gatewayAPI", "percnt"), ("istio", "mirrorPercentag")])
def test_a_misspelt_field_is_rejected(kubectl, namespace, traffic_crds, kind, field):
    _, objs = rendered(kind, namespace, states()["shadow"])
    route = objs[-1]
    if kind == "gatewayAPI":
        mirror = route["spec"]["rules"][-1]["filters"][0]["requestMirror"]
        mirror[field] = mirror.pop("percent")
    else:
        split = route["spec"]["http"][-1]
        split[field] = split.pop("mirrorPercentage")
    r = apply(kubectl, [route], "--dry-run=server", check=False)
    assert r.returncode != 0 and f"{field}: field not declared in schema" in r.stderr, r.stderr


@pytest.mark.parametrize("kind,route_kind", [("gatewayAPI", "httproute"), ("istio", "virtualservice")])
def test_achieved_reads_the_live_route(kubectl, namespace, traffic_crds, kind, route_kind):
    """Apply each state for real (one object, updated in place) and read back what the apiserver stores."""
    for name, state in states().items():
        spec, objs = rendered(kind, namespace, state)
        route = [o for o in objs if o["kind"] != "Service"]
        for o in route:  # the owner does not exist: the garbage collector would delete the route
            del o["metadata"]["ownerReferences"]
        apply(kubectl, route)
        live = json.loads(kubectl("get", route_kind, "resnet", "-n", namespace, "-o", "json").stdout)
        got = get_router(kind).achieved(spec, state, ReplicaPlan(2, 1), [live])
        assert got is not None and got.exact, (name, got)
        assert (got.stable_weight, got.canary_weight, got.mirror_percent) == (
            state.stable_weight, state.canary_weight, state.mirror_percent), name
