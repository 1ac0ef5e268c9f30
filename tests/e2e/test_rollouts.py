"""Progressive delivery end to end on the real control plane: canary, automatic rollback on real
Prometheus analysis, blue-green switch and switch-back, shadow, A/B, undo, and restarts of the
operator and of kube-apiserver in the middle of a rollout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from ..conftest import LOCAL, REPO, Kubectl
from .conftest import MetricTarget, Operator, operator_writes_by_agent, utcnow, wait_for
from .rollout_helpers import (GATEWAY, RouteWatch, apply, model_deployment, new_version, plugin, route_weights,
                              wait_status)

pytestmark = pytest.mark.e2e


def route(kubectl: Kubectl, ns: str, name: str) -> dict:
    return json.loads(kubectl("-n", ns, "get", "httproute", name, "-o", "json").stdout)


def selector_revision(kubectl: Kubectl, ns: str, svc: str) -> str:
    return json.loads(kubectl("-n", ns, "get", "service", svc, "-o", "json").stdout)["spec"]["selector"].get("modelpilot.io/revision", "")


def events(kubectl: Kubectl, ns: str, name: str) -> list[dict]:
    return json.loads(kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout)["items"]


def test_canary_runs_to_promotion(kubectl: Kubectl, kubeconfig: str, namespace: str, operator: Operator) -> None:
    steps = [{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 80}, {"pause": {"duration": "1s"}}]
    body = model_deployment("canary", {"strategy": "canary", "canary": {"steps": steps}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "canary", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    watch = RouteWatch(kubeconfig, namespace, "canary", "canary-r2")
    new_version(kubectl, namespace, body, 2)
    st = wait_status(kubectl, namespace, "canary", lambda s: s.get("phase") == "Paused", what="the indefinite pause")
    assert st["currentStep"] == 3 and st["weights"]["canary"] == 50
    assert route_weights(route(kubectl, namespace, "canary")) == {"canary-r1": 50, "canary-r2": 50}
    plugin(kubeconfig, "promote", "canary", "-n", namespace)
    st = wait_status(kubectl, namespace, "canary", lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready", what="promotion")
    weights = watch.stop()
    assert weights == [0, 20, 50, 80, 100] or weights == [0, 20, 50, 80, 0], f"weights applied: {weights}"
    assert [(r["revision"], r["outcome"]) for r in st["revisions"]] == [(1, "Superseded"), (2, "Stable")]
    out = plugin(kubeconfig, "status", "canary", "-n", namespace).stdout
    assert "revision 2" in out and "Stable" in out


def test_back_to_back_weights_chain_in_one_reconcile(kubectl: Kubectl, kubeconfig: str, namespace: str, operator: Operator) -> None:
    """setWeight after setWeight: each weight's gate is met by the operator's own route write, so the
    steps complete one after another in the same reconcile (handlers/modeldeployment.chain_steps).
    Every weight is still persisted, in order, once; each step completes once; status is written
    fewer times than there are steps."""
    weights = [5, 10, 15, 20, 25, 30, 35, 40]
    body = model_deployment("chain", {"strategy": "canary", "canary": {"steps": [{"setWeight": w} for w in weights] + [{"pause": {}}]}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "chain", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    watch = RouteWatch(kubeconfig, namespace, "chain", "chain-r2")
    since = utcnow()
    new_version(kubectl, namespace, body, 2)
    st = wait_status(kubectl, namespace, "chain", lambda s: s.get("phase") == "Paused", what="the pause after the last weight")
    assert st["currentStep"] == len(weights) and st["weights"]["canary"] == weights[-1]
    time.sleep(1)
    seen = watch.stop()
    assert seen == [0, *weights], f"weights applied: {seen}"
    completed = [e["message"] for e in events(kubectl, namespace, "chain") if e["reason"] == "StepCompleted"]
    assert len(completed) == len(weights) == len(set(completed)), completed
    status_writes = [w for w in operator_writes_by_agent(since) if w["uri"].split("?")[0].endswith("/modeldeployments/chain/status")]
    assert 1 <= len(status_writes) < len(weights), [w["ts"] for w in status_writes]


def scraped(prometheus_url: str, promql: str) -> None:
    """Wait until Prometheus has scraped what the test just set (it scrapes every 500 ms)."""
    from modelpilot.analysis import PrometheusClient
    client = PrometheusClient(prometheus_url, timeout=5)
    wait_for(lambda: (r := client.query(promql)) and not r.error and r.values, 30, 0.3, f"Prometheus to have {promql}")


def test_failing_analysis_rolls_back_automatically(kubectl: Kubectl, namespace: str, operator: Operator,
                                                   metric_target: MetricTarget, prometheus_url: str) -> None:
    query = 'max(mp_e2e_error_ratio{namespace="{{namespace}}",name="{{name}}",revision="{{canaryRevision}}"})'
    steps = [{"setWeight": 20},
             {"analysis": {"interval": "1s", "count": 2, "metrics": [{"name": "error-ratio", "query": query, "successCondition": "result < 0.05"}]}},
             {"setWeight": 100}]
    body = model_deployment("judged", {"strategy": "canary", "canary": {"steps": steps}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "judged", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    metric_target.set_error_ratio(namespace, "judged", 2, 0.30)  # the new model fails 30 % of requests
    scraped(prometheus_url, f'mp_e2e_error_ratio{{namespace="{namespace}",name="judged"}}')
    new_version(kubectl, namespace, body, 2)
    st = wait_status(kubectl, namespace, "judged", lambda s: s.get("phase") == "Degraded", timeout=90, what="automatic rollback")
    assert st["stableRevision"] == 1 and st["weights"]["canary"] == 0
    assert route_weights(route(kubectl, namespace, "judged")).get("judged-r2", 0) == 0, "all traffic back to stable"
    assert "analysis failed" in st["message"]
    evs = events(kubectl, namespace, "judged")
    measured = [e for e in evs if e["reason"] == "AnalysisMeasurement"]
    assert measured and "0.3" in measured[0]["message"] and 'revision="2"' in measured[0]["message"], "the query and value are recorded"
    assert any(e["reason"] == "RolloutAborted" for e in evs)
    assert operator.metric("modelpilot_rollbacks_total") >= 1


def test_passing_analysis_promotes(kubectl: Kubectl, namespace: str, operator: Operator, metric_target: MetricTarget,
                                   prometheus_url: str) -> None:
    query = 'max(mp_e2e_error_ratio{namespace="{{namespace}}",name="{{name}}",revision="{{canaryRevision}}"})'
    steps = [{"setWeight": 30},
             {"analysis": {"interval": "1s", "count": 2, "metrics": [{"name": "error-ratio", "query": query, "successCondition": "result < 0.05"}]}}]
    body = model_deployment("healthy", {"strategy": "canary", "canary": {"steps": steps}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "healthy", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    metric_target.set_error_ratio(namespace, "healthy", 2, 0.001)
    scraped(prometheus_url, f'mp_e2e_error_ratio{{namespace="{namespace}",name="healthy"}}')
    new_version(kubectl, namespace, body, 2)
    wait_status(kubectl, namespace, "healthy", lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready", what="promotion")


def test_analysis_with_no_data_is_inconclusive_and_pauses(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    steps = [{"setWeight": 10},
             {"analysis": {"interval": "1s", "inconclusiveLimit": 1, "metrics": [
                 {"name": "nothing", "query": 'max(mp_e2e_error_ratio{name="no-such-deployment"})', "successCondition": "result < 0.05"}]}}]
    body = model_deployment("nodata", {"strategy": "canary", "canary": {"steps": steps}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "nodata", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    new_version(kubectl, namespace, body, 2)
    st = wait_status(kubectl, namespace, "nodata", lambda s: s.get("phase") == "Paused", what="inconclusive pause")
    assert "inconclusive" in st["pauseReason"] and st["canaryRevision"] == 2


def test_blue_green_switch_then_switch_back(kubectl: Kubectl, kubeconfig: str, namespace: str, operator: Operator) -> None:
    body = model_deployment("bg", {"strategy": "blueGreen", "blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": 300}},
                            traffic=None)
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "bg", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    new_version(kubectl, namespace, body, 2)
    wait_status(kubectl, namespace, "bg", lambda s: s.get("phase") == "Paused", what="preview")
    assert selector_revision(kubectl, namespace, "bg") == "1"
    assert selector_revision(kubectl, namespace, "bg-preview") == "2"
    plugin(kubeconfig, "promote", "bg", "-n", namespace)
    wait_status(kubectl, namespace, "bg", lambda s: s.get("stableRevision") == 2, what="switch")
    assert selector_revision(kubectl, namespace, "bg") == "2", "the entry Service switched in one write"
    plugin(kubeconfig, "undo", "bg", "-n", namespace)
    t = time.monotonic()
    wait_status(kubectl, namespace, "bg", lambda s: s.get("stableRevision") == 1, what="switch-back")
    assert selector_revision(kubectl, namespace, "bg") == "1"
    assert time.monotonic() - t < 10, "revision 1 was still up: the switch-back is immediate"
    spec = json.loads(kubectl("-n", namespace, "get", "modeldeployment", "bg", "-o", "json").stdout)["spec"]
    assert spec["model"]["uri"].endswith("/v2/model.onnx"), "undo never edits spec"


def test_shadow_mirrors_to_the_new_revision(kubectl: Kubectl, kubeconfig: str, namespace: str, operator: Operator) -> None:
    body = model_deployment("shadowed", {"strategy": "shadow", "shadow": {"percent": 25}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "shadowed", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    new_version(kubectl, namespace, body, 2)
    st = wait_status(kubectl, namespace, "shadowed", lambda s: s.get("phase") == "Paused", what="mirroring")
    assert st["weights"]["mirror"] == 25 and st["weights"]["canary"] == 0
    r = route(kubectl, namespace, "shadowed")
    mirrors = [f["requestMirror"] for rule in r["spec"]["rules"] for f in rule.get("filters", []) if f["type"] == "RequestMirror"]
    assert mirrors == [{"backendRef": {"name": "shadowed-r2", "port": 80}, "percent": 25}] or (
        mirrors and mirrors[0]["backendRef"]["name"] == "shadowed-r2" and mirrors[0]["percent"] == 25)
    assert route_weights(r).get("shadowed-r2", 0) == 0, "the shadow serves no user responses"
    plugin(kubeconfig, "promote", "shadowed", "-n", namespace)
    wait_status(kubectl, namespace, "shadowed", lambda s: s.get("stableRevision") == 2, what="promotion")


def test_ab_header_routing(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    ab = {"strategy": "abTest", "abTest": {"match": {"headers": [{"name": "x-model-group", "value": "b"}]}, "duration": "1h"}}
    body = model_deployment("ab", ab)
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "ab", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    new_version(kubectl, namespace, body, 2)
    wait_status(kubectl, namespace, "ab", lambda s: s.get("canaryRevision") == 2 and s.get("currentStep") == 1, what="A/B running")
    rules = route(kubectl, namespace, "ab")["spec"]["rules"]
    matched = [r for r in rules if any(m.get("headers") for m in r.get("matches", []))]
    assert matched[0]["matches"][0]["headers"] == [{"type": "Exact", "name": "x-model-group", "value": "b"}]
    assert [b["name"] for b in matched[0]["backendRefs"]] == ["ab-r2"]
    assert route_weights(route(kubectl, namespace, "ab")).get("ab-r2", 0) == 0


def test_undo_to_revision_n(kubectl: Kubectl, kubeconfig: str, namespace: str, operator: Operator) -> None:
    body = model_deployment("hist", {"strategy": "direct"}, traffic=None)
    apply(kubectl, namespace, body)
    for v in (2, 3):
        wait_status(kubectl, namespace, "hist", lambda s: s.get("phase") == "Ready", what="Ready")
        new_version(kubectl, namespace, body, v)
        wait_status(kubectl, namespace, "hist", lambda s, v=v: s.get("stableRevision") == v, what=f"revision {v}")
    plugin(kubeconfig, "undo", "hist", "-n", namespace, "--to-revision", "1")
    st = wait_status(kubectl, namespace, "hist", lambda s: s.get("stableRevision") == 1 and s.get("phase") == "Ready", what="back on 1")
    assert {r["revision"]: r["outcome"] for r in st["revisions"]}[3] == "RolledBack"
    assert json.loads(kubectl("-n", namespace, "get", "deployment", "hist-r1", "-o", "json").stdout)["spec"]["replicas"] == 2


def test_operator_killed_at_every_step(kubectl: Kubectl, kubeconfig: str, namespace: str, operator: Operator) -> None:
    """SIGKILL the operator as soon as each weight lands; the applied weights must still be exactly
    the steps, in order, once each, and the rollout must finish with one new revision."""
    weights = [10, 20, 30, 40, 50]
    steps = [x for w in weights for x in ({"setWeight": w}, {"pause": {"duration": "2s"}})]
    body = model_deployment("crashy", {"strategy": "canary", "canary": {"steps": steps}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "crashy", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    watch = RouteWatch(kubeconfig, namespace, "crashy", "crashy-r2")
    new_version(kubectl, namespace, body, 2)
    for w in weights:
        wait_for(lambda w=w: route_weights(route(kubectl, namespace, "crashy")).get("crashy-r2", 0) >= w, 60, 0.1, f"weight {w}")
        operator.stop(signal.SIGKILL)
        time.sleep(0.5)
        operator.start()
    st = wait_status(kubectl, namespace, "crashy", lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready", what="promotion")
    seen = watch.stop()
    assert seen[: len(weights) + 1] == [0, *weights], f"weights applied: {seen}"
    assert len(seen) == len(set(seen)), f"a weight was applied twice: {seen}"
    assert [r["revision"] for r in st["revisions"]] == [1, 2], "no lost or extra revision"
    # Events are posted at most once, after the status write: a SIGKILL between the two loses the
    # Events of the reconcile in flight. How many that is depends on how soon the kill follows the
    # route write (on a loaded CI machine, 8 of the 10 were lost once), so the count is not checked.
    # What is: a step never completes twice, and the last pause, which ends after the last kill,
    # is reported.
    completed = [e["message"] for e in events(kubectl, namespace, "crashy") if e["reason"] == "StepCompleted"]
    assert len(completed) == len(set(completed)), f"a step completed twice: {completed}"
    assert any(f"step {len(steps) - 1} (pause" in m for m in completed), completed


def test_apiserver_restart_mid_rollout(kubectl: Kubectl, namespace: str, operator: Operator) -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "8s"}}, {"setWeight": 75}, {"pause": {"duration": "1s"}}]
    body = model_deployment("survivor", {"strategy": "canary", "canary": {"steps": steps}})
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, "survivor", lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    new_version(kubectl, namespace, body, 2)
    wait_status(kubectl, namespace, "survivor", lambda s: s.get("currentStep") == 1, what="first pause")
    pid = int((LOCAL / "pids" / "kube-apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # a crash, the harshest way to lose the apiserver

    def gone() -> bool:
        try:
            return "zombie" in open(f"/proc/{pid}/status").read()
        except OSError:
            return True
    wait_for(gone, 30, what="kube-apiserver stopped")
    time.sleep(2)
    subprocess.run([str(REPO / "hack" / "local-up.sh")], check=True, capture_output=True, timeout=300)
    st = wait_status(kubectl, namespace, "survivor", lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready",
                     timeout=120, what="promotion after the apiserver came back")
    assert [r["revision"] for r in st["revisions"]] == [1, 2]


ISTIO = {"router": "istio", "istio": {"hosts": ["m.example.com"]}}
STRATEGIES = {
    "direct": {"strategy": "direct"},
    "canary": {"strategy": "canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}},
    "blueGreen": {"strategy": "blueGreen", "blueGreen": {"autoPromotionSeconds": 1, "scaleDownDelaySeconds": 0}},
    "shadow": {"strategy": "shadow", "shadow": {"percent": 30, "duration": "1s"}},
    "abTest": {"strategy": "abTest", "abTest": {"match": {"headers": [{"name": "x-group", "value": "b"}]}, "duration": "1s"}},
}
ROUTERS = {"gatewayAPI": GATEWAY, "istio": ISTIO, "replicas": None}
CARRIES = [(s, r) for s in STRATEGIES for r in ROUTERS if not (r == "replicas" and s in ("shadow", "abTest"))]


@pytest.mark.parametrize("strategy,router", CARRIES)
def test_every_strategy_on_every_router_that_carries_it(kubectl: Kubectl, namespace: str, operator: Operator,
                                                       strategy: str, router: str) -> None:
    name = f"m-{strategy.lower()}-{router.lower()}"[:40]
    body = model_deployment(name, STRATEGIES[strategy], traffic=ROUTERS[router])
    apply(kubectl, namespace, body)
    wait_status(kubectl, namespace, name, lambda s: s.get("phase") == "Ready", what="revision 1 Ready")
    new_version(kubectl, namespace, body, 2)
    st = wait_status(kubectl, namespace, name, lambda s: s.get("stableRevision") == 2 and s.get("phase") == "Ready",
                     what=f"{strategy} on {router} promoted")
    assert st["weights"]["stable"] == 100
    assert selector_revision(kubectl, namespace, name) == "2"
    kind = {"gatewayAPI": "httproute", "istio": "virtualservice"}.get(router)
    if kind:
        obj = json.loads(kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)
        assert f"{name}-r2" in json.dumps(obj["spec"])
        if kind == "virtualservice":
            split = obj["spec"]["http"][-1]["route"]
            assert {r["destination"]["host"].split(".")[0]: r.get("weight", 100) for r in split}.get(f"{name}-r2") == 100
        else:
            assert route_weights(obj).get(f"{name}-r2") == 100
    events_seen = {e["reason"] for e in events(kubectl, namespace, name)}
    if strategy != "direct":
        assert {"RolloutStarted", "RolloutPromoted"} <= events_seen
