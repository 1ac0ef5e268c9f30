"""RoutingReady on the real apiserver: the operator reads the Gateway's verdict on the HTTPRoute
(status.parents[].conditions, written here as a Gateway controller would) and a refused route
stops the rollout from advancing."""

from __future__ import annotations

import json
import time

import pytest

from ..conftest import Kubectl
from .conftest import Operator
from .rollout_helpers import apply, model_deployment, new_version, status, wait_status

pytestmark = pytest.mark.e2e



def _write_route_status(kubectl: Kubectl, ns: str, name: str, accepted: bool, reason: str, message: str) -> None:
    """What a Gateway controller writes to the HTTPRoute's status subresource."""
    parent = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference-gateway", "namespace": ns},
              "controllerName": "example.com/gateway-controller",
              "conditions": [{"type": "Accepted", "status": "True" if accepted else "False", "reason": reason, "message": message,
                              "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    kubectl("-n", ns, "patch", "httproute", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"parents": [parent]}}))


def test_a_gateway_that_refuses_the_route_stops_the_rollout(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    """RoutingReady follows the Gateway's verdict on the HTTPRoute (status.parents[].conditions):
    a refused route holds the canary at its step, says why, and the rollout goes on once accepted."""
    name = "refused"
    body = model_deployment(name, {"strategy": "canary", "canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1s"}}]}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, name, lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    _write_route_status(kubectl, namespace, name, False, "NotAllowedByListeners", "no listener admits routes from this namespace")
    st = wait_status(kubectl, namespace, name, lambda s: any(
        x["type"] == "RoutingReady" and x["status"] == "False" for x in s.get("conditions") or []), what="RoutingReady=False")
    routing = next(x for x in st["conditions"] if x["type"] == "RoutingReady")
    assert routing["reason"] == "NotAllowedByListeners" and "no listener admits routes" in routing["message"], routing
    assert next(x for x in st["conditions"] if x["type"] == "Ready")["status"] == "False"
    assert st["weights"]["achieved"] is False

    new_version(kubectl, namespace, body, 2)
    st = wait_status(kubectl, namespace, name, lambda s: s.get("canaryRevision") == 2, what="revision 2 rolling out")
    time.sleep(3)  # several reconciles: the refused route must hold the first step
    st = status(kubectl, namespace, name)
    assert st.get("canaryRevision") == 2 and st.get("currentStep") == 0, st
    assert st["phase"] != "Ready" and st.get("stableRevision") == 1

    _write_route_status(kubectl, namespace, name, True, "Accepted", "")
    st = wait_status(kubectl, namespace, name, lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready",
                     what="promoted once the Gateway accepts the route")
    assert next(x for x in st["conditions"] if x["type"] == "RoutingReady")["status"] == "True"
