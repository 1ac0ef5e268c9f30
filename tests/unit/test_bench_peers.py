"""The pure parts of bench/peers.py: reading weights off the peers' routes, step gaps, the audit-log
filter for drift, and the extra kwok nodes for large N."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import peers  # noqa: E402
import rollout  # noqa: E402

pytestmark = pytest.mark.unit


def test_virtualservice_weight_matches_short_names_and_fqdns() -> None:
    vs = {"spec": {"http": [{"match": [{"headers": {}}], "route": [{"destination": {"host": "m-r2"}, "weight": 100}]},
                            {"route": [{"destination": {"host": "m-r1.ns.svc.cluster.local"}, "weight": 70},
                                       {"destination": {"host": "m-r2.ns.svc.cluster.local"}, "weight": 30}]}]}}
    assert peers.vs_weight(vs, "m-r2") == 30  # the last route, not the header match
    assert peers.vs_weight(vs, "m-r3") == 0


def test_httproute_weight_and_step_gaps() -> None:
    route = {"spec": {"rules": [{"backendRefs": [{"name": "s-r1", "weight": 98}, {"name": "s-r2", "weight": 2}]}]}}
    assert rollout.httproute_weight(route, "s-r2") == 2
    changes = [(10.0, 0), (11.0, 1), (11.5, 2), (11.75, 3), (12.0, 0)]
    assert rollout.step_gaps(changes, 3) == [0.5, 0.25]  # weight 1 waits for the pod: not a step


def test_drift_counts_writes_to_applied_objects_but_not_their_status(monkeypatch) -> None:
    events = [{"requestURI": "/apis/argoproj.io/v1alpha1/namespaces/n/rollouts/s"},
              {"requestURI": "/apis/argoproj.io/v1alpha1/namespaces/n/rollouts/s/status"},
              {"requestURI": "/api/v1/namespaces/n/services/s-stable?fieldManager=x"},
              {"requestURI": "/apis/apps/v1/namespaces/n/replicasets/s-abc"},
              {"requestURI": "/apis/networking.istio.io/v1beta1/namespaces/n/virtualservices/s"}]
    monkeypatch.setattr(peers.rc, "audit_events", lambda since, user: events)
    assert peers.object_writes(peers.utcnow(), "argo-rollouts", "n", peers.argo_objects("s", [], 1)) == 3


@pytest.mark.parametrize("n, extra", [(10, 0), (200, 0), (250, 1), (1000, 8)])
def test_extra_nodes_fit_n_pods(n: int, extra: int) -> None:
    nodes = peers.extra_nodes(n)
    assert len(nodes) == extra
    assert len({d["metadata"]["name"] for d in nodes}) == extra
    assert (3 + extra) * 110 >= n
    assert all(d["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for d in nodes)
